"""The Logs Ingestion API, as azure-monitor-ingestion and other clients of Azure Monitor's data
collection endpoints send it, and the workspace's data collection rules (dcr.py).

- ``POST /dataCollectionRules/{ruleId}/streams/{stream}?api-version=2023-01-01``: a JSON array of
  records (gzip as the SDK sends it), with an ingest key as ``Authorization: Bearer <key>``; each
  flow of the rule for that stream transforms the records (``transformKql``) into its table,
  through ingestion as any batch. 204 when stored; errors in Azure's shape
  (``{"error": {"code", "message"}}``), so the SDK raises ``HttpResponseError`` with our words.
- ``PUT /api/dcr/{ruleId}`` (admin key): define or replace a rule from Azure's JSON, checked (every
  transformation compiled; custom output tables made or widened); ``GET /api/dcr`` lists them,
  ``GET``/``DELETE /api/dcr/{ruleId}`` read or remove one.
"""
from __future__ import annotations

import json
import uuid

from starlette.requests import Request
from starlette.responses import Response

from ...auth import AuthError, verify_bearer
from ...errors import IngestError, StorageError
from ..http import HttpError, json_response, read_body, read_json_object, service
from ..ingest import counted
from .common import json_response as azure_json

API_VERSIONS = ("2023-01-01", "2021-11-01-preview")
RULE_BODY_LIMIT = 1024 * 1024
# IngestError codes -> (HTTP status, Azure's code)
CODES = {"DCR_UNKNOWN": (404, "InvalidDataCollectionRule"), "DCR_UNKNOWN_STREAM": (404, "InvalidStream"),
         "INGEST_TOO_LARGE": (413, "ContentLengthLimitExceeded")}


def _error(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    return azure_json({"error": {"code": code, "message": message}}, status, headers)


async def upload(request: Request) -> Response:
    svc = service(request)
    try:
        verify_bearer(svc.keys.identity, request.headers, role="ingest")
    except AuthError as e:
        svc.metrics.batches_rejected.inc(reason=e.code)
        headers = {"WWW-Authenticate": 'Bearer realm="netatlas"'} if e.status == 401 else None
        return _error(e.status, "InvalidToken" if e.status == 401 else "Forbidden", str(e), headers)
    version = request.query_params.get("api-version")
    if version not in API_VERSIONS:
        return _error(400, "InvalidApiVersion", f"api-version must be one of {', '.join(API_VERSIONS)}, got {version!r}")
    try:
        body = await read_body(request, svc.settings.max_body_bytes)
    except HttpError as e:
        return _error(e.status, "InvalidContent" if e.status != 413 else "ContentLengthLimitExceeded", e.message)
    try:
        records = json.loads(body)
    except (ValueError, RecursionError) as e:
        return _error(400, "InvalidContent", f"the body is not JSON: {e}")
    rule, stream = request.path_params["rule"], request.path_params["stream"]
    try:
        reports = await svc.run(svc.workspace.ingest_stream, rule, stream, records, batch_id=f"li-{uuid.uuid4()}")
    except IngestError as e:
        svc.metrics.batches_rejected.inc(reason=e.code)
        status, code = CODES.get(e.code, (400, "InvalidContent"))
        where = f" (record {e.record}, field {e.field})" if e.record is not None else ""
        return _error(status, code, f"{e}{where}")
    except StorageError as e:
        svc.metrics.storage_errors.inc()
        return _error(503, "ServiceUnavailable", f"{e}; nothing of the batch was stored, send it again later",
                      {"Retry-After": "5"})
    for r in reports:
        counted(svc.metrics, r)
    return Response(status_code=204)


def _admin(request: Request):
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin")
    return svc


async def rules(request: Request) -> Response:
    svc = _admin(request)
    return json_response({"rules": await svc.run(svc.workspace.rules)})


async def rule(request: Request) -> Response:
    svc = _admin(request)
    rule_id = request.path_params["rule"]
    if request.method == "GET":
        found = (await svc.run(svc.workspace.rules)).get(rule_id)
        if found is None:
            raise HttpError(404, "DCR_UNKNOWN", f"there is no data collection rule {rule_id!r}")
        return json_response(found)
    if request.method == "DELETE":
        if not await svc.run(svc.workspace.delete_rule, rule_id):
            raise HttpError(404, "DCR_UNKNOWN", f"there is no data collection rule {rule_id!r}")
        return Response(status_code=204)
    doc = await read_json_object(request, RULE_BODY_LIMIT)
    try:
        defined = await svc.run(svc.workspace.define_rule, rule_id, doc)
    except IngestError as e:
        raise HttpError(400, e.code, str(e)) from None
    tables = sorted({f.table for f in defined.flows})
    return json_response({"id": defined.id, "streams": list(defined.streams), "tables": tables,
                          "endpoint": f"/dataCollectionRules/{defined.id}/streams/{{stream}}?api-version={API_VERSIONS[0]}"})


__all__ = ["rule", "rules", "upload"]
