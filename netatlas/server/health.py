"""``GET /healthz`` (is the server up, which workspace, is there room to store) and ``GET /metrics``
(Prometheus text).

Neither needs a key: they carry no data and no secret, and a Prometheus scrape or a load
balancer's check should not hold one.
"""
from __future__ import annotations

import os
import time

from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..metrics import CONTENT_TYPE
from .http import json_response, service


async def healthz(request: Request) -> Response:
    """Always 200 while the server runs; ``status`` is "ok", or "storage_full" with the ``reason``
    (free space below min_free_bytes: ingestion answers 507 until space is freed)."""
    svc = service(request)
    room = storage(svc)
    out = {"status": "ok", "workspace_id": svc.keys.identity.workspace_id, "version": __version__,
           "uptime_seconds": round(time.time() - svc.metrics.started, 3), "storage": room}
    if room["full"]:
        out["status"] = "storage_full"
        out["reason"] = full_message(room)
    return json_response(out)


async def metrics(request: Request) -> Response:
    svc = service(request)
    m = svc.metrics
    committer = getattr(svc.workspace, "_committer", None)
    if committer is not None and hasattr(m, "commit_groups"):
        m.commit_groups._values[()] = committer.groups
        m.commit_batches._values[()] = committer.batches
    if hasattr(m, "storage_free"):
        m.storage_free.set(storage(svc)["free_bytes"])
    return Response(m.render(), media_type=CONTENT_TYPE)


# ---- the free-space reserve (setting min_free_bytes) ----------------------------------------------

def storage(svc) -> dict:
    """Free bytes on the data directory's filesystem against the reserve: {free_bytes,
    min_free_bytes, full}."""
    st = os.statvfs(svc.data_dir)
    free = st.f_bavail * st.f_frsize
    reserve = svc.settings.min_free_bytes
    return {"free_bytes": free, "min_free_bytes": reserve, "full": reserve > 0 and free < reserve}


def full_message(room: dict) -> str:
    return (f"the workspace's disk has {room['free_bytes']:,} bytes free, below its reserve "
            f"(min_free_bytes {room['min_free_bytes']:,}): ingestion is refused until space is freed")
