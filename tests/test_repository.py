"""The repository as a new user gets it: the README's two commands, what CI runs, and nothing
read from outside the clone."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from test_server import Server

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def fenced(text: str) -> list[tuple[str, str]]:
    """Every fenced block of a Markdown text as (info string, body)."""
    return [(m[1].strip(), m[2]) for m in re.finditer(r"^```([^\n]*)\n(.*?)^```", text, flags=re.M | re.S)]


def setup_commands() -> list[str]:
    """The README's two set-up commands: its first two `sh` blocks, one line each."""
    blocks = [body for info, body in fenced(README) if info == "sh"][:2]
    assert len(blocks) == 2 and all(len(b.strip().splitlines()) == 1 for b in blocks), blocks
    return [b.strip() for b in blocks]


def test_ci_runs_exactly_the_readmes_test_command():
    run, test = setup_commands()
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [line.split("||")[0].strip() for line in ci.splitlines()
                if line.strip() and not line.lstrip().startswith("#")
                and re.match(r"\s*(bash|python|sh|\./|scripts/|pytest)", line)]
    assert commands == [test], f".ci/run runs {commands}, the README says {test!r}"
    assert run != test


def test_the_readmes_commands_name_scripts_of_this_repository():
    for command in setup_commands():
        script = command.split()[1]
        assert (ROOT / script).is_file(), script
        text = (ROOT / script).read_text()
        assert "scripts/venv.sh" in text, f"{script} must install into a virtual environment"


def test_no_file_reads_outside_the_clone():
    """A user's clone has nothing beside it: code, tests, scripts and benchmarks use the package's copies."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    outside = re.compile(r"\.\./shared|[\"']shared[\"']|\bSHARED\b|ROOT\.parent\s*/")
    offenders = []
    for name in tracked.splitlines():
        if name == "tests/test_repository.py" or \
                not name.endswith((".py", ".sh", ".toml", ".cfg", ".ini")) and not name.startswith((".ci/", "scripts/")):
            continue
        path = ROOT / name
        if path.is_file():
            offenders += [f"{name}:{i}: {line.strip()}" for i, line in
                          enumerate(path.read_text(errors="replace").splitlines(), 1) if outside.search(line)]
    assert not offenders, "\n".join(offenders)


def test_venv_script_makes_and_reuses_an_environment(tmp_path):
    """scripts/venv.sh, run where no environment is active, creates ./.venv and activates it; a
    second run reuses it."""
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONHOME")}
    script = f'source {ROOT / "scripts" / "venv.sh"}; python -c "import sys; print(sys.prefix)"'
    first = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().endswith(str(tmp_path / ".venv")), first.stdout
    assert "created the virtual environment" in first.stdout
    again = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "created" not in again.stdout
    assert again.stdout.strip() == first.stdout.strip().splitlines()[-1]


def test_the_readmes_query_api_example_answers(tmp_path):
    """The README's curl example, run as written (the port and the place of the environment being
    the only things that differ), answers rows, not a 415."""
    (block,) = [body for info, body in fenced(README) if info == "sh readme:query-api"]
    data = tmp_path / "netatlas-data"
    import netatlas
    with netatlas.connect(data) as ws:
        ws.ingest("VMConnection", [{"TimeGenerated": _recent(), "Computer": "web-1", "BytesSent": 120500}])
    server = Server(data).start()
    try:
        activate = tmp_path / ".venv" / "bin" / "activate"
        activate.parent.mkdir(parents=True)
        activate.write_text(f'export PATH="{Path(sys.executable).parent}:$PATH"\n')
        script = block.replace("127.0.0.1:8080", f"127.0.0.1:{server.port}")
        out = subprocess.run(["bash", "-euo", "pipefail", "-c", script], cwd=tmp_path, capture_output=True,
                             text=True, timeout=120)
    finally:
        server.kill()
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["tables"][0]["rows"] == [["web-1", 120500]], answer


def _recent() -> str:
    from datetime import datetime, timedelta, timezone
    return (datetime.now(timezone.utc) - timedelta(minutes=5)).isoformat()
