"""The aggregate stage (netatlas/agent/records.py): synthetic dumps, close events and process
events in, exact one-minute records out, and the records through a workspace and KQL."""
from __future__ import annotations

import re
import socket
from datetime import datetime, timezone

import pytest

import netatlas
from netatlas.agent.model import (TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_SYN_SENT,
                                  TCP_TIME_WAIT, MachineInfo, ProcessInfo, Socket)
from netatlas.agent.records import Aggregator, iso, pool_id

MACHINE = "m-4b9c93f9-bc37-46df-b43c-899ba829e07b"
AGENT = "4b9c93f9-bc37-46df-b43c-899ba829e07b"
HOST = "host.example"
T0 = int(datetime(2024, 5, 2, 11, 0, tzinfo=timezone.utc).timestamp())   # a window start
W = ["2024-05-02T11:00:00Z", "2024-05-02T11:01:00Z", "2024-05-02T11:02:00Z", "2024-05-02T11:03:00Z"]
LOCAL = "10.0.0.5"


def proc(pid, exe, cmdline=None, name=None, start=T0 - 1000, user="root", cwd="/"):
    return ProcessInfo(pid=pid, ppid=1, name=name or exe.rsplit("/", 1)[-1], exe=exe,
                       cmdline=exe if cmdline is None else cmdline, cwd=cwd, uid=0, user=user, start_time=start)


NGINX = proc(100, "/usr/sbin/nginx", "nginx: worker process", user="www-data")
CURL = proc(200, "/usr/bin/curl", "curl https://example.org/")
JAVA = proc(300, "/usr/bin/java", "java -jar app.jar", cwd="/srv/app", user="app")
SSHD = proc(400, "/usr/sbin/sshd", "/usr/sbin/sshd -D")
PG = proc(500, "/usr/lib/postgresql/15/bin/postgres", "postgres -D /var/lib/postgresql")


def sock(src, sport, dst, dport, cookie, state=TCP_ESTABLISHED, inode=None, sent=0, recv=0, rtt_us=0, segs_in=0,
         resp=0, rt_us=0, rt_min=0, rt_max=0):
    """A socket as a collector reports it: payload bytes, and the exchanges it counted (``resp``,
    ``rt_us`` cumulative; ``rt_min``/``rt_max`` of the window, 0 when not known)."""
    fam = socket.AF_INET6 if ":" in src else socket.AF_INET
    return Socket(family=fam, state=state, src=src, sport=sport, dst=dst, dport=dport,
                  inode=cookie + 10_000 if inode is None else inode, uid=0, cookie=cookie,
                  bytes_sent=sent, bytes_received=recv, rtt_us=rtt_us, segs_in=segs_in,
                  responses=resp, rt_sum_us=rt_us, rt_min_us=rt_min, rt_max_us=rt_max)


def listener(src, port, cookie):
    return sock(src, port, "::" if ":" in src else "0.0.0.0", 0, cookie, state=TCP_LISTEN, inode=cookie)


def owned(sockets, p):
    """owners: the inode of each socket -> p."""
    return {s.inode: p for s in sockets}


def closing(s, **counters):
    """The kernel's close event for s: state CLOSE, inode 0, final counters."""
    fields = dict(state=TCP_CLOSE, inode=0, sent=s.bytes_sent, recv=s.bytes_received, rtt_us=s.rtt_us, segs_in=5,
                  resp=s.responses, rt_us=s.rt_sum_us)
    fields.update(counters)
    return sock(s.src, s.sport, s.dst, s.dport, s.cookie, **fields)


def agg(**kw):
    kw.setdefault("exclude_processes", {"System"})
    return Aggregator(machine_id=MACHINE, computer=HOST, agent_id=AGENT, **kw)


def started(a, now=T0):
    """An aggregator past its baseline dump (an empty host at T0)."""
    a.observe(now, [], {})
    return a


def metrics(r):
    keys = ("LinksEstablished", "LinksTerminated", "LinksLive", "LinksFailed", "BytesSent", "BytesReceived",
            "Responses", "ResponseTimeMin", "ResponseTimeMax", "ResponseTimeSum")
    return {k: r[k] for k in keys if k in r}


def by_time(records):
    return {r["TimeGenerated"]: r for r in records}


# ---- connections over windows --------------------------------------------------------------------

def test_long_lived_connection_across_three_windows():
    a = started(agg())
    c = lambda **kw: sock(LOCAL, 40000, "10.0.0.9", 443, 1, **kw)    # noqa: E731
    a.observe(T0 + 10, [c(sent=1000, recv=5000, resp=1, rt_us=2000, rt_min=2000, rt_max=2000)], {10001: CURL})
    a.observe(T0 + 50, [c(sent=1500, recv=5000, resp=1, rt_us=2000)], {10001: CURL})   # no exchange since
    assert a.flush(T0 + 59.9)["VMConnection"] == []                                   # no window ended yet
    a.observe(T0 + 70, [c(sent=3000, recv=9000, resp=2, rt_us=6400, rt_min=4400, rt_max=4400)], {10001: CURL})
    first = a.flush(T0 + 120)["VMConnection"]                                         # windows 0 and 1 ended
    a.observe(T0 + 130, [c(sent=3000, recv=9000, resp=2, rt_us=6400)], {10001: CURL})  # idle, still open
    a.closed(T0 + 150, [closing(c(sent=3100, recv=9100, resp=3, rt_us=7300))], {})    # min/max unknown: the mean
    assert [r["TimeGenerated"] for r in first] == W[:2]
    rest = a.flush(T0 + 180)["VMConnection"]
    assert [r["TimeGenerated"] for r in rest] == W[2:3]
    assert a.flush(T0 + 400)["VMConnection"] == []                                    # closed: nothing more
    r0, r1, r2 = first + rest
    assert metrics(r0) == dict(LinksEstablished=1, LinksTerminated=0, LinksLive=1, LinksFailed=0, BytesSent=1500,
                               BytesReceived=5000, Responses=1, ResponseTimeMin=2, ResponseTimeMax=2,
                               ResponseTimeSum=2)
    assert metrics(r1) == dict(LinksEstablished=0, LinksTerminated=0, LinksLive=1, LinksFailed=0, BytesSent=1500,
                               BytesReceived=4000, Responses=1, ResponseTimeMin=4, ResponseTimeMax=4,
                               ResponseTimeSum=4)
    assert metrics(r2) == dict(LinksEstablished=0, LinksTerminated=1, LinksLive=0, LinksFailed=0, BytesSent=100,
                               BytesReceived=100, Responses=1, ResponseTimeMin=1, ResponseTimeMax=1,
                               ResponseTimeSum=1)
    p = pool_id(MACHINE, CURL.exe, CURL.cmdline)
    assert r0 == dict(r0, Direction="outbound", SourceIp=LOCAL, DestinationIp="10.0.0.9", DestinationPort=443,
                      RemoteIp="10.0.0.9", Protocol="tcp", Process=p, ProcessName="curl", Machine=MACHINE,
                      Computer=HOST, AgentId=AGENT, ConnectionId=f"U({LOCAL}-10.0.0.9:443)/{p}")


def test_responses_are_the_exchanges_the_collector_counted_never_guessed_from_bytes_or_rtt():
    """Issue 12: an RTT and both byte counters growing were taken for one response of RTT ms."""
    a = started(agg())
    c = lambda **kw: sock(LOCAL, 40000, "10.0.0.9", 443, 1, **kw)    # noqa: E731
    a.observe(T0 + 5, [c(sent=10, recv=0, rtt_us=3000)], {10001: CURL})
    a.observe(T0 + 20, [c(sent=20, recv=50, rtt_us=3000)], {10001: CURL})         # both grew: no exchange counted
    (r,) = a.flush(T0 + 60)["VMConnection"]
    assert r["Responses"] == 0 and "ResponseTimeSum" not in r and "ResponseTimeMin" not in r
    a.observe(T0 + 65, [c(sent=30, recv=95, resp=2, rt_us=25_200, rt_min=12_000, rt_max=13_200)], {10001: CURL})
    a.observe(T0 + 80, [c(sent=40, recv=99, resp=3, rt_us=45_200, rt_min=12_000, rt_max=20_000)], {10001: CURL})
    (r,) = a.flush(T0 + 120)["VMConnection"]
    assert (r["Responses"], r["ResponseTimeMin"], r["ResponseTimeMax"], r["ResponseTimeSum"]) == (3, 12, 20, 45)


def test_baseline_dump_is_live_not_established_and_sets_byte_counters():
    a = agg()
    c = lambda **kw: sock(LOCAL, 40000, "10.0.0.9", 443, 1, **kw)    # noqa: E731
    a.observe(T0 + 5, [c(sent=10**9, recv=10**9)], {10001: CURL})                 # agent starts: history
    a.observe(T0 + 65, [c(sent=10**9 + 7, recv=10**9)], {10001: CURL})
    r0, r1 = a.flush(T0 + 120)["VMConnection"]
    assert metrics(r0) == dict(LinksEstablished=0, LinksTerminated=0, LinksLive=1, LinksFailed=0, BytesSent=0,
                               BytesReceived=0, Responses=0)
    assert (r1["LinksLive"], r1["BytesSent"], r1["BytesReceived"]) == (1, 7, 0)


def test_hundred_short_lived_connections_seen_only_as_close_events():
    a = started(agg())
    lst = listener("0.0.0.0", 8080, 900)
    a.observe(T0 + 1, [lst], {lst.inode: JAVA})
    # outbound: the runner knew each socket's inode (replace(sock, inode=...)) and its owner
    out = [sock(LOCAL, 50000 + i, "10.0.0.9", 5432, 1000 + i, state=TCP_CLOSE, sent=10, recv=20 + i,
                rtt_us=1000, segs_in=4, resp=1, rt_us=1000) for i in range(100)]
    a.closed(T0 + 30, out, {s.inode: JAVA for s in out})
    # inbound, as the kernel sends them (inode 0): the listener's process accepted them
    inbound = [sock(LOCAL, 8080, f"10.0.1.{i % 4}", 60000 + i, 2000 + i, state=TCP_CLOSE, inode=0, sent=100,
                    recv=1, segs_in=3) for i in range(100)]
    a.closed(T0 + 31, inbound, {})
    recs = a.flush(T0 + 60)
    conns = recs["VMConnection"]
    (o,) = [r for r in conns if r["Direction"] == "outbound"]
    assert metrics(o) == dict(LinksEstablished=100, LinksTerminated=100, LinksLive=0, LinksFailed=0,
                              BytesSent=1000, BytesReceived=sum(20 + i for i in range(100)), Responses=100,
                              ResponseTimeMin=1, ResponseTimeMax=1, ResponseTimeSum=100)
    ins = sorted((r for r in conns if r["Direction"] == "inbound"), key=lambda r: r["SourceIp"])
    java = pool_id(MACHINE, JAVA.exe, JAVA.cmdline)
    assert [(r["SourceIp"], r["DestinationIp"], r["DestinationPort"], r["Process"], r["LinksEstablished"],
             r["LinksTerminated"], r["BytesSent"]) for r in ins] == [
        (f"10.0.1.{k}", LOCAL, 8080, java, 25, 25, 2500) for k in range(4)]
    (port,) = [p for p in recs["VMBoundPort"] if p["Port"] == 8080]
    assert (port["Ip"], port["IsWildcardBind"], port["LinksEstablished"], port["LinksTerminated"],
            port["BytesSent"], port["BytesReceived"]) == (LOCAL, True, 100, 100, 10_000, 100)
    assert a.unowned == 0
    # a second close event for the same cookies changes nothing
    a.closed(T0 + 70, out, {s.inode: JAVA for s in out})
    assert a.flush(T0 + 120)["VMConnection"] == []


def test_close_events_of_listeners_and_unowned_outbound_sockets_are_not_connections():
    a = started(agg())
    lst = listener("0.0.0.0", 8080, 900)
    a.observe(T0 + 1, [lst], {lst.inode: JAVA})
    a.closed(T0 + 2, [sock("0.0.0.0", 8080, "0.0.0.0", 0, 900, state=TCP_CLOSE, inode=0)], {})
    a.closed(T0 + 3, [sock(LOCAL, 50000, "10.0.0.9", 443, 5, state=TCP_CLOSE, inode=0, sent=5, recv=5)], {})
    assert a.flush(T0 + 60)["VMConnection"] == []
    assert a.unowned == 1


def test_failed_connects():
    a = started(agg())
    syn = lambda cookie, port: sock(LOCAL, 41000 + cookie, "10.0.0.9", port, cookie, state=TCP_SYN_SENT)  # noqa: E731
    own = {10000 + c: CURL for c in range(1, 10)}
    # 1: seen in SYN_SENT, then gone from the next dump
    # 2: seen in SYN_SENT, then a close event: CLOSE, nothing received but a RST
    # 3: seen in SYN_SENT, then established (not a failure), then closed normally
    # 4: never seen, a close event in SYN_SENT (a collector reporting the last state)
    # 5: never seen, a close event with the kernel's CLOSE, no bytes, no segment in (timeout)
    # 6: never seen, closed with traffic: established and terminated, not failed
    a.observe(T0 + 5, [syn(1, 443), syn(2, 443), syn(3, 443)], own)
    a.closed(T0 + 8, [closing(syn(2, 443), segs_in=1)], {})
    a.observe(T0 + 10, [sock(LOCAL, 41003, "10.0.0.9", 443, 3, sent=5, recv=7)], own)
    a.closed(T0 + 20, [closing(sock(LOCAL, 41003, "10.0.0.9", 443, 3, sent=5, recv=7))], {})
    a.closed(T0 + 21, [sock(LOCAL, 41004, "10.0.0.9", 443, 4, state=TCP_SYN_SENT, inode=10004),
                       sock(LOCAL, 41005, "10.0.0.9", 443, 5, state=TCP_CLOSE, inode=10005),
                       sock(LOCAL, 41006, "10.0.0.9", 443, 6, state=TCP_CLOSE, inode=10006, sent=1, recv=1,
                            segs_in=4)], own)
    (r,) = a.flush(T0 + 60)["VMConnection"]
    assert (r["LinksFailed"], r["LinksEstablished"], r["LinksTerminated"], r["LinksLive"]) == (4, 2, 2, 0)


def test_pending_connect_established_on_next_poll_is_not_failed():
    a = started(agg())
    a.observe(T0 + 5, [sock(LOCAL, 41000, "10.0.0.9", 443, 1, state=TCP_SYN_SENT)], {10001: CURL})
    a.observe(T0 + 65, [sock(LOCAL, 41000, "10.0.0.9", 443, 1, sent=3, recv=4)], {10001: CURL})
    a.observe(T0 + 70, [], {})
    (r,) = a.flush(T0 + 120)["VMConnection"]    # window 0 had a pending connect only: no record
    assert r["TimeGenerated"] == W[1]
    assert (r["LinksEstablished"], r["LinksTerminated"], r["LinksFailed"], r["BytesSent"]) == (1, 1, 0, 3)


def test_dump_notices_a_close_first_then_the_close_event_adds_only_bytes():
    a = started(agg())
    c = sock(LOCAL, 40000, "10.0.0.9", 443, 1, sent=100, recv=100)
    a.observe(T0 + 5, [c], {10001: CURL})
    a.observe(T0 + 20, [], {})                                                  # gone: terminated
    a.closed(T0 + 21, [closing(c, sent=150, recv=160)], {})                     # late event: bytes only
    a.observe(T0 + 30, [sock(LOCAL, 40000, "10.0.0.9", 443, 1, state=TCP_TIME_WAIT, inode=0)], {})
    (r,) = a.flush(T0 + 60)["VMConnection"]
    assert metrics(r)["LinksEstablished"] == 1 and metrics(r)["LinksTerminated"] == 1
    assert (r["BytesSent"], r["BytesReceived"], r["LinksLive"]) == (150, 160, 0)


def test_time_wait_in_a_dump_terminates_a_tracked_connection():
    a = started(agg())
    a.observe(T0 + 5, [sock(LOCAL, 40000, "10.0.0.9", 443, 1, sent=1, recv=1)], {10001: CURL})
    a.observe(T0 + 65, [sock(LOCAL, 40000, "10.0.0.9", 443, 1, state=TCP_TIME_WAIT, inode=0)], {})
    r0, r1 = a.flush(T0 + 120)["VMConnection"]
    assert (r0["LinksLive"], r1["LinksLive"], r1["LinksTerminated"], r1["BytesSent"]) == (1, 0, 1, 0)


def test_windows_without_any_call_get_live_links_up_to_a_limit():
    a = started(agg())
    c = sock(LOCAL, 40000, "10.0.0.9", 443, 1, sent=1, recv=1)
    a.observe(T0 + 5, [c], {10001: CURL})
    a.observe(T0 + 250, [c], {10001: CURL})                                     # nothing in windows 1-3
    recs = a.flush(T0 + 300)["VMConnection"]
    assert [(r["TimeGenerated"], r["LinksLive"], r["LinksEstablished"]) for r in recs] == [
        (W[0], 1, 1), (W[1], 1, 0), (W[2], 1, 0), (W[3], 1, 0), (iso(T0 + 240), 1, 0)]
    a.observe(T0 + 300 + 60 * 20, [c], {10001: CURL})                            # a 20-minute stall
    assert len(a.flush(T0 + 300 + 60 * 21)["VMConnection"]) == 1 + 10 + 1
    assert a.overflow["gap_windows"] == 9


def test_time_going_backwards_is_clamped():
    a = started(agg())
    c = sock(LOCAL, 40000, "10.0.0.9", 443, 1, sent=5, recv=5)
    a.observe(T0 + 70, [c], {10001: CURL})
    a.observe(T0 + 30, [sock(LOCAL, 40000, "10.0.0.9", 443, 1, sent=9, recv=5)], {10001: CURL})
    recs = a.flush(T0 + 120)["VMConnection"]
    assert [(r["TimeGenerated"], r["BytesSent"]) for r in recs] == [(W[1], 9)]


# ---- direction ------------------------------------------------------------------------------------

def test_inbound_and_outbound_with_wildcard_and_specific_listeners():
    a = started(agg())
    lsn = [listener("0.0.0.0", 80, 901), listener(LOCAL, 22, 902), listener("127.0.0.1", 5432, 903)]
    conns = [
        sock(LOCAL, 80, "203.0.113.7", 51000, 1, sent=900, recv=100),            # to the wildcard :80
        sock("10.0.0.6", 80, "203.0.113.8", 51001, 2, sent=1, recv=1),           # a second local address
        sock(LOCAL, 22, "10.9.9.9", 52000, 3, sent=1, recv=1),                   # to the specific :22
        sock("127.0.0.1", 5432, "127.0.0.1", 45000, 4, sent=7, recv=3),          # loopback, server end
        sock("127.0.0.1", 45000, "127.0.0.1", 5432, 5, sent=3, recv=7),          # loopback, client end
        sock(LOCAL, 45001, "10.0.0.9", 5432, 6, sent=1, recv=1),                 # :5432 elsewhere: outbound
    ]
    owners = {901: NGINX, 902: SSHD, 903: PG, 10001: NGINX, 10002: NGINX, 10003: SSHD, 10004: PG,
              10005: JAVA, 10006: JAVA}
    owners = {s.inode: owners[s.inode] for s in lsn + conns}
    a.observe(T0 + 5, lsn + conns, owners)
    recs = a.flush(T0 + 60)["VMConnection"]
    got = sorted((r["Direction"], r["ProcessName"], r["SourceIp"], r["DestinationIp"], r["DestinationPort"],
                  r["RemoteIp"]) for r in recs)
    assert got == sorted([
        ("inbound", "nginx", "203.0.113.7", LOCAL, 80, "203.0.113.7"),
        ("inbound", "nginx", "203.0.113.8", "10.0.0.6", 80, "203.0.113.8"),
        ("inbound", "sshd", "10.9.9.9", LOCAL, 22, "10.9.9.9"),
        ("inbound", "postgres", "127.0.0.1", "127.0.0.1", 5432, "127.0.0.1"),
        ("outbound", "java", "127.0.0.1", "127.0.0.1", 5432, "127.0.0.1"),
        ("outbound", "java", LOCAL, "10.0.0.9", 5432, "10.0.0.9"),
    ])
    nginx = next(r for r in recs if r["SourceIp"] == "203.0.113.7")
    assert (nginx["BytesSent"], nginx["BytesReceived"]) == (900, 100)         # as the local socket counts them
    assert nginx["ConnectionId"] == f"U(203.0.113.7-{LOCAL}:80)/{nginx['Process']}"


def test_ipv6():
    a = started(agg())
    lst = listener("::", 443, 901)
    conns = [sock("2001:db8::5", 443, "2001:db8::99", 50000, 1, sent=10, recv=20),
             sock(LOCAL, 443, "198.51.100.1", 50001, 2, sent=30, recv=40),       # IPv4 to the dual-stack ::
             sock("2001:db8::5", 50002, "2606:4700::1111", 443, 3, sent=1, recv=2)]
    a.observe(T0 + 5, [lst, *conns], {901: NGINX, 10001: NGINX, 10002: NGINX, 10003: CURL})
    recs = a.flush(T0 + 60)
    c = {r["RemoteIp"]: r for r in recs["VMConnection"]}
    nginx = pool_id(MACHINE, NGINX.exe, NGINX.cmdline)
    curl = pool_id(MACHINE, CURL.exe, CURL.cmdline)
    assert c["2001:db8::99"]["Direction"] == "inbound"
    assert c["2001:db8::99"]["ConnectionId"] == f"U([2001:db8::99]-[2001:db8::5]:443)/{nginx}"
    assert c["198.51.100.1"]["Direction"] == "inbound"
    out = c["2606:4700::1111"]
    assert (out["Direction"], out["SourceIp"], out["DestinationIp"], out["DestinationPort"]) == (
        "outbound", "2001:db8::5", "2606:4700::1111", 443)
    assert out["ConnectionId"] == f"U([2001:db8::5]-[2606:4700::1111]:443)/{curl}"
    ports = {(p["Ip"], p["IsWildcardBind"], p["PortId"], p["BytesSent"]) for p in recs["VMBoundPort"]}
    assert ports == {("2001:db8::5", True, f"{MACHINE}/{nginx}/[2001:db8::5]:443/tcp", 10),
                     (LOCAL, True, f"{MACHINE}/{nginx}/{LOCAL}:443/tcp", 30)}


# ---- bound ports ----------------------------------------------------------------------------------

def test_wildcard_bind_reporting_rules():
    a = agg()
    lsn = [listener("0.0.0.0", 8080, 901), listener("127.0.0.1", 8005, 902), listener(LOCAL, 9000, 903)]
    own = {901: JAVA, 902: JAVA, 903: JAVA}
    java = pool_id(MACHINE, JAVA.exe, JAVA.cmdline)
    a.observe(T0 + 5, lsn, own)                                     # window 0: every port first seen, idle
    w0 = a.flush(T0 + 60)["VMBoundPort"]
    assert [(p["Ip"], p["Port"], p["IsWildcardBind"], p["PortId"], p["LinksLive"], p["BytesSent"]) for p in w0] == [
        ("0.0.0.0", 8080, True, f"{MACHINE}/{java}/0.0.0.0:8080/tcp", 0, 0),
        ("10.0.0.5", 9000, False, f"{MACHINE}/{java}/10.0.0.5:9000/tcp", 0, 0),
        ("127.0.0.1", 8005, False, f"{MACHINE}/{java}/127.0.0.1:8005/tcp", 0, 0),
    ]
    assert all(p["Process"] == java and p["ProcessName"] == "java" and p["Protocol"] == "tcp" for p in w0)
    # window 1: traffic to :8080 through two local addresses, and to the specific :9000
    conns = [sock(LOCAL, 8080, "10.1.1.1", 50000, 1, sent=100, recv=10, resp=1, rt_us=5000),
             sock(LOCAL, 8080, "10.1.1.2", 50001, 2, sent=200, recv=20, resp=1, rt_us=1000),
             sock("127.0.0.1", 8080, "127.0.0.1", 50002, 3, sent=7, recv=7),
             sock(LOCAL, 9000, "10.1.1.3", 50003, 4, sent=1, recv=1)]
    a.observe(T0 + 65, lsn + conns, {**own, **{s.inode: JAVA for s in conns}})
    w1 = a.flush(T0 + 120)["VMBoundPort"]
    assert [(p["Ip"], p["Port"], p["IsWildcardBind"], p["LinksEstablished"], p["LinksLive"], p["BytesSent"],
             p["BytesReceived"], p["Responses"], p.get("ResponseTimeMin"), p.get("ResponseTimeMax"),
             p.get("ResponseTimeSum")) for p in w1] == [
        (LOCAL, 8080, True, 2, 2, 300, 30, 2, 1, 5, 6),        # no 0.0.0.0 record: a specific one exists
        (LOCAL, 9000, False, 1, 1, 1, 1, 0, None, None, None),       # no rtt reported: no response
        ("127.0.0.1", 8080, True, 1, 1, 7, 7, 0, None, None, None),     # 8005: idle, reported less than an hour ago
    ]
    assert "LinksFailed" not in w1[0]
    # window 2: the connections closed; the terminations are the last traffic records
    a.observe(T0 + 125, lsn, own)
    w2 = a.flush(T0 + 180)["VMBoundPort"]
    assert sorted((p["Ip"], p["Port"], p["LinksTerminated"], p["LinksLive"]) for p in w2) == [
        ("10.0.0.5", 8080, 2, 0), ("10.0.0.5", 9000, 1, 0), ("127.0.0.1", 8080, 1, 0)]
    # an hour after the last record of each port: idle records again, the wildcard as itself
    for t in (T0 + 3605, T0 + 3665, T0 + 3725):
        a.observe(t, lsn, own)
    idle = a.flush(T0 + 3780)["VMBoundPort"]
    assert [(p["TimeGenerated"], p["Ip"], p["Port"], p["IsWildcardBind"]) for p in idle] == [
        (iso(T0 + 3600), "127.0.0.1", 8005, False),           # last record in window 0
        (iso(T0 + 3720), "0.0.0.0", 8080, True),              # last records in window 2
        (iso(T0 + 3720), "10.0.0.5", 9000, False),
    ]


def test_idle_ports_every_minute_when_asked():
    a = agg(idle_port_interval=60)
    lsn = [listener("0.0.0.0", 22, 901)]
    for k in range(3):
        a.observe(T0 + 5 + 60 * k, lsn, {901: SSHD})
    assert [p["TimeGenerated"] for p in a.flush(T0 + 180)["VMBoundPort"]] == W[:3]


def test_a_port_that_stops_listening_gets_no_more_records():
    a = agg(idle_port_interval=60)
    a.observe(T0 + 5, [listener("0.0.0.0", 22, 901)], {901: SSHD})
    a.observe(T0 + 65, [], {})
    assert [p["TimeGenerated"] for p in a.flush(T0 + 180)["VMBoundPort"]] == W[:1]


# ---- processes ----------------------------------------------------------------------------------

def test_process_pool_ids_are_stable_across_aggregators():
    def run():
        a = agg()
        workers = [proc(310, JAVA.exe, JAVA.cmdline, start=T0 - 50), proc(305, JAVA.exe, JAVA.cmdline, start=T0 - 90)]
        lsn = [listener("0.0.0.0", 8080, 901)]
        conns = [sock(LOCAL, 8080, "10.1.1.1", 50000, 1, inode=801), sock(LOCAL, 8080, "10.1.1.2", 50001, 2, inode=802)]
        a.observe(T0 + 5, lsn + conns, {901: workers[0], 801: workers[0], 802: workers[1]})
        return a.flush(T0 + 60)

    one, two = run(), run()
    assert one == two
    (p,) = one["VMProcess"]
    assert re.fullmatch(r"p-[0-9a-f]{12}", p["Process"])
    assert p["Process"] == pool_id(MACHINE, JAVA.exe, JAVA.cmdline)
    assert (p["FirstPid"], p["StartTime"], p["TimeGenerated"]) == (305, iso(T0 - 90), iso(T0 + 5))
    assert {r["Process"] for r in one["VMConnection"]} == {p["Process"]}
    assert pool_id(MACHINE, JAVA.exe, "java -jar other.jar") != p["Process"]
    assert pool_id("m-00000000-0000-0000-0000-000000000000", JAVA.exe, JAVA.cmdline) != p["Process"]


def test_process_records_columns():
    a = agg(versions={"/usr/bin/java": ("OpenJDK", "17.0.9")})
    lst = listener("0.0.0.0", 8080, 901)
    a.observe(T0 + 5, [lst], {901: JAVA})
    out = a.flush(T0 + 60)
    (vm,), (sm,) = out["VMProcess"], out["ServiceMapProcess_CL"]
    pid = pool_id(MACHINE, JAVA.exe, JAVA.cmdline)
    assert vm == dict(TimeGenerated=iso(T0 + 5), AgentId=AGENT, Computer=HOST, Machine=MACHINE, Process=pid,
                      ExecutableName="java", DisplayName="java", ExecutablePath="/usr/bin/java",
                      CommandLine="java -jar app.jar", WorkingDirectory="/srv/app", UserName="app",
                      StartTime=iso(T0 - 1000), FirstPid=300, ProductName="OpenJDK", ProductVersion="17.0.9")
    assert sm == dict(TimeGenerated=iso(T0 + 5), Computer=HOST, ResourceId=f"{MACHINE}/{pid}", ResourceName_s=pid,
                      MachineResourceName_s=MACHINE, ExecutableName_s="java", StartTime_t=iso(T0 - 1000),
                      FirstPid_d=300.0, ProductName_s="OpenJDK", ProductVersion_s="17.0.9",
                      CommandLine_s="java -jar app.jar", ExecutablePath_s="/usr/bin/java",
                      WorkingDirectory_s="/srv/app", UserName="app")


def test_hourly_process_records():
    a = agg()
    lst = listener("0.0.0.0", 8080, 901)
    c = sock(LOCAL, 40000, "10.0.0.9", 443, 1, inode=802, sent=1, recv=1)
    a.process_started(T0 + 1, proc(600, "/usr/bin/sleep", "sleep 1000"))          # never uses TCP: no records
    a.observe(T0 + 5, [lst, c], {901: JAVA, 802: CURL})
    a.observe(T0 + 100, [lst], {901: JAVA})                                      # curl's connection closed
    t = T0 + 100
    while t < T0 + 3 * 3600:                                                    # java listens all along
        t += 30
        a.observe(t, [lst], {901: JAVA})
    out = a.flush(t + 60)
    times = {}
    for r in out["VMProcess"]:
        times.setdefault(r["ExecutableName"], []).append(r["TimeGenerated"])
    # java: at first sight, then each hour; curl: first sight, one hourly record (its connection was
    # open until T0 + 100, in that hour), then nothing (idle of TCP)
    assert times == {"java": [iso(T0 + 5), iso(T0 + 3605), iso(T0 + 7205), iso(T0 + 10805)],
                     "curl": [iso(T0 + 5), iso(T0 + 3605)]}
    assert [r["TimeGenerated"] for r in out["ServiceMapProcess_CL"]] == sorted(
        times["java"] + times["curl"])
    # curl connects again: a fresh record at that time
    a.observe(t + 70, [lst, sock(LOCAL, 40001, "10.0.0.9", 443, 2, inode=803)], {901: JAVA, 803: CURL})
    assert [(r["ExecutableName"], r["TimeGenerated"]) for r in a.flush(t + 200)["VMProcess"]] == [
        ("curl", iso(t + 70))]


def test_pool_restart_gets_a_new_start_record_with_its_new_first_pid():
    a = agg()
    lst = listener("0.0.0.0", 8080, 901)
    old = proc(300, JAVA.exe, JAVA.cmdline, start=T0 - 500)
    a.observe(T0 + 5, [lst], {901: old})
    a.process_exited(T0 + 30, 300)
    new = proc(4000, JAVA.exe, JAVA.cmdline, start=T0 + 40)
    a.process_started(T0 + 40, new)
    a.process_started(T0 + 41, proc(3999, JAVA.exe, JAVA.cmdline, start=T0 + 41))   # a worker
    a.observe(T0 + 45, [lst], {901: new})
    recs = a.flush(T0 + 60)["VMProcess"]
    assert [(r["TimeGenerated"], r["FirstPid"], r["StartTime"]) for r in recs] == [
        (iso(T0 + 5), 300, iso(T0 - 500)), (iso(T0 + 45), 3999, iso(T0 + 40))]
    assert recs[0]["Process"] == recs[1]["Process"]


def test_inventory_records_wait_for_their_window_to_end():
    a = agg()
    a.observe(T0 + 5, [listener("0.0.0.0", 22, 901)], {901: SSHD})
    assert a.flush(T0 + 30)["VMProcess"] == []
    assert len(a.flush(T0 + 60)["VMProcess"]) == 1


# ---- caps and exclusions ----------------------------------------------------------------------------

def test_connection_cap_and_overflow():
    a = started(agg(max_connections=3))
    conns = [sock(LOCAL, 40000 + i, "10.0.0.9", 443, i + 1, sent=1, recv=1) for i in range(5)]
    own = {s.inode: CURL for s in conns}
    a.observe(T0 + 5, conns, own)
    a.observe(T0 + 20, conns, own)                                      # the same two refused again
    assert a.overflow["connections"] == 2
    a.closed(T0 + 25, [closing(conns[4])], {})                          # refused: ignored
    (r,) = a.flush(T0 + 60)["VMConnection"]
    assert (r["LinksEstablished"], r["LinksLive"], r["LinksTerminated"]) == (3, 3, 0)
    assert a.overflow["connections"] == 2


def test_logical_keys_per_window_are_capped():
    a = started(agg(max_connections=2))
    out = [sock(LOCAL, 50000 + i, f"10.0.0.{i}", 443, 100 + i, state=TCP_CLOSE, sent=1, recv=1, segs_in=3)
           for i in range(4)]
    a.closed(T0 + 5, out, {s.inode: CURL for s in out})
    assert len(a.flush(T0 + 60)["VMConnection"]) == 2
    assert a.overflow["connections"] == 2


def test_process_cap_and_overflow():
    a = started(agg(max_processes=2))
    procs = [proc(700 + i, f"/usr/bin/tool{i}") for i in range(3)]
    conns = [sock(LOCAL, 40000 + i, "10.0.0.9", 443, i + 1, sent=1, recv=1) for i in range(3)]
    a.observe(T0 + 5, conns, {s.inode: p for s, p in zip(conns, procs)})
    assert a.overflow["processes"] >= 1
    out = a.flush(T0 + 60)
    assert len(out["VMProcess"]) == 2
    # the process over the cap still has its deterministic id on its connections
    assert {r["Process"] for r in out["VMConnection"]} == {pool_id(MACHINE, p.exe, p.cmdline) for p in procs}


def test_exclusions():
    a = agg(exclude_processes={"System", "sshd"}, exclude_loopback=True)
    lsn = [listener("0.0.0.0", 22, 901), listener("127.0.0.1", 5432, 902), listener("::1", 6379, 903)]
    conns = [sock(LOCAL, 22, "10.9.9.9", 52000, 1, sent=5, recv=5),                  # sshd: excluded
             sock("127.0.0.1", 5432, "127.0.0.1", 45000, 2, sent=5, recv=5),         # loopback
             sock("127.0.0.1", 45000, "127.0.0.1", 5432, 3, sent=5, recv=5),
             sock("::1", 6379, "::1", 45001, 4, sent=5, recv=5),
             sock(LOCAL, 45002, "10.0.0.9", 5432, 5, sent=5, recv=5)]                # kept
    owners = {901: SSHD, 902: PG, 903: PG, 10001: SSHD, 10002: PG, 10003: JAVA, 10004: PG, 10005: JAVA}
    a.observe(T0 + 5, lsn, {k: v for k, v in owners.items() if k < 10000})
    a.observe(T0 + 10, lsn + conns, owners)
    a.closed(T0 + 15, [sock(LOCAL, 22, "10.9.9.8", 52001, 9, state=TCP_CLOSE, inode=0, sent=1, recv=1)], {})
    out = a.flush(T0 + 60)
    assert [(r["ProcessName"], r["DestinationIp"]) for r in out["VMConnection"]] == [("java", "10.0.0.9")]
    assert {p["ProcessName"] for p in out["VMBoundPort"]} == {"postgres"}            # loopback ports stay
    assert {p["ExecutableName"] for p in out["VMProcess"]} == {"postgres", "java"}
    a2 = agg()
    sysproc = proc(4, "", "", name="System")
    lst = listener("0.0.0.0", 445, 904)
    a2.observe(T0 + 5, [lst], {904: sysproc})
    assert all(v == [] for v in a2.flush(T0 + 60).values())


# ---- DNS names ------------------------------------------------------------------------------------

class KnownNames:
    """A ``names`` hook: fixed answers, and every question it was asked."""

    def __init__(self, known: dict[str, tuple[list[str], list[str]]]):
        self.known, self.asked = known, []

    def __call__(self, ip: str, now: float) -> tuple[list[str], list[str]]:
        self.asked.append((ip, now))
        return self.known.get(ip, ([], []))


def test_outbound_records_get_the_dns_names_known_for_their_remote_address():
    names = KnownNames({"93.184.216.34": (["example.com", "www.example.com"], ["example.com"]),
                        "198.51.100.7": (["client.example"], ["client.example"])})
    a = started(agg(names=names))
    lsn = listener("0.0.0.0", 80, 1)
    named = sock(LOCAL, 41000, "93.184.216.34", 443, 10, sent=100, recv=200)
    unnamed = sock(LOCAL, 41001, "203.0.113.5", 443, 11, sent=1, recv=1)
    inbound = sock(LOCAL, 80, "198.51.100.7", 51000, 12, sent=5, recv=5)      # names known, but inbound
    a.observe(T0 + 10, [lsn, named, unnamed, inbound], {1: NGINX, **owned([inbound], NGINX),
                                                         **owned([named, unnamed], CURL)})
    assert names.asked == []                               # asked when the window's records are made
    records = {r["RemoteIp"]: r for r in a.flush(T0 + 65)["VMConnection"]}
    assert sorted(names.asked) == [("203.0.113.5", T0 + 65), ("93.184.216.34", T0 + 65)]
    assert records["93.184.216.34"]["RemoteDnsQuestions"] == '["example.com","www.example.com"]'
    assert records["93.184.216.34"]["RemoteDnsCanonicalNames"] == '["example.com"]'
    for ip in ("203.0.113.5", "198.51.100.7"):            # unknown: left out, so empty in the workspace
        assert "RemoteDnsQuestions" not in records[ip] and "RemoteDnsCanonicalNames" not in records[ip]


def test_names_learnt_during_a_long_connection_appear_from_the_next_record_on():
    from netatlas.agent.dns import Names, Resolution
    names = Names()
    a = started(agg(names=names.lookup))
    conn = sock(LOCAL, 41000, "192.0.2.80", 5432, 10, sent=10, recv=10)
    a.observe(T0 + 10, [conn], owned([conn], JAVA))
    first = a.flush(T0 + 65)["VMConnection"]
    names.learn(T0 + 70, [Resolution("192.0.2.80", "db.example", "db-1.example", 30)])
    for minute in range(1, 31):                         # it stays open half an hour, polled every minute
        a.observe(T0 + 60 * minute + 10, [sock(LOCAL, 41000, "192.0.2.80", 5432, 10, sent=10 + minute,
                                               recv=10)], owned([conn], JAVA))
    later = a.flush(T0 + 60 * 31)["VMConnection"]
    assert "RemoteDnsQuestions" not in first[0]
    assert [(r["TimeGenerated"], r["LinksLive"], r["RemoteDnsQuestions"], r["RemoteDnsCanonicalNames"])
            for r in later[:2]] == [(W[1], 1, '["db.example"]', '["db-1.example"]'),
                                    (W[2], 1, '["db.example"]', '["db-1.example"]')]
    # each minute's record asked, which kept the names (a TTL of 30 s, dns.KEEP 10 minutes) in use
    assert len(later) == 30 and all(r["RemoteDnsQuestions"] == '["db.example"]' for r in later)
    assert names.lookup("192.0.2.80", T0 + 60 * 31 + 601) == ([], [])     # unused for KEEP: gone


def test_without_a_names_hook_no_record_has_names():
    a = started(agg())
    conn = sock(LOCAL, 41000, "93.184.216.34", 443, 10, sent=10, recv=10)
    a.observe(T0 + 10, [conn], owned([conn], CURL))
    assert not [r for r in a.flush(T0 + 65)["VMConnection"] if "RemoteDnsQuestions" in r]


def test_the_seed_fqdn_queries_over_records_with_names():
    names = KnownNames({"93.184.216.34": (["example.com"], ["example.com"])})
    a = started(agg(names=names))
    conns = [sock(LOCAL, 41000 + i, "93.184.216.34", 443, 10 + i, sent=10, recv=10) for i in range(3)]
    other = sock(LOCAL, 42000, "203.0.113.5", 443, 20, sent=1, recv=1)
    a.observe(T0 + 10, conns + [other], {**owned(conns, CURL), **owned([other], JAVA)})
    ws = netatlas.connect()
    try:
        ws.ingest("VMConnection", a.flush(T0 + 65)["VMConnection"])
        by_fqdn = q(ws, 'VMConnection\n| where RemoteDnsQuestions != ""\n| summarize CountAll = count() by '
                        "RemoteDnsQuestions\n| project RemoteDnsQuestions, CountAll\n| order by CountAll desc")
        without = q(ws, 'VMConnection\n| where RemoteDnsQuestions == "" and (DestinationIp != "127.0.0.1" or '
                        'SourceIp != "127.0.0.1")\n| summarize CountAll = count() by Computer\n'
                        "| project Computer, CountAll")
        canonical = q(ws, "VMConnection | where isnotempty(RemoteDnsCanonicalNames) "
                          "| project tostring(parse_json(RemoteDnsCanonicalNames)[0])")
    finally:
        ws.close()
    assert by_fqdn == [['["example.com"]', 1]]             # one logical connection (three links)
    assert without == [[HOST, 1]]
    assert canonical == [["example.com"]]


# ---- machine ------------------------------------------------------------------------------------

INFO = MachineInfo(hostname="host", fqdn=HOST, ipv4=["10.0.0.5", "10.0.0.6"], ipv6=["2001:db8::5"],
                   macs=["00-0D-3A-1B-4C-2E"], dns_names=[HOST], os_family="Linux",
                   os_full_name="Debian GNU/Linux 12 (bookworm)", bitness="64-bit", cpus=4, cpu_speed_mhz=2600,
                   memory_mb=16384, boot_time=T0 - 86400, timezone="UTC", virtualization="virtual",
                   hypervisor="kvm")


def test_machine_records_and_tags():
    a = agg(agent_version="0.1.0")
    tags = {"AzureLocation": "westeurope", "AzureVmId": "0b7d5e3a-9c14-4f62-8a3b-e1d2c4f5a697",
            "AzureSubscriptionId": "not-a-guid", "team": "payments", "env": "prod"}
    recs = a.machine_records(T0 + 7, INFO, tags)
    assert set(recs) == {"VMComputer", "ServiceMapComputer_CL", "VMComputerTags_CL"}
    assert recs["VMComputerTags_CL"] == [dict(TimeGenerated=iso(T0 + 7), Computer=HOST, Machine=MACHINE,
                                              Tags=tags)]
    assert set(a.machine_records(T0 + 7, INFO, {})) == {"VMComputer", "ServiceMapComputer_CL"}
    (vm,), (sm,) = recs["VMComputer"], recs["ServiceMapComputer_CL"]
    assert vm["AzureLocation"] == "westeurope" and vm["AzureSubscriptionId"] == "not-a-guid"
    assert sm["AzureLocation_s"] == "westeurope" and "AzureSubscriptionId_g" not in sm
    assert sm["AzureVmId_g"] == tags["AzureVmId"]
    assert (sm["Ipv4Addresses_s"], sm["Ipv6Addresses_s"], sm["DnsNames_s"]) == (
        '["10.0.0.5","10.0.0.6"]', '["2001:db8::5"]', f'["{HOST}"]')
    assert (sm["ResourceId"], sm["ResourceName_s"], sm["ComputerName_s"], sm["Bitness_s"], sm["BootTime_t"]) == (
        MACHINE, MACHINE, HOST, "64bit", iso(T0 - 86400))
    assert (vm["Machine"], vm["AgentId"], vm["Ipv4Addresses"], vm["OperatingSystemFamily"],
            vm["DependencyAgentVersion"], vm["TimeGenerated"]) == (
        MACHINE, AGENT, ["10.0.0.5", "10.0.0.6"], "linux", "0.1.0", "2024-05-02T11:00:07Z")
    assert not any("payments" in str(v) for v in list(vm.values()) + list(sm.values()))


# ---- through a workspace -------------------------------------------------------------------------

def scenario() -> dict[str, list[dict]]:
    """A few minutes of a small host: every table, every rule above."""
    a = agg()
    lsn = [listener("0.0.0.0", 80, 901), listener(LOCAL, 22, 902), listener("127.0.0.1", 8005, 903),
           listener("::", 443, 904)]
    own = {901: NGINX, 902: SSHD, 903: JAVA, 904: NGINX}
    a.observe(T0 + 1, lsn, own)
    web = [sock(LOCAL, 80, f"203.0.113.{i}", 50000 + i, 10 + i, sent=1000 * i, recv=100, resp=1, rt_us=1500)
           for i in range(1, 4)]
    v6 = sock("2001:db8::5", 443, "2001:db8::99", 50100, 20, sent=10, recv=20, resp=1, rt_us=800)
    out = sock(LOCAL, 41000, "10.0.0.9", 5432, 30, sent=10, recv=10)
    syn = sock(LOCAL, 41001, "10.0.0.9", 5432, 31, state=TCP_SYN_SENT)
    conns = web + [v6, out, syn]
    owners = {**own, **{s.inode: NGINX for s in web + [v6]}, out.inode: JAVA, syn.inode: JAVA}
    a.observe(T0 + 10, lsn + conns, owners)
    a.observe(T0 + 70, lsn + web + [v6, sock(LOCAL, 41000, "10.0.0.9", 5432, 30, sent=50, recv=90,
                                            resp=1, rt_us=2000)], owners)   # syn vanished: failed
    short = [sock(LOCAL, 80, "198.51.100.7", 51000 + i, 40 + i, state=TCP_CLOSE, inode=0, sent=5, recv=5,
                  segs_in=3) for i in range(5)]
    a.closed(T0 + 75, short + [closing(web[0], sent=1500)], {})
    a.observe(T0 + 130, lsn + web[1:] + [v6], owners)
    records = a.flush(T0 + 180)
    records.update(a.machine_records(T0 + 1, INFO, {"HostingProvider": "hetzner"}))
    return records


@pytest.fixture(scope="module")
def workspace():
    ws = netatlas.connect()
    records = scenario()
    for table, rows in records.items():
        ws.ingest(table, rows)
    yield ws, records
    ws.close()


NOW = datetime.fromtimestamp(T0 + 600, timezone.utc)


def q(ws, text):
    return ws.query(text, now=NOW).rows


def test_ingest_round_trip_counts(workspace):
    ws, records = workspace
    for table, rows in records.items():
        assert rows, table
        assert q(ws, f"{table} | count") == [[len(rows)]]


def test_ingest_round_trip_link_counts(workspace):
    ws, _ = workspace
    rows = q(ws, "VMConnection | summarize Established=sum(LinksEstablished), Terminated=sum(LinksTerminated), "
                 "Failed=sum(LinksFailed), Sent=sum(BytesSent) by Direction | order by Direction asc")
    # inbound: 3 web + 1 v6 + 5 short-lived; web[0] closed (+ 5 short); outbound: one established and
    # gone from the last dump, one failed
    assert rows == [["inbound", 9, 6, 0, 1000 + 2000 + 3000 + 10 + 500 + 25],
                    ["outbound", 1, 1, 1, 50]]
    rows = q(ws, "VMConnection | where TimeGenerated == datetime(2024-05-02T11:02:00Z) "
                 "| summarize sum(LinksLive) by Direction | order by Direction asc")
    assert rows == [["inbound", 3], ["outbound", 0]]      # web[1:] and v6 open; the outbound one ended
    rt = q(ws, "VMConnection | where Responses > 0 | summarize sum(Responses), min(ResponseTimeMin), "
               "max(ResponseTimeMax)")
    assert rt == [[3 + 1 + 1, 1, 2]]     # web x3 (2 ms) and v6 (1 ms) at first sight, the outbound one (2 ms)


def test_ingest_round_trip_seed_port_queries(workspace):
    ws, _ = workspace
    bound = q(ws, "VMBoundPort\n| where TimeGenerated >= ago(24hr)\n| where Computer == 'host.example'\n"
                  "| distinct Port, ProcessName | order by Port asc")
    assert bound == [[22, "sshd"], [80, "nginx"], [443, "nginx"], [8005, "java"]]
    open_ports = q(ws, 'VMBoundPort\n| where Ip != "127.0.0.1"\n| summarize by Computer, Machine, Port, Protocol\n'
                       "| summarize OpenPorts=count() by Computer, Machine\n| order by OpenPorts desc")
    assert open_ports == [[HOST, MACHINE, 3]]
    per_port = q(ws, 'VMBoundPort\n| where Ip != "127.0.0.1"\n| summarize BytesSent=sum(BytesSent), '
                     "LinksEstablished=sum(LinksEstablished), arg_max(TimeGenerated, LinksLive) by Ip, Port, "
                     "IsWildcardBind | project-away TimeGenerated | order by Port asc, Ip asc")
    # :80 and :443 had traffic in their first minute: no record with the wildcard address
    assert per_port == [
        [LOCAL, 22, False, 0, 0, 0],
        [LOCAL, 80, True, 6000 + 500 + 25, 8, 2],
        ["2001:db8::5", 443, True, 10, 1, 1],
    ]


def test_ingest_round_trip_inventory(workspace):
    ws, _ = workspace
    procs = q(ws, f'ServiceMapProcess_CL | where MachineResourceName_s == "{MACHINE}" '
                  "| summarize arg_max(TimeGenerated, *) by ResourceId | project ExecutableName_s, FirstPid_d "
                  "| order by ExecutableName_s asc")
    assert procs == [["java", 300.0], ["nginx", 100.0], ["sshd", 400.0]]
    assert q(ws, "VMProcess | distinct DisplayName | order by DisplayName asc") == [["java"], ["nginx"], ["sshd"]]
    machines = q(ws, "ServiceMapComputer_CL | summarize arg_max(TimeGenerated, *) by ResourceId "
                     "| project ComputerName_s, OperatingSystemFullName_s, DnsNames_s, Ipv4Addresses_s")
    assert machines == [[HOST, INFO.os_full_name, f'["{HOST}"]', '["10.0.0.5","10.0.0.6"]']]
    vm = q(ws, "VMComputer | project HostingProvider, Ipv4Addresses, BootTime")
    assert vm == [["hetzner", ["10.0.0.5", "10.0.0.6"], datetime.fromtimestamp(T0 - 86400, timezone.utc)]]
    # the outbound join key of the seed's dependency query finds the port records
    joined = q(ws, "VMConnection | where Direction == 'inbound' | summarize by Machine, DestinationIp, "
                   "DestinationPort | join kind=inner (VMBoundPort | summarize by Machine, Ip, Port) "
                   "on $left.DestinationIp == $right.Ip, $left.DestinationPort == $right.Port | count")
    assert joined == [[2]]
