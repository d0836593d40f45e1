"""``POST /api/ingest/{Table}``: one batch of records for one table, signed with an ingest key.

Steps, in order (the first that fails answers): a Content-Length when the request is signed
(411: the length is part of the signed string), authenticate (401/403; the key's role must be one
the table takes, ``Catalogue.ingest_roles``), the table exists (404), a verbatim replay of an
accepted request without a batch id answers the first answer (``duplicate: true``),
JSON content type and encoding (415), the batch id's form (400), read the body within
max_body_bytes, gunzipping as it arrives (413; 400 for bad gzip), the raw body against its
signed digest (401 AUTH_BAD_DIGEST), then ``Workspace.ingest_json``: every record validated, all
stored in one transaction, or none (400 naming ``record`` and ``field``; 413 for a body that
inflates past max_body_bytes, 400 for gzip inside gzip). Answer: ``{"table", "records", "bytes",
"duplicate", "batch_id", "truncated"}`` (``truncated``: string values cut at Azure's 32 KB). Every
refusal is counted in ``netatlas_batches_rejected_total{reason=<code>}``.

Storage (STORAGE): below the free-space reserve (setting min_free_bytes) a request is refused after
authentication, before its body is read: 507 STORAGE_FULL with Retry-After
(``netatlas_storage_full_total``); a store that cannot write (a full disk, an I/O error, a write
conflict: errors.StorageError) answers 503 STORAGE_UNAVAILABLE with Retry-After
(``netatlas_storage_errors_total``), logged with DuckDB's message. Nothing of such a batch was
stored: the agent sends it again.
"""
from __future__ import annotations

import logging
import re
from datetime import timedelta

from starlette.requests import Request
from starlette.responses import Response

from starlette.requests import Request as _Request

from ..auth import DIGEST_HEADER, AuthError, BodyDigest, request_signature, verify_shared_key
from ..errors import IngestError, StorageError
from .health import full_message, storage
from .http import HttpError, json_response, read_body, require_json, service

BATCH_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
BATCH_HEADER = "x-ms-batch-id"


def _content_length(request: Request) -> int:
    value = request.headers.get("content-length")
    if value is None or not value.isdigit():
        raise HttpError(411, "LENGTH_REQUIRED", "an ingestion request needs a Content-Length header "
                        "(it is part of the signed string)")
    return int(value)


def _batch_id(request: Request) -> str | None:
    value = request.headers.get(BATCH_HEADER)
    if value is None:
        return None
    if not BATCH_ID.fullmatch(value):
        raise HttpError(400, "INGEST_BAD_BATCH_ID", f"{BATCH_HEADER} must be 1-128 characters of "
                        f"A-Z a-z 0-9 . _ : -, got {value[:200]!r}")
    return value


# errors.StorageError's kinds -> (status, seconds of Retry-After)
STORAGE = {"STORAGE_FULL": (507, 60), "STORAGE_UNAVAILABLE": (503, 5)}
log = logging.getLogger("netatlas.server")


def counted(m, report) -> None:
    """A stored batch in the metrics (every door that ingests: this API, the Azure ones)."""
    if report.duplicate:
        m.duplicate_batches.inc()
        return
    m.records_ingested.inc(report.records, table=report.table)
    m.bytes_ingested.inc(report.bytes, table=report.table)
    m.batches_ingested.inc(table=report.table)
    if report.truncated:
        m.fields_truncated.inc(report.truncated, table=report.table)


def _storage_error(code: str, message: str) -> HttpError:
    status, retry = STORAGE[code]
    return HttpError(status, code, message, headers={"Retry-After": str(retry)})


# IngestError code -> HTTP status (others: 400)
STATUS = {"INGEST_UNKNOWN_TABLE": 404, "INGEST_TOO_LARGE": 413}


def _ingest_error(e: IngestError, limit: int | None = None) -> HttpError:
    status = STATUS.get(e.code, 400)
    info = e.to_json()
    if status == 413:
        info["limit"] = limit
    return HttpError(status, info.pop("code", e.code), info.pop("message", str(e)), **info)


async def ingest(request: Request) -> Response:
    svc = service(request)
    try:
        return await _ingest(request, svc)
    except (HttpError, AuthError) as e:
        svc.metrics.batches_rejected.inc(reason=e.code)
        raise


def _digesting(request: Request, digest: BodyDigest) -> Request:
    """The request with its raw body (as received, before gunzip) fed to ``digest`` as it arrives."""
    async def receive():
        message = await request.receive()
        if message.get("type") == "http.request":
            digest.update(message.get("body", b""))
        return message
    return _Request(request.scope, receive)


async def _ingest(request: Request, svc) -> Response:
    table = request.path_params["table"]
    length = _content_length(request) if request.headers.get("authorization") else -1
    verify_shared_key(svc.keys.identity, request.headers, method=request.method, path=request.url.path,
                      content_length=length, max_skew=timedelta(seconds=svc.settings.max_clock_skew),
                      roles=svc.catalogue.ingest_roles(table), table=table)
    if table not in svc.catalogue:
        raise _ingest_error(IngestError(f"unknown table '{table}'; the tables are "
                                        f"{', '.join(svc.catalogue.names())}", code="INGEST_UNKNOWN_TABLE"))
    require_json(request)
    batch_id = _batch_id(request)
    room = storage(svc)
    if room["full"]:
        svc.metrics.storage_full.inc()
        raise _storage_error("STORAGE_FULL", full_message(room))
    replay_key = request_signature(request.headers) if batch_id is None else None
    if replay_key is not None and (first := svc.replay.get(replay_key)) is not None:
        svc.metrics.duplicate_batches.inc()
        return json_response(dict(first, duplicate=True))
    digest = BodyDigest(request.headers.get(DIGEST_HEADER))
    try:
        body = await read_body(_digesting(request, digest), svc.settings.max_body_bytes)
    except HttpError:
        if digest.received == length:    # the whole body arrived (bad gzip...): a changed body says so first
            digest.check()
        raise
    digest.check()
    try:
        report = await svc.run(svc.workspace.ingest_json, table, body, batch_id=batch_id,
                               sender=request.client.host if request.client else None,
                               limit=svc.settings.max_body_bytes)
    except IngestError as e:
        raise _ingest_error(e, svc.settings.max_body_bytes) from None
    except StorageError as e:
        log.error("STORAGE_UNAVAILABLE: a batch of %s was not stored: %s", table, e.__cause__ or e)
        svc.metrics.storage_errors.inc()
        raise _storage_error("STORAGE_UNAVAILABLE", f"{e}; nothing of the batch was stored, send it again "
                             f"later") from None
    counted(svc.metrics, report)
    answer = {"table": report.table, "records": report.records, "bytes": report.bytes,
              "duplicate": report.duplicate, "batch_id": report.batch_id, "truncated": report.truncated}
    if replay_key is not None:
        svc.replay.add(replay_key, answer)
    return json_response(answer)
