"""Scenario modules that mostly wait on the wall clock run beside the rest of the suite.

A few end-to-end modules spend minutes waiting for time itself to pass: a workspace outage of 80 s,
a one-minute window that has to close, `netatlas up` restarted across a minute's end. Run in line
they were a third of the suite's time while the machine sat idle. A module marked

    pytestmark = pytest.mark.background

is run, whole, by a second pytest process started as soon as the suite is collected (only its
selected tests: ``-k`` and node ids keep working), in a temporary directory of its own; its tests
are moved to the end of this run, where each one reports the outcome the second process gave it
(passed, skipped with its reason, or failed with its report). Nothing is mocked or skipped: the
module runs exactly as it would alone, fixtures and timeouts included.

``NETATLAS_TEST_CHILD`` is set in the second process: there the marker does nothing.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CHILD = "NETATLAS_TEST_CHILD"
WAIT_SECONDS = 1800          # a module's own run, at most (its tests' timeouts stop it well before)


RUNNING: list["Child"] = []


class Child:
    """One module's second pytest process and, once it ended, each test's outcome."""

    def __init__(self, nodeids: list[str], config: pytest.Config):
        RUNNING.append(self)
        self.dir = Path(tempfile.mkdtemp(prefix="netatlas-background-"))
        self.report, self.log = self.dir / "report.xml", self.dir / "output.txt"
        timeout = config.getoption("timeout", None)
        args = [sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
                f"--basetemp={self.dir / 'tmp'}", f"--junitxml={self.report}",
                *([f"--timeout={timeout}"] if timeout else []), *nodeids]
        self.names = {n.split("::")[-1] for n in nodeids}
        with open(self.log, "w") as out:
            self.process = subprocess.Popen(args, cwd=config.rootpath, stdout=out, stderr=subprocess.STDOUT,
                                            env=dict(os.environ, **{CHILD: "1"}))
        self.outcomes: dict[str, tuple[str, str]] | None = None

    def outcome(self, name: str) -> tuple[str, str]:
        if self.outcomes is None:
            try:
                self.process.wait(WAIT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.outcomes = self._read()
            if self.names <= self.outcomes.keys() and all(state != "failed" for state, _ in self.outcomes.values()):
                shutil.rmtree(self.dir, ignore_errors=True)     # kept, with its output, when a test failed
        return self.outcomes.get(name) or ("failed", f"no outcome for {name} (exit {self.process.returncode}):\n"
                                                      + self.log.read_text()[-6000:])

    def _read(self) -> dict[str, tuple[str, str]]:
        if not self.report.exists():
            return {}
        found = {}
        for case in ET.parse(self.report).getroot().iter("testcase"):
            kinds = {e.tag: e for e in case}
            if "failure" in kinds or "error" in kinds:
                e = kinds.get("failure", kinds.get("error"))
                found[case.get("name")] = ("failed", (e.text or e.get("message") or "") + "\n" +
                                           "".join(x.text or "" for x in case.iter("system-out")))
            elif "skipped" in kinds:
                found[case.get("name")] = ("skipped", kinds["skipped"].get("message") or "")
            else:
                found[case.get("name")] = ("passed", "")
        return found


class BackgroundItem(pytest.Item):
    """A test of a background module here: its outcome is its second process's."""

    def __init__(self, *, child: Child, **kwargs):
        super().__init__(**kwargs)
        self.child = child

    def runtest(self) -> None:
        state, text = self.child.outcome(self.name)
        if state == "skipped":
            pytest.skip(text)
        if state == "failed":
            raise BackgroundFailure(text)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, BackgroundFailure):
            return f"{self.nodeid} failed in its background run ({self.child.log}):\n{excinfo.value}"
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, None, f"{self.name} (run in the background)"


class BackgroundFailure(Exception):
    pass


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "background: run this module in a second pytest process beside the suite "
                                       "(tests/background.py)")


@pytest.hookimpl(trylast=True)      # after -k and -m have deselected: only the selected tests run in the child
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list) -> None:
    if os.environ.get(CHILD) or config.getoption("collectonly"):
        return
    chosen: dict[Path, list] = {}
    for item in items:
        if isinstance(item, pytest.Function) and item.get_closest_marker("background"):
            chosen.setdefault(item.path, []).append(item)
    if not chosen:
        return
    moved = []
    for tests in chosen.values():
        child = Child([t.nodeid for t in tests], config)
        for t in tests:
            b = BackgroundItem.from_parent(t.parent, name=t.name, child=child)
            for mark in t.iter_markers():
                if mark.name != "timeout":          # the second process keeps the test's own
                    b.own_markers.append(mark)
            b.add_marker(pytest.mark.timeout(WAIT_SECONDS + 60))
            moved.append((t, b))
    gone = {id(t) for t, _ in moved}
    items[:] = [i for i in items if id(i) not in gone] + [b for _, b in moved]


def pytest_unconfigure(config: pytest.Config) -> None:
    """A run that ends early (-x, an interrupt) stops the second processes it started, as an
    interrupt would (their namespaces and servers torn down), killed if they do not end in 30 s."""
    for child in RUNNING:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGINT)      # as Ctrl-C: its fixtures tear down
            try:
                child.process.wait(30)
            except subprocess.TimeoutExpired:
                child.process.kill()
