"""The open minute on stop: `netatlas agent run`, told to stop (SIGTERM, SIGINT), closes the minute
it is in, ships it (or keeps it in its spool) and exits; started again on the same spool and
machine id, it neither loses nor counts twice a connection that stayed open across the restart.

A real workspace server on loopback, a real agent observing a network namespace of its own
(``--netns``) where a TCP server and a client make known traffic: 20 short connections a second
before the stop, and one connection open across it (100 bytes before, 100 after). Both
collectors (eBPF where it loads). Needs root; skipped, saying why, otherwise.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netatlas.agent import ebpf
from netatlas.keys import load_or_create

ROOT = Path(__file__).resolve().parents[2]
SHORT = 20

SERVER = r'''
import socket, sys, threading
def serve(port):
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port)); s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo, args=(c,), daemon=True).start()
def echo(c):
    while (data := c.recv(4096)):
        c.sendall(data)
    c.close()
for p in (9000, 9001):
    threading.Thread(target=serve, args=(p,), daemon=True).start()
print("listening", flush=True)
sys.stdin.read()
'''

CLIENT = r'''
import socket, sys
long = None
def exchange(s, n):
    s.sendall(b"x" * n); got = 0
    while got < n:
        got += len(s.recv(4096))
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "short":
        for _ in range(int(cmd[1])):
            s = socket.create_connection(("127.0.0.1", 9000)); exchange(s, 10); s.close()
    elif cmd[0] == "open":
        long = socket.create_connection(("127.0.0.1", 9001))
    elif cmd[0] == "send":
        exchange(long, int(cmd[1]))
    elif cmd[0] == "close":
        long.close()
    print("done", flush=True)
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(what: str, check, timeout: float, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (got := check()):
            return got
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    data = tmp_path_factory.mktemp("ws")
    identity = load_or_create(data)
    port = free_port()
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(data),
                          "--port", str(port), "--geoip-db", "off"], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def up():
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            return c.getresponse().status == 200
        except OSError:
            return False
    try:
        wait_for("the workspace server", up, 30)
        yield dict(port=port, identity=identity)
    finally:
        p.terminate()
        p.wait(30)


def query(ws: dict, kql: str) -> list[list]:
    key = ws["identity"].by_role("query")[0].secret
    c = http.client.HTTPConnection("127.0.0.1", ws["port"], timeout=30)
    c.request("POST", "/api/query", body=json.dumps({"query": kql, "timespan": "PT1H"}),
              headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    r = c.getresponse()
    body = r.read()
    assert r.status == 200, body[:500]
    return json.loads(body)["tables"][0]["rows"]


class Agent:
    """`netatlas agent run` observing the namespace, its log in a file."""

    def __init__(self, ws: dict, netns: str, tmp: Path, collector: str, n: int):
        self.log_path = tmp / f"agent-{n}.log"
        ident = ws["identity"]
        self.p = subprocess.Popen(
            [sys.executable, "-m", "netatlas", "agent", "run", "--workspace-url", f"http://127.0.0.1:{ws['port']}",
             "--workspace-id", ident.workspace_id, "--key", ident.by_role("ingest")[0].secret,
             "--interval", "60", "--poll", "0.5", "--collector", collector, "--no-dns", "--no-udp",
             "--netns", f"/run/netns/{netns}", "--spool", str(tmp / "spool"),
             "--machine-id-file", str(tmp / "machine-id")],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"),
            env=dict(os.environ, PYTHONPATH=str(ROOT)))
        wait_for(f"agent {n} to start", lambda: "shipping to" in self.log(), 60)
        time.sleep(1.5)                   # its first look at the sockets (the baseline) is behind us

    def log(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig: int) -> str:
        self.p.send_signal(sig)
        try:
            code = self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()
            raise AssertionError(f"the agent did not stop within 30 s of signal {sig}; its log:\n{self.log()}")
        assert code == 0, self.log()
        return self.log()


def in_ns(netns: str, code: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def tell(p: subprocess.Popen, line: str) -> None:
    p.stdin.write(line + "\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "done"


COLLECTORS = ["netlink", "ebpf"]


@pytest.mark.parametrize("collector", COLLECTORS)
def test_the_open_minute_is_shipped_on_stop_and_a_restart_counts_nothing_twice(workspace, netns, tmp_path,
                                                                                 collector):
    if collector == "ebpf" and not (why := ebpf.available())[0]:
        print(f"skipping: eBPF unavailable: {why[1]}")
        pytest.skip(f"eBPF unavailable: {why[1]}")
    server, client = in_ns(netns, SERVER), in_ns(netns, CLIENT)
    try:
        assert server.stdout.readline().strip() == "listening"
        first = Agent(workspace, netns, tmp_path, collector, 1)
        tell(client, "open")
        tell(client, "send 100")
        tell(client, f"short {SHORT}")
        time.sleep(1)
        log = first.stop(signal.SIGTERM)
        assert "the open minute closed" in log, log

        second = Agent(workspace, netns, tmp_path, collector, 2)   # same spool, same machine id
        tell(client, "send 100")
        tell(client, "close")
        time.sleep(1)
        log = second.stop(signal.SIGINT)
        assert "the open minute closed" in log, log
    finally:
        for p in (client, server):
            p.kill()
            p.wait()

    machine = "m-" + (tmp_path / "machine-id").read_text().strip()
    rows = query(workspace, f"VMConnection | where Machine == '{machine}' and Direction == 'outbound' "
                            f"| summarize established = sum(LinksEstablished), terminated = sum(LinksTerminated), "
                            f"sent = sum(BytesSent), received = sum(BytesReceived) by DestinationPort "
                            f"| order by DestinationPort asc")
    got = {r[0]: r[1:] for r in rows}
    # the 20 short connections, made a second before the first agent stopped: links and payload bytes
    assert got.get(9000) == [SHORT, SHORT, SHORT * 10, SHORT * 10], rows
    # the connection open across the restart: established once (by the first run), ended once (the
    # second), its bytes counted once each side of the restart
    assert got.get(9001) == [1, 1, 200, 200], rows
    assert not list((tmp_path / "spool").glob("*.gz")), "batches left in the spool"


# ---------------------------------------------------------------- computer_name

@pytest.mark.parametrize("how", ["flag", "environment"])
def test_computer_name_replaces_the_hostname_in_every_record(tmp_path, netns, how):
    """Two hosts with one hostname (containers, namespaces, cloned VMs) would be one Computer: the
    computer_name setting names each; the machine id stays the data directory's own."""
    from netatlas.agent.collect import Collector
    from netatlas.agent.config import load
    base = dict(workspace_url="http://127.0.0.1:9", workspace_id="w", key="a2V5", spool=str(tmp_path / "spool"),
                machine_id_file=str(tmp_path / "machine-id"), netns=f"/run/netns/{netns}", dns=False, udp=False,
                collector="netlink")
    name = f"web-01-{how}"
    config = (load(dict(base, computer_name=name), environ={}) if how == "flag" else
              load(base, environ={"NETATLAS_AGENT_COMPUTER_NAME": name}))
    c = Collector(config, start=False)
    try:
        out = c()                             # at start: VMComputer, ServiceMapComputer_CL
        c.poll()
        srv = in_ns_listen(netns)             # a connection in the namespace, seen by a dump
        c.poll()
        conn = in_ns_connect(netns, srv.getsockname()[1])
        peer, _ = srv.accept()
        conn.sendall(b"hello")
        peer.recv(5)
        c.poll()
        for s in (conn, peer, srv):
            s.close()
        c.poll()
        for table, rows in c.final().items():   # stopping: the open minute
            out.setdefault(table, []).extend(rows)
    finally:
        c.close()
    assert out["VMComputer"][0]["Computer"] == name and out["VMComputer"][0]["HostName"] != name
    assert out["ServiceMapComputer_CL"][0]["ComputerName_s"] == name
    for table in ("VMConnection", "VMProcess", "VMBoundPort"):
        assert out[table] and {r["Computer"] for r in out[table]} == {name}, table
    assert {r["Machine"] for r in out["VMConnection"]} == {"m-" + (tmp_path / "machine-id").read_text().strip()}


def in_ns_listen(netns: str) -> socket.socket:
    """A listening socket made in the namespace."""
    from netatlas.agent.netlink import in_netns

    def listen():
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(4)
        return s
    return in_netns(netns, listen)


def in_ns_connect(netns: str, port: int) -> socket.socket:
    from netatlas.agent.netlink import in_netns
    return in_netns(netns, lambda: socket.create_connection(("127.0.0.1", port)))


def test_ctrl_c_stops_the_agent_by_its_event_not_by_an_exception():
    """SIGINT sets the agent's stop event as SIGTERM does (ship.stop_on_signals): no
    KeyboardInterrupt in the middle of a collection, whose half-done state the open minute's close
    then waited on (this file's restart test hung so, now and then, under load)."""
    import os
    import threading
    from netatlas.agent import ship
    saved = {sig: signal.getsignal(sig) for sig in ship.STOP_SIGNALS}
    stop = threading.Event()
    try:
        ship.stop_on_signals(stop)
        for sig in ship.STOP_SIGNALS:
            stop.clear()
            os.kill(os.getpid(), sig)
            assert stop.wait(5), sig
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
