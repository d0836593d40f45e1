"""Workbooks' HTTP API (``netatlas/workbooks.py``): stored in the workspace's ``workbooks/`` directory.

| endpoint | key | does |
|---|---|---|
| ``GET /api/workbooks`` | query | the workbooks: id, title, description, tiles, builtin, updated |
| ``GET /api/workbooks/{id}`` | query | one workbook, in netatlas's JSON format (its export) |
| ``POST /api/workbooks`` | admin | store a new workbook (201; an id made from the title unless given) |
| ``PUT /api/workbooks/{id}`` | admin | replace a stored workbook |
| ``DELETE /api/workbooks/{id}`` | admin | remove it |
| ``POST /api/workbooks/import`` | query | netatlas's or Azure Monitor's workbook JSON -> netatlas's (not stored) |
| ``POST /api/workbooks/run`` | query | ``{"id" or "workbook", "tile", "parameters"}``: the tile's query with the values put in, run (``{"tile", "visible": false}`` and nothing run when its ``visibleWhen`` does not hold); ``{..., "parameter"}``: a drop-down parameter's choices (its query's first column) |

A workbook refused is a 400 ``BAD_WORKBOOK`` (``WORKBOOK_TOO_LARGE`` past a limit) naming the
field (``tiles[2].query``); 404 ``WORKBOOK_NOT_FOUND``; 409 ``WORKBOOK_EXISTS``,
``WORKBOOK_READ_ONLY`` (the built-in Service Map), ``WORKBOOKS_FULL``. A tile's query fails as
``POST /api/query`` does (400 with line and column, 504 past the time limit); its result stops at
``limits.WORKBOOK_TILE_ROWS`` rows (``statistics.truncated``).
"""
from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from .. import limits, workbooks as wbs
from ..auth import verify_bearer
from ..errors import KqlError, QueryExecutionError, QueryLimitError
from ..webmap import WebMapError, iso
from . import query as query_view
from .http import HttpError, json_response, read_json_object, service


def _authorized(request: Request, role: str):
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role=role, local_token=svc.local_token)
    return svc


def _store(svc) -> wbs.Store:
    return wbs.Store(svc.data_dir)


def _http(e: wbs.WorkbookError) -> HttpError:
    return HttpError(e.status, e.code, str(e), **({"field": e.field} if e.field else {}))


async def _call(svc, fn, *args):
    try:
        return await svc.run(fn, *args)
    except wbs.WorkbookError as e:
        raise _http(e) from None


async def list_(request: Request) -> Response:
    svc = _authorized(request, "query")
    return json_response({"workbooks": await _call(svc, _store(svc).list)})


async def get(request: Request) -> Response:
    svc = _authorized(request, "query")
    return json_response(await _call(svc, _store(svc).get, request.path_params["id"]))


async def create(request: Request) -> Response:
    svc = _authorized(request, "admin")
    body = await read_json_object(request, limits.WORKBOOK_IMPORT_MAX_BYTES)
    return json_response(await _call(svc, _store(svc).create, body), status=201)


async def update(request: Request) -> Response:
    svc = _authorized(request, "admin")
    body = await read_json_object(request, limits.WORKBOOK_IMPORT_MAX_BYTES)
    return json_response(await _call(svc, _store(svc).update, request.path_params["id"], body))


async def delete(request: Request) -> Response:
    svc = _authorized(request, "admin")
    await _call(svc, _store(svc).delete, request.path_params["id"])
    return json_response({"deleted": request.path_params["id"]})


async def import_(request: Request) -> Response:
    svc = _authorized(request, "query")
    body = await read_json_object(request, limits.WORKBOOK_IMPORT_MAX_BYTES)
    title = request.query_params.get("title", "")
    return json_response(await _call(svc, wbs.import_json, body, title))


RUN_FIELDS = ("id", "workbook", "tile", "parameter", "parameters")


def _inventory(svc):
    from .. import webmap
    def load():
        src = webmap.Source(svc.workspace, svc.settings.query_timeout)
        return webmap.inventory(src.kql("inventory", webmap.LATEST_MACHINES).to_dicts(),
                                src.kql("tags", webmap.ALL_TAGS).to_dicts())
    return load


def _run(svc, body: dict) -> dict:
    unknown = [k for k in body if k not in RUN_FIELDS]
    if unknown:
        raise wbs.WorkbookError(f"unknown field; the fields are {', '.join(RUN_FIELDS)}", unknown[0])
    if body.get("workbook") is not None:
        wb = wbs.validate(body["workbook"])
    elif body.get("id"):
        wb = _store(svc).get(body["id"])
    else:
        raise wbs.WorkbookError("give the id of a stored workbook or the workbook itself", "id")
    if body.get("parameter") is not None:
        return _choices(svc, wb, body)
    tile = next((t for t in wb["tiles"] if t["id"] == body.get("tile")), None)
    if tile is None:
        raise wbs.WorkbookError(f"the workbook has no tile {body.get('tile')!r}", "tile", status=404,
                                code="TILE_NOT_FOUND")
    values = wbs.Values(wb, body.get("parameters"), inventory=_inventory(svc))
    if not values.visible(tile):        # its visibleWhen does not hold: hidden, its query not run
        return {"tile": tile["id"], "visible": False}
    try:
        span = values.timespan(tile)
        title = values.expand(tile.get("title") or "", "text")
        if tile["type"] == "text":
            return {"tile": tile["id"], "title": title, "text": values.expand(tile["text"], "text")}
        if tile["type"] == "map":
            start, end = span or wbs.time_range("PT30M")
            target = {"machine": values.expand(tile["machine"], "text")} if tile.get("machine") else \
                {"group": values.expand(tile["group"], "text")}
            return {"tile": tile["id"], "title": title, "map": {**target, "from": iso(start), "to": iso(end)}}
        if tile["type"] != "query":
            raise wbs.WorkbookError(f"the tile {tile['id']!r} is not a query", "tile")
        text = values.expand(tile["query"], "query")
    except WebMapError as e:
        raise wbs.WorkbookError(str(e), "parameters", status=e.status, code=e.code) from None
    options = {"max_rows": min(limits.WORKBOOK_TILE_ROWS, svc.settings.max_rows),
               "timeout": svc.settings.query_timeout, "max_result_bytes": svc.settings.max_result_bytes}
    if span is not None:
        options["timespan"] = span
    res = svc.workspace.query(text, **options)
    out = res.to_json()
    out["statistics"]["max_rows"] = options["max_rows"]
    out.update(tile=tile["id"], title=title, query=text)
    if span is not None:
        out["timespan"] = [iso(span[0]), iso(span[1])]
    return out


def _choices(svc, wb: dict, body: dict) -> dict:
    """A drop-down parameter's choices: the distinct values of its query's first column, in order."""
    param = next((p for p in wb["parameters"] if p["name"] == body["parameter"]), None)
    if param is None or not param.get("query"):
        raise wbs.WorkbookError(f"the workbook has no parameter {body['parameter']!r} with a query", "parameter",
                                status=404, code="PARAMETER_NOT_FOUND")
    values = wbs.Values(wb, body.get("parameters"), inventory=_inventory(svc))
    try:
        text = values.expand(param["query"], "query")
    except WebMapError as e:
        raise wbs.WorkbookError(str(e), "parameters", status=e.status, code=e.code) from None
    res = svc.workspace.query(text, max_rows=limits.WORKBOOK_MAX_CHOICES, timeout=svc.settings.query_timeout)
    choices = list(dict.fromkeys("" if r[0] is None else str(r[0]) for r in res.rows if r))
    return {"parameter": param["name"], "choices": choices, "truncated": res.truncated, "query": text}


async def run(request: Request) -> Response:
    svc = _authorized(request, "query")
    body = await read_json_object(request, limits.WORKBOOK_IMPORT_MAX_BYTES)
    try:
        out = await svc.run_query(_run, svc, body)
    except wbs.WorkbookError as e:
        raise _http(e) from None
    except (KqlError, QueryLimitError, QueryExecutionError) as e:
        status, outcome = next((s, o) for cls, s, o in query_view.FAILURES if isinstance(e, cls))
        svc.metrics.queries.inc(outcome=outcome)        # a tile's query counts as /api/query's do
        info = e.to_json()
        info.pop("display", None)
        raise HttpError(status, info.pop("code", e.code), info.pop("message", str(e)), **info) from None
    if "tables" in out:
        svc.metrics.queries.inc(outcome="ok")
    return json_response(out)
