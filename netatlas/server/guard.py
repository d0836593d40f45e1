"""Slow and too many clients: uvicorn's HTTP protocol with read timeouts and a connection cap.

uvicorn times out idle keep-alive connections but not a request that arrives slowly: a client
that sends half a request's headers (slowloris) or trickles its body holds a connection for
ever, and 1,100 of them made the server unreachable. ``guarded_protocol(settings)`` is
uvicorn's httptools protocol with, per connection:

* a header timer, from the connection's start (and again from the end of each answer on a
  keep-alive connection) until the request's headers are complete: ``header_timeout``;
* a body timer, from the headers' end until the whole body has arrived: ``body_timeout``;

at either limit the server answers ``408`` and closes the connection. And, for the server:

* at most ``max_connections`` open connections. A connection past the cap closes the oldest
  one that is *waiting* (has not sent a whole request's headers yet, or idles between keep-alive
  requests): an attacker's half-open connections make room for real clients instead of
  locking them out. When every open connection is busy with a request, the new one is
  refused with ``503`` and ``Retry-After``.

The keep-alive timeout is uvicorn's own (``keepalive_timeout`` sets it).
"""
from __future__ import annotations

import logging

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("netatlas.server")

# Raw answers written by the protocol itself (no ASGI app runs): status -> bytes on the wire.
ANSWERS = {
    408: (b"408 Request Timeout", b'{"error":{"code":"REQUEST_TIMEOUT","message":"the request did not '
                                  b'arrive in time; send it again"}}', b""),
    503: (b"503 Service Unavailable", b'{"error":{"code":"TOO_MANY_CONNECTIONS","message":"the server has '
                                      b'too many open connections; try again"}}', b"retry-after: 1\r\n"),
}


def raw_answer(status: int) -> bytes:
    """A complete HTTP/1.1 answer with a JSON error body that closes the connection."""
    line, body, extra = ANSWERS[status]
    return (b"HTTP/1.1 " + line + b"\r\ncontent-type: application/json\r\ncontent-length: "
            + str(len(body)).encode() + b"\r\nconnection: close\r\n" + extra + b"\r\n" + body)


class Tally:
    """Counts of connections the guard closed, by reason, logged as one warning at most every
    ``every`` seconds (an attack should be visible in the log without flooding it)."""

    def __init__(self, every: float = 60.0):
        self.every, self.counts, self.logged = every, {}, None

    def note(self, reason: str, now: float) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1
        if self.logged is None or now - self.logged >= self.every:
            log.warning("slow or surplus connections closed since the last report: %s",
                        ", ".join(f"{n} {r}" for r, n in sorted(self.counts.items())))
            self.counts, self.logged = {}, now


def guarded_protocol(settings) -> type:
    """A protocol class for ``uvicorn.Config(http=...)`` enforcing ``settings``' header_timeout,
    body_timeout and max_connections. Each call makes a class with its own connection registry
    (one per server)."""

    class GuardedProtocol(HttpToolsProtocol):
        header_timeout = settings.header_timeout
        body_timeout = settings.body_timeout
        max_connections = settings.max_connections
        open: set = set()           # every connection not yet closed by us or the peer
        waiting: dict = {}          # connections waiting for a request's headers, oldest first

        closed = Tally()            # connections closed by the guard, logged at most once a minute

        _timer = None

        # ------------------------------------------------------------ the connection cap

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            cls = type(self)
            cls.open.add(self)
            if len(cls.open) > cls.max_connections:
                oldest = next(iter(cls.waiting), None)
                if oldest is None:          # every other connection is busy with a request
                    self._give_up(503, "refused: %d connections are open and busy")
                    return
                oldest._give_up(None, "closed to make room: %d connections open, this one sent no request")
            self._wait_for_headers()

        def connection_lost(self, exc) -> None:
            self._forget()
            super().connection_lost(exc)

        def _forget(self) -> None:
            type(self).open.discard(self)
            type(self).waiting.pop(self, None)
            self._cancel_timer()

        def _give_up(self, status: int | None, why: str) -> None:
            """Close this connection now (with a raw answer when ``status`` is given)."""
            log.debug("connection from %s " + why, self.client, len(type(self).open))
            type(self).closed.note(why.split(":")[0].split(" (")[0], self.loop.time())
            self._forget()
            if self.transport.is_closing():
                return
            if status is not None:
                self.transport.write(raw_answer(status))
            if self.cycle is not None and not self.cycle.response_complete:
                self.cycle.disconnected = True      # the app's pending receive() ends; its answer is dropped
                self.cycle.message_event.set()
            self.transport.close()

        # ------------------------------------------------------------ timers

        def _cancel_timer(self) -> None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None

        def _arm(self, seconds: float, what: str) -> None:
            self._cancel_timer()
            self._timer = self.loop.call_later(seconds, self._expired, what)

        def _expired(self, what: str) -> None:
            self._timer = None
            started = self.cycle is not None and self.cycle.response_started and not self.cycle.response_complete
            self._give_up(None if started else 408, f"timed out waiting for the {what} (%d connections open)")

        def _wait_for_headers(self) -> None:
            type(self).waiting[self] = None
            self._arm(self.header_timeout, "request's headers")

        def on_headers_complete(self) -> None:
            type(self).waiting.pop(self, None)
            self._arm(self.body_timeout, "request's body")
            super().on_headers_complete()

        def on_message_complete(self) -> None:
            self._cancel_timer()
            super().on_message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and self in type(self).open:
                self._wait_for_headers()        # keep-alive: the next request's headers, in time

    return GuardedProtocol


def proxy_options(settings) -> dict:
    """uvicorn.Config's proxy arguments: X-Forwarded-For/-Proto believed only from trusted_proxies
    (uvicorn's default trusts 127.0.0.1, so anything on the machine could name any sender)."""
    networks = settings.proxy_networks()
    if not networks:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": [str(n) for n in networks]}
