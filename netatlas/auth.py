"""Authentication of the workspace API.

Ingestion uses the SharedKey scheme of the Log Analytics Data Collector API. The client signs

    POST\\n<content length>\\n<content type>\\nx-ms-date:<RFC 1123 date>\\n<path>

with HMAC-SHA256 under the base64-decoded key of an ``ingest`` key and sends

    Authorization: SharedKey <workspace id>:<base64 signature>
    x-ms-date: Tue, 07 May 2024 10:00:00 GMT

The content length is the ``Content-Length`` of the body as sent (after gzip, if gzipped); the
content type is the ``Content-Type`` header exactly as sent; the path is the request path
without the query string (``/api/ingest/VMConnection``).

Queries use ``Authorization: Bearer <secret of a query key>`` (or ``x-api-key: <secret>``).

Failures raise ``AuthError`` with the HTTP status and error code to answer with:

| problem | status | code |
|---|---|---|
| no Authorization (or no x-ms-date for SharedKey) | 401 | AUTH_MISSING |
| Authorization or x-ms-date not in the expected form | 401 | AUTH_MALFORMED |
| x-ms-date more than ``max_skew`` (15 min) from the server's clock | 401 | AUTH_STALE_DATE |
| the workspace id is not this workspace's | 403 | AUTH_UNKNOWN_WORKSPACE |
| the signature or the key matches no key | 403 | AUTH_BAD_SIGNATURE / AUTH_BAD_KEY |
| a key of the other role (query key signing a batch, ingest key querying) | 403 | AUTH_WRONG_ROLE |

Every comparison of a secret or signature is constant-time, and every key is tried, so the time
taken does not tell which key (or whether any) nearly matched.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime, parsedate_to_datetime
from typing import Mapping

from .errors import NetatlasError
from .keys import Identity, Key

SCHEME = "SharedKey"
DATE_HEADER = "x-ms-date"
MAX_SKEW = timedelta(minutes=15)


class AuthError(NetatlasError):
    code = "AUTH"

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code


# ---------------------------------------------------------------- client side

def rfc1123(when: datetime | None = None) -> str:
    """An HTTP date: ``Tue, 07 May 2024 10:00:00 GMT``."""
    when = (when or datetime.now(timezone.utc)).astimezone(timezone.utc)
    return format_datetime(when, usegmt=True)


def string_to_sign(method: str, content_length: int, content_type: str, date: str, path: str) -> str:
    return f"{method.upper()}\n{content_length}\n{content_type}\n{DATE_HEADER}:{date}\n{path}"


def signature(key_b64: str, method: str, content_length: int, content_type: str, date: str,
              path: str) -> str:
    """The base64 HMAC-SHA256 of the string to sign under the base64-decoded key."""
    key = base64.b64decode(key_b64)
    msg = string_to_sign(method, content_length, content_type, date, path).encode("utf-8")
    return base64.b64encode(hmac.new(key, msg, hashlib.sha256).digest()).decode("ascii")


def sign(workspace_id: str, key_b64: str, method: str, content_length: int, content_type: str,
         date_rfc1123: str, path: str) -> str:
    """The Authorization header value: ``SharedKey <workspace_id>:<signature>``."""
    sig = signature(key_b64, method, content_length, content_type, date_rfc1123, path)
    return f"{SCHEME} {workspace_id}:{sig}"


def signed_headers(workspace_id: str, key_b64: str, body: bytes, path: str, *,
                   method: str = "POST", content_type: str = "application/json",
                   gzipped: bool = False, batch_id: str | None = None,
                   date: datetime | None = None) -> dict[str, str]:
    """Every header an ingestion request needs; ``body`` is the body exactly as it will be sent."""
    when = rfc1123(date)
    headers = {
        "Authorization": sign(workspace_id, key_b64, method, len(body), content_type, when, path),
        DATE_HEADER: when,
        "Content-Type": content_type,
        "Content-Length": str(len(body)),
    }
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


def verify_shared_key(identity: Identity, headers: Mapping[str, str], *, method: str, path: str,
                      content_length: int, now: datetime | None = None,
                      max_skew: timedelta = MAX_SKEW) -> Key:
    """The ingest key that signed this request, or AuthError. ``headers`` keys are lowercase."""
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
    msg = string_to_sign(method, content_length, headers.get("content-type", ""), date, path).encode("utf-8")

    def signed_by(key: Key) -> bool:
        return hmac.compare_digest(hmac.new(key.secret_bytes, msg, hashlib.sha256).digest(), sig)

    key = _matching(identity.keys, signed_by)
    if key is None:
        raise AuthError(403, "AUTH_BAD_SIGNATURE", "the signature does not match any key of this workspace "
                        "(check the key, and that the signed content length, content type, date and path "
                        "are those of the request)")
    if key.role != "ingest":
        raise AuthError(403, "AUTH_WRONG_ROLE", f"key {key.id} is a {key.role} key; ingestion needs an ingest key")
    return key


def verify_bearer(identity: Identity, headers: Mapping[str, str], *, role: str = "query") -> Key:
    """The key whose secret the request carries (``Authorization: Bearer`` or ``x-api-key``)."""
    header = headers.get("authorization")
    if header:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError(401, "AUTH_MALFORMED", "the Authorization header must be 'Bearer <query key>'")
        token = token.strip()
    else:
        token = (headers.get("x-api-key") or "").strip()
        if not token:
            raise AuthError(401, "AUTH_MISSING", "missing Authorization header ('Bearer <query key>') or x-api-key")
    presented = token.encode("utf-8")
    key = _matching(identity.keys, lambda k: hmac.compare_digest(k.secret.encode("ascii"), presented))
    if key is None:
        raise AuthError(403, "AUTH_BAD_KEY", "the key matches no key of this workspace")
    if key.role != role:
        raise AuthError(403, "AUTH_WRONG_ROLE", f"key {key.id} is a {key.role} key; this needs a {role} key")
    return key
