"""The eBPF collector (netatlas/agent/ebpf.py and bpf/collector.bpf.c) on this kernel: known traffic
in a network namespace of the test's own, read back as close events with their owners.

Needs root, BTF and libbpf; skipped with the reason printed otherwise. The object is the shipped one
(netatlas/agent/bpf/collector.bpf.o); one test rebuilds it from its source with clang and loads that.
"""
from __future__ import annotations

import ctypes
import hashlib
import json
import os
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netatlas.agent import ebpf
from netatlas.agent.collect import Collector
from netatlas.agent.config import AgentConfig
from netatlas.agent.model import TCP_SYN_SENT
from netatlas.agent.netlink import SockDiag

ROOT = Path(__file__).resolve().parents[2]
BPF_DIR = ROOT / "netatlas" / "agent" / "bpf"


@pytest.fixture(scope="module")
def can_load():
    ok, why = ebpf.available()
    if not ok:
        print(f"skipping: the eBPF collector cannot load here: {why}")
        pytest.skip(f"the eBPF collector cannot load here: {why}")


def in_ns(ns: str, code: str, *args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, **kw)


SERVER = r'''
import socket, sys, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(64)
print(srv.getsockname()[1], flush=True)
held = []
def serve(c):
    n = 0
    while b := c.recv(65536):
        n += len(b)
    c.sendall(b"r" * (n // 10)); c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

CLIENT = r'''
import json, os, socket, sys
port = int(sys.argv[1])
for n in (1000, 2000, 3000):              # three short connections with known bytes
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"x" * n); s.shutdown(socket.SHUT_WR)
    got = 0
    while b := s.recv(65536):
        got += len(b)
    s.close()
closed = socket.socket(); closed.bind(("127.0.0.1", 0)); free = closed.getsockname()[1]; closed.close()
try:
    socket.create_connection(("127.0.0.1", free), timeout=2)
except ConnectionRefusedError:
    pass
print(json.dumps({"pid": os.getpid(), "refused_port": free}), flush=True)
'''


def wait_events(bpf: ebpf.BpfEvents, enough, timeout: float = 5.0):
    closes, procs = [], []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        c, p, _ = bpf.read()
        closes += c
        procs += p
        if enough(closes, procs):
            break
        time.sleep(0.05)
    return closes, procs


def test_the_shipped_object_is_built_from_its_source():
    """scripts/build-bpf.sh records the source's hash when it writes the shipped object."""
    source = (BPF_DIR / "collector.bpf.c").read_bytes()
    recorded = (BPF_DIR / "collector.bpf.c.sha256").read_text().strip()
    assert hashlib.sha256(source).hexdigest() == recorded, \
        "collector.bpf.c changed since collector.bpf.o was built: run scripts/build-bpf.sh"
    assert (BPF_DIR / "collector.bpf.o").stat().st_size > 0


def test_the_object_and_this_module_agree_on_every_layout(can_load):
    """A lookup writes a whole map value into the buffer it is given (a smaller one corrupted the
    agent's memory); ring buffer events are parsed with fixed structures."""
    with ebpf.BpfEvents(load_only=True) as bpf:
        for name, size, key in (("na_socks", 72, 8), ("na_config", 8, 4), ("na_counters", 8, 4),
                                ("na_links", 64, 48)):
            m = bpf.lib.bpf_object__find_map_by_name(bpf._obj, name.encode())
            assert bpf.lib.bpf_map__value_size(m) == size, name
            bpf.lib.bpf_map__key_size.restype = ctypes.c_uint32
            bpf.lib.bpf_map__key_size.argtypes = [ctypes.c_void_p]
            assert bpf.lib.bpf_map__key_size(m) == key, name
    assert ebpf.LINK_KEY.size == 48 and ebpf.LINK_VALUE.size == 64 and ctypes.sizeof(ebpf.SockInfo) == 72
    assert ebpf.CLOSE_EVENT.size == 128 and ebpf.PROC_EVENT.size == 16 and ebpf.LISTEN_EVENT.size == 16


def test_owner_lookups_of_thousands_of_sockets(can_load, netns):
    """owner() for every socket of a dump, many times: the process survives and answers right."""
    code = r'''
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(2048)
held = [socket.create_connection(srv.getsockname()) for _ in range(500)]
print(os.getpid(), flush=True)
sys.stdin.read()
'''
    with ebpf.BpfEvents(netns) as bpf:
        p = in_ns(netns, code)
        try:
            pid = int(p.stdout.readline())
            with SockDiag(f"/var/run/netns/{netns}") as diag:
                clients = [s for s in diag.dump() if s.dport and s.state == 1 and s.sport != s.dport]
            for _ in range(20):
                owners = [bpf.owner(s.cookie) for s in clients]
        finally:
            p.stdin.close()
            p.wait(timeout=10)
    assert owners.count(pid) == 500


def test_close_events_carry_owner_bytes_and_failed_connects(can_load, netns):
    outside = socket.socket()                 # traffic in the test's own namespace must not show
    outside.bind(("127.0.0.1", 0))
    outside.listen()
    outside_port = outside.getsockname()[1]
    with ebpf.BpfEvents(netns) as bpf:
        server = in_ns(netns, SERVER)
        try:
            port = int(server.stdout.readline())
            socket.create_connection(outside.getsockname()).close()
            client = in_ns(netns, CLIENT, str(port))
            truth = json.loads(client.stdout.readline())
            client.wait(timeout=10)
            closes, _ = wait_events(bpf, lambda c, p: len(c) >= 7)
        finally:
            server.kill()
            server.wait()
    outside.close()
    out = [(s, tgid, comm) for s, tgid, comm in closes if s.dport == port]
    back = [(s, tgid, comm) for s, tgid, comm in closes if s.sport == port]
    refused = [(s, tgid, comm) for s, tgid, comm in closes if s.dport == truth["refused_port"]]
    # payload bytes: tcp_info's counters less the SYN and FIN they count (issue 12)
    assert sorted(s.bytes_sent for s, _, _ in out) == [1000, 2000, 3000]
    assert sorted(s.bytes_received for s, _, _ in out) == [100, 200, 300]
    assert {(tgid, comm) for _, tgid, comm in out} == {(truth["pid"], Path(sys.executable).name[:15])}
    assert all(s.src == s.dst == "127.0.0.1" and s.inode == -s.cookie for s, _, _ in out)
    assert {tgid for _, tgid, _ in back} == {server.pid}                        # claimed at its recv()
    assert sorted(s.bytes_received for s, _, _ in back) == [1000, 2000, 3000]
    assert sorted(s.bytes_sent for s, _, _ in back) == [100, 200, 300]
    [(failed, tgid, _)] = refused
    assert failed.state == TCP_SYN_SENT and failed.bytes_sent == failed.bytes_received == 0
    assert tgid == truth["pid"]
    assert not [s for s, _, _ in closes if outside_port in (s.sport, s.dport)]
    assert bpf.counters() == {"socks_full": 0, "events_lost": 0, "links_full": 0}


def test_open_sockets_have_their_owner_by_cookie(can_load, netns):
    code = r'''
import os, socket, sys
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen()
read = socket.create_connection(srv.getsockname()); a, _ = srv.accept()
read.sendall(b"hi"); a.recv(2)                         # accepted and read from
idle = socket.create_connection(srv.getsockname()); b, _ = srv.accept()   # accepted, never read
print(os.getpid(), read.getsockname()[1], idle.getsockname()[1], flush=True)
sys.stdin.read()
'''
    with ebpf.BpfEvents(netns) as bpf:
        p = in_ns(netns, code)
        try:
            pid, read_port, idle_port = map(int, p.stdout.readline().split())
            with SockDiag(f"/var/run/netns/{netns}") as diag:
                sockets = {(s.sport, s.dport): s for s in diag.dump() if s.dport}
            owners = {k: bpf.owner(s.cookie) for k, s in sockets.items()}
        finally:
            p.stdin.close()
            p.wait(timeout=10)
    listen_port = next(dport for sport, dport in owners if sport == read_port)
    assert owners[(read_port, listen_port)] == pid             # connect()
    assert owners[(idle_port, listen_port)] == pid
    assert owners[(listen_port, read_port)] == pid             # accepted and read: claimed
    assert owners[(listen_port, idle_port)] == 0               # accepted, never read: not known yet


def test_exec_and_exit_of_processes_in_the_namespace(can_load, netns):
    with ebpf.BpfEvents(netns) as bpf:
        p = subprocess.Popen(["ip", "netns", "exec", netns, "/bin/sleep", "0.2"])
        p.wait()
        _, procs = wait_events(bpf, lambda c, q: ("exit", p.pid) in q)
    assert ("exec", p.pid) in procs            # ip netns exec, then sleep: the same process
    assert ("exit", p.pid) in procs


@pytest.mark.parametrize("minute_ended", [False, True], ids=["same-minute", "minute-ended"])
def test_collector_counts_a_short_lived_client_that_is_gone_before_it_looks(can_load, netns, tmp_path, minute_ended,
                                                                            early_in_a_minute):
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==",
                         collector="ebpf", netns=f"/var/run/netns/{netns}", spool=str(tmp_path / "spool"),
                         machine_id_file=str(tmp_path / "machine-id"))
    c = Collector(config, start=False)
    try:
        assert c.kind == "ebpf"
        server = in_ns(netns, SERVER)
        try:
            port = int(server.stdout.readline())
            c.poll()                               # the first dump: the listener, owned by the server
            client = in_ns(netns, CLIENT, str(port))
            truth = json.loads(client.stdout.readline())
            client.wait(timeout=10)                # gone: /proc has nothing of it any more
            time.sleep(0.2)
            if minute_ended:
                # the last look is a minute's first poll: the kernel's links of the minute that
                # ended are read then. Their owner, gone, is still what it exec'd: the exec event
                # waiting in the ring buffer is read first (read after, the client was "python")
                c._links_minute = -1
            flushed = c.final()                    # a last look, the open minute closed
        finally:
            server.kill()
            server.wait()
        records = flushed["VMConnection"]
    finally:
        c.close()
    out = [r for r in records if r["Direction"] == "outbound" and r["DestinationPort"] == port]
    # issue 12: the client, gone before /proc could be read, is what it exec'd (the kernel's exec
    # event: program and arguments), not its 15-character comm merged with every other "python"
    exe = os.path.realpath(sys.executable)
    assert [(r["ProcessName"], r["LinksEstablished"], r["LinksTerminated"]) for r in out] == \
        [(os.path.basename(exe), 3, 3)]
    (client,) = [p for p in flushed["VMProcess"] if p["Process"] == out[0]["Process"]]
    assert client["ExecutablePath"] == exe and client["CommandLine"].startswith(f"{sys.executable} -c ")
    assert "three short connections with known bytes" in client["CommandLine"]
    assert (out[0]["BytesSent"], out[0]["BytesReceived"]) == (6000, 600)         # payload bytes, exact
    failed = [r for r in records if r["DestinationPort"] == truth["refused_port"]]
    assert [(r["LinksFailed"], r["LinksEstablished"]) for r in failed] == [(1, 0)]
    inbound = [r for r in records if r["Direction"] == "inbound" and r["DestinationPort"] == port]
    assert [(r["LinksEstablished"], r["LinksTerminated"]) for r in inbound] == [(3, 3)]
    assert (inbound[0]["BytesReceived"], inbound[0]["BytesSent"]) == (6000, 600)
    assert c.agg.unowned == 0


def test_auto_falls_back_to_netlink_saying_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ebpf, "OBJECT", tmp_path / "no-such.bpf.o")
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==", collector="auto",
                         spool=str(tmp_path / "spool"), machine_id_file=str(tmp_path / "machine-id"))
    with caplog.at_level(logging.INFO, logger="netatlas.agent.collect"):
        c = Collector(config, start=False)
    c.close()
    assert c.kind == "netlink"
    assert "collector: netlink (ebpf unavailable:" in caplog.text


def test_an_unloadable_object_is_a_clear_error(can_load, tmp_path):
    bad = tmp_path / "broken.bpf.o"
    bad.write_bytes(b"\x7fELF not really")
    with pytest.raises(ebpf.BpfError, match=r"eBPF collector: open .*broken\.bpf\.o failed"):
        ebpf.BpfEvents(obj_path=bad)


def test_the_source_rebuilds_and_the_result_loads(can_load, tmp_path):
    missing = [t for t in ("clang", "bpftool", "llvm-strip") if shutil.which(t) is None]
    if missing or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        why = f"cannot build eBPF objects here: missing {', '.join(missing) or 'libbpf-dev'}"
        print(f"skipping: {why}")
        pytest.skip(why)
    out = tmp_path / "collector.bpf.o"
    subprocess.run(["bash", str(ROOT / "scripts" / "build-bpf.sh"), str(out)], check=True, capture_output=True)
    with ebpf.BpfEvents(obj_path=out) as bpf:      # loading checks the map layouts (BpfError otherwise)
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()                               # a port nobody listens on: a refused connect
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2)
        closes, _ = wait_events(bpf, lambda c, p: any(s.dport == port for s, _, _ in c))
    [(refused, tgid, _)] = [(s, t, c) for s, t, c in closes if s.dport == port]
    assert refused.state == TCP_SYN_SENT and tgid == os.getpid() and bpf.bad_events == 0


LATE_LISTENER = r'''
import os, socket, sys, threading
srv = socket.socket(); srv.bind(("127.0.0.1", 0)); srv.listen(16)
port = srv.getsockname()[1]
def serve():
    while True:
        a, _ = srv.accept(); a.recv(100); a.sendall(b"ok"); a.close()
threading.Thread(target=serve, daemon=True).start()
for _ in range(5):
    s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"x" * 100); s.recv(10); s.close()
print(os.getpid(), port, os.stat(f"/proc/self/fd/{srv.fileno()}").st_ino, flush=True)
sys.stdin.read()
'''


def test_a_port_that_starts_listening_between_two_dumps_is_inbound_at_once(can_load, netns, tmp_path,
                                                                           early_in_a_minute):
    """Its first connections close before any periodic dump shows the listener: the listen event
    makes the collector dump at once, so they are inbound, not outbound to the client's port."""
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==", collector="ebpf",
                         netns=f"/var/run/netns/{netns}", dump_interval=3600, spool=str(tmp_path / "spool"),
                         machine_id_file=str(tmp_path / "machine-id"))
    c = Collector(config, start=False)
    try:
        c.poll()                                           # the first dump: nothing listens yet
        p = in_ns(netns, LATE_LISTENER)
        try:
            pid, port, inode = map(int, p.stdout.readline().split())
            time.sleep(0.2)
            c.poll()
            records = c.final()
        finally:
            p.stdin.close()
            p.wait(timeout=10)
    finally:
        c.close()
    conns = {(r["Direction"], r["DestinationPort"]): r["LinksEstablished"] for r in records["VMConnection"]}
    assert conns == {("outbound", port): 5, ("inbound", port): 5}
    exe = Path(sys.executable).resolve().name                   # read from /proc/PID/exe
    assert [(r["Port"], r["ProcessName"]) for r in records["VMBoundPort"]] == [(port, exe)]
    assert c._inode_pid.get(inode) == pid and c.stats["full_scans"] == 0   # its owner came with the event


# ---- in-kernel aggregation (issue 12: < 1 % of a core at 1,000 new connections a second) --------

HOLD = r'''
import socket, sys
port, held = int(sys.argv[1]), []
for line in sys.stdin:
    if line.strip() == "open":             # a connection that stays open: 50 bytes out
        s = socket.create_connection(("127.0.0.1", port)); s.sendall(b"x" * 50); held.append(s)
    else:                                  # the oldest ends: its 5-byte answer in, then closed
        s = held.pop(0); s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
    print("ok", flush=True)
'''


def summed(links, inbound: bool, port: int) -> tuple:
    """(tgids, established, failed, sent, received) of one link's rows (a minute boundary splits them)."""
    rows = [k for k in links if k.inbound == inbound and k.port == port]
    return ({k.tgid for k in rows}, sum(k.established for k in rows), sum(k.failed for k in rows),
            sum(k.sent for k in rows), sum(k.received for k in rows))


def test_sockets_no_dump_saw_are_summed_per_link_in_the_kernel(can_load, netns):
    """With aggregation on, connections that open and end between two dumps reach user space as one
    row per minute and link, not one close event each; the counts are the close events' (exact)."""
    with ebpf.BpfEvents(netns, aggregate=True) as bpf:
        server = in_ns(netns, SERVER)
        try:
            port = int(server.stdout.readline())
            client = in_ns(netns, CLIENT, str(port))
            truth = json.loads(client.stdout.readline())
            client.wait(timeout=10)
            time.sleep(0.2)
            closes = bpf.read().closes
            links = bpf.links()
            again = bpf.links()
            counters = bpf.counters()
        finally:
            server.kill()
            server.wait()
    assert not [s for s, _, _ in closes if port in (s.sport, s.dport) or s.dport == truth["refused_port"]]
    assert summed(links, False, port) == ({truth["pid"]}, 3, 0, 6000, 600)
    assert summed(links, True, port) == ({server.pid}, 3, 0, 600, 6000)
    assert summed(links, False, truth["refused_port"]) == ({truth["pid"]}, 0, 1, 0, 0)
    assert all(k.comm.startswith("python") for k in links), links          # the owner's name, kept
    assert all(k.minute in (int(time.time() // 60), int(time.time() // 60) - 1) for k in links)
    assert again == []                                   # what they gained since: nothing
    assert counters == {"socks_full": 0, "events_lost": 0, "links_full": 0}


def test_a_socket_made_before_the_generation_moved_on_ends_as_a_close_event(can_load, netns):
    """A dump may have seen a socket made before next_generation(): its end is a close event (the
    aggregator has it); one made after it and ended before the next is the kernel's link."""
    with ebpf.BpfEvents(netns, aggregate=True) as bpf:
        server = in_ns(netns, SERVER)
        hold = None
        try:
            port = int(server.stdout.readline())
            hold = in_ns(netns, HOLD, str(port))
            for cmd in ("open",):
                hold.stdin.write(cmd + "\n"); hold.stdin.flush(); assert hold.stdout.readline().strip() == "ok"
            bpf.next_generation()                        # a dump now would see the first one
            for cmd in ("close", "open", "close"):
                hold.stdin.write(cmd + "\n"); hold.stdin.flush(); assert hold.stdout.readline().strip() == "ok"
            closes, _ = wait_events(bpf, lambda c, p: len([s for s, _, _ in c if port in (s.sport, s.dport)]) >= 2)
            links = bpf.links()
        finally:
            if hold is not None:
                hold.kill()
                hold.wait()
            server.kill()
            server.wait()
    ours = [(s.dport == port, s.bytes_sent, s.bytes_received) for s, _, _ in closes if port in (s.sport, s.dport)]
    assert sorted(ours) == [(False, 5, 50), (True, 50, 5)]          # the first: both ends, as events
    assert summed(links, False, port) == ({hold.pid}, 1, 0, 50, 5)  # the second: the kernel's
    assert summed(links, True, port) == ({server.pid}, 1, 0, 5, 50)


def test_a_socket_made_while_a_dump_is_taken_is_counted_once(can_load, netns, tmp_path, early_in_a_minute):
    """The race the generations close: a connection made after the generation moved on but before
    the dump walked the sockets is in the dump and, ending before the next dump, in the kernel's
    link counters too. The dump leaves it out, so it is counted once (twice without that)."""
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==", collector="ebpf",
                         netns=f"/var/run/netns/{netns}", dump_interval=3600, spool=str(tmp_path / "spool"),
                         machine_id_file=str(tmp_path / "machine-id"))
    c = Collector(config, start=False)
    server = in_ns(netns, SERVER)
    hold = None
    try:
        port = int(server.stdout.readline())
        c.poll()                                         # the baseline dump: the listener
        hold = in_ns(netns, HOLD, str(port))
        real = c.diag.dump

        def dump(**kw):                                  # between next_generation() and the walk
            hold.stdin.write("open\n"); hold.stdin.flush(); assert hold.stdout.readline().strip() == "ok"
            time.sleep(0.05)
            return real(**kw)
        c.diag.dump = dump
        c._dump()
        c.diag.dump = real
        assert any(s.dport == port for s in real(states=(1,)))                 # it was there, established
        hold.stdin.write("close\n"); hold.stdin.flush(); assert hold.stdout.readline().strip() == "ok"
        time.sleep(0.2)
        records = c.final()["VMConnection"]
    finally:
        c.close()
        if hold is not None:
            hold.kill()
            hold.wait()
        server.kill()
        server.wait()
    got = {r["Direction"]: (r["LinksEstablished"], r["LinksTerminated"], r["BytesSent"], r["BytesReceived"])
           for r in records if r["DestinationPort"] == port}
    assert got == {"outbound": (1, 1, 50, 5), "inbound": (1, 1, 5, 50)}
    assert c.stats["kernel_links"] >= 2 and c.stats["close_events"] == 0
