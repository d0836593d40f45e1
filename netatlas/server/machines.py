"""``GET /api/machines/resolve?ip=A&ip=B[&lookback_days=1]``: which monitored machine each address
belongs to (``netatlas.machines``): ``{"addresses": {"A": [{"machine", "computer", "via"}], ...}}``
with ``via`` "address" (one of its own) or "nat" (where its agent's batches come from). Query key.
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from ..auth import verify_bearer
from .http import HttpError, json_response, service

MAX_ADDRESSES = 1000


async def resolve(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    addresses = [a for a in request.query_params.getlist("ip") if a.strip()]
    if not addresses:
        raise HttpError(400, "RESOLVE_NO_ADDRESS", "give the addresses to resolve: ?ip=10.0.0.5&ip=...", field="ip")
    if len(addresses) > MAX_ADDRESSES:
        raise HttpError(400, "RESOLVE_TOO_MANY", f"at most {MAX_ADDRESSES} addresses a request", field="ip")
    try:
        days = float(request.query_params.get("lookback_days", "1"))
    except ValueError:
        days = -1
    if not 0 < days <= 4383:
        raise HttpError(400, "RESOLVE_LOOKBACK", "lookback_days is a number of days, more than 0",
                        field="lookback_days")
    found = await svc.run(svc.workspace.resolve_addresses, addresses, days)
    return json_response({"addresses": found, "lookback_days": days})
