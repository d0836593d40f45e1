"""Threat intelligence and geolocation over HTTP, and the feed schedule.

``POST /api/threatintel/import?source=NAME[&format=stix|csv|list][&threat_type=T]`` with the
feed as the body (gzip allowed): replaces the indicators of ``source`` and answers
``{"source", "format", "indicators", "stored", "skipped": {reason: n}}``; a feed that cannot be
read is a 400 naming where (line, object) and why, and nothing is replaced.
``GET /api/threatintel`` -> ``{"indicators": {"total", "active"}, "by_source": {...},
"feeds": [{"feed", "last_import", "result" | "error"}], "interval_seconds", "next_run"}``.
``GET /api/geoip`` -> which database places remote addresses, its age and attribution.
All need a query key (indicators change what ingestion writes; agents hold ingest keys).

``schedule`` imports every feed of the ``threatintel_feeds`` setting (files or http(s) URLs) at
start and then every ``threatintel_interval`` seconds; a feed that fails is logged, its error
shown by ``GET /api/threatintel``, and the others go on.
"""
from __future__ import annotations

import logging
import time
import urllib.request
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response

from .. import threatintel as ti
from ..auth import verify_bearer
from .http import HttpError, json_response, read_body, service
from .retention import _iso
from .schedule import every

log = logging.getLogger("netatlas.server")
FETCH_TIMEOUT = 60.0
FETCH_LIMIT = 256 * 1024 * 1024


def feeds(setting: str) -> list[tuple[str | None, str]]:
    """``threatintel_feeds`` -> [(format or None, file or URL)]."""
    out = []
    for item in (x.strip() for x in setting.split(",")):
        if not item:
            continue
        fmt, sep, rest = item.partition(":")
        if sep and fmt in ti.PARSERS and not rest.startswith("//"):
            out.append((fmt, rest))
        else:
            out.append((None, item))
    return out


def fetch(location: str) -> bytes:
    if location.startswith(("http://", "https://")):
        with urllib.request.urlopen(location, timeout=FETCH_TIMEOUT) as r:     # noqa: S310 (operator's URL)
            data = r.read(FETCH_LIMIT + 1)
    else:
        data = Path(location).expanduser().read_bytes()
    if len(data) > FETCH_LIMIT:
        raise ti.FeedError(f"{location}: larger than {FETCH_LIMIT} bytes")
    return data


def import_feed(workspace, data: bytes, fmt: str | None, source: str, threat_type: str | None = None) -> dict:
    """Parse and store one feed (blocking); the report of ``threatintel.parse`` plus "stored"."""
    indicators, report = ti.parse(data, fmt, threat_type=threat_type, source=source)
    report["stored"] = workspace.import_indicators(indicators, source)
    return report


async def run_feeds(svc) -> list[dict]:
    results = []
    for fmt, location in feeds(svc.settings.threatintel_feeds):
        entry = {"feed": location, "last_import": _iso(time.time())}
        try:
            data = await svc.run(fetch, location)
            entry["result"] = await svc.run(import_feed, svc.workspace, data, fmt, location)
            log.info("threat intelligence: %s: %d indicators", location, entry["result"]["stored"])
        except Exception as e:       # one feed's failure, whatever it is, does not stop the others
            entry["error"] = f"{type(e).__name__}: {e}"
            log.warning("threat intelligence: %s failed: %s", location, e)
        results.append(entry)
    svc.threatintel_feeds = results
    return results


async def schedule(svc) -> None:
    if feeds(svc.settings.threatintel_feeds):
        await every(svc.settings.threatintel_interval, lambda: run_feeds(svc), "threat intelligence import",
                    lambda t: setattr(svc, "threatintel_next", t))


async def import_(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="admin", local_token=svc.local_token)
    q = request.query_params
    source, fmt, kind = q.get("source", "").strip(), q.get("format") or None, q.get("threat_type") or None
    if not source:
        raise HttpError(400, "THREATINTEL_SOURCE", "name the feed: ?source=NAME (its indicators replace the "
                        "ones imported before under that name)", field="source")
    body = await read_body(request, svc.settings.max_body_bytes)
    try:
        report = await svc.run(import_feed, svc.workspace, body, fmt, source, kind)
    except ti.FeedError as e:
        raise HttpError(400, "THREATINTEL_FEED", f"{source}: {e}") from None
    return json_response(report)


async def show(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    summary = await svc.run(svc.workspace.threat_summary)
    return json_response({"indicators": summary, "feeds": svc.threatintel_feeds,
                          "interval_seconds": svc.settings.threatintel_interval,
                          "next_run": _iso(svc.threatintel_next)})


async def geoip(request: Request) -> Response:
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    geo = await svc.run(lambda: svc.workspace.geoip)
    if geo is None:
        return json_response({"enabled": False})
    return json_response(dict(enabled=True, **geo.info()))
