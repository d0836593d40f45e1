"""DNS names end to end in network namespaces: a client host resolves names served by a real DNS
server (dnsmasq) on another host, connects to what they resolved to, and its agent's collector
(netatlas/agent/collect.py with dns.py) names those outbound connections.

    ndXX-dns     10.98.XX.53  dnsmasq: api.netatlas.test A 10.98.XX.10;
                              alias.netatlas.test CNAME web.netatlas.test A 10.98.XX.20
    ndXX-target  10.98.XX.10, .20, .30   a TCP server on :7000 (all three addresses)
    ndXX-client  10.98.XX.2   the collector (in this process, observing this namespace), and a
                              client that resolves the two names with getaddrinfo (glibc, through
                              /etc/netns/ndXX-client/resolv.conf, which `ip netns exec` mounts over
                              /etc/resolv.conf), connects to them and to 10.98.XX.30 by address
    ndXX-sw                   the bridge br0 the three veths are enslaved to

The client holds its connections open until the collector has dumped once (so the netlink
collector knows their owner too), then closes them. Each outbound record must have the names its
remote address was resolved from, and the one never resolved none. Run with each collector this
kernel allows (ebpf, netlink). Needs root, ip(8) and dnsmasq (Debian: dnsmasq-base); skipped with
the reason otherwise. ~2 s per collector.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import netatlas
from netatlas.agent import ebpf
from netatlas.agent.collect import Collector
from netatlas.agent.config import AgentConfig

PORT = 7000
ROLES = ("dns", "target", "client")
TARGET_HOSTS = (10, 20, 30)          # api, web (alias's canonical name), never resolved
NETNS_ETC = Path("/etc/netns")

SERVER = r'''
import socket, threading
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("0.0.0.0", %d)); srv.listen(64)
print("listening", flush=True)
def serve(c):
    while c.recv(65536):
        pass
    c.sendall(b"ok"); c.close()
while True:
    c, _ = srv.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
''' % PORT

# argv: the DNS server's address, then the targets, each a name to resolve or an address
CLIENT = r'''
import json, socket, sys
server, targets = sys.argv[1], sys.argv[2:]
with open("/etc/resolv.conf") as f:
    ours = ("nameserver " + server) in f.read()
def resolve(name):
    if ours:     # the system's resolver (glibc): queries A and AAAA, reads /etc/resolv.conf
        return socket.getaddrinfo(name, %d, socket.AF_INET, socket.SOCK_STREAM)[0][4][0]
    from dnslib import DNSRecord            # no resolv.conf of ours: one query by hand
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(5)
    s.sendto(DNSRecord.question(name).pack(), (server, 53))
    reply = DNSRecord.parse(s.recv(4096))
    return str([rr for rr in reply.rr if rr.rtype == 1][0].rdata)
resolved, conns = {}, []
for target in targets:
    ip = target if target[0].isdigit() else resolve(target)
    resolved[target] = ip
    c = socket.create_connection((ip, %d)); c.sendall(b"x" * 100); conns.append(c)
print(json.dumps({"resolved": resolved, "resolver": "glibc" if ours else "dnslib"}), flush=True)
sys.stdin.readline()                         # held open until the collector has dumped once
for c in conns:
    c.shutdown(socket.SHUT_WR); c.recv(10); c.close()
print("closed", flush=True)
''' % (PORT, PORT)


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True)


class Hosts:
    """The namespaces on a bridge, dnsmasq and the TCP server; torn down in reverse."""

    def __init__(self, xx: int):
        self.xx = xx
        self.ns = {r: f"nd{xx}-{r}" for r in ("sw", *ROLES)}
        self.ip = {"dns": f"10.98.{xx}.53", "client": f"10.98.{xx}.2"}
        self.target = {h: f"10.98.{xx}.{h}" for h in TARGET_HOSTS}
        self.created: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.etc = NETNS_ETC / self.ns["client"]
        self.made_netns_etc = False

    def add(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.created.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def build(self) -> None:
        sw = self.ns["sw"]
        self.add(sw)
        sh("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", sw, "link", "set", "br0", "up")
        addresses = {"dns": [self.ip["dns"]], "client": [self.ip["client"]], "target": list(self.target.values())}
        for role in ROLES:
            ns = self.ns[role]
            self.add(ns)
            sh("ip", "-n", ns, "link", "add", "eth0", "type", "veth", "peer", "name", f"p-{role}", "netns", sw)
            sh("ip", "-n", sw, "link", "set", f"p-{role}", "master", "br0", "up")
            for ip in addresses[role]:
                sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
        self.made_netns_etc = not NETNS_ETC.exists()
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text(f"nameserver {self.ip['dns']}\noptions timeout:2 attempts:2\n")

    def start(self, tmp: Path) -> None:
        dnsmasq = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
        api, web = self.target[10], self.target[20]
        self.dns_log = tmp / "dnsmasq.log"
        self.procs.append(subprocess.Popen(
            ["ip", "netns", "exec", self.ns["dns"], dnsmasq, "--no-daemon", "--no-resolv", "--no-hosts",
             "--port=53", f"--listen-address={self.ip['dns']}", "--bind-interfaces", "--pid-file=",
             "--local-ttl=300", "--log-queries", f"--address=/api.netatlas.test/{api}",
             f"--host-record=web.netatlas.test,{web}", "--cname=alias.netatlas.test,web.netatlas.test"],
            stdout=subprocess.DEVNULL, stderr=open(self.dns_log, "wb")))
        server = subprocess.Popen(["ip", "netns", "exec", self.ns["target"], sys.executable, "-c", SERVER],
                                  stdout=subprocess.PIPE, text=True)
        self.procs.append(server)
        assert server.stdout.readline().strip() == "listening"
        deadline = time.monotonic() + 10
        while "started, version" not in self.dns_log.read_text(errors="replace"):
            assert self.procs[0].poll() is None and time.monotonic() < deadline, self.dns_log.read_text()
            time.sleep(0.05)

    def teardown(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        for name in reversed(self.created):
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.etc, ignore_errors=True)
        if self.made_netns_etc:
            try:
                NETNS_ETC.rmdir()
            except OSError:
                pass


def skip(why: str):
    print(f"skipping: {why}")
    pytest.skip(why)


@pytest.fixture(scope="module")
def hosts(tmp_path_factory):
    if os.geteuid() != 0:
        skip("network namespaces and packet sockets need root")
    if shutil.which("ip") is None:
        skip("no ip(8) (iproute2) to create network namespaces")
    if shutil.which("dnsmasq") is None and not os.path.exists("/usr/sbin/dnsmasq"):
        skip("no dnsmasq (Debian: apt-get install dnsmasq-base; scripts/test.sh installs it)")
    xx = random.randint(10, 250)
    probe = f"nd{xx}-probe"
    r = sh("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        skip(f"cannot create network namespaces: {r.stderr.strip()}")
    sh("ip", "netns", "del", probe, check=False)
    h = Hosts(xx)
    try:
        h.build()
        h.start(tmp_path_factory.mktemp("dns-netns"))
        yield h
    finally:
        h.teardown()


def kinds():
    ok, why = ebpf.available()
    return [pytest.param("ebpf", marks=pytest.mark.skipif(not ok, reason=f"the eBPF collector cannot load: {why}")),
            "netlink"]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", kinds())
def test_outbound_connections_are_named_by_the_dns_answers_the_host_received(hosts, kind, tmp_path,
                                                                             early_in_a_minute):
    # each connection is one record (made and closed in one minute: a final run met one made at
    # :59.9 and closed at :00.1, two records, and kept the second)
    t0 = time.monotonic()
    ns, api, web, raw = hosts.ns, hosts.target[10], hosts.target[20], hosts.target[30]
    config = AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==", collector=kind,
                         netns=f"/var/run/netns/{ns['client']}", spool=str(tmp_path / "spool"),
                         machine_id_file=str(tmp_path / "machine-id"))
    c = Collector(config, start=False)
    client = None
    try:
        assert c.kind == kind and c.dns is not None
        c.poll()                                           # the first dump: the baseline
        client = subprocess.Popen(["ip", "netns", "exec", ns["client"], sys.executable, "-c", CLIENT, hosts.ip["dns"],
                                   "api.netatlas.test", "alias.netatlas.test", raw],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = client.stdout.readline()
        assert line, client.stderr.read()
        got = json.loads(line)
        print(f"\ncollector {kind}; resolved by {got['resolver']}: {got['resolved']}")
        assert got["resolved"] == {"api.netatlas.test": api, "alias.netatlas.test": web, raw: raw}
        time.sleep(0.2)
        c.poll()                                           # the answers, then the open connections
        client.stdin.write("\n")
        client.stdin.flush()
        assert client.stdout.readline().strip() == "closed"
        assert client.wait(timeout=10) == 0
        time.sleep(0.2)
        records = c.final()["VMConnection"]                # the close events, the open minute
        stats = dict(c.stats["dns"])
    finally:
        if client is not None and client.poll() is None:
            client.kill()
            client.wait()
        c.close()
    # the client's DNS queries are UDP flows to the DNS server (udp.py): this is about the TCP ones
    records = [r for r in records if r["Protocol"] == "tcp"]
    out = {r["DestinationIp"]: r for r in records if r["Direction"] == "outbound" and r["DestinationPort"] == PORT}
    assert sorted(out) == sorted([api, web, raw]), records
    assert [(out[ip]["LinksEstablished"], out[ip]["LinksTerminated"]) for ip in (api, web, raw)] == [(1, 1)] * 3
    assert out[api]["RemoteDnsQuestions"] == '["api.netatlas.test"]'
    assert json.loads(out[api]["RemoteDnsQuestions"]) == ["api.netatlas.test"]
    assert out[api]["RemoteDnsCanonicalNames"] == '["api.netatlas.test"]'
    assert json.loads(out[web]["RemoteDnsQuestions"]) == ["alias.netatlas.test"]
    assert json.loads(out[web]["RemoteDnsCanonicalNames"]) == ["web.netatlas.test"]
    assert "RemoteDnsQuestions" not in out[raw] and "RemoteDnsCanonicalNames" not in out[raw]
    assert not [r for r in records if r["Direction"] == "inbound"]
    # dnsmasq's two answers (A only: getaddrinfo was asked for AF_INET), and nothing else reached
    # user space (the client's queries go the other way, the TCP traffic is not UDP from port 53)
    assert stats["answers"] == 2 and stats["malformed"] == stats["drops"] == 0, stats
    assert stats["addresses"] == 2, stats

    # and through a workspace, the seed's "Connections by FQDN" query
    ws = netatlas.connect()
    try:
        ws.ingest("VMConnection", records)
        by_fqdn = ws.query('VMConnection\n| where RemoteDnsQuestions != ""\n| summarize CountAll = count() by '
                           "RemoteDnsQuestions\n| project RemoteDnsQuestions, CountAll\n| order by CountAll desc").rows
        unnamed = ws.query('VMConnection | where RemoteDnsQuestions == "" and Protocol == "tcp" '
                           '| project DestinationIp').rows
    finally:
        ws.close()
    assert sorted(by_fqdn) == [['["alias.netatlas.test"]', 1], ['["api.netatlas.test"]', 1]]
    assert unnamed == [[raw]]
    print(f"dns counters {stats}; {time.monotonic() - t0:.1f} s")
