"""tests/background.py on a small suite of its own, run by a real pytest in a temporary directory: a
background module's tests run in a second process and report its outcomes (passed, skipped with the
reason, failed with the report) after the rest; -k reaches the second process too."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent

CONFTEST = f"""import sys
sys.path.insert(0, {str(TESTS)!r})
pytest_plugins = ["background"]
"""

WAITING = '''import os
import pytest
pytestmark = pytest.mark.background

def test_ok():
    assert os.environ.get("NETATLAS_TEST_CHILD") == "1"      # it ran in the second process

def test_skip():
    pytest.skip("no capability here")

@pytest.mark.parametrize("x", [1, 2])
def test_fail(x):
    assert x == 1, "x was %d" % x
'''

PLAIN = '''import os
def test_here():
    assert "NETATLAS_TEST_CHILD" not in os.environ
'''


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_waiting.py").write_text(WAITING)
    (tmp_path / "test_plain.py").write_text(PLAIN)
    env = {k: v for k, v in os.environ.items() if k != "NETATLAS_TEST_CHILD"}
    return subprocess.run([sys.executable, "-m", "pytest", "-v", "-rs", "-p", "no:cacheprovider", "--timeout=120",
                           *args], cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env)


def test_a_background_module_reports_the_second_process_outcomes_after_the_rest(tmp_path):
    p = run(tmp_path)
    out = p.stdout
    assert p.returncode == 1, out + p.stderr
    assert "1 failed, 3 passed, 1 skipped" in out, out
    order = [line.split("::")[1].split()[0] for line in out.splitlines()
             if "::test_" in line and any(w in line for w in (" PASSED", " FAILED", " SKIPPED"))]
    assert order[0] == "test_here" and set(order[1:]) == {"test_ok", "test_skip", "test_fail[1]", "test_fail[2]"}, out
    assert "failed in its background run" in out and "x was 2" in out, out
    assert "no capability here" in out, out


def test_k_selects_in_the_second_process_too(tmp_path):
    p = run(tmp_path, "-k", "ok or here")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "2 passed, 3 deselected" in p.stdout, p.stdout
