import contextlib
import importlib.util
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "netatlas"   # the reference files the package ships (schemas, seed queries)
sys.path.insert(0, str(ROOT))

pytest_plugins = ["background"]     # modules marked background run beside the suite (tests/background.py)


def load_bench(name: str):
    """bench/<name>.py loaded as the module ``bench_<name>`` for its smoke test: registered in
    sys.modules (dataclasses look their module up while a class is built), with bench/ on sys.path
    (benches import seeds.py beside them)."""
    path = ROOT / "bench" / f"{name}.py"
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the generated-SQL snapshots (<name>.duckdb.sql) of golden files")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")


@contextlib.contextmanager
def mount_tmpfs(path: pathlib.Path, size: str):
    """A tmpfs of ``size`` (mount's size=, e.g. "48m") mounted at ``path`` for the test, unmounted
    afterwards; the test is skipped, saying why, where mounting is not allowed (not root)."""
    path.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print(f"cannot mount a tmpfs: {r.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip()})")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


@pytest.fixture(scope="session")
def fleet_server(tmp_path_factory):
    """The simulated datacenter at full size (200 machines, 2 days ending now, seed 1), served by a
    Server of its own and shared by every test of the session that reads the fleet views (issue 17:
    the map, the problems list, workbooks and the browser tests at fleet size). Read only: a test
    that ingests or changes settings makes its own workspace."""
    import netatlas
    import netatlas.demo
    from test_server import serve_filled
    yield from serve_filled(tmp_path_factory, "fleet", lambda ws: netatlas.demo.generate(
        ws, machines=200, days=2, seed=1))
