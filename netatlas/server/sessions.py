"""Sign-in sessions of the web UI (a cookie) and read-only share links (issue 17).

A key typed into the UI is exchanged for a session: ``POST /api/session`` with ``{"key": ...}``
checks the key (a query or an admin key) and answers ``Set-Cookie: netatlas_session=<id>;
HttpOnly; SameSite=Strict; Path=/``, with ``Max-Age`` the setting session_ttl (over https:
``__Host-netatlas_session=<id>; ...; Secure``, which browsers bind to this host). The id is 32
random bytes; the server keeps only its SHA-256, in memory, with the key's id and hash and the
expiry (a restart signs everyone out). Every tab of the browser sends
the cookie, so a new tab is signed in. ``GET /api/session`` says who is signed in;
``DELETE /api/session`` (logout) forgets the session and clears the cookie.

The API takes the cookie as it takes a key (``auth.verify_bearer``): ``SessionMiddleware``
resolves the request's cookie (or share token) into an ``auth.Credential`` for the request,
used only when it carries no ``Authorization``/``x-api-key``. A session ends when its expiry
passes, at logout, or when its key is revoked or rotated.

Cross-site requests: SameSite=Strict keeps the browser from sending the cookie from another
site, and a state-changing request (POST, PUT, PATCH, DELETE) made with the cookie must also
carry ``X-Netatlas-CSRF: 1`` (a custom header that another origin cannot send without a CORS
preflight, which this server never allows) and, when the browser sends them, an ``Origin`` that
is the server's own and no ``Sec-Fetch-Site: cross-site``. Otherwise: 403 CSRF_REFUSED.

Share links: an admin creates one with ``POST /api/shares`` (``{"expires_in": "7d", "label":
...}``; at most ``MAX_SHARE``), lists them with ``GET /api/shares`` and revokes one with
``DELETE /api/shares/{id}``. The token (32 random bytes) is shown once; ``DIR/shares.json``
(0600) keeps its SHA-256. The page ``/?share=<token>#/map?...`` sends it as
``X-Netatlas-Share`` with every call: query-only access (every ``role="query"`` endpoint),
until the expiry (then 401 AUTH_SHARE_EXPIRED) or the revocation of the link or of the admin key
that made it (401 AUTH_SHARE_UNKNOWN); an
admin endpoint answers 403 AUTH_READ_ONLY. The access log shows ``share=…`` in place of a token
(``RedactShares``).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from http.cookies import SimpleCookie
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from .. import auth
from ..auth import AuthError, Credential, verify_bearer
from ..kql.literals import parse_timespan
from .http import HttpError, json_response, read_json_object, service

COOKIE = "netatlas_session"
SECURE_COOKIE = "__Host-netatlas_session"      # over https: the browser keeps it to this host, Secure, Path=/
CSRF_HEADER = "x-netatlas-csrf"
SHARE_HEADER = "x-netatlas-share"
UNSAFE = frozenset({"POST", "PUT", "PATCH", "DELETE"})
MAX_SHARE = 90 * 86400                  # a share link lives at most 90 days
DEFAULT_SHARE = 7 * 86400
BODY_LIMIT = 64 * 1024
MAX_SESSIONS = 10_000                   # past it a new sign-in ends the oldest session


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


# ---------------------------------------------------------------- sessions (in memory)

@dataclass
class Session:
    key_id: str
    key_hash: str          # the key's hash at sign-in: a rotated key ends the session
    role: str
    created: float
    expires: float


class SessionStore:
    """Sessions by the SHA-256 of their id; expired ones are dropped when met."""

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def create(self, key) -> tuple[str, Session]:
        sid = secrets.token_urlsafe(32)
        now = time.time()
        session = Session(key.id, auth.key_mark(key), key.role, now, now + self.ttl)
        with self._lock:
            self._sessions = {k: s for k, s in self._sessions.items() if s.expires > now}
            while len(self._sessions) >= MAX_SESSIONS:
                del self._sessions[next(iter(self._sessions))]
            self._sessions[_digest(sid)] = session
        return sid, session

    def get(self, sid: str) -> Session | None:
        with self._lock:
            session = self._sessions.get(_digest(sid))
            if session is not None and session.expires <= time.time():
                del self._sessions[_digest(sid)]
                return None
            return session

    def end(self, sid: str) -> bool:
        with self._lock:
            return self._sessions.pop(_digest(sid), None) is not None


# ---------------------------------------------------------------- share links (DIR/shares.json)

@dataclass
class Share:
    id: str
    digest: str
    label: str
    created: float
    expires: float
    created_by: str

    def public(self, now: float | None = None) -> dict:
        now = time.time() if now is None else now
        return {"id": self.id, "label": self.label, "created": _iso(self.created), "expires": _iso(self.expires),
                "expired": self.expires <= now, "created_by": self.created_by}


class ShareLinks:
    """The share links of a workspace, kept in ``DIR/shares.json`` (hashed tokens only)."""

    def __init__(self, data_dir: str | os.PathLike):
        self.path = Path(data_dir) / "shares.json"
        self._lock = threading.Lock()
        self._links: dict[str, Share] = {}
        if self.path.exists():
            for item in json.loads(self.path.read_text() or "[]"):
                self._links[item["id"]] = Share(**item)

    def _save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump([asdict(s) for s in self._links.values()], out, indent=1)
        os.replace(tmp, self.path)

    def create(self, seconds: float, label: str, created_by: str) -> tuple[str, Share]:
        token = "s_" + secrets.token_urlsafe(32)
        now = time.time()
        share = Share("sh_" + secrets.token_hex(6), _digest(token), label, now, now + seconds, created_by)
        with self._lock:
            self._links[share.id] = share
            self._save()
        return token, share

    def list(self) -> list[Share]:
        with self._lock:
            return sorted(self._links.values(), key=lambda s: s.created)

    def revoke(self, share_id: str) -> Share | None:
        with self._lock:
            share = self._links.pop(share_id, None)
            if share is not None:
                self._save()
            return share

    def lookup(self, token: str) -> Share | None:
        digest = _digest(token)
        with self._lock:
            found = None
            for share in self._links.values():      # every link compared: constant-time in the match
                if hmac.compare_digest(share.digest, digest) and found is None:
                    found = share
            return found


# ---------------------------------------------------------------- resolving a request's credential

def _origin_ok(headers, scope) -> bool:
    """A browser's Origin, when sent, names this server (its Host, or the X-Forwarded-Host of a
    reverse proxy that rewrote Host); Sec-Fetch-Site, when sent, is not cross-site."""
    if headers.get("sec-fetch-site", "same-origin") == "cross-site":
        return False
    origin = headers.get("origin")
    if origin is None:
        return True
    _, sep, origin_host = origin.partition("://")
    hosts = {h.strip().lower() for h in (headers.get("host", ""), *headers.get("x-forwarded-host", "").split(",")) if h.strip()}
    return bool(sep) and origin_host.lower() in hosts


def csrf_ok(method: str, headers, scope) -> bool:
    """A cookie-authenticated request may change state only with the custom header and a same origin."""
    if method not in UNSAFE:
        return True
    return headers.get(CSRF_HEADER) == "1" and _origin_ok(headers, scope)


def cookie_value(headers) -> str | None:
    raw = headers.get("cookie")
    if not raw:
        return None
    try:
        jar = SimpleCookie(raw)
    except Exception:       # a malformed cookie header is no session
        return None
    for name in (SECURE_COOKIE, COOKIE):
        if name in jar:
            return jar[name].value
    return None


def resolve(svc, method: str, headers, scope) -> Credential | None:
    """The credential a request carries besides a key: its share token, else its session cookie."""
    if headers.get("authorization") or headers.get("x-api-key"):
        return None
    token = headers.get(SHARE_HEADER)
    if token:
        share = svc.shares.lookup(token.strip())
        if share is None:
            return Credential("share", error=(401, "AUTH_SHARE_UNKNOWN", "this share link is not known (revoked?)"))
        if share.expires <= time.time():
            return Credential("share", error=(401, "AUTH_SHARE_EXPIRED", f"this share link expired at {_iso(share.expires)}"))
        if share.created_by != "local" and not any(k.id == share.created_by for k in svc.keys.identity.keys):
            return Credential("share", error=(401, "AUTH_SHARE_UNKNOWN", "the admin key that made this share link was revoked"))
        return Credential("share", role="share", id=share.id)
    sid = cookie_value(headers)
    if not sid:
        return None
    session = svc.sessions.get(sid)
    if session is None:
        return Credential("session", error=(401, "AUTH_SESSION_EXPIRED", "the session expired or ended; sign in again"))
    if not csrf_ok(method, headers, scope):
        return Credential("session", error=(403, "CSRF_REFUSED", f"a request that changes state with the session "
                                            f"cookie needs the header X-Netatlas-CSRF: 1 and a same-origin Origin"))
    return Credential("session", role=session.role, id=session.key_id, key_hash=session.key_hash)


class SessionMiddleware:
    """ASGI middleware: the request's cookie or share token as ``auth.CREDENTIAL`` while it runs."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        svc = getattr(scope["app"].state, "service", None) if "app" in scope else None
        credential = None
        if svc is not None and getattr(svc, "sessions", None) is not None:
            from starlette.datastructures import Headers
            credential = resolve(svc, scope["method"], Headers(scope=scope), scope)
        token = auth.CREDENTIAL.set(credential)
        try:
            await self.app(scope, receive, send)
        finally:
            auth.CREDENTIAL.reset(token)


# ---------------------------------------------------------------- the endpoints

def _cookie(request: Request, value: str, max_age: int) -> str:
    if request.url.scheme == "https":
        return f"{SECURE_COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}; Secure"
    return f"{COOKIE}={value}; HttpOnly; SameSite=Strict; Path=/; Max-Age={max_age}"


def _who(session: Session | None, credential: Credential | None) -> dict:
    if credential is not None and credential.kind == "share":
        return {"signed_in": True, "kind": "share", "role": "share", "share": credential.id, "read_only": True}
    return {"signed_in": True, "kind": "session", "role": session.role, "key_id": session.key_id,
            "expires": _iso(session.expires), "read_only": False}


async def sign_in(request: Request) -> Response:
    """``POST /api/session`` ``{"key": SECRET}``: a session for a query or admin key, as a cookie."""
    svc = service(request)
    if not csrf_ok("POST", request.headers, request.scope):
        raise HttpError(403, "CSRF_REFUSED", "signing in needs the header X-Netatlas-CSRF: 1 and a same-origin Origin")
    body = await read_json_object(request, BODY_LIMIT)
    secret = body.get("key")
    if not isinstance(secret, str) or not secret.strip():
        raise HttpError(400, "BAD_REQUEST", "the body must be {\"key\": \"<query or admin key>\"}", field="key")
    key = verify_bearer(svc.keys.identity, {"authorization": f"Bearer {secret.strip()}"}, role="query")
    sid, session = svc.sessions.create(key)
    return json_response(_who(session, None), headers={"set-cookie": _cookie(request, sid, int(svc.sessions.ttl))})


async def whoami(request: Request) -> Response:
    """``GET /api/session``: the session (or share link) of the request; ``{"signed_in": false,
    "reason": CODE}`` without one (a 200: the page asks before it signs in, and a browser logs
    every 401 as an error)."""
    svc = service(request)
    credential = auth.CREDENTIAL.get()
    if credential is None:
        return json_response({"signed_in": False, "reason": "AUTH_MISSING"})
    try:
        if credential.error:
            raise AuthError(*credential.error)
        if credential.kind == "share":
            return json_response(_who(None, credential))
        verify_bearer(svc.keys.identity, request.headers, role="query")      # the key still valid
    except AuthError as e:
        return json_response({"signed_in": False, "reason": e.code, "message": str(e)})
    return json_response(_who(svc.sessions.get(cookie_value(request.headers)), credential))


async def sign_out(request: Request) -> Response:
    """``DELETE /api/session``: the session ends (server side) and the cookie is cleared."""
    svc = service(request)
    credential = auth.CREDENTIAL.get()
    if credential is not None and credential.error and credential.error[1] == "CSRF_REFUSED":
        raise AuthError(*credential.error)
    sid = cookie_value(request.headers)
    ended = bool(sid) and svc.sessions.end(sid)
    return json_response({"signed_in": False, "ended": ended}, headers={"set-cookie": _cookie(request, "", 0)})


def _seconds(value) -> float:
    if value is None:
        return DEFAULT_SHARE
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = float(value)
    else:
        text = str(value).strip()
        ticks = int(text) * 10_000_000 if text.isdigit() else parse_timespan(text)   # seconds, or 30m, 12h, 7d
        if ticks is None:
            raise HttpError(400, "BAD_PARAMETER", f"expires_in: {value!r} is not seconds or a duration "
                            f"like 30m, 12h, 7d", field="expires_in")
        seconds = ticks / 10_000_000
    if not 0 < seconds <= MAX_SHARE:
        raise HttpError(400, "BAD_PARAMETER", f"expires_in: a share link lives 1 second to {MAX_SHARE // 86400} days",
                        field="expires_in")
    return seconds


async def create_share(request: Request) -> Response:
    """``POST /api/shares`` (admin) ``{"expires_in": "7d", "label": TEXT}``: a read-only link."""
    svc = service(request)
    key = verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    body = await read_json_object(request, BODY_LIMIT)
    label = str(body.get("label") or "")[:200]
    token, share = svc.shares.create(_seconds(body.get("expires_in")), label, key.id if key else "local")
    return json_response({**share.public(), "token": token, "path": f"/?share={token}"}, status=201)


async def list_shares(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    now = time.time()
    return json_response({"shares": [s.public(now) for s in svc.shares.list()]})


async def revoke_share(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    share = svc.shares.revoke(request.path_params["id"])
    if share is None:
        raise HttpError(404, "NOT_FOUND", f"no share link {request.path_params['id']!r}")
    return json_response({"revoked": share.public()})


# ---------------------------------------------------------------- no token in the access log

SHARE_IN_PATH = re.compile(r"([?&]share=)[^&#\s]+")


class RedactShares(logging.Filter):
    """uvicorn's access log line without the share token of ``/?share=<token>``."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple) and any(isinstance(a, str) and "share=" in a for a in record.args):
            record.args = tuple(SHARE_IN_PATH.sub(r"\1…", a) if isinstance(a, str) else a for a in record.args)
        return True


def redact_access_log() -> None:
    logger = logging.getLogger("uvicorn.access")
    if not any(isinstance(f, RedactShares) for f in logger.filters):
        logger.addFilter(RedactShares())
