"""Retention: how many days each table keeps, and the pass that removes older rows.

``GET /api/retention`` -> ``{"tables": {"VMConnection": 30, ...}, "interval_seconds": 3600,
"last_run": {"at", "deleted": {table: rows}} | null, "next_run": "<RFC 3339>" | null}``.
``PUT /api/retention/{Table}`` with ``{"days": N}`` (a whole number of days, at least 1; the
workspace sets the upper bound) changes one table.
``POST /api/retention/apply`` runs a pass now and answers what it removed.
All three need a query key: agents hold ingest keys, and those must not be able to delete data.

``schedule`` runs a pass at start and then every retention_interval seconds; a pass that fails
is logged and counted (``netatlas_retention_runs_total{outcome="error"}``), and the schedule
goes on. ``compaction`` merges VMConnection's hourly rollup (rollup.py) at start and every 5
minutes (``netatlas_rollup_runs_total{outcome}``, ``netatlas_rollup_hours_merged_total``).
"""
from __future__ import annotations

import logging
import time
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import Response

from ..auth import verify_bearer
from ..errors import IngestError
from .http import HttpError, json_response, read_json_object, service
from .schedule import every

log = logging.getLogger("netatlas.server")
BODY_LIMIT = 64 * 1024


def _iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


async def run_pass(svc) -> dict[str, int]:
    """One retention pass: ``Workspace.apply_retention()``, counted in the metrics."""
    started = time.time()
    try:
        deleted = await svc.run(svc.workspace.apply_retention)
    except Exception:
        svc.metrics.retention_runs.inc(outcome="error")
        raise
    for table, rows in deleted.items():
        svc.metrics.retention_deleted.inc(rows, table=table)
    svc.metrics.retention_runs.inc(outcome="ok")
    svc.retention_last = {"at": _iso(started), "deleted": dict(deleted)}
    return deleted


async def schedule(svc) -> None:
    async def one_pass():
        deleted = await run_pass(svc)
        if any(deleted.values()):
            log.info("retention removed %s", ", ".join(f"{n} rows of {t}" for t, n in deleted.items() if n))
    await every(svc.settings.retention_interval, one_pass, "retention pass",
                lambda t: setattr(svc, "retention_next", t))


async def show(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    days = await svc.run(svc.workspace.retention)
    return json_response({"tables": dict(days), "interval_seconds": svc.settings.retention_interval,
                          "last_run": svc.retention_last, "next_run": _iso(svc.retention_next)})


async def change(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    table = request.path_params["table"]
    if table not in svc.catalogue:
        raise HttpError(404, "UNKNOWN_TABLE", f"unknown table '{table}'; the tables are "
                        f"{', '.join(svc.catalogue.names())}")
    body = await read_json_object(request, BODY_LIMIT)
    days = body.get("days")
    if set(body) != {"days"} or isinstance(days, bool) or not isinstance(days, int) or days < 1:
        raise HttpError(400, "RETENTION_INVALID", "the body must be {\"days\": N} with N a whole number "
                        "of days, at least 1", field="days")
    try:
        await svc.run(svc.workspace.set_retention, table, days)
    except IngestError as e:
        raise HttpError(404 if e.code == "INGEST_UNKNOWN_TABLE" else 400, e.code, str(e), field="days") from None
    return json_response({"table": table, "days": days})


async def apply(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    return json_response({"deleted": await run_pass(svc)})


async def compaction(svc) -> None:
    """VMConnection's hourly rollup merged every rollup.COMPACT_SECONDS (rollup.compact): the
    closed hours batches added to since the last pass."""
    from .. import rollup
    compact = getattr(svc.workspace, "compact_rollup", None)
    if compact is None:
        return

    async def one_pass():
        try:
            merged = await svc.run(compact)
        except Exception:
            svc.metrics.rollup_runs.inc(outcome="error")
            raise
        svc.metrics.rollup_runs.inc(outcome="ok")
        svc.metrics.rollup_merged.inc(merged)
        if merged:
            log.debug("rollup: %d hours merged", merged)
    await every(rollup.COMPACT_SECONDS, one_pass, "rollup compaction", lambda t: None)
