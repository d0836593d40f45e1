"""The web UI: its files (``GET /``, ``GET /ui/...``) and the Parquet export of a query (``POST /api/export``).

The UI is static files shipped in the package (``netatlas/ui/``: ``index.html``, one ES module
per page, and ``vendor/`` with the libraries' browser builds, see ``vendor/VENDOR.json``); every
page gets its data from the JSON endpoints (docs/web-api.md). The files need no key: the page
signs in with a key for a session cookie, or opens a share link (``sessions.py``).

``POST /api/export?format=parquet`` takes the body of ``POST /api/query`` and a query key, runs
the query the same way (same errors, same row cap) and answers the result as a Parquet file,
written by DuckDB (``COPY ... TO ... (FORMAT parquet)``) with a column per result column: KQL
types map to DuckDB's (datetime -> TIMESTAMP, UTC; dynamic -> JSON; guid -> UUID), and a
timespan is its KQL text (``1.02:03:04``), as the query API shows it.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import orjson
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..store.duckdb import scratch

from . import query as query_view
from ..auth import verify_bearer
from ..errors import KqlError, QueryExecutionError, QueryLimitError
from .http import HttpError, read_json_object, service

UI_DIR = Path(__file__).resolve().parent.parent / "ui"

# Content types by file suffix: set here rather than guessed from the host's /etc/mime.types.
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# The vendored libraries change only with a netatlas release: the browser keeps them a day.
# The UI's own files are revalidated at every load (ETag / Last-Modified answer 304).
CACHE_VENDOR = "public, max-age=86400"
CACHE_APP = "no-cache"

# KQL result type -> DuckDB column type of the Parquet file.
PARQUET_TYPES = {
    "string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "real": "DOUBLE", "decimal": "DECIMAL(38,18)",
    "bool": "BOOLEAN", "datetime": "TIMESTAMP", "timespan": "VARCHAR", "dynamic": "JSON", "guid": "UUID",
}
EXPORT_FORMATS = ("parquet",)


class UiFiles(StaticFiles):
    """The files of netatlas/ui/ with fixed content types and cache headers."""

    def file_response(self, full_path, stat_result, scope, status_code: int = 200) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        kind = CONTENT_TYPES.get(Path(full_path).suffix.lower())
        if kind:
            response.headers["content-type"] = kind
        vendored = f"{os.sep}vendor{os.sep}" in str(full_path)
        response.headers["cache-control"] = CACHE_VENDOR if vendored else CACHE_APP
        response.headers["x-content-type-options"] = "nosniff"
        return response


FILES = Mount("/ui", app=UiFiles(directory=UI_DIR), name="ui")


async def to_index(request: Request) -> Response:
    """``GET /ui`` and ``GET /ui/`` -> ``/`` (the UI's page), a relative redirect: Starlette's own
    (redirect_slashes, to ``/ui/``) built an absolute URL from the Host header, which a client or a
    cache could be led to follow elsewhere."""
    return Response(status_code=307, headers={"location": "/"})


async def index(request: Request) -> Response:
    # no Referer leaves the page: its address may hold a share link's token (sessions.py)
    return FileResponse(UI_DIR / "index.html", media_type=CONTENT_TYPES[".html"],
                        headers={"cache-control": CACHE_APP, "x-content-type-options": "nosniff",
                                 "referrer-policy": "no-referrer"})


# ---------------------------------------------------------------- POST /api/export?format=parquet

def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_parquet(result, path: Path) -> None:
    """A Result -> a Parquet file at ``path``: its JSON rows through a newline-delimited JSON
    file that DuckDB reads with the result's column types and copies out."""
    if not result.columns:
        raise HttpError(400, "EXPORT_EMPTY", "the query returned no columns to export")
    staged = path.with_suffix(".ndjson")
    keys = [f"c{i}" for i in range(len(result.columns))]
    with open(staged, "wb") as out:
        for row in result.json_rows():
            out.write(orjson.dumps(dict(zip(keys, row))) + b"\n")
    columns = "{" + ", ".join(f"'{k}': '{PARQUET_TYPES.get(t, 'VARCHAR')}'"
                              for k, t in zip(keys, result.types)) + "}"
    select = ", ".join(f"{k} AS {_quote(name)}" for k, name in zip(keys, result.columns))
    con = scratch()
    try:
        source = f"read_json('{staged}', format = 'newline_delimited', columns = {columns})"
        con.execute(f"COPY (SELECT {select} FROM {source}) TO '{path}' (FORMAT parquet)")
    finally:
        con.close()


async def export(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    fmt = request.query_params.get("format", "parquet")
    if fmt not in EXPORT_FORMATS:
        raise HttpError(400, "BAD_FORMAT", f"unknown export format {fmt!r}; the formats are "
                        f"{', '.join(EXPORT_FORMATS)} (CSV is made in the browser)", field="format")
    body = await read_json_object(request, query_view.QUERY_BODY_LIMIT)
    text, span, params = query_view._request(body)
    options = {"params": params, **query_view._limits(body, svc.settings)}
    if span is not None:
        options["timespan"] = span
    try:
        res = await svc.run_query(svc.workspace.query, text, **options)
    except (KqlError, QueryLimitError, QueryExecutionError) as e:
        status = next(s for cls, s, _ in query_view.FAILURES if isinstance(e, cls))
        info = e.to_json()
        info.pop("display", None)
        raise HttpError(status, info.pop("code", e.code), info.pop("message", str(e)), **info) from None
    with tempfile.TemporaryDirectory(prefix="netatlas-export-") as tmp:
        path = Path(tmp) / "result.parquet"
        await svc.run(write_parquet, res, path)
        body = path.read_bytes()
    headers = {"content-disposition": 'attachment; filename="query.parquet"',
               "x-netatlas-rows": str(len(res.rows)), "x-netatlas-truncated": str(res.truncated).lower()}
    return Response(body, media_type="application/vnd.apache.parquet", headers=headers)
