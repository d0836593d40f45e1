"""The Log Analytics query API, as azure-monitor-query and Azure Monitor tooling speak it.

- ``POST /v1/workspaces/{workspaceId}/query``: ``{"query", "timespan", "workspaces"}``; the ISO
  8601 ``timespan`` (``PT1H``, ``start/end``, ``start/duration``) restricts every table's
  TimeGenerated, as in Azure. ``GET`` takes ``?query=&timespan=``.
- ``POST /v1/$batch``: ``{"requests": [{"id", "workspace", "body", "headers"}]}`` -> ``{"responses":
  [{"id", "status", "body"}]}``, each request answered as the single query would be.
- ``Prefer``: ``wait=N`` (seconds, lowers the query's time limit), ``include-statistics=true``
  (``statistics.query``), ``include-render=true`` (``render``, the Visualization in Azure's
  camelCase); the applied ones are echoed in ``Preference-Applied``.

The answer is Azure's: ``{"tables": [{"name": "PrimaryResult", "columns": [{"name", "type"}],
"rows"}]}``, datetimes ISO 8601, timespans ``hh:mm:ss``, dynamic values as JSON text. A result cut
at the server's limits is a partial result: its rows and an ``error`` member (``PartialError``),
which the SDK turns into ``LogsQueryPartialResult``. Mistakes are Azure's error shape
(``BadArgumentError`` with ``SyntaxError``/``SemanticError`` inside, our message innermost), so the
SDK raises ``HttpResponseError`` with our words; the workspace id in the path must be this
workspace's.
"""
from __future__ import annotations

import time
import uuid

from starlette.requests import Request
from starlette.responses import Response

from ...auth import AuthError
from ...errors import KqlError, KqlSyntaxError, QueryExecutionError, QueryLimitError
from ...kql.values import LiteralText
from ...pool import QueryBusyError
from ...result import table_name
from ..http import HttpError, read_json_object
from ..timespan import TimespanError, parse_timespan
from .common import (authorize_query, BadRequest, described, json_response as _json, json_rows, limits, run,
                     timeout_seconds)

BODY_LIMIT = 1024 * 1024
BATCH_LIMIT = 8 * 1024 * 1024
MAX_BATCH = 10             # queries in one $batch, as Azure's limit
RENDER = {"visualization": "visualization", "title": "title", "xcolumn": "xColumn", "series": "series",
          "ycolumns": "yColumns", "anomalycolumns": "anomalyColumns", "xtitle": "xTitle", "ytitle": "yTitle",
          "xaxis": "xAxis", "yaxis": "yAxis", "legend": "legend", "ysplit": "ySplit", "accumulate": "accumulate",
          "isquerysorted": "isQuerySorted", "kind": "kind", "ymin": "yMin", "ymax": "yMax"}
RENDER_DEFAULTS = {"accumulate": False, "isQuerySorted": False, "yMin": "NaN", "yMax": "NaN"}
# a failure of the query -> (HTTP status, code, inner code, inner message)
FAILURES = (
    (KqlSyntaxError, 400, "BadArgumentError", "SyntaxError", "A recognition error occurred in the query."),
    (KqlError, 400, "BadArgumentError", "SemanticError", "A semantic error occurred."),
    (QueryLimitError, 504, "GatewayTimeout", "QueryTimeout", "The query ran past its time limit."),
    (QueryBusyError, 429, "ThrottledError", "TooManyRequests", "Too many queries are running."),
    (QueryExecutionError, 400, "BadArgumentError", "EngineError", "The query could not run."),
)


class Failed(Exception):
    """An answer that is an error: (status, the error object, headers)."""

    def __init__(self, status: int, error: dict, headers: dict | None = None):
        super().__init__(error.get("message"))
        self.status, self.error, self.headers = status, error, headers or {}


def _error(code: str, message: str, inner: dict | None = None) -> dict:
    out = {"code": code, "message": message, "correlationId": str(uuid.uuid4())}
    if inner is not None:
        out["innererror"] = inner
    return out


def _bad(message: str, code: str = "BadArgumentError") -> Failed:
    return Failed(400, _error(code, "The request had some invalid properties",
                              {"code": "InvalidArgument", "message": message}))


def _prefer(header: str | None) -> dict:
    """Prefer's options: {"wait": seconds, "include-statistics": bool, "include-render": bool}."""
    out = {}
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        name = name.strip().lower()
        if name == "wait" and value.strip():
            try:
                out["wait"] = timeout_seconds(float(value))
            except (ValueError, BadRequest):
                raise _bad(f"Prefer: wait={value.strip()} is not a number of seconds") from None
        elif name in ("include-statistics", "include-render"):
            out[name] = value.strip().lower() == "true"
    return out


def _render(render: dict | None) -> dict:
    out = dict(RENDER_DEFAULTS)
    out.update({name: None for name in RENDER.values() if name not in out})
    for key, value in (render or {}).items():
        name = RENDER.get(key.lower())
        if name:
            out[name] = ", ".join(value) if isinstance(value, (list, tuple)) else value
    return out


def answer(res, prefer: dict, elapsed: float) -> dict:
    """The body of a query's answer (a Result)."""
    rows = json_rows(res, dynamic_as_text=True)      # Log Analytics sends dynamic values as JSON text
    # a query of several tabular statements: a table for each (PrimaryResult, Table_1, ...)
    tables = res.tables()
    out = {"tables": [{"name": table_name(i),
                       "columns": [{"name": c, "type": ty} for c, ty in zip(t.columns, t.types)],
                       "rows": rows if i == 0 else json_rows(t, dynamic_as_text=True)}
                      for i, t in enumerate(tables)]}
    if prefer.get("include-statistics"):
        out["statistics"] = {"query": {"executionTime": round(elapsed, 6),
                                       "datasetStatistics": [{"tableRowCount": len(rows)}],
                                       "timings_ms": {k: round(v * 1000, 3) for k, v in res.timings.items()}}}
    if prefer.get("include-render"):
        out["render"] = _render(res.render)
    cut = next((t for t in tables if t.truncated), None)
    if cut is not None:
        why = {"code": "-2133196797", "severity": 2, "severityName": "Error",
               "message": f"Query result set has exceeded the internal limit: {cut.truncation}"}
        out["error"] = _error("PartialError", "There were some errors when processing your query.",
                              {"code": "EngineError", "message": why["message"], "innererror": why})
        out["error"]["details"] = [{"code": "EngineError", "message": why["message"], "innererror": why}]
    return out


def _failure(e: Exception) -> Failed:
    for cls, status, code, inner_code, inner_message in FAILURES:
        if isinstance(e, cls):
            detail = {"code": e.code if hasattr(e, "code") else inner_code, "message": described(e)}
            if isinstance(e, KqlError) and e.line:
                detail.update(line=e.line, pos=e.column)
            headers = {"Retry-After": str(getattr(e, "retry_after", 1))} if status == 429 else None
            message = "The request had some invalid properties" if status == 400 else inner_message
            return Failed(status, _error(code, message, {"code": inner_code, "message": inner_message,
                                                         "innererror": detail}), headers)
    raise e


def _check_workspace(svc, workspace: str | None, others) -> None:
    ours = svc.keys.identity.workspace_id.lower()
    if workspace is not None and workspace.lower() != ours:
        raise Failed(404, _error("WorkspaceNotFoundError",
                                 f"The workspace '{workspace}' could not be found: this workspace is {ours}"))
    if others is None:
        return
    if not isinstance(others, list) or not all(isinstance(w, str) for w in others):
        raise _bad("'workspaces' must be a list of workspace ids")
    for w in others:
        if w.lower() != ours:
            raise _bad(f"the workspace '{w}' in 'workspaces' is not this one ({ours}): netatlas queries one "
                       f"workspace", code="BadArgumentError")


async def _run(svc, body: dict, prefer: dict, workspace: str | None) -> dict:
    """One query request's answer body (raises Failed)."""
    unknown = [k for k in body if k not in ("query", "timespan", "workspaces", "parameters")]
    if unknown:
        raise _bad(f"unknown field '{unknown[0]}' in the query request; the fields are query, timespan, workspaces")
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise _bad("'query' must be the query's text")
    _check_workspace(svc, workspace, body.get("workspaces"))
    options = limits(svc.settings, timeout=prefer.get("wait"))
    if body.get("timespan") is not None:
        try:
            options["timespan"] = parse_timespan(body["timespan"])
        except (TimespanError, TypeError) as e:
            raise _bad(f"'timespan' {body['timespan']!r}: {e}") from None
    params = body.get("parameters")
    if isinstance(params, dict):
        options["params"] = {str(k): LiteralText(v) if isinstance(v, str) else v for k, v in params.items()}
    t0 = time.perf_counter()
    try:
        res = await run(svc, text, **options)
    except (KqlError, QueryLimitError, QueryExecutionError, QueryBusyError) as e:
        raise _failure(e) from None
    return answer(res, prefer, time.perf_counter() - t0)


def _applied(prefer: dict) -> dict:
    parts = [f"{k}=true" for k in ("include-statistics", "include-render") if prefer.get(k)]
    if "wait" in prefer:
        parts.append(f"wait={prefer['wait']:g}")
    return {"Preference-Applied": ",".join(parts)} if parts else {}


def _opened(request: Request):
    """(the service, None), or (None, the answer refusing the request's key)."""
    try:
        return authorize_query(request), None
    except AuthError as e:
        code = "AuthorizationRequiredError" if e.status == 401 else "InsufficientAccessError"
        headers = {"WWW-Authenticate": 'Bearer realm="netatlas"'} if e.status == 401 else None
        return None, _json({"error": _error(code, str(e))}, e.status, headers)


async def query(request: Request) -> Response:
    svc, refused = _opened(request)
    if refused is not None:
        return refused
    try:
        prefer = _prefer(request.headers.get("prefer"))
        if request.method == "GET":
            q = request.query_params
            body = {k: q[k] for k in ("query", "timespan") if k in q}
            if "workspaces" in q:
                body["workspaces"] = [w for w in q["workspaces"].split(",") if w]
        else:
            try:
                body = await read_json_object(request, BODY_LIMIT)
            except HttpError as e:
                raise Failed(e.status, _error("BadArgumentError", e.message)) from None
        out = await _run(svc, body, prefer, request.path_params["workspace"])
    except Failed as f:
        return _json({"error": f.error}, f.status, f.headers)
    return _json(out, headers=_applied(prefer))


async def batch(request: Request) -> Response:
    svc, refused = _opened(request)
    if refused is not None:
        return refused
    try:
        body = await read_json_object(request, BATCH_LIMIT)
    except HttpError as e:
        return _json({"error": _error("BadArgumentError", e.message)}, e.status)
    requests = body.get("requests")
    if not isinstance(requests, list) or not requests:
        return _json({"error": _bad("'requests' must be a non-empty list of queries").error}, 400)
    if len(requests) > MAX_BATCH:
        return _json({"error": _bad(f"a batch holds at most {MAX_BATCH} queries, this one {len(requests)}").error}, 400)
    responses = []
    for i, item in enumerate(requests):
        rid = str(item.get("id", i)) if isinstance(item, dict) else str(i)
        try:
            if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
                raise _bad(f"request {rid}: 'body' must be the query request")
            headers = item.get("headers") or {}
            if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
                raise _bad(f"request {rid}: 'headers' must be an object of header names and their text")
            workspace = item.get("workspace")
            if workspace is not None and not isinstance(workspace, str):
                raise _bad(f"request {rid}: 'workspace' must be a workspace id")
            prefer = _prefer({str(k).lower(): v for k, v in headers.items()}.get("prefer"))
            out = await _run(svc, item["body"], prefer, workspace)
            responses.append({"id": rid, "status": 200, "headers": _applied(prefer), "body": out})
        except Failed as f:
            responses.append({"id": rid, "status": f.status, "body": {"error": f.error}})
    return _json({"responses": responses})


__all__ = ["answer", "batch", "query"]
