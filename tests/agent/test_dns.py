"""dns.py: DNS answers captured from dnsmasq (fixtures/dns-answers.bin), messages built by dnslib (an
independent encoder), hand-made malformed ones, the bounded cache, and the kernel filter on the
real kernel (in a network namespace of the test's own)."""
from __future__ import annotations

import logging
import random
import socket
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from dnslib import AAAA, CLASS, CNAME, QTYPE, RCODE, RR, TXT, A, DNSHeader, DNSQuestion, DNSRecord

from netatlas.agent import collect, dns
from netatlas.agent.collect import Collector
from netatlas.agent.config import AgentConfig
from netatlas.agent.dns import DnsFormatError, Names, Resolution, parse_answer, resolutions, udp_payload
from netatlas.agent.netlink import in_netns

FIXTURES = Path(__file__).parent / "fixtures"


def frames(data: bytes) -> list[bytes]:
    """The packets of dns-answers.bin: each a 4-byte big-endian length, then the bytes."""
    out, off = [], 0
    while off < len(data):
        n, = struct.unpack_from(">I", data, off)
        out.append(data[off + 4:off + 4 + n])
        off += 4 + n
    return out


CAPTURED = frames((FIXTURES / "dns-answers.bin").read_bytes())


def ipv4(payload: bytes, sport: int = 53, proto: int = socket.IPPROTO_UDP, frag: int = 0, ihl: int = 5) -> bytes:
    """An IPv4 packet carrying a UDP datagram (checksums left zero: nothing checks them)."""
    udp = struct.pack(">HHHH", sport, 40000, 8 + len(payload), 0) + payload
    options = b"\x01" * (4 * ihl - 20)                       # NOPs
    return struct.pack(">BBHHHBBH4s4s", 0x40 | ihl, 0, 4 * ihl + len(udp), 1, frag, 64, proto, 0,
                       bytes([192, 0, 2, 53]), bytes([192, 0, 2, 1])) + options + udp


def ipv6(payload: bytes, sport: int = 53, nxt: int = socket.IPPROTO_UDP) -> bytes:
    udp = struct.pack(">HHHH", sport, 40000, 8 + len(payload), 0) + payload
    return struct.pack(">IHBB16s16s", 0x60000000, len(udp), nxt, 64, socket.inet_pton(socket.AF_INET6, "2001:db8::53"),
                       socket.inet_pton(socket.AF_INET6, "2001:db8::1")) + udp


def answer(*questions: str, rrs=(), rcode: int = RCODE.NOERROR, qr: int = 1) -> bytes:
    """A DNS message built by dnslib: the questions (type A) and answer records ``rrs``."""
    r = DNSRecord(DNSHeader(id=7, qr=qr, aa=1, ra=1, rcode=rcode))
    for q in questions:
        r.add_question(DNSQuestion(q))
    for rr in rrs:
        r.add_answer(rr)
    return r.pack()


def res(address, question, canonical=None, ttl=300):
    return Resolution(address, question, canonical or question, ttl)


# ---- captured answers -------------------------------------------------------------------------

def test_captured_dnsmasq_answers():
    """The answers of capture.py's questions, in order (fixtures/README.md)."""
    got = [resolutions([p]) for p in CAPTURED]
    assert got == [
        [res("10.0.0.10", "api.netatlas.test")],                               # A
        [res("2001:db8::10", "api.netatlas.test")],                            # AAAA, over IPv6
        [res("10.0.0.20", "www.netatlas.test", "web.netatlas.test")],          # CNAME -> CNAME -> A
        [res("2001:db8::20", "alias.netatlas.test", "web.netatlas.test")],     # Alias.NetAtlas.TEST: lowercased
        [res("10.0.0.32", "multi.netatlas.test"), res("10.0.0.31", "multi.netatlas.test")],
        [],                                                                    # NXDOMAIN
        [],                                                                    # MX: no address
    ]
    assert [p[0] >> 4 for p in CAPTURED] == [4, 6, 4, 6, 4, 4, 4]
    counters = dict.fromkeys(dns.COUNTERS, 0)
    resolutions(CAPTURED, counters)
    assert (counters["packets"], counters["answers"], counters["other"], counters["malformed"]) == (7, 5, 2, 0)


# ---- unwrap -----------------------------------------------------------------------------------

def test_udp_payload_of_ipv4_and_ipv6_from_port_53_only():
    msg = answer("a.example", rrs=[RR("a.example", rdata=A("192.0.2.7"))])
    assert udp_payload(ipv4(msg)) == msg
    assert udp_payload(ipv4(msg, ihl=7)) == msg                       # with IP options
    assert udp_payload(ipv6(msg)) == msg
    assert udp_payload(ipv4(msg) + b"ethernet padding"[:6]) == msg    # beyond total length: not ours
    assert udp_payload(ipv4(msg, sport=5353)) is None
    assert udp_payload(ipv6(msg, sport=5353)) is None
    assert udp_payload(ipv4(msg, proto=socket.IPPROTO_TCP)) is None
    assert udp_payload(ipv6(msg, nxt=0)) is None                      # a hop-by-hop header first
    assert udp_payload(ipv4(msg, frag=0x2000)) is None                # more fragments follow
    assert udp_payload(ipv4(msg, frag=0x0010)) is None                # a later fragment
    for junk in (b"", b"\x45", b"\x00" * 40, b"\x60" + b"\x00" * 10, ipv4(msg)[:25]):
        assert udp_payload(junk) is None


# ---- parse ------------------------------------------------------------------------------------

def test_cname_chains_give_the_question_and_the_end_of_the_chain():
    msg = answer("www.example.com", rrs=[
        RR("www.example.com", QTYPE.CNAME, rdata=CNAME("edge.example.net"), ttl=60),
        RR("edge.example.net", QTYPE.CNAME, rdata=CNAME("e1.cdn.example"), ttl=60),
        RR("e1.cdn.example", QTYPE.A, rdata=A("198.51.100.1"), ttl=20),
        RR("e1.cdn.example", QTYPE.A, rdata=A("198.51.100.2"), ttl=20),
        RR("unrelated.example", QTYPE.A, rdata=A("203.0.113.9"), ttl=20),    # no question reaches it
    ])
    assert parse_answer(msg) == [res("198.51.100.1", "www.example.com", "e1.cdn.example", 20),
                                 res("198.51.100.2", "www.example.com", "e1.cdn.example", 20)]


def test_several_questions_each_get_their_own_addresses():
    msg = answer("a.example", "b.example", rrs=[
        RR("a.example", rdata=A("192.0.2.1")),
        RR("b.example", QTYPE.CNAME, rdata=CNAME("a.example")),
        RR("b.example", QTYPE.AAAA, rdata=AAAA("2001:db8::b")),
    ])
    assert parse_answer(msg) == [res("192.0.2.1", "a.example", ttl=0), res("192.0.2.1", "b.example", "a.example", 0),
                                 res("2001:db8::b", "b.example", ttl=0)]


def test_ipv4_mapped_addresses_are_shown_as_ipv4_as_netlink_writes_them():
    msg = answer("m.example", rrs=[RR("m.example", QTYPE.AAAA, rdata=AAAA("::ffff:c000:207"))])
    assert [r.address for r in parse_answer(msg)] == ["192.0.2.7"]


def test_what_is_not_an_answer_with_addresses_gives_nothing():
    a = RR("a.example", rdata=A("192.0.2.1"))
    assert parse_answer(answer("a.example", rrs=[a], qr=0)) == []                   # a query
    assert parse_answer(answer("a.example", rrs=[a], rcode=RCODE.SERVFAIL)) == []
    assert parse_answer(answer("a.example", rrs=[a], rcode=RCODE.NXDOMAIN)) == []
    assert parse_answer(answer("a.example")) == []                                  # NODATA
    chaos = RR("a.example", rdata=A("192.0.2.1"), rclass=CLASS.CH)
    assert parse_answer(answer("a.example", rrs=[chaos])) == []
    other = RR("a.example", QTYPE.TXT, rdata=TXT("hello"))
    assert parse_answer(answer("a.example", rrs=[other])) == []


def test_names_are_lowercase_without_the_trailing_dot_and_odd_bytes_escaped():
    msg = DNSRecord(DNSHeader(qr=1), q=DNSQuestion("x")).pack()
    # the question rewritten by hand: the labels "Web\x00.1", "EXAMPLE"
    name = b"\x07Web\x00.1\\\x07EXAMPLE\x00"
    msg = msg[:12] + name + msg[12 + 3:]
    msg = msg[:6] + b"\x00\x01" + msg[8:] + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 999999, 4) + bytes([192, 0, 2, 1])
    assert parse_answer(msg) == [res("192.0.2.1", "web\\000\\.1\\\\.example", ttl=999999)]


def test_a_ttl_with_the_top_bit_set_counts_as_zero():
    msg = answer("a.example", rrs=[RR("a.example", rdata=A("192.0.2.1"), ttl=1 << 31)])
    assert [r.ttl for r in parse_answer(msg)] == [0]


def test_a_cname_cycle_is_not_followed_round():
    msg = answer("a.example", rrs=[RR("a.example", QTYPE.CNAME, rdata=CNAME("b.example")),
                                   RR("b.example", QTYPE.CNAME, rdata=CNAME("a.example")),
                                   RR("b.example", rdata=A("192.0.2.2"))])
    assert parse_answer(msg) == [res("192.0.2.2", "a.example", "b.example", 0)]


HEADER = struct.pack(">HHHHHH", 7, 0x8180, 1, 1, 0, 0)     # an answer: one question, one record
QTAIL = b"\x00\x01\x00\x01"
MALFORMED = {
    "shorter than a DNS header": HEADER[:11],
    "compression pointers in one name": HEADER + b"\xc0\x0c" + QTAIL,                     # points at itself
    "compression pointers in one name (2)": HEADER + b"\xc0\x0e\xc0\x0c" + QTAIL,         # two point at each other
    "unknown label type": HEADER + b"\x41abc\x00" + QTAIL,
    "longer than 255": HEADER + b"\x3f" + b"a" * 63 + b"\x3f" + b"b" * 63 + b"\x3f" + b"c" * 63 + b"\x3f"
    + b"d" * 63 + b"\x03eee\x00" + QTAIL,
    "a name runs past the end": HEADER + b"\x03abc",
    "a compression pointer runs past the end": HEADER + b"\xc0",
    "a question runs past": HEADER + b"\x01a\x00\x00\x01",
    "a record runs past": HEADER + b"\x01a\x00" + QTAIL + b"\xc0\x0c\x00\x01",
    "record data": HEADER + b"\x01a\x00" + QTAIL + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + b"\x01\x02",
    "an address record": HEADER + b"\x01a\x00" + QTAIL + b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 5) + b"\x01" * 5,
    "a CNAME's name runs past its record": HEADER + b"\x01a\x00" + QTAIL + b"\xc0\x0c"
    + struct.pack(">HHIH", 5, 1, 60, 2) + b"\x01b\x00",
}


@pytest.mark.parametrize("why", MALFORMED)
def test_malformed_messages_raise_a_format_error_saying_what(why):
    with pytest.raises(DnsFormatError, match=why.split(" (")[0]):
        parse_answer(MALFORMED[why])


def test_the_work_per_message_is_bounded():
    four = answer("a.example", "b.example", "c.example", "d.example", rrs=[RR("a.example", rdata=A("192.0.2.1"))])
    assert len(parse_answer(four)) == 1
    five = answer("a.example", "b.example", "c.example", "d.example", "e.example")
    with pytest.raises(DnsFormatError, match="5 questions"):
        parse_answer(five[:7] + b"\x01" + five[8:])            # (dnslib's: no answer; one claimed)
    many = answer("a.example", rrs=[RR("a.example", rdata=A(f"192.0.2.{i % 250}"), ttl=i) for i in range(300)])
    found = parse_answer(many)
    assert len(found) == dns.MAX_ANSWERS and found[-1].ttl == dns.MAX_ANSWERS - 1


def test_a_read_stops_after_its_time_budget_and_leaves_the_rest():
    sniffer = dns.DnsSniffer.__new__(dns.DnsSniffer)          # no sockets: packets from a list
    sniffer.counters = dict.fromkeys(dns.COUNTERS, 0)
    waiting = [ipv4(answer(f"n{i}.example", rrs=[RR(f"n{i}.example", rdata=A("192.0.2.1"))])) for i in range(600)]

    def packets(limit):
        batch = waiting[:limit]
        del waiting[:limit]
        return batch
    sniffer.packets = packets
    assert len(sniffer.read(budget=0)) == dns.READ_BATCH        # one batch, then the budget is spent
    assert len(waiting) == 600 - dns.READ_BATCH
    assert len(sniffer.read()) == 600 - dns.READ_BATCH and not waiting
    assert sniffer.counters["answers"] == 600


def test_malformed_packets_are_counted_not_raised():
    counters = dict.fromkeys(dns.COUNTERS, 0)
    good = ipv4(answer("a.example", rrs=[RR("a.example", rdata=A("192.0.2.1"))]))
    found = resolutions([ipv4(m) for m in MALFORMED.values()] + [good], counters)
    assert found == [res("192.0.2.1", "a.example", ttl=0)]
    assert (counters["packets"], counters["malformed"], counters["answers"]) == (len(MALFORMED) + 1, len(MALFORMED), 1)


def test_every_truncation_and_random_damage_of_real_answers_is_handled():
    """Each prefix of each captured answer, and 3000 randomly damaged copies: a result or a
    DnsFormatError, nothing else (no IndexError, no endless loop)."""
    messages = [udp_payload(p) for p in CAPTURED]
    for msg in messages:
        for n in range(len(msg)):
            try:
                parse_answer(msg[:n])
            except DnsFormatError:
                pass
    rng = random.Random(2024)
    for _ in range(3000):
        msg = bytearray(rng.choice(messages))
        for _ in range(rng.randint(1, 4)):
            i = rng.randrange(len(msg))
            msg[i] = rng.choice((0xC0, 0xC0 | rng.randrange(64), 0x3F, 0, 0xFF, rng.randrange(256)))
        try:
            for r in parse_answer(bytes(msg)):
                assert isinstance(r.address, str) and isinstance(r.question, str)
        except DnsFormatError:
            pass


# ---- the cache --------------------------------------------------------------------------------

def test_names_of_an_address_sorted_with_their_canonical_names():
    names = Names()
    names.learn(0, [res("192.0.2.1", "www.example.com", "edge.example.net"), res("192.0.2.1", "example.com"),
                    res("192.0.2.2", "api.example.com")])
    assert names.lookup("192.0.2.1", 1) == (["example.com", "www.example.com"], ["edge.example.net", "example.com"])
    assert names.lookup("192.0.2.2", 1) == (["api.example.com"], ["api.example.com"])
    assert names.lookup("192.0.2.3", 1) == ([], [])
    assert len(names) == 2


def test_names_are_kept_ten_minutes_or_their_ttl_whichever_is_longer():
    names = Names()
    names.learn(0, [res("192.0.2.1", "short.example", ttl=30), res("192.0.2.2", "long.example", ttl=3600),
                    res("192.0.2.3", "huge.example", ttl=10 ** 9)])
    assert names.lookup("192.0.2.1", dns.KEEP - 1)[0] == ["short.example"]
    assert names.lookup("192.0.2.1", 2 * dns.KEEP) == ([], [])       # found at KEEP - 1: kept KEEP more
    assert len(names) == 2                                             # and then forgotten
    assert names.lookup("192.0.2.2", 3599)[0] == ["long.example"]
    fresh = Names()
    fresh.learn(0, [res("192.0.2.2", "long.example", ttl=3600), res("192.0.2.3", "huge.example", ttl=10 ** 9)])
    assert fresh.lookup("192.0.2.2", 3600) == ([], [])
    assert fresh.lookup("192.0.2.3", dns.MAX_TTL - 1)[0] == ["huge.example"]
    assert fresh.lookup("192.0.2.3", dns.MAX_TTL - 1 + dns.KEEP) == ([], [])


def test_an_address_in_use_keeps_its_names():
    """A long connection asks every minute: its names outlive their TTL and KEEP."""
    names = Names()
    names.learn(0, [res("192.0.2.1", "db.example", ttl=30)])
    for minute in range(1, 120):
        assert names.lookup("192.0.2.1", minute * 60)[0] == ["db.example"]
    assert names.lookup("192.0.2.1", 119 * 60 + dns.KEEP + 1) == ([], [])


def test_one_expired_name_goes_and_the_others_stay():
    names = Names()
    names.learn(0, [res("192.0.2.1", "old.example", ttl=30)])
    names.learn(500, [res("192.0.2.1", "new.example", ttl=30)])
    assert names.lookup("192.0.2.1", 700) == (["new.example"], ["new.example"])


def test_the_least_recently_used_address_is_forgotten_first_and_counted():
    names = Names(2)
    names.learn(0, [res("192.0.2.1", "a.example"), res("192.0.2.2", "b.example")])
    assert names.lookup("192.0.2.1", 1)[0] == ["a.example"]            # used: now the most recent
    names.learn(2, [res("192.0.2.3", "c.example")])
    assert (names.lookup("192.0.2.2", 3), names.lookup("192.0.2.1", 3)[0]) == (([], []), ["a.example"])
    assert names.counters["evicted"] == 1 and len(names) == 2


def test_names_per_address_are_capped_the_oldest_dropped_and_counted():
    names = Names(max_names=3)
    names.learn(0, [res("192.0.2.1", f"n{i}.example") for i in range(5)])
    names.learn(1, [res("192.0.2.1", "n2.example")])                   # learnt again: the newest
    names.learn(2, [res("192.0.2.1", "n5.example")])
    assert names.lookup("192.0.2.1", 3)[0] == ["n2.example", "n4.example", "n5.example"]
    assert names.counters["names_dropped"] == 2 * 3                    # questions and canonical names


# ---- the kernel filter ------------------------------------------------------------------------

def test_the_filter_programs():
    v4 = dns.assemble(dns.FILTERS[dns.ETH_P_IP])
    assert v4[-2:] == [(dns.BPF_RET, 0, 0, dns.SNAP), (dns.BPF_RET, 0, 0, 0)]
    drop = len(v4) - 1
    for i, (code, jt, jf, _k) in enumerate(v4):                      # every branch ends at the drop
        if code == dns.BPF_JEQ:
            assert (jt, i + 1 + jf) == (0, drop)
        if code == dns.BPF_JSET:
            assert (i + 1 + jt, jf) == (drop, 0)
    assert (dns.BPF_JEQ, 0, 1, 53) in v4 and len(dns.assemble(dns.FILTERS[dns.ETH_P_IPV6])) == 8


SEND = r'''
import socket, sys, time
from dnslib import A, AAAA, QTYPE, RR, DNSHeader, DNSQuestion, DNSRecord
def reply(name, rr):
    return DNSRecord(DNSHeader(id=1, qr=1), q=DNSQuestion(name), a=rr).pack()
for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
    rx = socket.socket(family, socket.SOCK_DGRAM); rx.bind((host, 0)); port = rx.getsockname()[1]
    dns = socket.socket(family, socket.SOCK_DGRAM); dns.bind((host, 53))
    v = "4" if family == socket.AF_INET else "6"
    rr = (RR("v4.example", rdata=A("192.0.2.4")) if v == "4"
          else RR("v6.example", QTYPE.AAAA, rdata=AAAA("2001:db8::6")))
    dns.sendto(reply("v%s.example" % v, rr), (host, port))             # an answer: captured
    other = socket.socket(family, socket.SOCK_DGRAM); other.bind((host, 5353))
    other.sendto(reply("mdns%s.example" % v, rr), (host, port))        # not from port 53
    rx.sendto(reply("back%s.example" % v, rr), (host, 53))             # to port 53 (a query's way)
    lsn = socket.socket(family); lsn.bind((host, 53)); lsn.listen()    # DNS over TCP: not captured
    c = socket.create_connection((host, 53)); a, _ = lsn.accept(); a.sendall(reply("tcp.example", rr)); c.recv(512)
    for s in (c, a, lsn, rx, dns, other):
        s.close()
big = DNSRecord(DNSHeader(id=1, qr=1), q=DNSQuestion("big.example"),
                rr=[RR("big.example", rdata=A("192.0.2.%d" % i)) for i in range(1, 250)]).pack()
assert len(big) > 1400, len(big)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); rx.bind(("127.0.0.1", 0))
dns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); dns.bind(("127.0.0.1", 53))
dns.setsockopt(socket.IPPROTO_IP, 10, 0)                                 # IP_MTU_DISCOVER: DONT, so it fragments
dns.sendto(big, rx.getsockname())                                       # fragmented: not captured
print(len(rx.recv(65536)), flush=True)
'''


def test_the_kernel_passes_only_dns_answers_to_this_host(netns):
    subprocess.run(["ip", "-n", netns, "link", "set", "lo", "mtu", "1280"], check=True)
    with dns.DnsSniffer(netns) as sniffer:
        out = subprocess.run(["ip", "netns", "exec", netns, sys.executable, "-c", SEND], capture_output=True, text=True,
                             timeout=30)
        assert out.returncode == 0, out.stderr
        packets = sniffer.packets()
        assert sniffer.counters["drops"] == 0
    found = resolutions(packets, sniffer.counters)
    assert found == [res("192.0.2.4", "v4.example", ttl=0), res("2001:db8::6", "v6.example", ttl=0)]
    assert len(packets) == 2, [udp_payload(p) for p in packets]


def test_the_sniffer_sees_only_its_own_namespace(netns):
    with dns.DnsSniffer(netns) as sniffer:
        def send():                       # in the agent's own namespace, on its loopback
            rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            rx.bind(("127.0.0.1", 0))
            tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                tx.bind(("127.0.0.1", 53))
            except OSError as e:
                return str(e)
            tx.sendto(answer("a.example", rrs=[RR("a.example", rdata=A("192.0.2.1"))]), rx.getsockname())
            rx.recv(512)
            tx.close()
            rx.close()
            return ""
        outside = send()
        inside = in_netns(netns, send)
        assert inside == "", inside
        packets = sniffer.packets()
    assert resolutions(packets) == [res("192.0.2.1", "a.example", ttl=0)]    # the one sent inside
    if outside:
        print(f"(port 53 of this namespace is taken: {outside}; only the inside packet was sent)")


# ---- the collector without names --------------------------------------------------------------

def config(tmp_path, **kw) -> AgentConfig:
    return AgentConfig(workspace_url="http://127.0.0.1:9", workspace_id="t", key="dGVzdA==", collector="netlink",
                       spool=str(tmp_path / "spool"), machine_id_file=str(tmp_path / "machine-id"), **kw)


def test_without_cap_net_raw_the_collector_goes_on_without_names(tmp_path, monkeypatch, caplog):
    def refuse(netns=None, **kw):
        raise PermissionError(1, "Operation not permitted")
    monkeypatch.setattr(collect, "DnsSniffer", refuse)
    with caplog.at_level(logging.INFO, logger="netatlas.agent.collect"):
        c = Collector(config(tmp_path), start=False)
        try:
            c.poll()
            c.poll()
        finally:
            c.close()
    assert c.dns is None and c.agg.names is None and c.stats["poll_errors"] == 0
    said = [r.getMessage() for r in caplog.records if "DNS names off" in r.getMessage()]
    assert said == ["DNS names off: cannot capture DNS answers ([Errno 1] Operation not permitted); outbound "
                    "connections get no RemoteDnsQuestions"]


def test_dns_off_opens_no_sniffer(tmp_path, monkeypatch):
    monkeypatch.setattr(collect, "DnsSniffer", lambda *a, **kw: pytest.fail("opened"))
    c = Collector(config(tmp_path, dns=False), start=False)
    c.close()
    assert c.dns is None and c.agg.names is None


def test_a_sniffer_that_fails_is_closed_and_the_names_learnt_stay(tmp_path, monkeypatch, caplog):
    class Flaky:
        counters = dict.fromkeys(dns.COUNTERS, 0)
        closed = False

        def __init__(self, netns=None):
            self.reads = 0

        def read(self):
            self.reads += 1
            if self.reads == 1:
                return [res("192.0.2.1", "a.example")]
            raise OSError(100, "Network is down")

        def close(self):
            Flaky.closed = True
    monkeypatch.setattr(collect, "DnsSniffer", Flaky)
    with caplog.at_level(logging.WARNING, logger="netatlas.agent.collect"):
        c = Collector(config(tmp_path), start=False)
        try:
            c.poll()
            c.poll()
            c.poll()
        finally:
            c.close()
    assert c.stats["poll_errors"] == 0 and Flaky.closed and c.dns is None
    assert c.names.lookup("192.0.2.1", c.agg._clock)[0] == ["a.example"]
    assert c.stats["dns"]["addresses"] == 1
    assert [r.getMessage() for r in caplog.records if "DNS" in r.getMessage()] == \
        ["DNS capture failed ([Errno 100] Network is down): no more DNS names"]
