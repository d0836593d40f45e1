"""What every endpoint shares: the one JSON error shape and reading a bounded (gzipped) body.

Every error, from any endpoint (including 404 and 405 from routing and 500 from a bug), is

    {"error": {"code": "INGEST_TYPE", "message": "...", ...extra fields}}

where the extra fields depend on the error: ``record`` and ``field`` for a rejected record,
``line``, ``column`` and ``hint`` for a mistake in a query, ``limit`` for a body too large.
"""
from __future__ import annotations

import json
import zlib

import orjson

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response


def service(request: Request):
    """The ``Service`` (app.py) the views share."""
    return request.app.state.service


class HttpError(Exception):
    """An error answered with ``status`` and the JSON error shape."""

    def __init__(self, status: int, code: str, message: str, **extra):
        super().__init__(message)
        self.status, self.code, self.message, self.extra = status, code, message, extra

    def response(self) -> Response:
        return error_response(self.status, self.code, self.message, **self.extra)


def error_body(code: str, message: str, **extra) -> dict:
    return {"error": {"code": code, "message": message,
                      **{k: v for k, v in extra.items() if k not in ("code", "message")}}}


def error_response(status: int, code: str, message: str, headers: dict | None = None, **extra) -> Response:
    return JSONResponse(error_body(code, message, **extra), status_code=status, headers=headers)


def json_bytes(data) -> bytes:
    """``data`` as compact UTF-8 JSON: orjson (a 500,000-row answer in a tenth of json's time),
    or json for what orjson refuses (integers past 64 bits, nesting past 255 levels, non-text
    keys), which writes the same values."""
    try:
        return orjson.dumps(data)
    except TypeError:                  # orjson.JSONEncodeError is one
        return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


def json_response(data, status: int = 200, headers: dict | None = None,
                  media_type: str = "application/json") -> Response:
    return Response(json_bytes(data), status_code=status, media_type=media_type, headers=headers)


def too_large(limit: int) -> HttpError:
    return HttpError(413, "BODY_TOO_LARGE",
                     f"the request body is larger than {limit} bytes (after decompression)", limit=limit)


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def require_json(request: Request) -> None:
    if media_type(request) != "application/json":
        got = request.headers.get("content-type")
        hint = " (curl -d sends that: add -H 'Content-Type: application/json')" \
            if media_type(request) == "application/x-www-form-urlencoded" else ""
        raise HttpError(415, "UNSUPPORTED_MEDIA_TYPE", f"Content-Type must be application/json, got {got!r}{hint}")


class _Gunzip:
    """Incremental gzip decompression that stops as soon as the output passes ``limit``."""

    def __init__(self, limit: int):
        self.limit = limit
        self.out = bytearray()
        self.members = 0        # gzip members decompressed whole
        self._new_member()

    def _new_member(self) -> None:
        self.d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.fed = False

    def feed(self, data: bytes) -> None:
        while data:
            self.fed = True
            self.out += self.d.decompress(data, self.limit - len(self.out) + 1)
            if len(self.out) > self.limit:
                raise too_large(self.limit)
            data = self.d.unconsumed_tail
            if self.d.eof:      # a gzip stream may hold several members, one after the other
                data = self.d.unused_data + data
                self.members += 1
                self._new_member()

    def finish(self) -> bytes:
        if self.fed or not self.members:
            raise ValueError("the gzip stream ends early")
        return bytes(self.out)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, gunzipped when Content-Encoding is gzip, never more than ``limit`` bytes
    (checked while reading, before and after decompression: 413)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("identity", "gzip", ""):
        raise HttpError(415, "UNSUPPORTED_ENCODING", f"Content-Encoding must be gzip or absent, got {encoding!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    gunzip = _Gunzip(limit) if encoding == "gzip" else None
    raw = bytearray()
    try:
        async for chunk in request.stream():
            if len(raw) + len(chunk) > limit:
                raise too_large(limit)
            raw += chunk
            if gunzip is not None:
                gunzip.feed(chunk)
        if gunzip is None:
            return bytes(raw)
        body = gunzip.finish()
        if body[:2] == b"\x1f\x8b":     # one layer only: inflating the next could go unbounded
            raise HttpError(400, "NESTED_GZIP", "the body is gzip inside gzip: one layer of compression only")
        return body
    except (zlib.error, ValueError) as e:
        raise HttpError(400, "BAD_GZIP", f"the body is not valid gzip: {e}") from None
    except ClientDisconnect:
        raise HttpError(400, "CLIENT_DISCONNECTED", "the client went away before the whole body arrived") from None


async def read_json_object(request: Request, limit: int) -> dict:
    """A JSON object body (for the small request bodies of the query and settings endpoints)."""
    require_json(request)
    body = await read_body(request, limit)
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise HttpError(400, "BAD_JSON", f"the body is not valid JSON: {e}",
                        **({"line": e.lineno, "column": e.colno} if isinstance(e, json.JSONDecodeError) else {}))
    if not isinstance(data, dict):
        raise HttpError(400, "BAD_JSON", f"the body must be a JSON object, got {type(data).__name__}")
    return data
