"""End to end in network namespaces: three hosts, each in a namespace of its own on one bridge,
each running an agent (`netatlas agent run`) with its own machine id; the workspace server runs in
one of them. Known traffic between the two other hosts, a workspace outage in the middle of it,
and the records the workspace then holds checked against the traffic's ground truth.

    naXX-ws 10.99.XX.1  workspace server :8080 + agent (sees h1's and h2's agents shipping to it)
    naXX-h1 10.99.XX.2  agent + client: 1 long connection (~70 s, two minutes), 100 short ones,
                        5 refused connects to :9999
    naXX-h2 10.99.XX.3  agent + server :9000
    naXX-sw             the bridge br0 the three veths are enslaved to

The outage: once the long connection and the first SHORT_BEFORE_KILL short ones have begun, the
workspace server is killed (SIGKILL) and stays down for OUTAGE seconds, then restarts on the same
--data directory. The other short connections, the refused connects and the minute boundary the
long connection spans all happen while it is down; the agents keep their batches in their spools
meanwhile (checked), and the exact ground-truth checks afterwards show that no record was lost.
Then batch by batch: with the agents and the workspace stopped, every batch id each agent took is
stored in the workspace, every spool is empty, and the counters each agent logs when it stops say
that all it enqueued was sent, nothing dropped, nothing refused.

Needs root (``ip netns add``); skipped with the reason otherwise. Takes OUTAGE + up to a
minute (~2-2.5 minutes): the outage overlaps the traffic; after it come the agents' backoff (up
to BACKOFF, their backoff_max setting) and the minute boundary closing the last window.
"""
from __future__ import annotations

import http.client
import json
import math
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

import netatlas
from netatlas.agent import ship
from netatlas.agent import ebpf
from netatlas.agent.netlink import in_netns
from netatlas.keys import load_or_create

# minutes of waiting on the clock: run beside the rest of the suite (tests/background.py)
pytestmark = pytest.mark.background

ROOT = Path(__file__).resolve().parents[2]
INTERVAL = 5
LONG_CHUNKS, LONG_CHUNK, LONG_EVERY = 70, 1000, 1.0     # 70,000 bytes over ~70 s
SHORT, SHORT_BYTES, FAILED = 100, 100, 5
SHORT_BEFORE_KILL = 10     # short connections made before the workspace is killed; the others while it is down
OUTAGE = 80                # seconds the workspace is down (the client's ~70 s of traffic ends within it)
BACKOFF = 5                # the agents' backoff_max: they try again within 5 s of the restart
HOSTS = ("ws", "h1", "h2")
# h1 (the client) runs the collector this kernel allows (ebpf here), h2 (the server) the portable
# netlink one: both collectors, against the same ground truth
COLLECTORS = {"ws": "auto", "h1": "auto", "h2": "netlink"}
TAGS = {"h2": "datacenter=fra1,rack=r12"}
PERF = {"h2": "--perf"}    # h2 also writes the Log Analytics agent's Perf counters

SERVER = r'''
import json, socket, sys, threading
port, out = int(sys.argv[1]), sys.argv[2]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", port)); srv.listen(512)
lock = threading.Lock(); seen = []
def handle(c, peer):
    n = 0
    while True:
        b = c.recv(65536)
        if not b:
            break
        n += len(b)
    reply = b"ok %d\n" % n
    c.sendall(reply); c.close()
    with lock:
        seen.append({"peer": peer[0], "received": n, "sent": len(reply)})
        with open(out, "w") as f:
            json.dump(seen, f)
print("listening", flush=True)
while True:
    c, peer = srv.accept()
    threading.Thread(target=handle, args=(c, peer), daemon=True).start()
'''

CLIENT = r'''
import json, os, socket, sys, threading, time
host, port, closed_port, out = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
CHUNKS, CHUNK, EVERY, SHORT, SHORT_BYTES, FAILED = [float(a) if "." in a else int(a) for a in sys.argv[5:11]]
PAUSE_AT, GO = int(sys.argv[11]), sys.argv[12]    # after PAUSE_AT short connections, wait for the file GO
truth = {"long": {}, "short": [], "failed": 0}
def exchange(s, chunks):
    sent = 0
    for data, pause in chunks:
        s.sendall(data); sent += len(data)
        if pause:
            time.sleep(pause)
    s.shutdown(socket.SHUT_WR)
    got = b""
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += b
    s.close()
    return sent, len(got)
def long_lived():
    t0 = time.time()
    s = socket.create_connection((host, port))
    sent, got = exchange(s, [(b"L" * CHUNK, EVERY)] * CHUNKS)
    truth["long"] = {"sent": sent, "received": got, "start": t0, "end": time.time()}
t = threading.Thread(target=long_lived); t.start()
time.sleep(3)                      # the long connection is in the agent's dumps by now
for i in range(SHORT):
    if i == PAUSE_AT:
        print("paused", flush=True)
        while not os.path.exists(GO):
            time.sleep(0.01)
    t0 = time.time()
    s = socket.create_connection((host, port))
    sent, got = exchange(s, [(b"s" * SHORT_BYTES, 0)])
    truth["short"].append({"sent": sent, "received": got, "start": t0, "end": time.time()})
    time.sleep(0.05)
for i in range(FAILED):
    s = socket.socket(); s.settimeout(5)        # non-blocking connect underneath: the close keeps the port
    try:
        s.connect((host, closed_port))
    except ConnectionRefusedError:
        truth["failed"] += 1
    s.close()
    time.sleep(0.1)
t.join()
truth["end"] = time.time()
with open(out, "w") as f:
    json.dump(truth, f)
print("done", flush=True)
'''


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Topology:
    def __init__(self, xx: int):
        self.xx = xx
        self.names = {r: f"na{xx}-{r}" for r in ("sw", "ws", "h1", "h2")}
        self.ip = {"ws": f"10.99.{xx}.1", "h1": f"10.99.{xx}.2", "h2": f"10.99.{xx}.3"}
        self.created: list[str] = []

    def add(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        sw = self.names["sw"]
        self.add(sw)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        for role in ("ws", "h1", "h2"):
            ns = self.names[role]
            self.add(ns)
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p-{role}", "netns", sw)
            sh("ip", "-n", sw, "link", "set", f"p-{role}", "master", "br0", "up")
            sh("ip", "-n", ns, "addr", "add", f"{self.ip[role]}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")

    def teardown(self) -> None:
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)


@pytest.fixture
def topology():
    xx = random.randint(10, 250)
    topo = Topology(xx)
    probe = f"na{xx}-probe"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        print(f"skipping: `ip netns add` failed: {r.stderr.strip()}")
        pytest.skip(f"cannot create network namespaces (needs root): {r.stderr.strip()}")
    sh("ip", "netns", "del", probe, check=False)
    try:
        topo.build()
        yield topo
    finally:
        topo.teardown()


class Procs:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.running: dict[str, subprocess.Popen] = {}

    def start(self, label: str, ns: str, *args: str) -> subprocess.Popen:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
                   PYTHONUNBUFFERED="1")
        log = open(self.tmp / f"{label}.log", "wb")
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, *args], stdout=log,
                             stderr=subprocess.STDOUT, env=env, cwd=self.tmp)
        self.running[label] = p
        return p

    def log(self, label: str) -> str:
        path = self.tmp / f"{label}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self, label: str, sig=signal.SIGTERM) -> None:
        p = self.running.pop(label, None)
        if p is not None and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def stop_all(self) -> None:
        for label in list(self.running):
            self.stop(label)

    def dump_logs(self) -> None:
        for path in sorted(self.tmp.glob("*.log")):
            print(f"---- {path.name}\n{path.read_text(errors='replace')[-4000:]}")


def wait_for(what: str, check, timeout: float, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def spooled(spool: Path) -> list[str]:
    """The batch files waiting in a spool directory (not rejected/, not half-written)."""
    return sorted(p.name for p in spool.glob("*.gz") if ship.BATCH_FILE.fullmatch(p.name)) if spool.exists() else []


def proc_netdev(netns: str | None) -> dict[str, tuple[int, int]]:
    """/proc/net/dev of a namespace: adapter -> (bytes received, bytes sent)."""
    text = in_netns(netns, lambda: Path("/proc/thread-self/net/dev").read_text())
    out = {}
    for line in text.splitlines()[2:]:
        name, _, rest = line.partition(":")
        f = rest.split()
        out[name.strip()] = (int(f[0]), int(f[8]))
    return out


def wait_for_or_none(check, timeout: float, every: float = 1.0):
    deadline = time.monotonic() + timeout
    while not (value := check()) and time.monotonic() < deadline:
        time.sleep(every)
    return value


def check_performance_and_heartbeats(query, topo, sent: int) -> None:
    """InsightsMetrics, Perf and Heartbeat of the three agents, against what the host's /proc (and
    each namespace's own /proc/net/dev) says."""
    import netatlas.agent.perf as perf
    meminfo = dict(line.split(":", 1) for line in Path("/proc/meminfo").read_text().splitlines())
    mem_total_mb = round(int(meminfo["MemTotal"].split()[0]) / 1024)
    cpus = sum(1 for line in Path("/proc/stat").read_text().splitlines() if line[:3] == "cpu" and line[3] != " ")
    st = os.statvfs("/")
    os_release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    metrics = query("InsightsMetrics | extend T = todynamic(Tags)")
    beats = query("Heartbeat")
    perf_rows = query("Perf")
    for host in HOSTS:
        computer = host            # each agent's --computer-name
        mine = [r for r in metrics if r["Computer"] == computer]
        assert {(r["Namespace"], r["Name"]) for r in mine} >= {(m.namespace, m.name) for m in perf.METRICS}, host
        assert all(r["Origin"] == "vm.azm.ms" and r["SourceSystem"] == "Insights" for r in mine)
        assert len([r for r in mine if r["Name"] == "Heartbeat"]) >= 2, host      # one a minute
        for r in mine:
            tags = r["T"]
            if r["Name"] == "UtilizationPercentage":
                assert tags["vm.azm.ms/totalCpus"] == cpus and 0 <= r["Val"] <= 100
            elif r["Name"] == "AvailableMB":
                assert tags["vm.azm.ms/memorySizeMB"] == mem_total_mb and 0 < r["Val"] <= mem_total_mb
            elif r["Namespace"] == "Network":      # the namespace's own adapter only: eth0 (no lo)
                assert tags["vm.azm.ms/networkDeviceId"] == "eth0", r
            elif r["Name"] == "FreeSpaceMB" and tags["vm.azm.ms/mountId"] == "/":
                assert tags["vm.azm.ms/diskSizeMB"] == round(st.f_blocks * st.f_frsize / 2 ** 20)
                assert abs(r["Val"] - st.f_bavail * st.f_frsize / 2 ** 20) < 2048      # other tests write too
        assert "/" in {r["T"].get("vm.azm.ms/mountId") for r in mine if r["Namespace"] == "LogicalDisk"}
        # bytes over the minutes: at least the payload h1 sent h2, at most what the adapter counted since
        netdev = proc_netdev(topo.names[host])["eth0"]
        received = sum(r["T"]["vm.azm.ms/bytesReceived"] for r in mine
                       if r["Namespace"] == "Network" and r["Name"] == "ReadBytesPerSecond")
        transmitted = sum(r["T"]["vm.azm.ms/bytesSent"] for r in mine
                          if r["Namespace"] == "Network" and r["Name"] == "WriteBytesPerSecond")
        assert received <= netdev[0] and transmitted <= netdev[1], (host, received, transmitted, netdev)
        if host == "h2":
            assert received >= sent, (received, sent)
        if host == "h1":
            assert transmitted >= sent, (transmitted, sent)
        hb = [r for r in beats if r["Computer"] == computer]
        assert len(hb) >= 2, host
        assert {(r["ComputerIP"], r["OSType"], r["OSName"], r["Category"], r["SourceSystem"]) for r in hb} == \
            {(topo.ip[host], "Linux", os_release["NAME"].strip('"'), "Direct Agent", "Linux")}
        assert {r["OSMajorVersion"] for r in hb} == {os_release.get("VERSION_ID", "").strip('"').split(".")[0]}
        assert all(r["Version"] and r["_ResourceId"] for r in hb)
        counters = [r for r in perf_rows if r["Computer"] == computer]
        if host in PERF:
            vm = {r["TimeGenerated"]: r["Val"] for r in mine if r["Name"] == "UtilizationPercentage"}
            cpu = {r["TimeGenerated"]: r["CounterValue"] for r in counters if r["CounterName"] == "% Processor Time"}
            common = cpu.keys() & vm.keys()
            assert common and all(cpu[t] == vm[t] for t in common)
            assert {(r["ObjectName"], r["CounterName"]) for r in counters} >= {v[:2] for v in perf.PERF.values()}
        else:
            assert not counters, host        # Perf is off by default


@pytest.mark.timeout(OUTAGE + 300)
def test_three_agents_in_namespaces_report_known_traffic_across_a_workspace_outage(topology, tmp_path):
    t_start = time.monotonic()
    topo = topology
    ns, ip = topo.names, topo.ip
    data = tmp_path / "ws"
    identity = load_or_create(data)
    ingest = identity.by_role("ingest")[0].secret
    query_key = identity.by_role("query")[0].secret
    procs = Procs(tmp_path)
    machines = {}
    for host in HOSTS:
        mid = str(uuid.uuid4())
        (tmp_path / f"{host}.machine-id").write_text(mid + "\n")
        machines[host] = f"m-{mid}"
    spools = {host: tmp_path / f"{host}-spool" for host in HOSTS}

    def query(kql: str) -> list[dict]:
        def go():
            c = http.client.HTTPConnection(ip["ws"], 8080, timeout=30)
            try:
                c.request("POST", "/api/query", body=json.dumps({"query": kql, "timespan": "PT3H"}),
                          headers={"Authorization": f"Bearer {query_key}", "Content-Type": "application/json"})
                r = c.getresponse()
                return r.status, r.read()
            finally:
                c.close()
        status, body = in_netns(ns["ws"], go)
        assert status == 200, body[:500]
        table = json.loads(body)["tables"][0]
        names = [c["name"] for c in table["columns"]]
        return [dict(zip(names, row)) for row in table["rows"]]

    def server_up():
        try:
            return in_netns(ns["ws"], lambda: http.client.HTTPConnection(ip["ws"], 8080, timeout=2).connect() or True)
        except OSError:
            return False

    def serve(label: str) -> None:
        procs.start(label, ns["ws"], "-m", "netatlas", "workspace", "serve", "--data", str(data),
                    "--host", ip["ws"], "--port", "8080")
        wait_for(f"the workspace server ({label})", server_up, 60)

    try:
        serve("server")
        for host in HOSTS:
            procs.start(f"agent-{host}", ns[host], "-m", "netatlas", "agent", "run",
                        "--workspace-url", f"http://{ip['ws']}:8080", "--workspace-id", identity.workspace_id,
                        "--key", ingest, "--interval", str(INTERVAL), "--poll", "0.5", "--backoff-max", str(BACKOFF),
                        "--collector", COLLECTORS[host], "--tags", TAGS.get(host, ""),
                        PERF.get(host, "--no-perf"), "--computer-name", host,
                        "--spool", str(spools[host]),
                        "--machine-id-file", str(tmp_path / f"{host}.machine-id"))
        for host in HOSTS:
            wait_for(f"agent {host}", lambda: "shipping to" in procs.log(f"agent-{host}"), 60)
        time.sleep(2)      # the first dump (the baseline) is behind us
        for host in HOSTS:
            assert procs.running[f"agent-{host}"].poll() is None, procs.log(f"agent-{host}")
        # stored before the kill (the agents send VMComputer at start, then hourly): must survive it
        wait_for("the agents' VMComputer records",
                 lambda: set(machines.values()) <= {r["Machine"] for r in query("VMComputer")}, 30)

        server_truth = tmp_path / "server.json"
        procs.start("tcp-server", ns["h2"], "-c", SERVER, "9000", str(server_truth))
        wait_for("the TCP server", lambda: "listening" in procs.log("tcp-server"), 30)
        time.sleep(1)
        ebpf_here, why = ebpf.available()
        print(f"\ncollectors: h1 {'ebpf' if ebpf_here else 'netlink (ebpf unavailable: ' + why + ')'}, h2 netlink")
        assert "collector: netlink" in procs.log("agent-h2")
        assert ("collector: ebpf" if ebpf_here else "collector: netlink") in procs.log("agent-h1")
        client_truth, go = tmp_path / "client.json", tmp_path / "go"
        client = procs.start("client", ns["h1"], "-c", CLIENT, ip["h2"], "9000", "9999", str(client_truth),
                             str(LONG_CHUNKS), str(LONG_CHUNK), str(LONG_EVERY), str(SHORT), str(SHORT_BYTES),
                             str(FAILED), str(SHORT_BEFORE_KILL), str(go))
        t_client = time.monotonic()

        # ---- the outage: the long connection and the first short ones have begun; the rest is
        # made while the workspace is down
        wait_for("the client's first short connections", lambda: "paused" in procs.log("client"), 30, every=0.05)
        server = procs.running.pop("server")
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        killed_at, t_kill = time.time(), time.monotonic()
        assert not server_up(), "the workspace still answers after SIGKILL"
        go.touch()

        assert client.wait(timeout=180) == 0, procs.log("client")
        truth = json.loads(client_truth.read_text())
        assert len(truth["short"]) == SHORT and truth["failed"] == FAILED
        assert truth["long"]["sent"] == LONG_CHUNKS * LONG_CHUNK
        assert all(s["end"] - s["start"] < 1 for s in truth["short"])
        assert math.floor(truth["long"]["end"] / 60) > math.floor(truth["long"]["start"] / 60)   # two minutes
        t_traffic = time.monotonic()

        # while down: every agent keeps its batches in its spool (the windows that closed at the
        # minute boundaries since the kill), and says it cannot send them
        def all_spooled():
            return all(any(".VMConnection." in name for name in spooled(spools[h])) for h in HOSTS)
        wait_for("batches in the agents' spools while the workspace is down", all_spooled,
                 max(1.0, t_kill + OUTAGE - 5 - time.monotonic()), every=1)
        held = {h: spooled(spools[h]) for h in HOSTS}     # <seq>.<table>.<records>.<batch id>.gz
        for host in HOSTS:
            assert "cannot send batch" in procs.log(f"agent-{host}"), procs.log(f"agent-{host}")
            assert procs.running[f"agent-{host}"].poll() is None, procs.log(f"agent-{host}")
        assert not server_up()
        time.sleep(max(0.0, t_kill + OUTAGE - time.monotonic()))
        restarted_at, t_restart = time.time(), time.monotonic()
        serve("server-restarted")

        # the traffic made while it was down: the last short connections, the refused connects,
        # and the minute boundary the long connection spans
        assert truth["short"][SHORT_BEFORE_KILL - 1]["end"] < killed_at
        assert all(killed_at < s["start"] and s["end"] < restarted_at for s in truth["short"][SHORT_BEFORE_KILL:])
        assert truth["long"]["start"] < killed_at and truth["end"] < restarted_at
        assert math.floor(min(truth["long"]["end"], restarted_at) / 60) > math.floor(killed_at / 60)

        conns = SHORT + 1
        sent = truth["long"]["sent"] + sum(s["sent"] for s in truth["short"])
        received = truth["long"]["received"] + sum(s["received"] for s in truth["short"])

        def records():
            rows = query("VMConnection")
            return {h: [r for r in rows if r["Machine"] == machines[h]] for h in HOSTS}

        def outbound_9000(rows):
            return [r for r in rows if r["Direction"] == "outbound" and r["DestinationIp"] == ip["h2"]
                    and r["DestinationPort"] == 9000]

        def inbound_9000(rows):
            return [r for r in rows if r["Direction"] == "inbound" and r["SourceIp"] == ip["h1"]
                    and r["DestinationPort"] == 9000]

        def inbound_8080(rows, host):
            return [r for r in rows if r["Direction"] == "inbound" and r["SourceIp"] == ip[host]
                    and r["DestinationIp"] == ip["ws"] and r["DestinationPort"] == 8080]

        def total(rows, col):
            return sum(r[col] or 0 for r in rows)

        # the last window closes at the next minute boundary; the agents ship within an interval,
        # or once their backoff since the outage has passed (at most BACKOFF)
        ready_at = (math.floor(truth["end"] / 60) + 1) * 60 + INTERVAL + 3
        time.sleep(max(0.0, ready_at - time.time()))

        def complete():
            recs = records()
            done = (total(outbound_9000(recs["h1"]), "LinksTerminated") >= conns
                    and total(inbound_9000(recs["h2"]), "LinksTerminated") >= conns
                    and all(inbound_8080(recs["ws"], h) for h in ("h1", "h2"))
                    and not any(set(held[h]) & set(spooled(spools[h])) for h in HOSTS))
            return recs if done else None
        try:
            recs = wait_for("the records of the traffic", complete, BACKOFF + 2 * INTERVAL + 30, every=3)
        except AssertionError:
            recs = records()
        t_query = time.monotonic()

        h1, h2, ws = recs["h1"], recs["h2"], recs["ws"]
        out = outbound_9000(h1)
        assert total(out, "LinksEstablished") == conns, out
        assert total(out, "LinksTerminated") == conns, out
        assert total(out, "LinksFailed") == 0
        assert sent <= total(out, "BytesSent") <= sent + 2 * conns
        assert received <= total(out, "BytesReceived") <= received + 2 * conns
        assert {r["ProcessName"][:7] for r in out} == {"python3"}
        assert len({r["Process"] for r in out}) == 1                # the one client process
        assert len({r["TimeGenerated"] for r in out}) >= 2          # the long connection spans two minutes
        failed = [r for r in h1 if r["Direction"] == "outbound" and r["DestinationPort"] == 9999]
        assert total(failed, "LinksFailed") == FAILED, failed
        assert total(failed, "LinksEstablished") == 0
        assert {r["Process"] for r in failed} <= {r["Process"] for r in out}

        inn = inbound_9000(h2)
        assert total(inn, "LinksEstablished") == conns, inn
        assert total(inn, "LinksTerminated") == conns, inn
        assert sent <= total(inn, "BytesReceived") <= sent + 2 * conns
        assert received <= total(inn, "BytesSent") <= received + 2 * conns
        assert {r["ProcessName"][:7] for r in inn} == {"python3"}

        # each host sees only its own sockets
        assert not [r for r in h1 if r["Direction"] == "inbound"], "h1 has no listener"
        assert not outbound_9000(h2)
        assert all(r["SourceIp"] == ip["h1"] for r in h1 if r["Direction"] == "outbound")
        assert all(r["SourceIp"] == ip["h2"] for r in h2 if r["Direction"] == "outbound")
        assert all(r["DestinationIp"] == ip["h2"] for r in h2 if r["Direction"] == "inbound")
        assert not [r for r in h2 if r["DestinationPort"] == 9999]
        assert not [r for r in ws if r["DestinationPort"] in (9000, 9999)
                    or {r["SourceIp"], r["DestinationIp"]} == {ip["h1"], ip["h2"]}], "the ws host saw h1<->h2 traffic"
        assert all(r["DestinationIp"] == ip["ws"] for r in ws if r["Direction"] == "inbound")
        # and each ships its own connection to the workspace, which the workspace host sees inbound
        for host in HOSTS:
            assert [r for r in recs[host] if r["DestinationIp"] == ip["ws"] and r["DestinationPort"] == 8080]
        for host in ("h1", "h2"):
            assert inbound_8080(ws, host), f"the ws agent saw no connection from {host}'s agent"

        ports = [r for r in query("VMBoundPort") if r["Machine"] == machines["h2"]]
        assert 9000 in {r["Port"] for r in ports}
        assert not [r for r in query("VMBoundPort") if r["Machine"] == machines["h1"] and r["Port"] == 9000]
        assert 8080 in {r["Port"] for r in query("VMBoundPort") if r["Machine"] == machines["ws"]}
        computers = {r["Machine"] for r in query("VMComputer")}
        assert set(machines.values()) <= computers                  # stored before the kill, kept
        tags = {r["Machine"]: r["Tags"] for r in query("VMComputerTags_CL")}
        assert tags == {machines["h2"]: {"datacenter": "fra1", "rack": "r12"}}     # only h2 has tags
        processes = [r for r in query("VMProcess") if r["Machine"] == machines["h1"]]
        assert {r["Process"] for r in out} <= {r["Process"] for r in processes}
        def performance_checked():
            try:
                check_performance_and_heartbeats(query, topo, sent)
                return True
            except AssertionError:
                return False
        # the minute's look that follows the traffic ships with the minute's records, or one interval later
        if not wait_for_or_none(performance_checked, 3 * INTERVAL):
            check_performance_and_heartbeats(query, topo, sent)      # fails, saying what

        # no record lost: the batches spooled during the outage were all sent, nothing was refused
        # or dropped, and the spools drain (new batches come each minute: empty at some point)
        wait_for("the agents' spools to be empty", lambda: not any(spooled(spools[h]) for h in HOSTS),
                 BACKOFF + 2 * INTERVAL, every=0.2)
        for host in HOSTS:
            assert not list((spools[host] / ship.REJECTED).iterdir()), f"{host}: batches refused"

        # batch by batch: stop the agents (a last flush), then the workspace, and read the batch
        # ids it stored. Every id an agent ever took (state.json: the next sequence number) is
        # there, with as many records as the batches spooled during the outage held.
        for host in HOSTS:
            procs.stop(f"agent-{host}")
        procs.stop("server-restarted")
        with netatlas.connect(data) as workspace:
            stored = dict(workspace.connection.execute(
                "SELECT batch_id, records FROM _netatlas_batches").fetchall())
        for host in HOSTS:
            assert not spooled(spools[host]), f"{host}: batches left in the spool after the agent stopped"
            # the counters it logs when it stops: everything enqueued was sent, nothing dropped or refused
            stopped = [line for line in procs.log(f"agent-{host}").splitlines() if "netatlas agent: stopped; " in line]
            assert len(stopped) == 1, procs.log(f"agent-{host}")
            stats = dict(kv.split("=") for kv in stopped[0].split("stopped; ", 1)[1].split())
            assert int(stats["enqueued_batches"]) == int(stats["sent_batches"]) > 0, (host, stopped[0])
            assert stats["dropped_batches"] == stats["rejected_batches"] == stats["spool_batches"] == "0", \
                (host, stopped[0])
            assert int(stats["send_failures"]) > 0, (host, stopped[0])     # it did meet the outage
            agent_id = (tmp_path / f"{host}.machine-id").read_text().strip()
            state = json.loads((spools[host] / ship.STATE).read_text())
            taken = {f"{agent_id}.{state['spool_id']}.{seq}" for seq in range(state["next"])}
            assert {b for b in stored if b.startswith(agent_id + ".")} == taken, host
            for name in held[host]:
                m = ship.BATCH_FILE.fullmatch(name)
                assert stored[m[4]] == int(m[3]), (host, name)
        print(f"\ntimings: setup+agents {t_client - t_start:.0f} s, traffic {t_traffic - t_client:.0f} s "
              f"(the kill {t_kill - t_client:.0f} s in), outage {t_restart - t_kill:.0f} s, "
              f"waiting for the records after the restart {t_query - t_restart:.0f} s, "
              f"total {time.monotonic() - t_start:.0f} s; "
              f"spooled while down: {', '.join(f'{h} {len(held[h])}' for h in HOSTS)} batches")
    except BaseException:
        procs.stop_all()
        procs.dump_logs()
        raise
    finally:
        procs.stop_all()
        for host in HOSTS:
            log = procs.log(f"agent-{host}")
            assert "Traceback" not in log, log
            assert "dropped the" not in log and "not writable" not in log, log    # ship.py's drop warnings
