"""The web UI's JSON endpoints (docs/web-api.md): the HTTP side of ``netatlas.webmap``.

| endpoint | parameters | answer (``webmap``) |
|---|---|---|
| ``GET /api/map`` | machine or group, from, to, only_failures, hide_loopback, exclude, failure_rate, group_by (role, subnet, tag, tag:KEY), open (group ids, repeatable) | ``build_map`` (``grouped`` with group_by) |
| ``GET /api/problems`` | machine or group, from, to, hide_loopback, exclude, failure_rate | ``problems.problems`` |
| ``GET /api/machines`` | search | ``find_machines`` |
| ``GET /api/machines/{id}`` | | ``machine_detail`` |
| ``GET /api/machines/{id}/performance`` | from, to | ``performance.machine_performance`` |
| ``GET /api/performance`` | counter, stat, top, from, to | ``performance.top_machines`` |
| ``GET /api/edges`` | source, target, port, from, to | ``edge_records`` |
| ``GET /api/network`` | from, to, subnet, weight, exclude | ``network`` |
| ``GET /api/waves`` | range, to, max_wave_size, weight (bytes or connections), pin (MACHINE=WAVE, repeatable), exclude | ``waves.plan`` |
| ``GET /api/usage`` | days | ``usage`` |
| ``GET /api/schema`` | | ``schema`` |
| ``GET /api/samples`` | | ``samples`` |

All need a query key. Each parameter is read by one parser of the ``PARAMETERS`` table; a value
it refuses is a 400 (code BAD_PARAMETER) naming the parameter in ``field``. Parameters an
endpoint does not take are ignored. ``from``/``to`` are ISO 8601 (UTC when no offset is given),
``to`` defaulting to now and ``from`` to 30 minutes before ``to``. The map's steps and their
durations go out in a ``Server-Timing`` header.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import Response

from .. import performance as perf, problems as pb, waves as wv, webmap
from ..auth import verify_bearer
from ..errors import KqlError, QueryExecutionError, QueryLimitError
from .http import HttpError, json_response, service
from .timespan import TimespanError, parse_datetime

DEFAULT_RANGE = timedelta(minutes=30)
# the earliest start of a range: the views look back before it (inventory, heartbeats: a day; the
# map's comparison: a day more), and no datetime comes before year 1
EARLIEST = datetime(1, 1, 1, tzinfo=timezone.utc) + webmap.LOOKBACK + webmap.COMPARE
MAX_DAYS = 4383                      # as retention: 12 years
MAX_WAVE_SIZE = 1_000_000
FLAGS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


# ---------------------------------------------------------------- parameters: one parser each

def _text(values: list[str]) -> str:
    return values[-1].strip()


def _datetime(values: list[str]) -> datetime:
    try:
        return parse_datetime(values[-1])
    except TimespanError as e:
        raise ValueError(str(e)) from None


def _flag(values: list[str]) -> bool:
    value = FLAGS.get(values[-1].strip().lower())
    if value is None:
        raise ValueError(f"{values[-1]!r} is not 1 or 0")
    return value


def _names(values: list[str]) -> tuple[str, ...]:
    """Comma-separated, or the parameter repeated."""
    return tuple(dict.fromkeys(n.strip() for v in values for n in v.split(",") if n.strip()))


def _port(values: list[str]) -> int:
    text = values[-1].strip()
    if not text.isdigit() or not 0 <= int(text) <= 65535:
        raise ValueError(f"{text!r} is not a port number (0-65535)")
    return int(text)


def _days(values: list[str]) -> int:
    text = values[-1].strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise ValueError(f"{text!r} is not a whole number of days from 1 to {MAX_DAYS}")
    return int(text)


def _cidr(values: list[str]):
    try:
        return ipaddress.ip_network(values[-1].strip(), strict=False)
    except ValueError:
        raise ValueError(f"{values[-1]!r} is not a CIDR range (10.1.2.0/24)") from None


def _weight(values: list[str]) -> str:
    text = values[-1].strip().lower()
    if text not in webmap.WEIGHTS:
        raise ValueError(f"{values[-1]!r} is not one of {', '.join(webmap.WEIGHTS)}")
    return text


def _choice(table: dict):
    def parse(values: list[str]) -> str:
        text = values[-1].strip().lower()
        if text not in table:
            raise ValueError(f"{values[-1]!r} is not one of {', '.join(table)}")
        return text
    return parse


def _top(values: list[str]) -> int:
    text = values[-1].strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= perf.MAX_TOP:
        raise ValueError(f"{text!r} is not a whole number from 1 to {perf.MAX_TOP}")
    return int(text)


def _rate(values: list[str]) -> float:
    text = values[-1].strip()
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value <= 1:
        raise ValueError(f"{text!r} is not a share from 0 to 1 (0.05 for 5 %)")
    return value


def _group_by(values: list[str]) -> str:
    try:
        webmap.parse_group_by(values[-1])
    except webmap.WebMapError as e:
        raise ValueError(str(e).removeprefix("group_by ")) from None
    return values[-1].strip()


def _timespan(values: list[str]) -> timedelta:
    from ..kql.literals import parse_timespan
    text = values[-1].strip()
    ticks = parse_timespan(text)
    if ticks is None or ticks <= 0 or ticks > MAX_DAYS * 864_000_000_000:
        raise ValueError(f"{text!r} is not a timespan from 1 tick to {MAX_DAYS} days (7d, 12h)")
    return timedelta(microseconds=ticks / 10)


def _size(values: list[str]) -> int:
    text = values[-1].strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_WAVE_SIZE:
        raise ValueError(f"{text!r} is not a whole number from 1 to {MAX_WAVE_SIZE}")
    return int(text)


def _pins(values: list[str]) -> dict[str, int]:
    """MACHINE=WAVE, comma-separated or the parameter repeated; the machine by Machine id or Computer."""
    pins = {}
    for item in (n.strip() for v in values for n in v.split(",") if n.strip()):
        name, sep, wave = item.rpartition("=")
        if not sep or not name.strip() or not (wave.strip().isascii() and wave.strip().isdigit()) \
                or int(wave) < 1:
            raise ValueError(f"{item!r} is not MACHINE=WAVE (a wave number from 1)")
        pins[name.strip()] = int(wave)
    return pins


# name -> (parser, default when absent or empty)
PARAMETERS = {
    "from": (_datetime, None), "to": (_datetime, None),
    "machine": (_text, None), "group": (_text, None),
    "only_failures": (_flag, False), "hide_loopback": (_flag, True), "exclude": (_names, ()),
    "source": (_text, None), "target": (_text, None), "port": (_port, None),
    "subnet": (_cidr, None), "weight": (_weight, "bytes"), "days": (_days, 30), "search": (_text, ""),
    "counter": (_choice(perf.COUNTERS), None), "stat": (_choice(perf.STATS), perf.DEFAULT_STAT),
    "top": (_top, perf.DEFAULT_TOP),
    "range": (_timespan, timedelta(days=7)), "max_wave_size": (_size, None), "pin": (_pins, {}),
    "failure_rate": (_rate, None), "group_by": (_group_by, None), "open": (_names, ()),
}
# the waves' own meaning of a shared name
WAVE_PARAMETERS = {**PARAMETERS, "weight": (_choice(wv.WEIGHTS), "bytes")}


def read(request: Request, *names: str, required: tuple[str, ...] = (), table: dict = PARAMETERS) -> dict:
    """The named query parameters, parsed; 400 naming the first one refused or missing."""
    out = {}
    for name in names:
        parse, default = table[name]
        values = [v for v in request.query_params.getlist(name) if v.strip()]
        if not values:
            if name in required:
                raise HttpError(400, "BAD_PARAMETER", f"{name} is required", field=name)
            out[name] = default
            continue
        try:
            out[name] = parse(values)
        except ValueError as e:
            raise HttpError(400, "BAD_PARAMETER", f"{name}: {e}", field=name) from None
    return out


def span_of(p: dict) -> webmap.Span:
    end = p["to"] or datetime.now(timezone.utc)
    try:
        start = p["from"] or end - DEFAULT_RANGE
    except OverflowError:
        raise HttpError(400, "BAD_PARAMETER", f"to ({webmap.iso(end)}) leaves no room for the default "
                        f"{DEFAULT_RANGE} before it: give from", field="from") from None
    if start >= end:
        raise HttpError(400, "BAD_PARAMETER", f"from ({webmap.iso(start)}) must be before to ({webmap.iso(end)})",
                        field="from")
    if start < EARLIEST:
        raise HttpError(400, "BAD_PARAMETER", f"from ({webmap.iso(start)}) is before {webmap.iso(EARLIEST)}, the "
                        "earliest a range may start (the views look back two days before it)", field="from")
    return webmap.Span(start, end)


# ---------------------------------------------------------------- running the model

def http_error(e: webmap.WebMapError) -> HttpError:
    """A refused request in the one shape; a 400's message starts with the parameter's name."""
    message = str(e)
    if e.status == 400 and not message.startswith(e.field):
        message = f"{e.field}: {message}"
    return HttpError(e.status, e.code, message, field=e.field)


def authorized(request: Request):
    """The Service, once the request has shown a query key (before any parameter is read)."""
    svc = service(request)
    verify_bearer(svc.keys.identity, request.headers, role="query", local_token=svc.local_token)
    return svc


async def answer(request: Request, fn, *args, report: webmap.Source | None = None, **kwargs) -> Response:
    """Run ``fn`` in the queries' threads (``Service.run_query``: the workspace's query pool, 429
    when it is full) and answer its dict as JSON (with the steps' durations when ``report`` has
    them), or its error in the one shape."""
    try:
        data = await service(request).run_query(fn, *args, **kwargs)
    except webmap.WebMapError as e:
        raise http_error(e) from None
    except QueryLimitError as e:
        raise HttpError(504, e.code, str(e)) from None
    except (KqlError, QueryExecutionError) as e:    # a bug of a query of webmap: the server's log has it
        raise HttpError(500, "INTERNAL", f"a query of the map failed: {e}") from None
    response = json_response(data)
    if report is not None and report.timings:
        response.headers["server-timing"] = ", ".join(f"{k};dur={v * 1000:.1f}" for k, v in report.timings.items())
    return response


def map_options(svc, p: dict) -> webmap.Options:
    rate = p["failure_rate"] if p["failure_rate"] is not None else svc.settings.map_failure_rate
    return webmap.Options(only_failures=p.get("only_failures", False), hide_loopback=p["hide_loopback"],
                          exclude=p["exclude"], failure_rate=rate)


def selection_of(p: dict) -> webmap.Selection:
    try:
        return webmap.Selection.parse(p["machine"], p["group"])
    except webmap.WebMapError as e:
        raise http_error(e) from None


async def map_(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "machine", "group", "from", "to", "only_failures", "hide_loopback", "exclude", "failure_rate",
             "group_by", "open")
    selection = selection_of(p)
    src = webmap.Source(svc.workspace, svc.settings.query_timeout)
    return await answer(request, webmap.build_map, svc.workspace, selection, span_of(p), map_options(svc, p),
                        src=src, report=src, group_by=p["group_by"], open_groups=p["open"])


async def problems(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "machine", "group", "from", "to", "hide_loopback", "exclude", "failure_rate")
    selection = selection_of(p)
    src = webmap.Source(svc.workspace, svc.settings.query_timeout)
    return await answer(request, pb.problems, svc.workspace, selection, span_of(p), map_options(svc, p), src=src,
                        report=src)


async def machines(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "search")
    return await answer(request, webmap.find_machines, svc.workspace, p["search"],
                        timeout=svc.settings.query_timeout)


async def machine(request: Request) -> Response:
    svc = authorized(request)
    return await answer(request, webmap.machine_detail, svc.workspace, request.path_params["id"],
                        timeout=svc.settings.query_timeout)


async def machine_performance(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "from", "to")
    return await answer(request, perf.machine_performance, svc.workspace, request.path_params["id"], span_of(p),
                        timeout=svc.settings.query_timeout)


async def performance(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "counter", "stat", "top", "from", "to", required=("counter",))
    return await answer(request, perf.top_machines, svc.workspace, p["counter"], p["stat"], p["top"], span_of(p),
                        timeout=svc.settings.query_timeout)


async def edges(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "source", "target", "port", "from", "to", required=("source", "target", "port"))
    return await answer(request, webmap.edge_records, svc.workspace, p["source"], p["target"], p["port"],
                        span_of(p), timeout=svc.settings.query_timeout)


async def network(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "from", "to", "subnet", "weight", "exclude")
    return await answer(request, webmap.network, svc.workspace, span_of(p), subnet=p["subnet"],
                        weight=p["weight"], exclude=p["exclude"], timeout=svc.settings.query_timeout)


def _waves(ws, options: wv.Options) -> dict:
    try:
        return wv.plan(ws, options)
    except wv.WavesError as e:      # pins that cannot be honoured (an unknown machine, a full wave)
        raise webmap.WebMapError(str(e).replace("--pin ", "").replace("--max-wave-size", "max_wave_size"),
                                 field="pin") from None


async def waves(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "range", "to", "max_wave_size", "weight", "pin", "exclude", table=WAVE_PARAMETERS)
    end = p["to"].astimezone(timezone.utc) if p["to"] else None
    try:
        early = end is not None and end - p["range"] < EARLIEST
    except OverflowError:
        early = True
    if early:
        raise HttpError(400, "BAD_PARAMETER", f"range: {p['range']} before {webmap.iso(end)} starts before "
                        f"{webmap.iso(EARLIEST)}", field="range")
    options = wv.Options(max_wave_size=p["max_wave_size"], weight=p["weight"], pins=p["pin"],
                         exclude=frozenset(p["exclude"]), range=p["range"], now=end)
    return await answer(request, _waves, svc.workspace, options)


async def usage(request: Request) -> Response:
    svc = authorized(request)
    p = read(request, "days")
    return await answer(request, webmap.usage, svc.workspace, p["days"], timeout=svc.settings.query_timeout)


async def schema(request: Request) -> Response:
    svc = authorized(request)
    return await answer(request, webmap.schema, svc.catalogue)


async def samples(request: Request) -> Response:
    authorized(request)
    return await answer(request, lambda: {"samples": webmap.samples()})
