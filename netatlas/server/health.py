"""``GET /healthz`` (is the server up, which workspace) and ``GET /metrics`` (Prometheus text).

Neither needs a key: they carry no data and no secret, and a Prometheus scrape or a load
balancer's check should not hold one.
"""
from __future__ import annotations

import time

from starlette.requests import Request
from starlette.responses import Response

from .. import __version__
from ..metrics import CONTENT_TYPE
from .http import json_response, service


async def healthz(request: Request) -> Response:
    svc = service(request)
    return json_response({"status": "ok", "workspace_id": svc.keys.identity.workspace_id,
                          "version": __version__,
                          "uptime_seconds": round(time.time() - svc.metrics.started, 3)})


async def metrics(request: Request) -> Response:
    return Response(service(request).metrics.render(), media_type=CONTENT_TYPE)
