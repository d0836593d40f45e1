"""The HTTP Data Collector API: ``POST /api/logs?api-version=2016-04-01``, as scripts and tools
that post custom logs to Log Analytics send it.

The request is signed as Azure documents (``Authorization: SharedKey <workspace id>:<signature>``,
the HMAC-SHA256 of ``POST\\n<length>\\napplication/json\\nx-ms-date:<date>\\n/api/logs`` under an
ingest key), names its table in ``Log-Type`` (letters, digits and ``_``, at most 100; the table is
``<Log-Type>_CL``) and may name the field that holds each record's time in
``time-generated-field`` (else TimeGenerated is the time of arrival). The body is a JSON object or
an array of objects.

Each field becomes a column named with Azure's suffix for its JSON value: ``_s`` string (objects
and arrays as their JSON text), ``_d`` number, ``_b`` bool, ``_t`` a string that is an ISO 8601
datetime, ``_g`` a string that is a GUID; a null makes no column. A new table or column is created
on first sight (custom.py, ``Workspace.define_table``); a field seen with another kind of value
gets another column, as in Azure. Then the records go through ingestion as any batch (checks,
enrichment, Usage). The answer is 200 with no body; refusals are Azure's ``{"Error", "Message"}``.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import Response

from ...auth import AuthError, verify_shared_key
from ...errors import IngestError, StorageError
from ...kql import types as T
from ...kql.literals import parse_datetime
from ..http import HttpError, read_body, service
from ..ingest import counted
from .common import json_response

PATH = "/api/logs"
API_VERSION = "2016-04-01"
LOG_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}")
ISO_DATETIME = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?")
GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Refused(Exception):
    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error = status, error


def _kind(value) -> tuple[str, str, object] | None:
    """(suffix, KQL type, the value as stored) of a JSON value; None for null."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "_b", T.BOOL, value
    if isinstance(value, (int, float)):
        return "_d", T.REAL, float(value)
    if isinstance(value, str):
        if ISO_DATETIME.fullmatch(value) and parse_datetime(value) is not None:
            return "_t", T.DATETIME, value
        if GUID.fullmatch(value):
            return "_g", T.GUID, value
        return "_s", T.STRING, value
    return "_s", T.STRING, json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def columns_and_records(body: bytes, time_field: str | None, now: datetime) -> tuple[list, list[dict]]:
    """The columns the records need ([(name, type)], in order of first sight) and the records."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as e:
        raise Refused(400, "InvalidDataFormat", f"the body is not JSON: {e}") from None
    items = doc if isinstance(doc, list) else [doc]
    if not items:
        raise Refused(400, "InvalidDataFormat", "the body holds no record")
    columns: dict[str, str] = {}
    records = []
    arrived = now.isoformat().replace("+00:00", "Z")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Refused(400, "InvalidDataFormat", f"record {i} is a {type(item).__name__}, not a JSON object")
        record = {}
        for field, value in item.items():
            if not FIELD.fullmatch(field):
                raise Refused(400, "InvalidDataFormat", f"record {i}: the field {field[:80]!r} is not a name of "
                              f"letters, digits and _ (a letter or _ first)")
            kind = _kind(value)
            if kind is None:
                continue
            suffix, typ, stored = kind
            columns.setdefault(field + suffix, typ)
            record[field + suffix] = stored
        when = arrived
        if time_field:
            value = item.get(time_field)
            if not isinstance(value, str) or parse_datetime(value) is None:
                raise Refused(400, "InvalidTimestamp", f"record {i}: the time-generated-field '{time_field}' must "
                              f"hold an ISO 8601 datetime, got {value!r}")
            when = value
        record["TimeGenerated"] = when
        records.append(record)
    return list(columns.items()), records


def _refusal(status: int, error: str, message: str) -> Response:
    return json_response({"Error": error, "Message": message}, status)


async def post(request: Request) -> Response:
    svc = service(request)
    try:
        return await _post(request, svc)
    except Refused as e:
        svc.metrics.batches_rejected.inc(reason=e.error)
        return _refusal(e.status, e.error, str(e))
    except AuthError as e:
        svc.metrics.batches_rejected.inc(reason=e.code)
        return _refusal(e.status, "InvalidAuthorization", str(e))


async def _post(request: Request, svc) -> Response:
    version = request.query_params.get("api-version")
    if version is None:
        raise Refused(400, "MissingApiVersion", f"the api-version query parameter is missing ({API_VERSION})")
    if version != API_VERSION:
        raise Refused(400, "InvalidApiVersion", f"api-version {version[:40]!r} is not {API_VERSION}")
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise Refused(411, "MissingContentLength", "a Content-Length header is needed (it is part of the signed string)")
    verify_shared_key(svc.keys.identity, request.headers, method="POST", path=PATH, content_length=int(length),
                      max_skew=timedelta(seconds=svc.settings.max_clock_skew), roles=("ingest",))
    log_type = request.headers.get("log-type")
    if not log_type:
        raise Refused(400, "MissingLogType", "the Log-Type header names the table (MyRecords: MyRecords_CL)")
    if not LOG_TYPE.fullmatch(log_type):
        raise Refused(400, "InvalidLogType", f"Log-Type {log_type[:120]!r} must be a letter, then letters, digits and "
                      f"_, at most 100 characters")
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise Refused(415, "UnsupportedContentType", f"the Content-Type must be application/json, not {ctype!r}")
    try:
        body = await read_body(request, svc.settings.max_body_bytes)
    except HttpError as e:
        raise Refused(e.status, "InvalidDataFormat", e.message) from None
    table = f"{log_type}_CL"
    time_field = request.headers.get("time-generated-field") or None
    columns, records = columns_and_records(body, time_field, datetime.now(timezone.utc))
    try:
        await svc.run(svc.workspace.define_table, table, columns)
        report = await svc.run(svc.workspace.ingest, table, records, batch_id=f"dc-{uuid.uuid4()}")
    except IngestError as e:
        raise Refused(400, "InvalidDataFormat", f"{e}" + (f" (record {e.record})" if e.record is not None else "")) from None
    except StorageError as e:
        svc.metrics.storage_errors.inc()
        raise Refused(503, "ServiceUnavailable", f"{e}; nothing of the batch was stored, send it again later") from None
    counted(svc.metrics, report)
    return Response(status_code=200)


__all__ = ["columns_and_records", "post"]
