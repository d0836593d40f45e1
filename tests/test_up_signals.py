"""Issue 11, item 2: `netatlas up` stops its local agent on SIGTERM, SIGINT and SIGHUP, and the
agent dies with up even when up is killed with SIGKILL (PR_SET_PDEATHSIG). `up --no-demo` is started
as a real subprocess on a free port (cheap: no demo to load)."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT
from test_up import free_port

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="up starts its agent only as root")


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/status") as f:
            return "\nState:\tZ" not in f.read()   # a zombie has stopped: only its exit status is left
    except FileNotFoundError:
        return False


def start_up(tmp_path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "up", "--no-demo", "--data", str(tmp_path / "data"),
                          "--port", str(port)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, env=env)
    out, agent = [], None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = p.stdout.readline()
        assert line, "netatlas up ended:\n" + "".join(out)
        out.append(line)
        if m := re.search(r"local agent: running \(pid (\d+)", line):
            agent = int(m[1])
        if "/healthz" in line:
            break
    assert agent is not None, "no local agent:\n" + "".join(out)
    time.sleep(1.0)   # the agent has taken its spool and installed its handlers
    assert alive(agent) and alive(p.pid)
    return p, agent


def wait_gone(pid: int, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    return not alive(pid)


@needs_root
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda s: s.name)
def test_up_stops_its_agent_on(sig, tmp_path):
    p, agent = start_up(tmp_path)
    try:
        p.send_signal(sig)
        p.wait(40)
        assert wait_gone(agent), f"the agent (pid {agent}) outlived up stopped by {sig.name}"
    finally:
        for pid in (p.pid, agent):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@needs_root
def test_the_agent_dies_when_up_is_killed(tmp_path):
    p, agent = start_up(tmp_path)
    try:
        p.kill()
        p.wait(10)
        assert wait_gone(agent), f"the agent (pid {agent}) outlived up killed with SIGKILL"
    finally:
        if alive(agent):
            os.kill(agent, signal.SIGKILL)
    # and the next up starts an agent on the freed spool
    p, agent = start_up(tmp_path)
    p.send_signal(signal.SIGTERM)
    p.wait(40)
    assert wait_gone(agent)


def test_up_with_tls_settings_points_its_agent_and_demo_at_https():
    from netatlas.server.settings import Settings
    from netatlas.up import _local_url
    assert _local_url(Settings(host="0.0.0.0", port=8443, tls_cert="c.pem", tls_key="k.pem")) == "https://127.0.0.1:8443"
    assert _local_url(Settings(host="::1", port=8080)) == "http://[::1]:8080"


def test_an_agent_whose_shutdown_hangs_still_ends_after_its_grace():
    # once asked to stop, the agent ends within its grace even if a send or a collector hangs
    code = ("import threading, time; from netatlas.agent.ship import exit_after_stop; "
            "stop = threading.Event(); exit_after_stop(stop, 1.0); stop.set(); time.sleep(60)")
    t0 = time.monotonic()
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert p.returncode == 1 and time.monotonic() - t0 < 20, (p.returncode, p.stderr)
