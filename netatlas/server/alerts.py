"""Alert rules over HTTP, and the scheduler that evaluates them (``netatlas/alerts.py``).

| endpoint | key | does |
|---|---|---|
| ``GET /api/alerts/rules`` | query | ``{"rules": [rule with state, fired, instances, last_evaluated, last_error]}`` |
| ``POST /api/alerts/rules`` | admin | create a rule (201): name, query, frequency, window, measure, aggregation, dimensions, operator, threshold, severity, mute, enabled, actions |
| ``GET /api/alerts/rules/{id}`` | query | one rule with its state |
| ``PUT /api/alerts/rules/{id}`` | admin | change the fields the body names |
| ``DELETE /api/alerts/rules/{id}`` | admin | remove a rule (a built-in one: 409, disable it) |
| ``POST /api/alerts/rules/{id}/enable``, ``.../disable`` | admin | switch a rule on or off |
| ``POST /api/alerts/rules/{id}/evaluate[?at=ISO]`` | admin | evaluate now (or at ``at``): state changes and actions run; answers the instances and the changes |
| ``POST /api/alerts/evaluate[?at=ISO]`` | admin | evaluate every enabled rule now |
| ``GET /api/alerts/history[?rule=ID][&limit=N]`` | query | history entries, newest first |

A refused rule is a 400 whose ``field`` names the field (a KQL mistake: the compiler's code,
message, line and column); an unknown rule 404; past MAX_ALERT_RULES 409.

``schedule`` wakes every ``alerts_interval`` seconds and evaluates the enabled rules whose
frequency has passed since their last evaluation; a rule that fails is an ``error`` history entry,
an action that fails an ``action_failed`` one, and the schedule goes on.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import Response

from .. import alerts as al
from ..auth import verify_bearer
from ..notify import Notifier, Smtp
from .http import HttpError, json_response, read_json_object, service
from .schedule import every
from .timespan import TimespanError, parse_datetime

log = logging.getLogger("netatlas.server")
BODY_LIMIT = 64 * 1024
MAX_HISTORY_PAGE = 1000


def open_store(svc) -> al.AlertStore:
    """The workspace's alert store (DIR/alerts.json) with the notifier of the server's settings."""
    s = svc.settings
    base = s.public_url or f"{s.scheme}://{'127.0.0.1' if s.host in ('0.0.0.0', '::', '') else s.host}:{s.port}"
    return al.AlertStore(svc.data_dir, notifier=Notifier(Smtp.from_settings(s), base))


def _store(svc) -> al.AlertStore:
    store = getattr(svc, "alerts", None)
    if store is None:
        store = svc.alerts = open_store(svc)
    return store


def _error(e: al.AlertError) -> HttpError:
    info = e.to_json()
    return HttpError(e.status, info.pop("code"), info.pop("message"),
                     **{k: v for k, v in info.items() if v is not None})


def _auth(request: Request, role: str):
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role=role, local_token=svc.local_token)
    return svc, _store(svc)


def _at(request: Request) -> datetime | None:
    text = request.query_params.get("at", "").strip()
    if not text:
        return None
    try:
        return parse_datetime(text)
    except TimespanError as e:
        raise HttpError(400, "BAD_PARAMETER", f"at: {e}", field="at") from None


def count(svc, result: dict) -> dict:
    """One evaluation's outcome and history entries in the server's metrics."""
    svc.metrics.alert_evaluations.inc(outcome="error" if "error" in result else "ok")
    for change in result["changes"]:
        svc.metrics.alert_events.inc(event=change["event"])
    return result


async def schedule(svc) -> None:
    store = _store(svc)

    async def one_pass():
        for result in await svc.run(store.evaluate_due, svc.workspace, datetime.now(timezone.utc)):
            count(svc, result)
            for change in result["changes"]:
                if change["event"] in ("error", "action_failed"):
                    log.warning("alert rule %s: %s: %s", change["rule"], change["event"], change.get("error"))
    await every(svc.settings.alerts_interval, one_pass, "alert evaluation", lambda t: None)


async def list_rules(request: Request) -> Response:
    svc, store = _auth(request, "query")
    return json_response({"rules": await svc.run(store.list)})


async def create(request: Request) -> Response:
    svc, store = _auth(request, "admin")
    body = await read_json_object(request, BODY_LIMIT)
    try:
        rule = await svc.run(store.create, body, svc.workspace)
    except al.AlertError as e:
        raise _error(e) from None
    return json_response(rule, status=201)


async def show(request: Request) -> Response:
    svc, store = _auth(request, "query")
    try:
        return json_response(await svc.run(store.show, request.path_params["id"]))
    except al.AlertError as e:
        raise _error(e) from None


async def update(request: Request) -> Response:
    svc, store = _auth(request, "admin")
    body = await read_json_object(request, BODY_LIMIT)
    try:
        return json_response(await svc.run(store.update, request.path_params["id"], body, svc.workspace))
    except al.AlertError as e:
        raise _error(e) from None


async def delete(request: Request) -> Response:
    svc, store = _auth(request, "admin")
    try:
        await svc.run(store.delete, request.path_params["id"])
    except al.AlertError as e:
        raise _error(e) from None
    return json_response({"deleted": request.path_params["id"]})


def _switch(enabled: bool):
    async def switch(request: Request) -> Response:
        svc, store = _auth(request, "admin")
        try:
            return json_response(await svc.run(store.update, request.path_params["id"], {"enabled": enabled}))
        except al.AlertError as e:
            raise _error(e) from None
    return switch


enable, disable = _switch(True), _switch(False)


async def evaluate(request: Request) -> Response:
    svc, store = _auth(request, "admin")
    at = _at(request)
    try:
        return json_response(count(svc, await svc.run(store.evaluate, request.path_params["id"], svc.workspace, at)))
    except al.AlertError as e:
        raise _error(e) from None


async def evaluate_all(request: Request) -> Response:
    svc, store = _auth(request, "admin")
    at = _at(request)
    ids = [r["id"] for r in await svc.run(store.list) if r["enabled"]]
    results = [count(svc, await svc.run(store.evaluate, rid, svc.workspace, at)) for rid in ids]
    return json_response({"results": results})


async def history(request: Request) -> Response:
    svc, store = _auth(request, "query")
    q = request.query_params
    limit = q.get("limit", "100").strip()
    if not (limit.isascii() and limit.isdigit()) or not 1 <= int(limit) <= MAX_HISTORY_PAGE:
        raise HttpError(400, "BAD_PARAMETER", f"limit: {limit!r} is not a whole number from 1 to {MAX_HISTORY_PAGE}",
                        field="limit")
    rule = q.get("rule") or None
    return json_response({"history": await svc.run(store.history, rule, int(limit))})
