"""UDP flows (netatlas/agent/udp.py, bpf/udp.bpf.c, records.Aggregator.udp_links) on this kernel.

One scenario in a network namespace of the test's own: a UDP echo server (bound to [::]:0, dual
stack, peeking at each datagram before reading it, answering after 20 ms, ignoring requests that
start with "q") and a client making known
request/response flows from connected and unconnected sockets, IPv4 and IPv6, 10-byte requests;
the collector (its poll and its Aggregator) reads them, and a second, capped, kernel half counts
what does not fit. Needs root, BTF, libbpf and cgroup v2; skipped with the reason printed otherwise.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from netatlas.agent import udp
from netatlas.agent.collect import Collector
from netatlas.agent.config import AgentConfig
from netatlas.agent.model import ProcessInfo
from netatlas.agent.records import Aggregator

ROOT = Path(__file__).resolve().parents[2]
BPF_DIR = ROOT / "netatlas" / "agent" / "bpf"

SERVER = r'''
import os, socket, sys, time
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 0))
idle = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
idle.bind(("127.0.0.1", 0))               # a bound port nobody talks to
print(os.getpid(), s.getsockname()[1], idle.getsockname()[1], flush=True)
while True:
    s.recvfrom(100, socket.MSG_PEEK)      # a peek: the same datagram is read again below
    data, peer = s.recvfrom(100)
    if data.startswith(b"q"):
        continue                          # a request nobody answers
    time.sleep(0.02)
    s.sendto(data, peer)
'''

CLIENT = r'''
import json, os, socket, sys
port = int(sys.argv[1])
req = b"0123456789"
ports = {}
a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.connect(("127.0.0.1", port))
for _ in range(3):                        # connected: 3 requests, 3 answers
    a.send(req); assert a.recv(100) == req
b = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(2):                        # unconnected: 2 requests, 2 answers
    b.sendto(req, ("127.0.0.1", port)); assert b.recvfrom(100)[0] == req
c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
c.sendto(b"q123456789", ("127.0.0.1", port))      # unanswered
c.sendto(req, ("127.0.0.1", port)); assert c.recvfrom(100)[0] == req
d = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); d.connect(("::1", port))
d.send(req); assert d.recv(100) == req    # IPv6, connected: 1 request, 1 answer
print(json.dumps({"pid": os.getpid(), "ports": [x.getsockname()[1] for x in (a, b, c, d)]}), flush=True)
sys.stdin.read()
'''


def ns_python(ns: str, code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory):
    """The records of the scenario's minute and of the next one, what the programs said, the
    collector's UDP counters, and the capped kernel half's flows and counters."""
    ok, why = udp.prerequisites()
    if ok and shutil.which("ip") is None:
        ok, why = False, "no ip(8) (iproute2) to create a network namespace"
    if not ok:
        print(f"skipping: UDP flows cannot load here: {why}")
        pytest.skip(f"UDP flows cannot load here: {why}")
    tmp = tmp_path_factory.mktemp("udp")
    ns = f"netatlas-udp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    procs: list[subprocess.Popen] = []
    c = capped = None
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==",
                             collector="ebpf", netns=f"/var/run/netns/{ns}", spool=str(tmp / "spool"),
                             machine_id_file=str(tmp / "machine-id"), dns=False)
        c = Collector(config, start=False)
        if c.udp is None:
            pytest.fail("the collector did not load the UDP kernel half (see the log)")
        capped = udp.UdpFlows(f"/var/run/netns/{ns}", max_flows=3)
        server = ns_python(ns, SERVER)
        procs.append(server)
        server_pid, port, idle_port = map(int, server.stdout.readline().split())
        client = ns_python(ns, CLIENT, str(port), "--marker=udp-test-client")
        procs.append(client)
        truth = json.loads(client.stdout.readline())
        now = time.time()
        c.poll(now)                              # reads the flows (the first UDP read is at once)
        stats = dict(c.stats["udp"])
        records = c.agg.flush(now + 120)         # the scenario's window and the next, quiet one
        capped._map_state["batch"] = False       # the key-by-key walk of kernels without batch lookups
        capped_flows, capped_counts = capped.read(), capped.counters()
    finally:
        for p in procs:
            p.kill()
            p.wait()
        for x in (c, capped):
            if x is not None:
                x.close()
        subprocess.run(["ip", "netns", "del", ns], check=False)
    window = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(now))
    return dict(records=records, window=window, port=port, idle_port=idle_port, server_pid=server_pid, client=truth, stats=stats,
                capped_flows=capped_flows, capped_counts=capped_counts)


def udp_rows(s, table="VMConnection", **match):
    return [r for r in s["records"][table] if r["Protocol"] == "udp" and r["TimeGenerated"] == s["window"]
            and all(r[k] == v for k, v in match.items())]


def test_outbound_flows_counted_exactly_with_payload_bytes_and_responses(scenario):
    """The client's three IPv4 flows (connected, unconnected, one request unanswered) are one
    logical link to the server's port; the IPv6 one another; nothing else is UDP from it."""
    s = scenario
    out = {r["DestinationIp"]: r for r in udp_rows(s, Direction="outbound", DestinationPort=s["port"])}
    assert sorted(out) == ["127.0.0.1", "::1"]
    v4, v6 = out["127.0.0.1"], out["::1"]
    assert (v4["LinksEstablished"], v4["LinksLive"], v4["LinksTerminated"], v4["LinksFailed"]) == (3, 3, 0, 0)
    assert (v4["BytesSent"], v4["BytesReceived"], v4["Responses"]) == (70, 60, 6)
    assert (v6["LinksEstablished"], v6["LinksLive"], v6["BytesSent"], v6["BytesReceived"], v6["Responses"]) == \
        (1, 1, 10, 10, 1)
    assert v6["SourceIp"] == "::1" and v4["SourceIp"] == "127.0.0.1"      # wildcard sockets: the route's source
    # each answer comes 20 ms after its request (the unanswered one is timed from itself)
    assert 20 <= v4["ResponseTimeMin"] <= v4["ResponseTimeMax"] < 2000
    assert 6 * 20 <= v4["ResponseTimeSum"] < 6 * 2000


def test_inbound_flows_of_the_server_with_its_process(scenario):
    s = scenario
    inbound = {r["SourceIp"]: r for r in udp_rows(s, Direction="inbound", DestinationPort=s["port"])}
    assert sorted(inbound) == ["127.0.0.1", "::1"]
    v4 = inbound["127.0.0.1"]
    assert (v4["LinksEstablished"], v4["LinksLive"], v4["BytesReceived"], v4["BytesSent"], v4["Responses"]) == \
        (3, 3, 70, 60, 6)
    assert v4["DestinationIp"] == "127.0.0.1" and v4["RemoteIp"] == "127.0.0.1"
    assert 20 <= v4["ResponseTimeMin"]       # the server answers 20 ms after the request came
    assert inbound["::1"]["BytesReceived"] == inbound["::1"]["BytesSent"] == 10
    # no flow of the server is outbound to the client's ports, and none of the client inbound
    assert not [r for r in udp_rows(s, Direction="outbound") if r["DestinationPort"] in s["client"]["ports"]]
    assert {r["Process"] for r in udp_rows(s, Direction="inbound")} == {v4["Process"]}


def test_the_processes_and_their_command_lines(scenario):
    s = scenario
    client_proc = {r["Process"] for r in udp_rows(s, Direction="outbound")}
    server_proc = {r["Process"] for r in udp_rows(s, Direction="inbound")}
    assert len(client_proc) == 1 and len(server_proc) == 1 and client_proc != server_proc
    procs = {r["Process"]: r for r in s["records"]["VMProcess"]}
    assert "--marker=udp-test-client" in procs[client_proc.pop()]["CommandLine"]
    server = procs[server_proc.pop()]
    assert "recvfrom" in server["CommandLine"] and server["FirstPid"] == s["server_pid"]


def test_the_next_quiet_minute_ends_every_flow(scenario):
    """A flow that stays quiet for a whole window is terminated there, with no bytes."""
    s = scenario
    later = [r for r in s["records"]["VMConnection"] if r["Protocol"] == "udp" and r["TimeGenerated"] > s["window"]]
    ended = {(r["Direction"], r["RemoteIp"]): r["LinksTerminated"] for r in later
             if r["DestinationPort"] == s["port"]}
    assert ended == {("outbound", "127.0.0.1"): 3, ("outbound", "::1"): 1,
                     ("inbound", "127.0.0.1"): 3, ("inbound", "::1"): 1}
    assert all((r["BytesSent"], r["BytesReceived"], r["LinksLive"], r["LinksEstablished"]) == (0, 0, 0, 0)
               for r in later)


def test_the_udp_listener_is_a_bound_port(scenario):
    """The echo server's port, per local address of its traffic; its idle port with its bind address."""
    s = scenario
    ports = [r for r in s["records"]["VMBoundPort"] if r["Protocol"] == "udp" and r["TimeGenerated"] == s["window"]]
    assert {(r["Ip"], r["Port"], r["IsWildcardBind"]) for r in ports} == {
        ("127.0.0.1", s["port"], True), ("::1", s["port"], True), ("127.0.0.1", s["idle_port"], False)}
    server = udp_rows(s, Direction="inbound")[0]["Process"]
    assert all(r["Process"] == server and r["PortId"].endswith(f":{r['Port']}/udp") for r in ports)
    v4 = next(r for r in ports if r["Ip"] == "127.0.0.1" and r["Port"] == s["port"])
    assert (v4["BytesReceived"], v4["BytesSent"], v4["LinksEstablished"], v4["Responses"]) == (70, 60, 3, 6)
    idle = next(r for r in ports if r["Port"] == s["idle_port"])
    assert (idle["BytesReceived"], idle["BytesSent"], idle["LinksEstablished"], idle["LinksLive"]) == (0, 0, 0, 0)
    # a listener is reported idle once an hour (idle_port_interval), not every minute
    later = [r for r in s["records"]["VMBoundPort"] if r["Protocol"] == "udp" and r["TimeGenerated"] > s["window"]
             and r["Port"] == s["idle_port"]]
    assert later == []
    # the client's sockets bound no port: none of them is a listener
    assert not [r for r in s["records"]["VMBoundPort"] if r["Port"] in s["client"]["ports"]]


def test_the_flow_cap_counts_what_does_not_fit(scenario):
    """Three flows fit the capped kernel half; every datagram of the other five is counted."""
    s = scenario
    links, counts = s["capped_flows"], s["capped_counts"]
    assert sum(k.flows_live for k in links) == 3
    tracked = sum(k.datagrams_out + k.datagrams_in for k in links)
    total = 2 * (6 + 4 + 3 + 2)          # both ends of the four flows: a 6, b 4, c 3, d 2 datagrams
    assert counts["flows_full"] == total - tracked > 0
    assert s["stats"]["flows_full"] == 0 and s["stats"]["no_peer"] == 0


def test_the_shipped_object_is_built_from_its_source():
    source = (BPF_DIR / "udp.bpf.c").read_bytes()
    recorded = (BPF_DIR / "udp.bpf.c.sha256").read_text().strip()
    assert hashlib.sha256(source).hexdigest() == recorded, \
        "udp.bpf.c changed since udp.bpf.o was built: run scripts/build-bpf.sh"


def test_where_it_cannot_load_udp_is_off_saying_why(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(udp, "OBJECT", tmp_path / "no-such.bpf.o")
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==", collector="netlink",
                         spool=str(tmp_path / "spool"), machine_id_file=str(tmp_path / "machine-id"), dns=False)
    with caplog.at_level(logging.WARNING, logger="netatlas.agent.collect"):
        c = Collector(config, start=False)
    c.close()
    assert c.udp is None and "UDP flows off:" in caplog.text


def _link(minute: int, **kw):
    base = dict(minute=minute, src="10.0.0.4", dst="10.0.0.53", port=53, bind="0.0.0.0", inbound=False, tgid=7,
                comm="dig", flows_new=0, flows_live=1, sent=30, received=90, datagrams_out=1, datagrams_in=1,
                responses=1, rt_sum_us=4000, rt_min_us=4000, rt_max_us=4000)
    base.update(kw)
    return udp.UdpLink(**base)


def test_windows_established_live_terminated_without_a_kernel():
    """The records' rules alone: a flow talking across two windows is established once and live in
    both; the first quiet window ends it; a flow seen again after that is a new one. Rows of a
    minute read after its window closed count in the open one (bytes), not lost."""
    agg = Aggregator("m-1", "h", "a")
    owners = {7: ProcessInfo(7, 1, "dig", "/usr/bin/dig", "dig example.com", "/", 0, "root", 0.0)}
    agg.udp_links(61.0, [_link(1, flows_new=1)], owners)
    agg.udp_links(125.0, [_link(2, rt_sum_us=10000, rt_min_us=10000, rt_max_us=10000)], owners)
    agg.udp_links(250.0, [_link(4, flows_new=1, sent=10, received=0, responses=0, rt_sum_us=0, rt_min_us=0,
                                rt_max_us=0)], owners)
    rows = agg.flush(370.0)["VMConnection"]
    agg.udp_links(370.0, [_link(4, flows_new=0, sent=5, received=0, responses=0, rt_sum_us=0, rt_min_us=0,
                                rt_max_us=0)], owners)                 # late: minute 4 closed at 300
    rows += agg.flush(430.0)["VMConnection"]
    got = [(r["TimeGenerated"][11:16], r["LinksEstablished"], r["LinksLive"], r["LinksTerminated"], r["BytesSent"],
            r["Responses"], r.get("ResponseTimeMax")) for r in rows]
    assert got == [("00:01", 1, 1, 0, 30, 1, 4), ("00:02", 0, 1, 0, 30, 1, 10), ("00:03", 0, 0, 1, 0, 0, None),
                   ("00:04", 1, 1, 0, 10, 0, None), ("00:05", 0, 0, 1, 0, 0, None), ("00:06", 0, 0, 0, 5, 0, None)]
    assert all(r["Protocol"] == "udp" and r["Direction"] == "outbound" for r in rows)


def test_flows_of_a_minute_in_parts_count_once():
    """The same minute read three times (differences, the live count so far): one flow, not three."""
    agg = Aggregator("m-1", "h", "a")
    owners = {7: ProcessInfo(7, 1, "dig", "/usr/bin/dig", "dig example.com", "/", 0, "root", 0.0)}
    for t, new, live in ((61.0, 1, 1), (70.0, 1, 2), (80.0, 0, 2)):
        agg.udp_links(t, [_link(1, flows_new=new, flows_live=live)], owners)
    [row] = agg.flush(120.0)["VMConnection"]
    assert (row["LinksEstablished"], row["LinksLive"], row["BytesSent"], row["Responses"]) == (2, 2, 90, 3)


def test_the_source_rebuilds_and_the_result_loads_under_ip_netns_exec(tmp_path):
    """scripts/build-bpf.sh OUT udp builds the object alone; it loads in a process started by
    `ip netns exec`, whose /sys has no cgroup mount (the cgroup v2 root is mounted for a moment)."""
    ok, why = udp.prerequisites()
    missing = [t for t in ("clang", "bpftool", "ip") if shutil.which(t) is None]
    if not ok or missing or not Path("/usr/include/bpf/bpf_helpers.h").exists():
        why = why or f"cannot build eBPF objects here: missing {', '.join(missing) or 'libbpf-dev'}"
        print(f"skipping: {why}")
        pytest.skip(why)
    out = tmp_path / "udp.bpf.o"
    subprocess.run(["bash", str(ROOT / "scripts" / "build-bpf.sh"), str(out), "udp"], check=True, capture_output=True)
    ns = f"netatlas-udp-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        code = r'''
import json, socket, sys
from pathlib import Path
from netatlas.agent import udp
assert udp._mounted_cgroup2() is None, "this /sys has the cgroup mounts: the case is not the one tested"
with udp.UdpFlows(obj_path=Path(sys.argv[1])) as u:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0))
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.sendto(b"0123456789", s.getsockname()); data, peer = s.recvfrom(100); s.sendto(data, peer); c.recvfrom(100)
    flows = sorted((f.inbound, f.sent, f.received, f.responses) for f in u.read())
print(json.dumps(flows))
'''
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        r = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-c", code, str(out)], capture_output=True,
                           text=True, env=env, timeout=60)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == [[False, 10, 10, 1], [True, 10, 10, 1]]


def test_the_workspace_stores_them_and_the_readme_query_answers(scenario, tmp_path):
    """Through a real workspace (a DuckDB file): the UDP rows are accepted as they are, and the
    README's query counts the client's flows and answers."""
    import netatlas
    s = scenario
    ws = netatlas.connect(str(tmp_path / "ws"))
    try:
        for table in ("VMConnection", "VMBoundPort"):
            ws.ingest(table, s["records"][table])
        rows = ws.query('VMConnection | where Protocol == "udp" and Direction == "outbound" | summarize Flows = '
                        'sum(LinksEstablished), Answers = sum(Responses) by ProcessName, DestinationPort').rows
        ports = ws.query('VMBoundPort | where Protocol == "udp" and BytesReceived > 0 | summarize In = '
                         'sum(BytesReceived) by Port').rows
    finally:
        ws.close()
    assert [row[1:] for row in rows] == [[s["port"], 4, 7]]
    assert ports == [[s["port"], 80]]
