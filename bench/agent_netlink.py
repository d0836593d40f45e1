"""How long the agent's socket poll takes: a NETLINK_SOCK_DIAG dump with tcp_info, and its parse.

    python bench/agent_netlink.py [--connections 2000] [--repeat 50]

Opens N loopback TCP connections (2N sockets plus a listener) in this process, each with a few
bytes sent both ways, then times ``SockDiag.dump()`` (request, kernel, receive and parse:
what the agent pays every second) and ``parse_messages()`` alone over the captured datagrams.
Prints the median and best milliseconds per dump and microseconds per socket. Needs no root.
"""
from __future__ import annotations

import argparse
import resource
import socket
import statistics
import struct
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netatlas.agent import netlink  # noqa: E402


def open_connections(n: int) -> tuple[socket.socket, list[socket.socket]]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 2 * n + 64
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4096)
    address = listener.getsockname()
    held = []
    for _ in range(n):
        client = socket.create_connection(address)
        server, _ = listener.accept()
        client.sendall(b"q" * 100)
        server.recv(100)
        server.sendall(b"r" * 1000)
        client.recv(1000)
        held += (client, server)
    return listener, held


def capture(diag: netlink.SockDiag) -> list[bytes]:
    """The raw datagrams of one IPv4 dump (to time the parser alone)."""
    sock = diag.sock
    sock.send(netlink.dump_request(999_999, socket.AF_INET))
    chunks = []
    while True:
        chunk = sock.recv(netlink.RECV_BYTES)
        chunks.append(chunk)
        if _has_done(chunk):
            return chunks


def _has_done(chunk: bytes) -> bool:
    """Whether a dump datagram ends the dump (holds an NLMSG_DONE message)."""
    off = 0
    while off + 16 <= len(chunk):
        length, mtype = struct.unpack_from("=IH", chunk, off)
        if mtype == netlink.NLMSG_DONE:
            return True
        off += (length + 3) & ~3
    return False


def timed(fn, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--connections", type=int, default=2000)
    ap.add_argument("--repeat", type=int, default=50)
    args = ap.parse_args()

    listener, held = open_connections(args.connections)
    with netlink.SockDiag() as diag:
        sockets = diag.dump()
        ours = [s for s in sockets if listener.getsockname()[1] in (s.sport, s.dport)]
        chunks = capture(diag)
        dump_times = timed(diag.dump, args.repeat)
        parse_times = timed(lambda: [netlink.parse_messages(c) for c in chunks], args.repeat)
    n_parsed = sum(len(netlink.parse_messages(c)) for c in chunks)

    def report(what: str, times: list[float], n: int) -> None:
        med, best = statistics.median(times), min(times)
        print(f"{what:<34} median {med * 1e3:7.2f} ms  best {best * 1e3:7.2f} ms"
              f"  = {med / n * 1e6:5.2f} us/socket (median)")

    print(f"{args.connections} loopback connections: {len(ours)} of our sockets, {len(sockets)} in the dump; "
          f"{args.repeat} timed runs each")
    report(f"dump (IPv4+IPv6, {len(sockets)} sockets)", dump_times, len(sockets))
    report(f"parse only ({n_parsed} sockets, {len(chunks)} datagrams)", parse_times, n_parsed)
    linger_rst = struct.pack("ii", 1, 0)     # close with RST: leave no TIME_WAIT for the next run
    for s in held:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_rst)
        s.close()
    listener.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
