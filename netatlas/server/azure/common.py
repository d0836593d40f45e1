"""What the Azure APIs share: the database's name, Kusto's names of our types, a query request's
key, limits and parameters, running it with the errors sorted, and the answer's rows and JSON.

netatlas serves one database. Its name is ``netatlas``; the workspace's id names it too (the Log
Analytics API puts it in the path, and Kusto tools that were pointed at a workspace pass it).
"""
from __future__ import annotations

import ipaddress
import json
import re
import time

from starlette.responses import Response

from ...auth import verify_bearer
from ...errors import KqlError, QueryExecutionError, QueryLimitError
from ...kql import types as T
from ...kql.literals import parse_timespan
from .. import http

DATABASE = "netatlas"
_PY_DAYS = re.compile(r"^(-?\d+) days?, (\d+:\d\d:\d\d(?:\.\d+)?)$")

# our column types are Kusto's; their .NET names (v1 DataType, a schema's Type) and Kusto's
# numbers of each .NET type in the v1 answers
NET_TYPES = {T.STRING: "System.String", T.LONG: "System.Int64", T.INT: "System.Int32",
             T.REAL: "System.Double", T.DECIMAL: "System.Data.SqlTypes.SqlDecimal", T.BOOL: "System.SByte",
             T.DATETIME: "System.DateTime", T.TIMESPAN: "System.TimeSpan", T.GUID: "System.Guid",
             T.DYNAMIC: "System.Object"}
V1_TYPES = {T.STRING: "String", T.LONG: "Int64", T.INT: "Int32", T.REAL: "Double", T.DECIMAL: "Decimal",
            T.BOOL: "Boolean", T.DATETIME: "DateTime", T.TIMESPAN: "TimeSpan", T.GUID: "Guid",
            T.DYNAMIC: "Object"}


DEFAULT = "NetDefaultDB"      # what Kusto's clients send when given no database: the default one


def is_database(name: str | None, workspace_id: str) -> bool:
    """Whether ``name`` names the workspace's database (None, empty or NetDefaultDB: the default,
    which it is)."""
    return not name or name.lower() in (DATABASE, workspace_id.lower(), DEFAULT.lower())


class BadRequest(Exception):
    """A request the API refuses before running anything: ``kind`` says which (for each API's
    error shape), ``message`` says what and where."""

    def __init__(self, message: str, kind: str = "bad_request", status: int = 400):
        super().__init__(message)
        self.kind = kind
        self.status = status


def authorize_query(request):
    """The service, once the request's query key (``Authorization: Bearer`` or ``x-api-key``) is
    checked, or it has none and comes from an address the operator lets query without one (the
    anonymous_query setting: Kqlmagic's anonymous mode). AuthError otherwise."""
    svc = http.service(request)
    if not request.headers.get("authorization") and not request.headers.get("x-api-key"):
        networks = svc.settings.anonymous_networks()
        host = request.client.host if request.client else None
        try:
            address = ipaddress.ip_address(host) if host else None
        except ValueError:
            address = None
        if address is not None and any(address in n for n in networks):
            return svc
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    return svc


def timeout_seconds(value) -> float:
    """A timeout as clients send it: a number of seconds, or a timespan ('00:04:00', '4m')."""
    if isinstance(value, bool):
        raise BadRequest(f"a timeout must be a timespan or seconds, not {value!r}")
    if isinstance(value, (int, float)):
        seconds = float(value)
    elif isinstance(value, str):
        days = _PY_DAYS.match(value.strip())            # str() of a Python timedelta past a day
        ticks = parse_timespan(days.group(2) if days else value)
        if ticks is not None and days:
            ticks += int(days.group(1)) * 864_000_000_000
        if ticks is None:
            raise BadRequest(f"the timeout {value!r} is not a timespan (e.g. '00:04:00')")
        seconds = ticks / 10_000_000
    else:
        raise BadRequest(f"a timeout must be a timespan or seconds, not {type(value).__name__}")
    if seconds <= 0:
        raise BadRequest(f"the timeout must be positive, got {value!r}")
    return seconds


def limits(settings, *, max_rows=None, timeout=None, max_bytes=None) -> dict:
    """The options of ``Workspace.query``: the server's limits, lowered (never raised) by a request's."""
    out = {"max_rows": settings.max_rows, "timeout": settings.query_timeout,
           "max_result_bytes": settings.max_result_bytes}
    for key, value in (("max_rows", max_rows), ("timeout", timeout), ("max_result_bytes", max_bytes)):
        if value is not None:
            out[key] = min(out[key], value)
    return out


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)) or not str(value).strip().isdigit() \
            or int(value) <= 0:
        raise BadRequest(f"the option {name} must be a positive whole number, got {value!r}")
    return int(value)


async def run(svc, text: str, **options):
    """The query's Result, with the service's metrics; the query's own mistakes raise as they are."""
    m = svc.metrics
    t0 = time.perf_counter()
    try:
        res = await svc.run_query(svc.workspace.query, text, **options)
    except KqlError:
        m.queries.inc(outcome="kql_error")
        raise
    except QueryLimitError:
        m.queries.inc(outcome="timeout")
        raise
    except QueryExecutionError:
        m.queries.inc(outcome="runtime_error")
        raise
    finally:
        m.query_seconds.observe(time.perf_counter() - t0)
    m.queries.inc(outcome="ok")
    if res.truncated:
        m.queries_truncated.inc()
    return res


def json_rows(res, dynamic_as_text: bool = False) -> list[list]:
    """A Result's rows as JSON values; dynamic values as JSON text where the API sends them so
    (Log Analytics, Kusto's v1)."""
    rows = res.json_rows()
    dynamic = [i for i, t in enumerate(res.types) if t == T.DYNAMIC] if dynamic_as_text else []
    for row in rows if dynamic else ():
        for i in dynamic:
            if row[i] is not None:
                row[i] = json.dumps(row[i], separators=(",", ":"))
    return rows


def json_response(data, status: int = 200, headers: dict | None = None) -> Response:
    """An answer as Azure's APIs send it (their media type names the charset)."""
    return http.json_response(data, status, headers, media_type="application/json; charset=utf-8")


def described(e: Exception) -> str:
    """An error's message as the APIs send it: a KQL mistake with where it is and the hint."""
    if isinstance(e, KqlError):
        where = f" (line {e.line}, column {e.column})" if e.line else ""
        hint = f"; hint: {e.hint}" if getattr(e, "hint", None) else ""
        return f"{e.message}{where}{hint}"
    return str(e)


__all__ = ["BadRequest", "DATABASE", "NET_TYPES", "V1_TYPES", "authorize_query", "described", "is_database",
           "json_response", "json_rows", "limits", "positive_int", "run", "timeout_seconds"]
