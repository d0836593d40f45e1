"""Observe stage, DNS: the DNS answers this host receives -> ``Names``, remote address -> the names
that resolved to it (VMConnection's RemoteDnsQuestions and RemoteDnsCanonicalNames).

| step | entry point | input | product |
|---|---|---|---|
| capture | ``DnsSniffer.packets()`` | AF_PACKET sockets with a classic BPF filter | ``list[bytes]``: IP packets, UDP from port 53, addressed to this host |
| unwrap | ``udp_payload(packet)`` | an IPv4 or IPv6 packet | the DNS message, or None (not one: a fragment, another protocol) |
| parse | ``parse_answer(message)`` | a DNS message | ``list[Resolution(address, question, canonical, ttl)]``, or ``DnsFormatError`` |
| all three | ``resolutions(packets, counters)`` / ``DnsSniffer.read()`` | packets | resolutions; malformed packets skipped and counted |
| remember | ``Names.learn(now, resolutions)``, ``Names.lookup(ip, now)`` | resolutions | (questions, canonical names) of an address |

Capture: two packet sockets (``AF_PACKET``, ``SOCK_DGRAM``: data from the network header on), one
bound to ETH_P_IP and one to ETH_P_IPV6 on every interface of the observed network namespace
(opened inside it, as netlink.py does, when ``netns`` is given). Not ETH_P_ALL: a protocol
binding sees received packets only, so transmitted ones are neither cloned for us (an ETH_P_ALL
tap costs a clone of every packet the host sends) nor seen twice on loopback. The kernel filter
(``FILTERS``, SO_ATTACH_FILTER, attached before the socket is bound, so nothing unfiltered is
ever queued) keeps only packets addressed to this host (PACKET_HOST: not a promiscuous
interface's other traffic), UDP, source port 53, and for IPv4 not a fragment; for IPv6 only when
UDP is the first header (no extension headers, so no fragment either). Each poll reads at most
``MAX_PACKETS_PER_READ`` packets and spends about ``READ_BUDGET`` seconds parsing; the rest waits
in the socket's buffer (``RCVBUF``), and what the kernel dropped when it was full is counted
(PACKET_STATISTICS) in ``counters["drops"]``.

Not seen, so such connections keep no name: answers over TCP (a truncated UDP answer retried
over TCP), fragmented answers (larger than the path's MTU), DNS over TLS or HTTPS, names
resolved from /etc/hosts or before the agent started (until they are resolved again).

Parse: hand-written and defensive. Only answers (QR set, opcode QUERY, rcode NOERROR) of class
IN give resolutions; the question section and the answer section are read (authority and
additional records are not answers to the question and are ignored). A and AAAA records give
addresses (text as netlink.py writes it: IPv4-mapped IPv6 as IPv4), CNAME records the chain. An
address belongs to each question whose CNAME chain (followed at most ``MAX_CHAIN`` links, never
round a cycle) reaches the owner name of its A/AAAA record; that owner name is its canonical
name (the question itself when there is no CNAME). Names are lowercase (ASCII only, RFC 4343)
without the trailing dot, other bytes than printable ASCII escaped as ``\\DDD`` and a dot inside a
label as ``\\.``. A compressed name follows at most ``MAX_POINTERS`` pointers and is at most 255
bytes; anything out of bounds raises ``DnsFormatError``, counted as ``malformed`` by
``resolutions``: a packet never crashes the agent. The work per message is bounded too (at most
``MAX_QUESTIONS`` questions, the first ``MAX_ANSWERS`` answer records: ~15 µs for a usual answer,
~20 ms for the worst one), and per poll by ``READ_BUDGET``.

Trust: a packet socket sees packets before the host's firewall, and nothing here matches an
answer to a query the host sent (that would need the transmitted queries too). So whoever can
send UDP from port 53 to the host can make it attach wrong names to addresses (only the names of
records; never anything else), at the cost of some parsing, bounded as above.

Remember: ``Names`` maps an address to its question names and canonical names. Each name is kept
``KEEP`` seconds (10 minutes) or its record's TTL (at most ``MAX_TTL``, one day), whichever is
longer: applications and connection pools use an address long after a short TTL, and the names
are only ever attached to connections *to that address*. A lookup that finds names keeps them
``KEEP`` more seconds from then (an address in use keeps its names, so a connection open for
hours keeps its name in every minute's record). At most ``max_addresses`` addresses (the agent's
``dns_cache_size``), the least recently learned or looked up forgotten first
(``counters["evicted"]``), and at most ``MAX_NAMES`` questions and ``MAX_NAMES`` canonical names
per address (a CDN address serves many names: the oldest are dropped, ``counters["names_dropped"]``).
"""
from __future__ import annotations

import ctypes
import errno
import os
import re
import socket
import struct
import sys
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import NamedTuple

from .netlink import _V4_NAMES, _V6_NAMES, _v4_name, _v6_name, in_netns

__all__ = ["DnsFormatError", "Resolution", "udp_payload", "parse_answer", "resolutions", "Names", "DnsSniffer",
           "FILTERS"]

DNS_PORT = 53
KEEP = 600.0                  # seconds a name is kept at least (and kept more after each lookup)
MAX_TTL = 86_400              # a longer TTL keeps a name this long
MAX_NAMES = 8                 # questions, and canonical names, kept per address
MAX_POINTERS = 64             # compression pointers followed in one name
MAX_NAME = 255                # bytes of a name on the wire (RFC 1035)
MAX_CHAIN = 16                # CNAME links followed from a question
MAX_QUESTIONS = 4             # more in one message is malformed (real ones ask one)
MAX_ANSWERS = 256             # answer records read from one message; the rest are ignored
MAX_PACKETS_PER_READ = 10_000
READ_BUDGET = 0.1             # seconds of parsing per read (per poll); the rest waits in the kernel
READ_BATCH = 256              # packets taken from the sockets at a time
RCVBUF = 4 << 20              # each packet socket's receive buffer: room for a burst between polls
SNAP = 0xFFFF                 # bytes of a packet the filter keeps (all of any UDP datagram)


class DnsFormatError(ValueError):
    """A packet that claims to be a DNS answer but is not well formed (skipped and counted)."""


class Resolution(NamedTuple):
    """One address of an answer: the question that led to it and the owner of its A/AAAA record."""
    address: str
    question: str
    canonical: str
    ttl: int


# ---------------------------------------------------------------- unwrap: IP packet -> UDP payload

_IPV4 = struct.Struct(">BxHxxHxB")        # version/IHL, total length, flags/fragment offset, protocol
_IPV6 = struct.Struct(">B3xHB")           # version, payload length, next header
_UDP = struct.Struct(">HHH")              # source port, destination port, length


def _ipv4_payload(packet: bytes) -> bytes | None:
    if len(packet) < 20:
        return None
    vihl, total, frag, proto = _IPV4.unpack_from(packet)
    ihl = (vihl & 0x0F) * 4
    if proto != socket.IPPROTO_UDP or ihl < 20 or frag & 0x3FFF:      # MF set or a later fragment
        return None
    return _udp_payload(packet[:total], ihl)


def _ipv6_payload(packet: bytes) -> bytes | None:
    if len(packet) < 40:
        return None
    _v, length, nxt = _IPV6.unpack_from(packet)
    if nxt != socket.IPPROTO_UDP:
        return None
    return _udp_payload(packet[:40 + length], 40)


def _udp_payload(packet: bytes, off: int) -> bytes | None:
    if len(packet) < off + 8:
        return None
    sport, _dport, length = _UDP.unpack_from(packet, off)
    if sport != DNS_PORT or length < 8:
        return None
    return packet[off + 8:off + length]


IP_VERSIONS = {4: _ipv4_payload, 6: _ipv6_payload}


def udp_payload(packet: bytes) -> bytes | None:
    """The payload of a UDP datagram from port 53 in an IPv4 or IPv6 packet (from its network
    header on, as a SOCK_DGRAM packet socket reads it); None for anything else."""
    if not packet:
        return None
    unwrap = IP_VERSIONS.get(packet[0] >> 4)
    return unwrap(packet) if unwrap is not None else None


# ---------------------------------------------------------------- parse: DNS message -> resolutions

_HEADER = struct.Struct(">HHHHHH")        # id, flags, questions, answers, authority, additional
_RR = struct.Struct(">HHIH")              # type, class, TTL, rdata length
_QUESTION = struct.Struct(">HH")          # type, class
QR, OPCODE, RCODE = 0x8000, 0x7800, 0x000F
TYPE_A, TYPE_CNAME, TYPE_AAAA = 1, 5, 28
CLASS_IN = 1
ADDRESS_SIZES = {TYPE_A: 4, TYPE_AAAA: 16}
_PLAIN = re.compile(rb"[A-Za-z0-9_\-]*")
_LABEL_CHARS = {b: chr(b).lower() if 0x21 <= b <= 0x7E else f"\\{b:03d}" for b in range(256)}
_LABEL_CHARS.update({ord("."): "\\.", ord("\\"): "\\\\"})


def _label(raw: bytes) -> str:
    if _PLAIN.fullmatch(raw):
        return raw.decode("ascii").lower()
    return "".join(_LABEL_CHARS[b] for b in raw)


def read_name(data: bytes, off: int) -> tuple[str, int]:
    """The (possibly compressed) name at ``off`` and the offset just after it in the record."""
    labels: list[str] = []
    size, after, jumps, end = 1, -1, 0, len(data)
    while True:
        if off >= end:
            raise DnsFormatError(f"a name runs past the end of the message (byte {off})")
        n = data[off]
        if n == 0:
            return ".".join(labels), (off + 1 if after < 0 else after)
        kind = n & 0xC0
        if kind == 0xC0:
            if off + 1 >= end:
                raise DnsFormatError(f"a compression pointer runs past the end (byte {off})")
            if after < 0:
                after = off + 2
            jumps += 1
            if jumps > MAX_POINTERS:
                raise DnsFormatError(f"more than {MAX_POINTERS} compression pointers in one name (a loop)")
            off = (n & 0x3F) << 8 | data[off + 1]
            continue
        if kind:
            raise DnsFormatError(f"unknown label type {kind:#x} at byte {off}")
        size += n + 1
        if size > MAX_NAME or off + 1 + n > end:
            raise DnsFormatError(f"a name longer than {MAX_NAME} bytes or past the end (byte {off})")
        labels.append(_label(data[off + 1:off + 1 + n]))
        off += 1 + n


def _address(rtype: int, raw: bytes) -> str:
    if rtype == TYPE_A:
        return _V4_NAMES.get(raw) or _v4_name(raw)
    return _V6_NAMES.get(raw) or _v6_name(raw)


def parse_answer(message: bytes) -> list[Resolution]:
    """The addresses a DNS answer gives, with the question that led to each and its canonical name
    (module doc); [] for a query, an error answer or an answer without addresses. Raises
    ``DnsFormatError`` when the message is not well formed."""
    message = bytes(message)             # (a bytearray or memoryview: slices must be hashable)
    if len(message) < _HEADER.size:
        raise DnsFormatError(f"{len(message)} bytes: shorter than a DNS header")
    _id, flags, qdcount, ancount, _ns, _ar = _HEADER.unpack_from(message)
    if not flags & QR or flags & (OPCODE | RCODE) or not ancount:
        return []
    if qdcount > MAX_QUESTIONS:
        raise DnsFormatError(f"{qdcount} questions (at most {MAX_QUESTIONS})")
    off, questions = _HEADER.size, []
    for _ in range(qdcount):
        name, off = read_name(message, off)
        if off + 4 > len(message):
            raise DnsFormatError("a question runs past the end of the message")
        _qtype, qclass = _QUESTION.unpack_from(message, off)
        off += 4
        if qclass == CLASS_IN and name not in questions:
            questions.append(name)
    cnames: dict[str, str] = {}
    addresses: list[tuple[str, str, int]] = []         # (owner, address, ttl)
    for _ in range(min(ancount, MAX_ANSWERS)):
        owner, off = read_name(message, off)
        if off + _RR.size > len(message):
            raise DnsFormatError("a record runs past the end of the message")
        rtype, rclass, ttl, rdlength = _RR.unpack_from(message, off)
        off += _RR.size
        rdata_end = off + rdlength
        if rdata_end > len(message):
            raise DnsFormatError(f"record data ({rdlength} bytes) runs past the end of the message")
        if rclass == CLASS_IN:
            if rtype in ADDRESS_SIZES:
                if rdlength != ADDRESS_SIZES[rtype]:
                    raise DnsFormatError(f"an address record (type {rtype}) of {rdlength} bytes")
                addresses.append((owner, _address(rtype, message[off:rdata_end]), ttl if ttl < 1 << 31 else 0))
            elif rtype == TYPE_CNAME:
                target, name_end = read_name(message, off)
                if name_end > rdata_end:
                    raise DnsFormatError("a CNAME's name runs past its record")
                cnames.setdefault(owner, target)
        off = rdata_end
    if not addresses:
        return []
    reach = {q: _chain(q, cnames) for q in questions}
    return [Resolution(ip, q, owner, ttl) for owner, ip, ttl in addresses for q in questions if owner in reach[q]]


def _chain(name: str, cnames: dict[str, str]) -> list[str]:
    """The names from ``name`` along its CNAME chain: at most MAX_CHAIN links, never round a cycle."""
    out = [name]
    for _ in range(MAX_CHAIN):
        name = cnames.get(name)
        if name is None or name in out:
            break
        out.append(name)
    return out


COUNTERS = ("packets", "answers", "other", "malformed", "drops", "evicted", "names_dropped")


def resolutions(packets: Iterable[bytes], counters: dict[str, int] | None = None) -> list[Resolution]:
    """The resolutions of every packet; ``counters`` counts packets, answers (with addresses),
    other (no DNS answer with addresses: queries, errors, fragments, ...) and malformed ones."""
    counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
    out: list[Resolution] = []
    for packet in packets:
        counters["packets"] += 1
        message = udp_payload(packet)
        try:
            found = parse_answer(message) if message is not None else []
        except DnsFormatError:
            counters["malformed"] += 1
            continue
        counters["answers" if found else "other"] += 1
        out.extend(found)
    return out


# ---------------------------------------------------------------- remember: the bounded cache

@dataclass(slots=True)
class _Entry:
    questions: dict[str, float] = field(default_factory=dict)    # name -> expires at, oldest first
    canonical: dict[str, float] = field(default_factory=dict)


class Names:
    """Address -> (question names, canonical names), bounded and expiring (module doc)."""

    def __init__(self, max_addresses: int = 10_000, *, keep: float = KEEP, max_names: int = MAX_NAMES,
                 counters: dict[str, int] | None = None):
        self.max_addresses = max(1, max_addresses)
        self.keep = keep
        self.max_names = max_names
        self.counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
        self._by_address: OrderedDict[str, _Entry] = OrderedDict()

    def __len__(self) -> int:
        return len(self._by_address)

    def learn(self, now: float, found: Iterable[Resolution]) -> None:
        for r in found:
            entry = self._by_address.get(r.address)
            if entry is None:
                entry = self._by_address[r.address] = _Entry()
                if len(self._by_address) > self.max_addresses:
                    self._by_address.popitem(last=False)
                    self.counters["evicted"] += 1
            else:
                self._by_address.move_to_end(r.address)
            expires = now + max(self.keep, min(r.ttl, MAX_TTL))
            self._add(entry.questions, r.question, expires)
            self._add(entry.canonical, r.canonical, expires)

    def _add(self, names: dict[str, float], name: str, expires: float) -> None:
        old = names.pop(name, None)
        names[sys.intern(name)] = expires if old is None else max(old, expires)
        if len(names) > self.max_names:
            del names[next(iter(names))]
            self.counters["names_dropped"] += 1

    def lookup(self, address: str, now: float) -> tuple[list[str], list[str]]:
        """The names (each list sorted) that resolved to ``address`` and have not expired at ``now``;
        ([], []) when none. Found names are kept ``keep`` seconds more."""
        entry = self._by_address.get(address)
        if entry is None:
            return [], []
        out = []
        for names in (entry.questions, entry.canonical):
            for name in [n for n, t in names.items() if t <= now]:
                del names[name]
            for name, t in names.items():
                names[name] = max(t, now + self.keep)
            out.append(sorted(names))
        if not entry.questions:
            del self._by_address[address]
            return [], []
        self._by_address.move_to_end(address)
        return out[0], out[1]


# ---------------------------------------------------------------- capture: the packet sockets

# <linux/filter.h>, <linux/if_packet.h>
BPF_LD_W_ABS, BPF_LD_H_ABS, BPF_LD_B_ABS, BPF_LD_H_IND = 0x20, 0x28, 0x30, 0x48
BPF_LDX_B_MSH = 0xB1                       # X = 4 * (packet[k] & 0xf): the IPv4 header length
BPF_JEQ, BPF_JSET, BPF_RET = 0x15, 0x45, 0x06
SKF_AD_PKTTYPE = (-0x1000 + 4) & 0xFFFFFFFF
PACKET_HOST = 0
SOL_PACKET, PACKET_STATISTICS = 263, 6
ETH_P_IP, ETH_P_IPV6 = 0x0800, 0x86DD
SO_ATTACH_FILTER = getattr(socket, "SO_ATTACH_FILTER", 26)
SO_RCVBUFFORCE = getattr(socket, "SO_RCVBUFFORCE", 33)

# Each filter: checks of the packet, all must hold (else it is dropped). A check is a load
# (opcode, offset) and a test: ("==", value), or ("none of", bits); a test of None only loads.
FILTERS: dict[int, tuple[tuple, ...]] = {
    ETH_P_IP: (
        ((BPF_LD_W_ABS, SKF_AD_PKTTYPE), ("==", PACKET_HOST)),     # addressed to this host
        ((BPF_LD_B_ABS, 9), ("==", socket.IPPROTO_UDP)),            # protocol
        ((BPF_LD_H_ABS, 6), ("none of", 0x3FFF)),                   # not a fragment (MF, offset)
        ((BPF_LDX_B_MSH, 0), None),                                 # X = header length
        ((BPF_LD_H_IND, 0), ("==", DNS_PORT)),                      # UDP source port
    ),
    ETH_P_IPV6: (
        ((BPF_LD_W_ABS, SKF_AD_PKTTYPE), ("==", PACKET_HOST)),
        ((BPF_LD_B_ABS, 6), ("==", socket.IPPROTO_UDP)),            # next header: UDP first
        ((BPF_LD_H_ABS, 40), ("==", DNS_PORT)),                     # UDP source port
    ),
}
_TESTS = {"==": (BPF_JEQ, False), "none of": (BPF_JSET, True)}   # opcode, jump to drop when true


def assemble(checks: tuple[tuple, ...]) -> list[tuple[int, int, int, int]]:
    """Classic BPF (code, jt, jf, k) instructions for ``checks``: returns SNAP when all hold, else 0."""
    prog: list[list[int]] = []
    jumps: list[tuple[int, int]] = []        # (instruction, 1 = jt / 2 = jf) leading to the drop
    for (code, k), test in checks:
        prog.append([code, 0, 0, k])
        if test is not None:
            op, drop_when_true = _TESTS[test[0]]
            jumps.append((len(prog), 1 if drop_when_true else 2))
            prog.append([op, 0, 0, test[1]])
    prog.append([BPF_RET, 0, 0, SNAP])
    drop = len(prog)
    prog.append([BPF_RET, 0, 0, 0])
    for i, branch in jumps:
        prog[i][branch] = drop - i - 1
    return [tuple(i) for i in prog]


_SOCK_FILTER = struct.Struct("=HBBI")
_SOCKADDR_LL = struct.Struct("=HHiHBB8s")
_STATS = struct.Struct("=II")              # tpacket_stats: packets, drops (reset by each read)
_libc = ctypes.CDLL(None, use_errno=True)


def _attach(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    code = ctypes.create_string_buffer(b"".join(_SOCK_FILTER.pack(*i) for i in program))
    fprog = struct.pack("@HP", len(program), ctypes.addressof(code))      # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _bind_all(sock: socket.socket, protocol: int) -> None:
    """bind to ``protocol`` on every interface (ifindex 0: Python's bind wants an interface name)."""
    addr = ctypes.create_string_buffer(_SOCKADDR_LL.pack(socket.AF_PACKET, socket.htons(protocol), 0, 0, 0, 0,
                                                         b""), _SOCKADDR_LL.size)
    if _libc.bind(sock.fileno(), addr, _SOCKADDR_LL.size) != 0:
        code = ctypes.get_errno()
        raise OSError(code, f"bind packet socket: {os.strerror(code)}")


def open_sniffer(protocol: int, netns: str | None = None, rcvbuf: int = RCVBUF) -> socket.socket:
    """A non-blocking packet socket of ``protocol`` in ``netns`` whose kernel filter passes only DNS
    answers to this host. Created with protocol 0 (it receives nothing), filtered, then bound."""
    def make() -> socket.socket:
        s = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK, 0)
        try:
            _attach(s, assemble(FILTERS[protocol]))
            try:
                s.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, rcvbuf)
            except OSError:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            _bind_all(s, protocol)
        except BaseException:
            s.close()
            raise
        return s
    return in_netns(netns, make)


class DnsSniffer:
    """The DNS answers this host (or ``netns``) receives, drained without blocking: ``read()``.
    Raises OSError when the packet sockets cannot be opened (they need CAP_NET_RAW)."""

    def __init__(self, netns: str | None = None, *, counters: dict[str, int] | None = None):
        self.counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
        self.socks: list[socket.socket] = []
        self._buf = bytearray(SNAP)
        try:
            for protocol in FILTERS:
                self.socks.append(open_sniffer(protocol, netns))
        except BaseException:
            self.close()
            raise

    def packets(self, limit: int = MAX_PACKETS_PER_READ) -> list[bytes]:
        """The packets waiting (at most ``limit``, shared between the sockets); the kernel's drops
        since the last call counted."""
        out: list[bytes] = []
        view = memoryview(self._buf)
        for i, s in enumerate(self.socks):
            stop = limit * (i + 1) // len(self.socks)
            while len(out) < stop:
                try:
                    n = s.recv_into(self._buf)
                except BlockingIOError:
                    break
                except OSError as e:
                    if e.errno not in (errno.ENETDOWN, errno.ENXIO):   # an interface that went away
                        raise
                    break
                out.append(bytes(view[:n]))
            _packets, drops = _STATS.unpack(s.getsockopt(SOL_PACKET, PACKET_STATISTICS, _STATS.size))
            self.counters["drops"] += drops
        return out

    def read(self, budget: float = READ_BUDGET) -> list[Resolution]:
        """The resolutions of the answers received since the last call (module doc): at most
        MAX_PACKETS_PER_READ packets and about ``budget`` seconds of parsing; the rest wait."""
        out: list[Resolution] = []
        deadline, left = time.monotonic() + budget, MAX_PACKETS_PER_READ
        while left > 0:
            batch = self.packets(min(left, READ_BATCH))
            if not batch:
                break
            out.extend(resolutions(batch, self.counters))
            left -= len(batch)
            if time.monotonic() > deadline:
                break
        return out

    def close(self) -> None:
        for s in self.socks:
            s.close()
        self.socks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
