"""``POST /api/query``: ``{"query": "<KQL>", "timespan": "P1D", "parameters": {...}}`` with a query key.

``timespan`` (optional; ``timespan.py``) limits every table the query reads to that interval of
TimeGenerated. ``parameters`` (optional) gives values to ``declare query_parameters(...)``.
``max_rows``, ``timeout`` (seconds) and ``max_result_bytes`` (optional) lower the server's
max_rows, query_timeout and max_result_bytes for this query (never raise them), as
``netatlas query --max-rows/--timeout`` do.
The answer is ``Result.to_json()``: ``{"tables": [{"name", "columns": [{"name", "type"}], "rows"}],
"render", "statistics"}``; ``statistics.truncated`` is true when the result was cut at the
server's max_rows (``statistics.max_rows``) or max_result_bytes (64 MB), as Kusto's result
truncation (E_QUERY_RESULT_SET_TOO_LARGE) does: then ``statistics.truncated_by`` names the limit,
``statistics.limit`` is its value and ``statistics.message`` says so in words. A query of several
tabular statements (``T1; T2``) answers a table for each, in order: PrimaryResult, Table_1, ...;
each further table has its own ``render`` and ``statistics`` (rows, truncation). Queries run side by
side (``netatlas/pool.py``); when every cursor is busy and the queue is full the answer is
429 QUERY_BUSY with Retry-After. A mistake in the query is a 400 with ``line``,
``column`` and ``hint``; a query past query_timeout is a 504 (code KQL_TIMEOUT); a query the
store could not run is a 400 (code KQL_RUNTIME).
"""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from ..auth import verify_bearer
from ..errors import KqlError, QueryExecutionError, QueryLimitError
from .http import HttpError, json_response, read_json_object, service
from .timespan import TimespanError, parse_timespan

QUERY_BODY_LIMIT = 1024 * 1024
FIELDS = ("query", "timespan", "parameters", "max_rows", "timeout", "max_result_bytes")
# optional limits a request may lower: field -> (the setting it lowers, its type, what it must be)
LIMITS = {"max_rows": ("max_rows", int, "a positive whole number of rows"),
          "timeout": ("query_timeout", (int, float), "a positive number of seconds"),
          "max_result_bytes": ("max_result_bytes", int, "a positive whole number of bytes")}

# (exception, HTTP status, outcome label of netatlas_queries_total)
FAILURES = (
    (KqlError, 400, "kql_error"),
    (QueryLimitError, 504, "timeout"),
    (QueryExecutionError, 400, "runtime_error"),
)


def _limits(body: dict, settings) -> dict:
    """max_rows and timeout for ws.query: the server's settings, lowered by the request's."""
    out = {name: getattr(settings, setting) for name, (setting, _, _) in LIMITS.items()}
    for name, (setting, kind, what) in LIMITS.items():
        value = body.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, kind) or value <= 0:
            raise HttpError(400, "BAD_REQUEST", f"'{name}' must be {what}, got {value!r}", field=name)
        out[name] = min(value, getattr(settings, setting))
    return out


def _request(body: dict) -> tuple[str, tuple | None, dict | None]:
    unknown = [k for k in body if k not in FIELDS]
    if unknown:
        raise HttpError(400, "BAD_REQUEST", f"unknown field {unknown[0]!r} in the query request; "
                        f"the fields are {', '.join(FIELDS)}", field=unknown[0])
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise HttpError(400, "BAD_REQUEST", "'query' must be a non-empty string of KQL", field="query")
    span = body.get("timespan")
    if span is not None:
        try:
            span = parse_timespan(span)
        except TimespanError as e:
            raise HttpError(400, "BAD_TIMESPAN", str(e), field="timespan") from None
    params = body.get("parameters")
    if params is not None and not isinstance(params, dict):
        raise HttpError(400, "BAD_REQUEST", "'parameters' must be an object of name: value", field="parameters")
    return text, span, params


async def query(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    body = await read_json_object(request, QUERY_BODY_LIMIT)
    text, span, params = _request(body)
    options = {"params": params, **_limits(body, svc.settings)}
    if span is not None:
        options["timespan"] = span
    m = svc.metrics
    t0 = time.perf_counter()
    try:
        res = await svc.run_query(svc.workspace.query, text, **options)
    except (KqlError, QueryLimitError, QueryExecutionError) as e:
        status, outcome = next((s, o) for cls, s, o in FAILURES if isinstance(e, cls))
        m.queries.inc(outcome=outcome)
        info = e.to_json()
        info.pop("display", None)
        raise HttpError(status, info.pop("code", e.code), info.pop("message", str(e)), **info) from None
    finally:
        m.query_seconds.observe(time.perf_counter() - t0)
    m.queries.inc(outcome="ok")
    if res.truncated:
        m.queries_truncated.inc()
    out = res.to_json()
    out["statistics"].update(max_rows=options["max_rows"], max_result_bytes=options["max_result_bytes"],
                             elapsed_ms=round((time.perf_counter() - t0) * 1000, 3))
    if span is not None:
        out["statistics"]["timespan"] = [span[0].isoformat(), span[1].isoformat()]
    try:
        return json_response(out)
    except RecursionError:
        raise HttpError(400, "KQL_RUNTIME", "a dynamic value in the result is nested too deeply to send as JSON") from None
