"""Slowloris (issue 11, item 8) against the real server on loopback: 1,100 half-open requests
must not make it unreachable, and the server closes them after its header timeout.

The server runs with the soft file-descriptor limit most machines give a service (1,024, as
systemd and login shells do): without a connection cap, 1,100 connections that never finish
their headers use up its descriptors and it stops accepting. Its limits are set small through
the environment (NETATLAS_HEADER_TIMEOUT ...), so that the test runs in seconds.
"""
from __future__ import annotations

import contextlib
import resource
import socket
import time

import pytest

from test_server import Server, request

HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
MAX_CONNECTIONS = 200
HALF_OPEN = 1100
SERVER_NOFILE = 1024
LIMITS = {"NETATLAS_HEADER_TIMEOUT": str(HEADER_TIMEOUT), "NETATLAS_BODY_TIMEOUT": str(BODY_TIMEOUT),
          "NETATLAS_MAX_CONNECTIONS": str(MAX_CONNECTIONS), "NETATLAS_KEEPALIVE_TIMEOUT": "1"}


@contextlib.contextmanager
def nofile(soft: int):
    """This process's soft RLIMIT_NOFILE set to ``soft`` (at most the hard limit) for the block."""
    old_soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(soft, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (old_soft, hard))


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("slowloris") / "data"
    with pytest.MonkeyPatch.context() as mp, nofile(SERVER_NOFILE):     # the child inherits both
        for name, value in LIMITS.items():
            mp.setenv(name, value)
        s = Server(data).start()
    yield s
    s.kill()


def half_open(port: int) -> socket.socket:
    """A connection that starts a request and never ends its headers."""
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
    return s


def closed_by_server(s: socket.socket, within: float) -> tuple[bool, bytes]:
    """(whether the server closed ``s`` within ``within`` seconds, what it sent before closing)."""
    s.settimeout(max(within, 0.01))
    got = b""
    try:
        while chunk := s.recv(4096):
            got += chunk
        return True, got
    except ConnectionResetError:
        return True, got
    except TimeoutError:
        return False, got


def read_response(s: socket.socket) -> bytes:
    """One whole HTTP answer (headers and a Content-Length body) from ``s``."""
    got = b""
    while b"\r\n\r\n" not in got:
        got += s.recv(65536) or b"<closed>"
    head, _, body = got.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.lower().split(b"\r\n") if line.startswith(b"content-length:")))
    while len(body) < length:
        body += s.recv(65536) or b"<closed>"
    return head + b"\r\n\r\n" + body


def timed(fn):
    start = time.monotonic()
    result = fn()
    return result, time.monotonic() - start


def test_1100_half_open_requests_neither_lock_out_clients_nor_stay_open(server):
    client = server.client()
    need = HALF_OPEN + 200
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < need:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
    sockets = []
    try:
        opened = time.monotonic()
        for _ in range(HALF_OPEN):
            sockets.append(half_open(server.port))
        opened = time.monotonic() - opened

        health, health_took = timed(lambda: request(server.port, "GET", "/healthz"))
        assert health.status == 200 and health_took < 5, (health, health_took)
        answer, query_took = timed(lambda: client.query("print x = 1"))
        assert answer.status == 200 and answer.body["tables"][0]["rows"] == [[1]] and query_took < 5, \
            (answer, query_took)

        # every half-open connection is closed by the server, at the latest one header timeout
        # after it was opened; the newest ones (under the cap) are told why: 408
        deadline = time.monotonic() + HEADER_TIMEOUT + 3
        results = [closed_by_server(s, deadline - time.monotonic()) for s in sockets]
        still_open = sum(not closed for closed, _ in results)
        assert still_open == 0, f"{still_open} of {HALF_OPEN} half-open connections are still open"
        told = [got for _, got in results if got]
        assert told and all(got.startswith(b"HTTP/1.1 408 ") for got in told), told[:3]
        assert len(told) >= MAX_CONNECTIONS // 2, len(told)     # the last ones waited for their timeout
        assert b"REQUEST_TIMEOUT" in told[-1]
        print(f"opened {HALF_OPEN} half-open connections in {opened:.2f} s; then /healthz took "
              f"{health_took * 1000:.0f} ms, a query {query_took * 1000:.0f} ms; {len(told)} answered 408")
    finally:
        for s in sockets:
            s.close()
    assert request(server.port, "GET", "/healthz").status == 200
    assert "slow or surplus connections closed" in server.log.read_text()     # visible to the operator


def bearer(server) -> bytes:
    return b"Authorization: Bearer " + server.client().query_key.secret.encode() + b"\r\n"


def test_a_trickling_body_is_answered_408_after_the_body_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"POST /api/query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  + bearer(server) + b"Content-Length: 1000\r\n\r\n{\"query\": ")
        start = time.monotonic()
        closed, got = closed_by_server(s, BODY_TIMEOUT + 3)
        took = time.monotonic() - start
    assert closed and got.startswith(b"HTTP/1.1 408 "), got
    assert BODY_TIMEOUT - 0.5 < took < BODY_TIMEOUT + 2, took


def test_a_request_that_arrives_in_time_is_served_on_a_slow_connection(server):
    """The timers bound a request's arrival, not the connection: keep-alive requests each get their own."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        for _ in range(2):
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n")
            time.sleep(HEADER_TIMEOUT / 2)
            s.sendall(b"\r\n")
            got = read_response(s)
            assert got.startswith(b"HTTP/1.1 200 ") and got.endswith(b"}"), got
            time.sleep(0.5)     # under the keep-alive timeout (1 s)


def test_an_idle_keep_alive_connection_is_closed_after_the_keepalive_timeout(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as s:
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert read_response(s).startswith(b"HTTP/1.1 200 ")
        start = time.monotonic()
        closed, got = closed_by_server(s, 4)
        assert closed and got == b"" and time.monotonic() - start < 2.5


def test_when_every_connection_is_busy_a_new_one_is_refused_with_503(tmp_path):
    """The cap is kept when nothing can be closed to make room: busy connections (requests whose
    headers are complete and whose body is still coming) are not evicted."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in (LIMITS | {"NETATLAS_MAX_CONNECTIONS": "3", "NETATLAS_BODY_TIMEOUT": "30"}).items():
            mp.setenv(name, value)
        s = Server(tmp_path / "data").start()
    busy = []
    try:
        for _ in range(3):
            c = socket.create_connection(("127.0.0.1", s.port), timeout=10)
            c.sendall(b"POST /api/query HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                      + bearer(s) + b"Content-Length: 100\r\n\r\n{")
            busy.append(c)
        time.sleep(0.3)
        with socket.create_connection(("127.0.0.1", s.port), timeout=10) as extra:
            closed, got = closed_by_server(extra, 5)
        assert closed and got.startswith(b"HTTP/1.1 503 ") and b"retry-after: 1" in got.lower(), got
        assert b"TOO_MANY_CONNECTIONS" in got
    finally:
        for c in busy:
            c.close()
        s.kill()
