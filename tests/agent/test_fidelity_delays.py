"""Capture fidelity of the eBPF and netlink collectors against known traffic (issue 12): response
times as the seed defines them, Responses equal to the requests made, payload bytes exact, on both
sides; the scenario runs once per collector.

In a network namespace of its own: a server whose handlers wait a known 20 ms (one port) or 50 ms
(another) before answering, and a client making small requests: three long connections (two to
the 20 ms port, one to the 50 ms one) asking once every 0.4 s, and 10 short connections to each
port. The collector (``Collector``, eBPF or netlink) watches the namespace; its records are taken
when it stops (``final``), so windows ending in between do not matter: the checks add up rows.
Requests every 0.4 s against polls every 0.5 s: several exchanges between two looks, which the
netlink collector counts from tcp_info's data segments (``netlink.Exchanges``). Response times: no
shorter than the handler's delay (less 10 %), no longer than the client itself measured around its
exchanges (its average, its longest); half a millisecond more either way for the whole milliseconds
the records hold, and netlink's with a jiffy more (its documented tolerance). A fixed ceiling (1.5
times the delay) failed on a loaded CI host, where the client itself waited longer: the collector
was right to say so.

Before issue 12 the response time was the smoothed TCP round trip (~0 ms on one host), Responses
were counted once per poll in which both byte counters grew, and bytes counted SYN and FIN.
Needs root (and for eBPF, a kernel that loads it); skipped, saying why, otherwise.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from netatlas.agent import ebpf
from netatlas.agent.collect import Collector
from netatlas.agent.config import AgentConfig

DELAYS = {"fast": 0.020, "slow": 0.050}          # the handlers' wait before answering, per port
REQUEST, ANSWER = 40, 60                           # bytes: small requests, as the issue asks
LONG = {"fast": 2, "slow": 1}                      # long connections per port
ROUNDS, EVERY = 12, 0.4                            # requests on each long connection, seconds apart
SHORT = 10                                         # short connections per port, one request each

SERVER = r'''
import socket, sys, threading, time
delays = [float(d) for d in sys.argv[1:]]
def handle(c, delay):
    while True:
        got = b""
        while len(got) < %(req)d:
            b = c.recv(%(req)d - len(got))
            if not b:
                c.close(); return
            got += b
        time.sleep(delay)
        c.sendall(b"a" * %(ans)d)
def serve(s, delay):
    while True:
        c, _ = s.accept()
        threading.Thread(target=handle, args=(c, delay), daemon=True).start()
ports = []
for d in delays:
    s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(64)
    ports.append(s.getsockname()[1])
    threading.Thread(target=serve, args=(s, d), daemon=True).start()
print(" ".join(map(str, ports)), flush=True)
sys.stdin.read()
''' % {"req": REQUEST, "ans": ANSWER}

CLIENT = r'''
import json, socket, sys, threading, time
fast, slow, rounds, every, short = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
made = {"fast": 0, "slow": 0}
waited = {"fast": [], "slow": []}
lock = threading.Lock()
def ask(s, port_name):
    t0 = time.monotonic()
    s.sendall(b"q" * %(req)d)
    got = 0
    while got < %(ans)d:
        got += len(s.recv(%(ans)d - got))
    t1 = time.monotonic()
    with lock:
        made[port_name] += 1
        waited[port_name].append((t1 - t0) * 1000)
def long_lived(port, name):
    s = socket.create_connection(("127.0.0.1", port))
    for _ in range(rounds):
        ask(s, name); time.sleep(every)
    s.close()
threads = [threading.Thread(target=long_lived, args=(p, n)) for p, n in ((fast, "fast"), (fast, "fast"), (slow, "slow"))]
for t in threads: t.start()
for port, name in ((fast, "fast"), (slow, "slow")):
    for _ in range(short):
        s = socket.create_connection(("127.0.0.1", port)); ask(s, name); s.close()
for t in threads: t.join()
print(json.dumps({"made": made, "waited": waited}), flush=True)
''' % {"req": REQUEST, "ans": ANSWER}


def in_ns(netns: str, code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", code, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


JIFFY_MS = 10          # the netlink collector's times have the kernel's tick resolution (HZ >= 100)
ROUNDING_MS = 0.5      # ResponseTimeMin and Max are whole milliseconds, rounded to the nearest (records.py)


@pytest.fixture(scope="module", params=["ebpf", "netlink"])
def captured(request, tmp_path_factory, module_netns):
    """The ground truth and the collector's VMConnection records of the scenario."""
    kind = request.param
    if kind == "ebpf":
        ok, why = ebpf.available()
        if not ok:
            print(f"skipping: eBPF unavailable: {why}")
            pytest.skip(f"eBPF unavailable: {why}")
    netns, tmp = module_netns, tmp_path_factory.mktemp("fidelity")
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==",
                         collector=kind, netns=f"/var/run/netns/{netns}", spool=str(tmp / "spool"),
                         machine_id_file=str(tmp / "machine-id"), poll=0.5, dns=False, udp=False)
    c = Collector(config)
    server = in_ns(netns, SERVER, str(DELAYS["fast"]), str(DELAYS["slow"]))
    try:
        fast, slow = map(int, server.stdout.readline().split())
        time.sleep(1.5)                            # the collector's baseline dump: the listeners
        client = in_ns(netns, CLIENT, str(fast), str(slow), str(ROUNDS), str(EVERY), str(SHORT))
        told = json.loads(client.stdout.readline())
        client.wait(timeout=60)
        time.sleep(1)
        records = c.final()["VMConnection"]
    finally:
        server.kill()
        server.wait()
        c.close()
    return dict(kind=kind, made=told["made"], waited=told["waited"], ports={"fast": fast, "slow": slow},
                records=records)


def rows(captured, name: str, direction: str) -> list[dict]:
    port = captured["ports"][name]
    return [r for r in captured["records"] if r["DestinationPort"] == port and r["Direction"] == direction]


def total(rs: list[dict], column: str) -> int:
    return sum(r.get(column) or 0 for r in rs)


CASES = [(name, direction) for name in DELAYS for direction in ("outbound", "inbound")]


@pytest.mark.parametrize("name,direction", CASES)
def test_links_are_exact(captured, name, direction):
    rs = rows(captured, name, direction)
    links = LONG[name] + SHORT
    assert (total(rs, "LinksEstablished"), total(rs, "LinksTerminated"), total(rs, "LinksFailed")) == (links, links, 0), rs


@pytest.mark.parametrize("name,direction", CASES)
def test_payload_bytes_are_exact_both_ways(captured, name, direction):
    rs, n = rows(captured, name, direction), captured["made"][name]
    out, back = (REQUEST, ANSWER) if direction == "outbound" else (ANSWER, REQUEST)
    assert (total(rs, "BytesSent"), total(rs, "BytesReceived")) == (n * out, n * back), rs


@pytest.mark.parametrize("name,direction", CASES)
def test_responses_are_the_requests_made(captured, name, direction):
    rs = rows(captured, name, direction)
    assert total(rs, "Responses") == captured["made"][name] == LONG[name] * ROUNDS + SHORT, rs


@pytest.mark.parametrize("name,direction", CASES)
def test_the_response_times_are_the_handlers_delay_as_the_client_saw_it(captured, name, direction):
    """From the request's last byte to the response's last byte. Both sides' times lie inside
    what the client itself measured around each exchange (from before its send to after its last
    receive), and none is shorter than the handler's delay. On a quiet host the client's own
    times are the delay plus the loopback's microseconds; on a loaded one a sleep or a wake-up
    can run late, and the collector must report that lateness, not hide it: so the bounds are the
    client's measured average and longest exchange, never a fixed multiple of the delay."""
    rs = rows(captured, name, direction)
    ms = DELAYS[name] * 1000
    slack = ROUNDING_MS + (0 if captured["kind"] == "ebpf" else JIFFY_MS)
    waited = captured["waited"][name]
    seen_average, seen_longest = sum(waited) / len(waited), max(waited)
    average = total(rs, "ResponseTimeSum") / total(rs, "Responses")
    print(f"\n{captured['kind']} {name} {direction}: average {average:.1f} ms for a {ms:.0f} ms handler; "
          f"the client saw {seen_average:.1f} ms on average, {seen_longest:.1f} ms at most")
    assert 0.9 * ms - slack <= average <= seen_average + slack, (average, seen_average, rs)
    assert all(0.9 * ms - slack <= r["ResponseTimeMin"] <= r["ResponseTimeMax"] <= seen_longest + slack
               for r in rs if r["Responses"]), (seen_longest, rs)


def test_client_and_server_are_their_own_processes(captured):
    """eBPF: every connection its own process's. netlink: the long ones too; a short one that
    opened and closed between two looks may be the machine's unknown process, never the other's."""
    client = {r["ProcessName"] for name in DELAYS for r in rows(captured, name, "outbound")}
    server = {r["Process"] for name in DELAYS for r in rows(captured, name, "inbound")}
    assert len(server) == 1
    if captured["kind"] == "ebpf":
        assert client == {os.path.basename(os.path.realpath(sys.executable))}
    else:
        assert client - {"unknown"} == {os.path.basename(os.path.realpath(sys.executable))}
        long_rows = [r for r in rows(captured, "slow", "outbound") if r["ProcessName"] != "unknown"]
        assert total(long_rows, "LinksEstablished") >= LONG["slow"]
    assert not {r["Process"] for name in DELAYS for r in rows(captured, name, "outbound")} & server
