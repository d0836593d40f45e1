"""Authentication of the workspace API.

Ingestion uses the SharedKey scheme of the Log Analytics Data Collector API. The client signs

    POST\\n<content length>\\n<content type>\\nx-ms-date:<RFC 1123 date>\\n<path>

with HMAC-SHA256 under the base64-decoded key of an ``ingest`` key and sends

    Authorization: SharedKey <workspace id>:<base64 signature>
    x-ms-date: Tue, 07 May 2024 10:00:00 GMT

The content length is the ``Content-Length`` of the body as sent (after gzip, if gzipped); the
content type is the ``Content-Type`` header exactly as sent; the path is the request path
without the query string (``/api/ingest/VMConnection``).

Body digest: Azure's string to sign does not cover the body, so one observed request would let
anyone send another body of the same length while the date is fresh. A client may (the netatlas
agent does: ``signed_headers`` adds it by default) send ``x-ms-content-sha256: <base64 SHA-256 of
the body exactly as sent>``; it is then a line of the string to sign,

    POST\n<content length>\n<content type>\nx-ms-date:<date>\nx-ms-content-sha256:<digest>\n<path>

and the server checks the raw body (before gunzip) against it (``BodyDigest``). A request whose
User-Agent starts with ``netatlas-agent/`` must carry it; Azure-style clients without it still work.

Replay: a request without a batch id whose exact signature was already accepted within the skew
window is answered as a duplicate, not stored again (``ReplayCache``, bounded, in memory).

Queries use ``Authorization: Bearer <secret of a query or admin key>`` (or ``x-api-key``);
what changes the workspace needs an admin key (``ALLOWED``). Ingestion into a table needs a key
of a role the table lists (``Catalogue.ingest_roles``: an ingest key for the agent tables, an
admin key for ``ThreatIntelligenceIndicator``).

Failures raise ``AuthError`` with the HTTP status and error code to answer with:

| problem | status | code |
|---|---|---|
| no Authorization (or no x-ms-date for SharedKey) | 401 | AUTH_MISSING |
| Authorization or x-ms-date not in the expected form | 401 | AUTH_MALFORMED |
| x-ms-date more than ``max_skew`` (15 min) from the server's clock | 401 | AUTH_STALE_DATE |
| the workspace id is not this workspace's | 403 | AUTH_UNKNOWN_WORKSPACE |
| the signature or the key matches no key | 403 | AUTH_BAD_SIGNATURE / AUTH_BAD_KEY |
| a key of a role that may not do this (query key signing a batch, ingest key querying or writing ThreatIntelligenceIndicator) | 403 | AUTH_WRONG_ROLE |
| the body does not match its signed digest; a netatlas agent without a digest | 401 | AUTH_BAD_DIGEST / AUTH_DIGEST_REQUIRED |

Every comparison of a secret or signature is constant-time, and every key is tried, so the time
taken does not tell which key (or whether any) nearly matched.
"""
from __future__ import annotations

import base64
import binascii
import contextvars
import hashlib
import hmac
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Mapping

from .errors import AuthError
from .keys import Identity, Key

SCHEME = "SharedKey"
DATE_HEADER = "x-ms-date"
DIGEST_HEADER = "x-ms-content-sha256"
AGENT_PREFIX = "netatlas-agent/"     # a User-Agent that must sign the body's digest
MAX_SKEW = timedelta(minutes=15)

# the roles whose keys may do what needs ``role`` (an admin key can also query)
ALLOWED = {"query": ("query", "admin"), "admin": ("admin",), "ingest": ("ingest",)}


@dataclass(frozen=True)
class Credential:
    """What a request carries besides a key, resolved by the server (``server/sessions.py``): a
    sign-in session cookie (``kind`` "session": the signed-in key's id and hash) or a read-only
    share link (``kind`` "share", role "share": query work only). ``error``: (status, code,
    message) when it is expired, unknown or refused (a cross-site request)."""
    kind: str
    role: str = ""
    id: str = ""
    key_hash: str = ""
    error: tuple | None = None


# the request's Credential, set for the request by server/sessions.SessionMiddleware
CREDENTIAL: contextvars.ContextVar[Credential | None] = contextvars.ContextVar("netatlas_credential", default=None)




# ---------------------------------------------------------------- client side

def rfc1123(when: datetime | None = None) -> str:
    """An HTTP date: ``Tue, 07 May 2024 10:00:00 GMT``."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return format_datetime(when, usegmt=True)


def string_to_sign(method: str, content_length: int, content_type: str, date: str, path: str,
                   digest: str | None = None) -> str:
    digest_line = f"{DIGEST_HEADER}:{digest}\n" if digest is not None else ""
    return f"{method.upper()}\n{content_length}\n{content_type}\n{DATE_HEADER}:{date}\n{digest_line}{path}"


def body_digest(body: bytes) -> str:
    """The ``x-ms-content-sha256`` value of a body: base64 of its SHA-256."""
    return base64.b64encode(hashlib.sha256(body).digest()).decode("ascii")


def signature(key_b64: str, method: str, content_length: int, content_type: str, date: str,
              path: str, digest: str | None = None) -> str:
    """The base64 HMAC-SHA256 of the string to sign under the base64-decoded key."""
    key = base64.b64decode(key_b64)
    msg = string_to_sign(method, content_length, content_type, date, path, digest).encode("utf-8")
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode("ascii")


def sign(workspace_id: str, key_b64: str, method: str, content_length: int, content_type: str,
         date_rfc1123: str, path: str, digest: str | None = None) -> str:
    """The Authorization header value: ``SharedKey <workspace_id>:<signature>``."""
    sig = signature(key_b64, method, content_length, content_type, date_rfc1123, path, digest)
    return f"{SCHEME} {workspace_id}:{sig}"


def signed_headers(workspace_id: str, key_b64: str, body: bytes, path: str, *,
                   method: str = "POST", content_type: str = "application/json",
                   gzipped: bool = False, batch_id: str | None = None,
                   date: datetime | None = None, digest: bool = True) -> dict[str, str]:
    """Every header an ingestion request needs; ``body`` is the body exactly as it will be sent.
    ``digest``: sign the body's SHA-256 too (``x-ms-content-sha256``; off: Azure's plain scheme)."""
    when = rfc1123(date)
    value = body_digest(body) if digest else None
    headers = {
        "Authorization": sign(workspace_id, key_b64, method, len(body), content_type, when, path, value),
        DATE_HEADER: when,
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
    }
    if value is not None:
        headers[DIGEST_HEADER] = value
    if gzipped:
        headers["Content-Encoding"] = "gzip"
    if batch_id is not None:
        headers["x-ms-batch-id"] = batch_id
    return headers


# ---------------------------------------------------------------- server side

def _parse_shared_key(header: str) -> tuple[str, bytes]:
    scheme, _, cred = header.strip().partition(" ")
    workspace_id, sep, sig = cred.strip().partition(":")
    if scheme != SCHEME or not sep or not workspace_id or not sig:
        raise AuthError(401, "AUTH_MALFORMED",
                        f"the Authorization header must be '{SCHEME} <workspace id>:<signature>'")
    try:
        return workspace_id, base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise AuthError(401, "AUTH_MALFORMED", "the signature in the Authorization header is not base64") from None


def _parse_date(value: str, now: datetime, max_skew: timedelta) -> None:
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        raise AuthError(401, "AUTH_MALFORMED", f"{DATE_HEADER} must be an RFC 1123 date "
                        f"('Tue, 07 May 2024 10:00:00 GMT'), got {value!r}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    if abs(now - when) > max_skew:
        raise AuthError(401, "AUTH_STALE_DATE",
                        f"stale or future date: {DATE_HEADER} {value!r} is more than "
                        f"{int(max_skew.total_seconds() // 60)} minutes from the server's clock "
                        f"({rfc1123(now)})")


def _matching(keys, check) -> Key | None:
    """The key for which ``check`` is true, trying every key (no early exit)."""
    found = None
    for key in keys:
        if check(key) and found is None:
            found = key
    return found


def _digest(headers: Mapping[str, str]) -> str | None:
    """The signed body digest of the request (None without one); AuthError when a netatlas agent
    sends none or the value is not a base64 SHA-256."""
    value = headers.get(DIGEST_HEADER)
    if value is None:
        if (headers.get("user-agent") or "").startswith(AGENT_PREFIX):
            raise AuthError(401, "AUTH_DIGEST_REQUIRED", f"a netatlas agent must sign the body's digest "
                            f"({DIGEST_HEADER}: <base64 SHA-256 of the body as sent>)")
        return None
    try:
        if len(base64.b64decode(value, validate=True)) != hashlib.sha256().digest_size:
            raise ValueError
    except (binascii.Error, ValueError):
        raise AuthError(401, "AUTH_MALFORMED", f"{DIGEST_HEADER} must be the base64 SHA-256 of the body "
                        f"(44 characters), got {value[:60]!r}") from None
    return value


class BodyDigest:
    """The SHA-256 of a body as it arrives, checked at the end against the signed digest."""

    def __init__(self, expected: str | None):
        self.expected = expected
        self._sha = hashlib.sha256()
        self.received = 0

    def update(self, chunk: bytes) -> None:
        self._sha.update(chunk)
        self.received += len(chunk)

    def check(self) -> None:
        if self.expected is None:
            return
        got = base64.b64encode(self._sha.digest()).decode("ascii")
        if not hmac.compare_digest(got.encode("ascii"), self.expected.encode("ascii")):
            raise AuthError(401, "AUTH_BAD_DIGEST", f"the body does not match its signed {DIGEST_HEADER} "
                            f"(the body was changed, or the digest is not that of the body as sent)")


def verify_shared_key(identity: Identity, headers: Mapping[str, str], *, method: str, path: str,
                      content_length: int, now: datetime | None = None,
                      max_skew: timedelta = MAX_SKEW, roles: tuple[str, ...] = ("ingest",),
                      table: str | None = None) -> Key:
    """The key that signed this request, or AuthError. ``headers`` keys are lowercase. ``roles``:
    the roles that may ingest into ``table``. The body's digest, when signed, is checked later
    with ``BodyDigest(headers.get(DIGEST_HEADER))`` against the body as it arrives."""
    header = headers.get("authorization")
    if not header:
        raise AuthError(401, "AUTH_MISSING", f"missing Authorization header ('{SCHEME} <workspace id>:<signature>')")
    date = headers.get(DATE_HEADER)
    if not date:
        raise AuthError(401, "AUTH_MISSING", f"missing {DATE_HEADER} header (the date the request was signed)")
    workspace_id, sig = _parse_shared_key(header)
    _parse_date(date, now or datetime.now(timezone.utc), max_skew)
    if not hmac.compare_digest(workspace_id.encode("utf-8"), identity.workspace_id.encode("utf-8")):
        raise AuthError(403, "AUTH_UNKNOWN_WORKSPACE", f"unknown workspace id {workspace_id!r}")
    digest = _digest(headers)
    msg = string_to_sign(method, content_length, headers.get("content-type", ""), date, path, digest).encode("utf-8")

    def signed_by(key: Key) -> bool:     # a hashed key (query, admin) signs with its hash (Key.signing_key)
        return hmac.compare_digest(hmac.new(key.signing_bytes, msg, hashlib.sha256).digest(), sig)

    key = _matching(identity.keys, signed_by)
    if key is None:
        raise AuthError(403, "AUTH_BAD_SIGNATURE", "the signature does not match any key of this workspace "
                        "(check the key, and that the signed content length, content type, date and path "
                        "are those of the request)")
    if key.role not in roles:
        what = f"ingestion into {table}" if table else "ingestion"
        raise AuthError(403, "AUTH_WRONG_ROLE", f"key {key.id} is a {key.role} key; {what} needs "
                        f"{' or '.join(f'an {r}' if r[0] in 'aeiou' else f'a {r}' for r in roles)} key")
    return key


class ReplayCache:
    """Signatures of accepted requests without a batch id, kept for ``window`` seconds (the skew
    window, in which a signed request stays valid), at most ``size`` of them (the oldest go first):
    a verbatim replay is answered with the first answer instead of being stored twice."""

    def __init__(self, window: float, size: int = 100_000):
        self.window, self.size = window, size
        self._seen: OrderedDict[bytes, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()

    def _expire(self, now: float) -> None:
        while self._seen:
            first = next(iter(self._seen.values()))
            if first[0] > now and len(self._seen) <= self.size:
                break
            self._seen.popitem(last=False)

    def get(self, signature: bytes) -> dict | None:
        """The answer given to the accepted request with this signature, if one is still remembered."""
        with self._lock:
            self._expire(time.monotonic())
            hit = self._seen.get(signature)
            return hit[1] if hit else None

    def add(self, signature: bytes, answer: dict) -> None:
        with self._lock:
            self._seen[signature] = (time.monotonic() + self.window, answer)
            self._expire(time.monotonic())


def request_signature(headers: Mapping[str, str]) -> bytes:
    """The exact credentials of a SharedKey request (Authorization and date), for ``ReplayCache``."""
    return f"{headers.get('authorization', '')}\n{headers.get(DATE_HEADER, '')}".encode("utf-8")


def verify_bearer(identity: Identity, headers: Mapping[str, str], *, role: str = "query",
                  local_token: str | None = None) -> Key | None:
    """The key whose secret the request carries (``Authorization: Bearer`` or ``x-api-key``), of a
    role ``ALLOWED`` to do what needs ``role``. ``local_token``: the server's per-run token for
    commands on its own machine (``DIR/server.json``), accepted for query work (returns None)."""
    header = headers.get("authorization")
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "AUTH_MALFORMED", "the Authorization header must be 'Bearer <query key>'")
        token = token.strip()
    else:
        token = (headers.get("x-api-key") or "").strip()
        if not token:
            credential = CREDENTIAL.get()
            if credential is not None:
                return _by_credential(identity, credential, role)
            raise AuthError(401, "AUTH_MISSING", "missing Authorization header ('Bearer <query key>') or x-api-key")
    key = _matching(identity.keys, lambda k: k.matches(token))
    if key is None:
        if local_token and hmac.compare_digest(token.encode("utf-8", "replace"),
                                                                   local_token.encode("ascii")):
            return None
        raise AuthError(403, "AUTH_BAD_KEY", "the key matches no key of this workspace")
    if key.role not in ALLOWED[role]:
        raise AuthError(403, "AUTH_WRONG_ROLE", f"key {key.id} is a {key.role} key; this needs a {role} key"
                        + (" (or an admin key)" if role == "query" else ""))
    return key


def _by_credential(identity: Identity, credential: Credential, role: str) -> Key | None:
    """The key of a session (None for a share link) when it may do what needs ``role``."""
    if credential.error:
        raise AuthError(*credential.error)
    if credential.kind == "share":
        if role != "query":
            raise AuthError(403, "AUTH_READ_ONLY", f"a share link gives read-only query access; this needs a {role} key")
        return None
    key = next((k for k in identity.keys if k.id == credential.id), None)
    if key is None or not hmac.compare_digest(key_mark(key).encode(), credential.key_hash.encode()):
        raise AuthError(401, "AUTH_SESSION_EXPIRED", "the key this session signed in with was revoked or rotated; sign in again")
    if key.role not in ALLOWED[role]:
        raise AuthError(403, "AUTH_WRONG_ROLE", f"this session signed in with {key.id}, a {key.role} key; this needs a {role} key")
    return key


def key_mark(key: Key) -> str:
    """What a session remembers of its key: the key's hash (a rotated key has another)."""
    from .keys import secret_hash
    return key.hash or secret_hash(key.secret)
