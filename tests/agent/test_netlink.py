"""netlink.py: the pure parsers over captured bytes, then the real kernel (loopback and a network
namespace of our own)."""
from __future__ import annotations

import dataclasses
import os
import select
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

from netatlas.agent import netlink
from netatlas.agent.model import (TCP_CLOSE, TCP_ESTABLISHED, TCP_LISTEN, TCP_TIME_WAIT, Socket)

FIXTURES = Path(__file__).parent / "fixtures"
AF_INET, AF_INET6 = socket.AF_INET, socket.AF_INET6
IS_ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not IS_ROOT, reason="needs root (CAP_NET_ADMIN) for netlink multicast groups")

# From tests/agent/fixtures/capture.py's output (see fixtures/README.md).
PROC_EVENTS_CHILD = 12333


def by_ports(sockets: list[Socket]) -> dict[tuple[int, int], Socket]:
    return {(s.sport, s.dport): s for s in sockets}


# --- pure parsers over captured bytes ---

def test_dump_fixture_parses_every_socket():
    sockets = netlink.parse_messages((FIXTURES / "sock-diag-dump.bin").read_bytes())
    assert len(sockets) == 10
    got = by_ports(sockets)
    # the IPv4 client: 1000 bytes sent (tcpi_bytes_acked counts the SYN too: 1001), 300 received
    assert got[23002, 23001] == Socket(family=AF_INET, state=TCP_ESTABLISHED, src="127.0.0.1", sport=23002,
                                       dst="127.0.0.1", dport=23001, inode=147454, uid=0, cookie=20727,
                                       bytes_sent=1001, bytes_received=300, rtt_us=22, segs_out=4, segs_in=3,
                                       last_data_sent_ms=200, last_data_recv_ms=200, data_sent=1000,
                                       data_segs_out=1, data_segs_in=1)     # one request, one answer
    assert (got[23005, 23006].data_segs_out, got[23005, 23006].data_segs_in) == (0, 1)   # 10 bytes in only
    server = got[23001, 23002]
    assert (server.state, server.bytes_sent, server.bytes_received) == (TCP_ESTABLISHED, 300, 1000)
    listener = got[23001, 0]
    assert (listener.family, listener.state, listener.src, listener.dst, listener.inode) == \
        (AF_INET, TCP_LISTEN, "127.0.0.1", "0.0.0.0", 147453)
    assert listener.bytes_sent == listener.rtt_us == 0
    # IPv6
    assert got[23003, 0].src == "::1" and got[23003, 0].dst == "::" and got[23003, 0].state == TCP_LISTEN
    v6_client, v6_server = got[23004, 23003], got[23003, 23004]
    assert (v6_client.family, v6_client.src, v6_client.dst) == (AF_INET6, "::1", "::1")
    assert (v6_client.bytes_sent, v6_client.bytes_received) == (2001, 500)
    assert (v6_server.bytes_sent, v6_server.bytes_received) == (500, 2000)
    assert v6_client.rtt_us > 0 and v6_server.rtt_us > 0
    # a dual-stack listener's accepted IPv4 connection: AF_INET6 with ::ffff:127.0.0.1, shown as IPv4
    mapped = got[23005, 23006]
    assert (mapped.family, mapped.src, mapped.dst, mapped.bytes_received) == (AF_INET6, "127.0.0.1", "127.0.0.1", 10)
    assert (got[23005, 0].family, got[23005, 0].src) == (AF_INET6, "::")
    # TIME_WAIT: no file, no tcp_info attribute, so no counters
    tw = got[23009, 23008]
    assert (tw.state, tw.inode, tw.bytes_sent, tw.bytes_received, tw.segs_out) == (TCP_TIME_WAIT, 0, 0, 0, 0)


def test_destroy_fixture_reports_final_counters_in_state_close():
    dumped = by_ports(netlink.parse_messages((FIXTURES / "sock-diag-dump.bin").read_bytes()))
    events = netlink.parse_messages((FIXTURES / "sock-diag-destroy.bin").read_bytes())
    assert len(events) == 14
    # every close event: TCP_CLOSE, no inode (the file is gone), uid 0 (not filled in)
    assert {(e.state, e.inode, e.uid) for e in events} == {(TCP_CLOSE, 0, 0)}
    got = by_ports(events)
    # a closed connection keeps its cookie from the dump, and its counters grew by the FIN
    for ports in ((23002, 23001), (23001, 23002), (23004, 23003), (23003, 23004), (23006, 23005), (23005, 23006)):
        assert got[ports].cookie == dumped[ports].cookie
        assert got[ports].bytes_sent == dumped[ports].bytes_sent + 1
        assert got[ports].bytes_received == dumped[ports].bytes_received + 1
    assert (got[23002, 23001].bytes_sent, got[23002, 23001].bytes_received) == (1002, 301)
    # a listener's close event looks like any unconnected socket's
    assert (got[23001, 0].dst, got[23001, 0].cookie) == ("0.0.0.0", dumped[23001, 0].cookie)
    # a blocking connect refused: the kernel's tcp_disconnect() reset the source address, the
    # destination port and the counters before the socket was freed; the destination address stays
    assert got[23011, 0] == Socket(family=AF_INET, state=TCP_CLOSE, src="0.0.0.0", sport=23011,
                                   dst="127.0.0.1", dport=0, inode=0, uid=0, cookie=20736,
                                   last_data_sent_ms=5875816, last_data_recv_ms=5875816, data_sent=0,
                                   data_segs_out=0, data_segs_in=0)
    # a non-blocking connect refused: ports kept, one SYN out, one RST in, no RTT sample
    refused = got[23010, 23007]
    assert (refused.src, refused.dst, refused.segs_out, refused.segs_in, refused.rtt_us) == \
        ("127.0.0.1", "127.0.0.1", 1, 1, 0)


def _with_tcp_info_length(message: bytes, size: int) -> bytes:
    """One sock_diag message with its INET_DIAG_INFO payload cut to ``size`` bytes (older kernels)."""
    out, off, end = bytearray(message[:88]), 88, struct.unpack_from("=I", message)[0]
    while off < end:
        alen, atype = struct.unpack_from("=HH", message, off)
        attr = message[off:off + alen]
        if atype == netlink.INET_DIAG_INFO:
            attr = struct.pack("=HH", 4 + size, atype) + attr[4:4 + size]
        out += attr + b"\0" * (-len(attr) % 4)
        off += (alen + 3) & ~3
    struct.pack_into("=I", out, 0, len(out))
    return bytes(out)


def _first_message(data: bytes, sport: int) -> bytes:
    off = 0
    while off < len(data):
        length = struct.unpack_from("=I", data, off)[0]
        if struct.unpack_from(">H", data, off + 20)[0] == sport:
            return data[off:off + length]
        off += (length + 3) & ~3
    raise AssertionError(f"no message for port {sport}")


@pytest.mark.parametrize("size, expected", [
    (280, (22, 1001, 300, 4, 3, 1000, 200)),     # today's kernel: more than we read
    (216, (22, 1001, 300, 4, 3, 1000, 200)),     # Linux 4.19: up to tcpi_bytes_retrans
    (144, (22, 1001, 300, 4, 3, -1, 200)),         # Linux 4.2: up to tcpi_segs_in
    (136, (22, 1001, 300, 0, 0, -1, 200)),         # Linux 4.1: bytes, no segments
    (104, (22, 0, 0, 0, 0, -1, 200)),              # before 4.1: tcpi_rtt only
    (60, (0, 0, 0, 0, 0, -1, 0)),                # too short for tcpi_rtt: nothing
])
def test_tcp_info_is_read_only_as_far_as_the_attribute_goes(size, expected):
    message = _first_message((FIXTURES / "sock-diag-dump.bin").read_bytes(), 23002)
    [s] = netlink.parse_messages(_with_tcp_info_length(message, size))
    assert (s.rtt_us, s.bytes_sent, s.bytes_received, s.segs_out, s.segs_in, s.data_sent,
            s.last_data_sent_ms) == expected
    assert (s.sport, s.dport, s.inode, s.cookie) == (23002, 23001, 147454, 20727)


def test_parser_stops_at_done_and_raises_on_errors():
    data = (FIXTURES / "sock-diag-dump.bin").read_bytes()
    assert struct.unpack_from("=IHHI", data, len(data) - 20) == (20, netlink.NLMSG_DONE, 2, 2)   # seq 2: IPv6
    out: list[Socket] = []
    assert netlink._parse(data, len(data), out) is True
    assert netlink._parse(data, len(data), [], seq=99) is False      # another request's messages: skipped
    error = struct.pack("=IHHIIi", 36, netlink.NLMSG_ERROR, 0, 1, 0, -1) + b"\0" * 16
    with pytest.raises(OSError) as exc:
        netlink.parse_messages(error)
    assert exc.value.errno == 1
    assert netlink.parse_messages(struct.pack("=IHHIIi", 36, netlink.NLMSG_ERROR, 0, 1, 0, 0) + b"\0" * 16) == []
    with pytest.raises(ValueError, match="truncated netlink message at byte 0"):
        netlink.parse_messages(data[:100])


def test_proc_events_fixture():
    data = (FIXTURES / "proc-events.bin").read_bytes()
    child = PROC_EVENTS_CHILD
    # the subscription's acknowledgement (PROC_EVENT_NONE) is skipped
    assert netlink.parse_proc_events(data) == [("fork", child, child), ("exec", child, child), ("exit", child, child)]
    # an event we do not report (PROC_EVENT_COMM = 0x200) is skipped too
    comm = bytearray(data[76:152])
    struct.pack_into("=I", comm, 36, 0x200)
    assert netlink.parse_proc_events(bytes(comm)) == []


def test_dump_request_bytes():
    request = netlink.dump_request(7, AF_INET6, (TCP_LISTEN,))
    assert len(request) == 72
    assert struct.unpack_from("=IHHII", request) == (72, 20, 0x301, 7, 0)
    family, protocol, ext, states = struct.unpack_from("=BBBxI", request, 16)
    assert (family, protocol, ext, states) == (AF_INET6, socket.IPPROTO_TCP, 1 << 1, 1 << TCP_LISTEN)


# --- the real kernel ---

def _pairs(family: int, host: str, count: int):
    listener = socket.socket(family)
    listener.bind((host, 0))
    listener.listen()
    pairs = []
    for i in range(1, count + 1):
        client = socket.create_connection(listener.getsockname()[:2])
        server, _ = listener.accept()
        client.sendall(b"u" * 1000 * i)
        _recv_exactly(server, 1000 * i)
        server.sendall(b"d" * 10 * i)
        _recv_exactly(client, 10 * i)
        pairs.append((client, server, 1000 * i, 10 * i))
    return listener, pairs


def _recv_exactly(sock: socket.socket, n: int) -> None:
    while n:
        n -= len(sock.recv(n))


def _wait_for(fn, timeout: float = 3.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; last value {value!r}")
        time.sleep(0.02)


@pytest.mark.parametrize("family, host", [(AF_INET, "127.0.0.1"), (AF_INET6, "::1")])
def test_dump_sees_our_connections_with_their_bytes(family, host):
    listener, pairs = _pairs(family, host, 3)
    try:
        port = listener.getsockname()[1]

        def acked() -> dict | None:
            got = by_ports(s for s in netlink.dump(families=(family,)) if port in (s.sport, s.dport))
            clients = [got.get((c.getsockname()[1], port)) for c, _, _, _ in pairs]
            done = all(c is not None and c.bytes_sent >= up for c, (_, _, up, _) in zip(clients, pairs))
            return got if done else None
        got = _wait_for(acked, what="the peers' ACKs")      # tcpi_bytes_acked waits for the ACK
        assert got[port, 0].state == TCP_LISTEN and got[port, 0].inode == os.fstat(listener.fileno()).st_ino
        assert got[port, 0].dst == ("0.0.0.0" if family == AF_INET else "::")
        for client, server, up, down in pairs:
            cport = client.getsockname()[1]
            c, s = got[cport, port], got[port, cport]
            assert (c.family, c.state, c.src, c.dst) == (family, TCP_ESTABLISHED, host, host)
            assert (c.inode, s.inode) == (os.fstat(client.fileno()).st_ino, os.fstat(server.fileno()).st_ino)
            assert c.uid == s.uid == os.geteuid()
            assert up <= c.bytes_sent <= up + 1            # + the SYN
            assert (c.bytes_received, s.bytes_received) == (down, up)
            assert down <= s.bytes_sent <= down + 1
            assert c.rtt_us > 0 and c.segs_out > 0 and c.segs_in > 0
            assert c.cookie != s.cookie
        assert len({s.cookie for s in got.values()}) == len(got)
        # filters
        only_listeners = netlink.dump(families=(family,), states=(TCP_LISTEN,))
        assert {s.state for s in only_listeners} == {TCP_LISTEN}
        assert any(s.sport == port for s in only_listeners)
        other = AF_INET6 if family == AF_INET else AF_INET
        assert not [s for s in netlink.dump(families=(other,)) if s.sport == port and s.src == host]
    finally:
        for client, server, _, _ in pairs:
            client.close()
            server.close()
        listener.close()


def test_dump_shows_ipv4_mapped_addresses_as_ipv4():
    listener = socket.socket(AF_INET6)
    listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    listener.bind(("::", 0))
    listener.listen()
    port = listener.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    server, _ = listener.accept()
    try:
        cport = client.getsockname()[1]
        got = by_ports(s for s in netlink.dump() if port in (s.sport, s.dport))
        accepted = got[port, cport]
        assert (accepted.family, accepted.src, accepted.dst) == (AF_INET6, "127.0.0.1", "127.0.0.1")
        assert (got[cport, port].family, got[cport, port].src) == (AF_INET, "127.0.0.1")
    finally:
        client.close()
        server.close()
        listener.close()


def _closed_port(family: int, host: str) -> int:
    with socket.socket(family) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _events(listener: netlink.DestroyListener, pred, count: int = 1) -> list[Socket]:
    seen: list[Socket] = []

    def poll():
        select.select([listener], [], [], 0.05)
        seen.extend(e for e in listener.read() if pred(e))
        return len(seen) >= count
    _wait_for(poll, what=f"{count} close event(s)")
    return seen


@needs_root
def test_destroy_listener_sees_a_connection_that_lived_between_two_polls():
    with netlink.DestroyListener() as events:
        listener, [(client, server, up, down)] = _pairs(AF_INET, "127.0.0.1", 1)
        port, cport = listener.getsockname()[1], client.getsockname()[1]
        client_cookie = {(s.sport, s.dport): s.cookie for s in netlink.dump(families=(AF_INET,))}[cport, port]
        client.close()
        server.close()
        listener.close()
        got = by_ports(_events(events, lambda e: port in (e.sport, e.dport), 3))
        closed_client, closed_server = got[cport, port], got[port, cport]
        assert {e.state for e in got.values()} == {TCP_CLOSE}
        assert closed_client.cookie == client_cookie                  # joins the close to the snapshots
        assert (closed_client.inode, closed_client.src, closed_client.dst) == (0, "127.0.0.1", "127.0.0.1")
        assert up <= closed_client.bytes_sent <= up + 2                # + SYN and FIN
        assert down <= closed_client.bytes_received <= down + 1        # + FIN
        assert up <= closed_server.bytes_received <= up + 1
        assert down <= closed_server.bytes_sent <= down + 1
        assert closed_client.rtt_us > 0
        assert got[port, 0].dst == "0.0.0.0"                            # the listener


@needs_root
@pytest.mark.parametrize("family, host", [(AF_INET, "127.0.0.1"), (AF_INET6, "::1")])
def test_destroy_listener_sees_refused_connects(family, host):
    """What the kernel reports for a failed connect (Linux 6.18): state TCP_CLOSE, never SYN_SENT.
    A blocking connect() that fails is disconnected by the kernel before close: its close event
    has no destination port, an unspecified source and zero counters. A non-blocking one keeps
    both ports and shows one SYN out, one RST in, no RTT sample."""
    closed = _closed_port(family, host)
    unspecified = "0.0.0.0" if family == AF_INET else "::"
    with netlink.DestroyListener() as events:
        blocking = socket.socket(family)
        blocking.bind((unspecified, 0))                 # a known source port for the assertion
        bport = blocking.getsockname()[1]
        with pytest.raises(ConnectionRefusedError):
            blocking.connect((host, closed))
        blocking.close()
        nonblocking = socket.socket(family)
        nonblocking.setblocking(False)
        with pytest.raises(BlockingIOError):
            nonblocking.connect((host, closed))
        nport = nonblocking.getsockname()[1]
        select.select([], [nonblocking], [], 2)
        assert nonblocking.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 111      # ECONNREFUSED
        nonblocking.close()
        got = by_ports(_events(events, lambda e: e.sport in (bport, nport), 2))
        assert got[bport, 0] == Socket(family=family, state=TCP_CLOSE, src=unspecified, sport=bport, dst=host,
                                       dport=0, inode=0, uid=0, cookie=got[bport, 0].cookie, data_sent=0,
                                       data_segs_out=0, data_segs_in=0,
                                       last_data_sent_ms=got[bport, 0].last_data_sent_ms,
                                       last_data_recv_ms=got[bport, 0].last_data_recv_ms)
        refused = got[nport, closed]
        assert (refused.state, refused.src, refused.dst) == (TCP_CLOSE, host, host)
        assert (refused.segs_out, refused.segs_in, refused.rtt_us, refused.bytes_sent, refused.bytes_received) == \
            (1, 1, 0, 0, 0)


@needs_root
def test_proc_connector_sees_a_subprocess_exec_and_exit():
    with netlink.ProcConnector() as procs:
        child = subprocess.Popen([sys.executable, "-c", "pass"])
        child.wait()
        seen: list[tuple[str, int, int]] = []

        def poll():
            select.select([procs], [], [], 0.05)
            seen.extend(e for e in procs.read() if child.pid in e[1:])
            return {"exec", "exit"} <= {kind for kind, _, _ in seen}
        _wait_for(poll, what="the child's exec and exit")
        assert ("fork", child.pid, child.pid) in seen
        assert ("exec", child.pid, child.pid) in seen
        assert seen[-1] == ("exit", child.pid, child.pid)


# --- a network namespace of our own ---

LISTEN_IN_NETNS = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
sys.stdin.read()
"""


def test_dump_inside_a_network_namespace(netns):
    path = f"/var/run/netns/{netns}"
    with netlink.DestroyListener(netns=path) as closes:
        child = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", LISTEN_IN_NETNS],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            port = int(child.stdout.readline())
            inside = [s for s in netlink.dump(netns=path) if s.sport == port]
            assert [(s.state, s.src) for s in inside] == [(TCP_LISTEN, "127.0.0.1")]
            assert [s.sport for s in netlink.dump(netns=netns)] == [port]     # a bare name works too
            outside = {s.cookie for s in netlink.dump() if s.sport == port}
            assert inside[0].cookie not in outside
            assert inside[0].inode not in {s.inode for s in netlink.dump()}
        finally:
            child.stdin.close()
            child.wait(timeout=10)
        [event] = _events(closes, lambda e: e.sport == port)
        assert (event.state, event.cookie) == (TCP_CLOSE, inside[0].cookie)


def test_a_missing_namespace_raises():
    with pytest.raises(FileNotFoundError):
        netlink.dump(netns="/var/run/netns/netatlas-no-such-namespace")


# --- tcp_info's counters -> payload bytes and exchanges (pure) ---

def test_payload_bytes_leave_out_the_syn_and_fins_the_kernel_counted():
    """The fixture's 100-byte-scale exchanges: tcpi_bytes_acked counts the connecting side's SYN and
    every acknowledged FIN, tcpi_bytes_received the peer's FIN; payload() gives the bytes sent."""
    closes = by_ports(netlink.parse_messages((FIXTURES / "sock-diag-destroy.bin").read_bytes()))
    dumped = by_ports(netlink.parse_messages((FIXTURES / "sock-diag-dump.bin").read_bytes()))
    truth = {(23002, 23001): (True, 1000, 300), (23001, 23002): (False, 300, 1000),
             (23004, 23003): (True, 2000, 500), (23003, 23004): (False, 500, 2000),
             (23006, 23005): (True, 10, 0), (23005, 23006): (False, 0, 10)}
    for ports, (outbound, sent, received) in truth.items():
        assert netlink.payload(closes[ports], outbound) == (sent, received), ports
        assert netlink.payload(dumped[ports], outbound) == (sent, received), ports
        # before Linux 4.19 (no tcpi_bytes_sent): bytes_acked less the SYN (outbound) and the acked FIN
        old = dataclasses.replace(closes[ports], data_sent=-1)
        assert netlink.payload(old, outbound) == (sent, received), ports
    assert (closes[23002, 23001].bytes_sent, closes[23002, 23001].bytes_received) == (1002, 301)   # raw
    # a close event whose peer's FIN the application read (rqueue 0): a server that read to the end
    # had it; a client freed when its own FIN was acknowledged (FIN_WAIT2 timewait) had not
    client = dataclasses.replace(closes[23002, 23001], bytes_received=300, rqueue=0)
    server = dataclasses.replace(closes[23001, 23002], rqueue=0)
    assert netlink.payload(client, True) == (1000, 300)
    assert netlink.payload(server, False) == (300, 1000)
    # CLOSE_WAIT in a dump: the peer's FIN is in bytes_received, certainly
    waiting = dataclasses.replace(dumped[23001, 23002], state=8, bytes_received=1001)
    assert netlink.payload(waiting, False) == (300, 1000)


def _at(sent, received, lds, ldr, cookie=1, state=TCP_ESTABLISHED):
    return Socket(AF_INET, state, "10.0.0.1", 40000, "10.0.0.2", 80, 1, 0, cookie, sent, received,
                  last_data_sent_ms=lds, last_data_recv_ms=ldr, data_sent=sent)


def test_exchanges_are_seen_when_the_last_data_turns_around():
    ex = netlink.Exchanges()
    # a client: its request goes out in the connect's jiffy (timestamps tie; no byte in yet)
    assert ex.observe(_at(100, 0, 12, 12), True, 100, 0) == (0, 0, 0, 0)
    # the answer came 22 ms after the request's last byte
    assert ex.observe(_at(100, 100, 30, 8), True, 100, 100) == (1, 22_000, 22_000, 22_000)
    # nothing new: no new exchange, the count stays
    assert ex.observe(_at(100, 100, 1030, 1008), True, 100, 100) == (1, 22_000, 0, 0)
    # request and answer between two observations, seen at the close event (then forgotten)
    assert ex.observe(_at(200, 200, 9, 5), True, 200, 200, final=True) == (2, 26_000, 4_000, 4_000)
    assert len(ex) == 0
    # a server: the request in, then the answer out 3 ms later, seen at once
    assert ex.observe(_at(100, 100, 2, 5, cookie=2), False, 100, 100) == (1, 3_000, 3_000, 3_000)
    # a one-way stream (only sending) makes no exchange
    for n in range(1, 4):
        assert ex.observe(_at(1000 * n, 0, 1, 500, cookie=3), True, 1000 * n, 0)[0] == 0
    # a request still waiting for its answer at the observation counts once the answer comes
    assert ex.observe(_at(100, 0, 4, 50, cookie=4), True, 100, 0)[0] == 0
    assert ex.observe(_at(100, 100, 60, 2, cookie=4), True, 100, 100) == (1, 58_000, 58_000, 58_000)


def test_exchanges_seen_first_after_the_data_turned_again_wait_for_a_time():
    """A connection first dumped after one exchange and the next request (data segments 1 out, 2
    in, the last data came in): the first exchange's time is gone from tcp_info, so it is not
    counted at 0 ms but waits for the socket's first time (the flake of test_fidelity_delays: a
    server polled in phase with its client's requests reported ResponseTimeMin 0 for 50 ms)."""
    def at(sent, received, lds, ldr, out, into, cookie=1):
        return dataclasses.replace(_at(sent, received, lds, ldr, cookie), data_segs_out=out, data_segs_in=into)
    ex = netlink.Exchanges()
    assert ex.observe(at(60, 80, 404, 4, 1, 2), False, 60, 80) == (0, 0, 0, 0)
    assert ex.observe(at(120, 120, 452, 52, 2, 3), False, 120, 120) == (0, 0, 0, 0)   # turned again
    # the third answer went out 50 ms after its request: all three exchanges get that time
    assert ex.observe(at(180, 120, 3, 53, 3, 3), False, 180, 120) == (3, 150_000, 50_000, 50_000)
    # later exchanges seen turned take the last time known, as before
    assert ex.observe(at(240, 200, 400, 2, 4, 5), False, 240, 200) == (4, 200_000, 50_000, 50_000)
    # a socket that never had a time counts its exchanges at its close, at 0 ms
    assert ex.observe(at(60, 80, 404, 4, 1, 2, cookie=2), False, 60, 80) == (0, 0, 0, 0)
    assert ex.observe(at(60, 80, 900, 500, 1, 2, cookie=2), False, 60, 80, final=True) == (1, 0, 0, 0)


def test_with_payload_is_replace_of_the_counters():
    s = by_ports(netlink.parse_messages((FIXTURES / "sock-diag-dump.bin").read_bytes()))[23002, 23001]
    assert netlink.with_payload(s, 1000, 300, 2, 5000, 2000, 3000) == dataclasses.replace(
        s, bytes_sent=1000, bytes_received=300, responses=2, rt_sum_us=5000, rt_min_us=2000, rt_max_us=3000)
