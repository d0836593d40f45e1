"""Workbooks: saved pages of parameters and query tiles (Azure Monitor workbooks' idea).

The model (netatlas's own JSON format, versioned: ``FORMAT``, ``VERSION``)::

    {"format": "netatlas-workbook", "version": 1, "id": "cpu-review", "title": "...", "description": "...",
     "parameters": [{"name": "TimeRange", "type": "timerange", "label": "Time range", "value": "P1D"}, ...],
     "tiles": [{"id": "t1", "type": "query", "title": "...", "query": "VMConnection | ...",
                "visualization": "table", "timeRange": "TimeRange", "size": "half"}, ...]}

Parameters (``PARAMETER_TYPES``): ``timerange`` (an ISO 8601 duration ``P1D`` or interval
``start/end``, as the query API's timespan), ``machine`` (a machine's Computer name, id or address),
``group`` (``all``, ``tag:KEY=VALUE``, ``subnet:CIDR``, as the map's), ``text``. A parameter's
value is put into a tile's query where it says ``{Name}`` or ``{Name:format}`` (``expand``; the
formats are ``FORMATS``), as Azure's workbooks do; a tile whose ``timeRange`` names a time range
parameter runs over that range (every table limited to it, the query API's timespan).

A ``multi`` parameter (a multi-select drop-down; text or machine) keeps its selected values as a
JSON array in its value (``'["web-01","web-02"]'``; "" or "[]": none); ``{Name}`` is each value in
its ``quote`` (``QUOTES``: ' by default, ", or none), escaped as a KQL string literal needs, joined
by its ``delimiter`` (, by default): ``where Computer in ({Name})``; ``{Name:label}`` the values
joined by ", "; none selected is ``PARAMETER_MISSING``, as Azure says the parameter is not set.
A tile's ``visibleWhen`` (``[{"parameter", "comparison": "equals"|"not_equals", "value"}]``, all
must hold; ``Values.visible``) hides it: the UI does not run it, ``/api/workbooks/run`` answers
``{"visible": false}``.

Tiles (``TILE_TYPES``): ``query`` (its ``visualization``: a table, a chart of ``charts.js``, tiles
of numbers, or ``auto``: what the query's ``render`` says), ``map`` (the dependency map of a
``machine`` or a ``group``, parameters allowed), ``text`` (markdown) and ``unsupported`` (an
imported item netatlas cannot show, kept in place with a ``note``).

Storage (``Store``): one JSON file per workbook in the workspace's ``workbooks/`` directory,
written whole and renamed into place. The built-in ``service-map`` workbook (``BUILTIN``) is the
seed's queries (``netatlas/seed-queries.kql``) with their machine names and ids made parameters;
it is read only.

Azure Monitor's gallery format (``{"version": "Notebook/1.0", "items": [...]}``) is converted by
``from_azure``: parameters (items of type 9), KQL queries (type 3, queryType 0) with their
visualization, markdown (type 1), groups (type 12) flattened in place; anything else becomes an
``unsupported`` tile saying what it was. Multi-select drop-downs keep ``multiSelect``, ``quote``,
``delimiter`` and their list of values; items' ``conditionalVisibility`` / ``conditionalVisibilities``
(``AZURE_COMPARISONS``; a group's passed down to its items) become ``visibleWhen``, and a condition
netatlas cannot take leaves the item visible with a ``note`` (counted as not supported). Bounds: ``netatlas/limits.py`` (``WORKBOOK_*``).
"""
from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import limits

FORMAT = "netatlas-workbook"
VERSION = 1
BUILTIN_ID = "service-map"

PARAMETER_TYPES = ("timerange", "machine", "group", "text")
TILE_TYPES = ("query", "map", "text", "unsupported")
VISUALIZATIONS = ("auto", "table", "tiles", "timechart", "linechart", "areachart", "barchart", "columnchart",
                  "piechart", "scatterchart")
SIZES = ("full", "half", "third")
ID = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
REFERENCE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+))?\}")
WRAPPED = re.compile(r"(?:datetime\s*\(\s*|['\"])\Z", re.I)     # what a reference's own datetime() would repeat

WORKBOOK_KEYS = {"format", "version", "id", "title", "description", "parameters", "tiles", "source", "builtin"}
PARAMETER_KEYS = {"name", "type", "label", "value", "required", "choices", "query", "note", "multi", "quote",
                  "delimiter"}
MULTI_TYPES = ("text", "machine")        # the types a multi-select parameter may be
QUOTES = ("'", '"', "")                  # what a multi parameter's values are wrapped in ("": bare, for numbers)
COMPARISONS = ("equals", "not_equals")   # a visibleWhen condition's
CONDITION_KEYS = {"parameter", "comparison", "value"}
# tile keys every type takes (besides id, type, title, size)
COMMON_TILE_KEYS = {"visibleWhen", "note"}
# tile type -> its keys besides id, type, title, size
TILE_KEYS = {
    "query": {"query", "visualization", "timeRange", "timespan", "tiles"},
    "map": {"machine", "group", "timeRange"},
    "text": {"text"},
    "unsupported": {"note", "original"},
}


class WorkbookError(ValueError):
    """A workbook refused: ``field`` is the path of what is wrong (``tiles[2].query``); ``status``
    the HTTP status (400, 404 unknown, 409 read only or taken, 413 too large)."""

    def __init__(self, message: str, field: str = "", *, status: int = 400, code: str = "BAD_WORKBOOK"):
        super().__init__(f"{field}: {message}" if field else message)
        self.field, self.status, self.code = field, status, code


# ---------------------------------------------------------------- validation

def _text(value, where: str, *, required: bool = False, limit: int = limits.WORKBOOK_MAX_TEXT_CHARS) -> str:
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise WorkbookError(f"must be a string, got {type(value).__name__}", where)
    if required and not value.strip():
        raise WorkbookError("must not be empty", where)
    if len(value) > limit:
        raise WorkbookError(f"is {len(value)} characters long, more than the limit of {limit}", where,
                            code="WORKBOOK_TOO_LARGE")
    return value


def _choice(value, options, where: str, default=None) -> str:
    if value is None and default is not None:
        return default
    if value not in options:
        raise WorkbookError(f"{value!r} is not one of {', '.join(options)}", where)
    return value


def _unknown(obj: dict, keys: set, where: str) -> None:
    extra = sorted(set(obj) - keys)
    if extra:
        raise WorkbookError(f"unknown field {extra[0]!r}; the fields are {', '.join(sorted(keys))}",
                            f"{where}.{extra[0]}" if where else extra[0])


def check_timerange(value: str, where: str) -> str:
    from .server.timespan import TimespanError, parse_timespan
    try:
        parse_timespan(value)
    except TimespanError as e:
        raise WorkbookError(f"{e} (a time range is an ISO 8601 duration such as P1D or PT4H, or start/end)",
                            where) from None
    return value


def check_group(value: str, where: str) -> str:
    from .webmap import Selection, WebMapError
    try:
        Selection.parse(None, value)
    except WebMapError as e:
        raise WorkbookError(str(e), where) from None
    return value


VALUE_CHECKS = {"timerange": check_timerange, "group": check_group}


def _parameter(p, i: int) -> dict:
    where = f"parameters[{i}]"
    if not isinstance(p, dict):
        raise WorkbookError("must be an object", where)
    _unknown(p, PARAMETER_KEYS, where)
    name = _text(p.get("name"), f"{where}.name", required=True)
    if not NAME.fullmatch(name):
        raise WorkbookError(f"{name!r} is not a parameter name (a letter or _, then letters, digits or _; "
                            "at most 64)", f"{where}.name")
    kind = _choice(p.get("type"), PARAMETER_TYPES, f"{where}.type")
    out = {"name": name, "type": kind, "label": _text(p.get("label"), f"{where}.label") or name,
           "value": _text(p.get("value"), f"{where}.value")}
    multi = p.get("multi")
    if multi is not None and not isinstance(multi, bool):
        raise WorkbookError("must be true or false", f"{where}.multi")
    if multi:
        if kind not in MULTI_TYPES:
            raise WorkbookError(f"a {kind} parameter takes one value; multi is for {' and '.join(MULTI_TYPES)}",
                                f"{where}.multi")
        quote = p.get("quote", "'")
        if quote not in QUOTES:
            raise WorkbookError(f"{quote!r} is not a quote: one of ' \" or \"\" (none)", f"{where}.quote")
        delimiter = _text(p.get("delimiter", ","), f"{where}.delimiter", limit=limits.WORKBOOK_MAX_DELIMITER_CHARS)
        if "\n" in delimiter or "\r" in delimiter:
            raise WorkbookError("a delimiter is on one line", f"{where}.delimiter")
        out.update(multi=True, quote=quote, delimiter=delimiter,
                   value=_multi_text(multi_values(out["value"], f"{where}.value")))
    else:
        for key in ("quote", "delimiter"):
            if p.get(key) is not None:
                raise WorkbookError("only a multi parameter (multi: true) takes a quote and a delimiter",
                                    f"{where}.{key}")
        if out["value"] and kind in VALUE_CHECKS:
            VALUE_CHECKS[kind](out["value"], f"{where}.value")
    if p.get("required") is not None:
        if not isinstance(p["required"], bool):
            raise WorkbookError("must be true or false", f"{where}.required")
        out["required"] = p["required"]
    if p.get("choices") is not None:
        choices = p["choices"]
        if not isinstance(choices, list) or len(choices) > limits.WORKBOOK_MAX_CHOICES:
            raise WorkbookError(f"must be a list of at most {limits.WORKBOOK_MAX_CHOICES} strings", f"{where}.choices")
        out["choices"] = [_text(c, f"{where}.choices[{j}]") for j, c in enumerate(choices)]
    if p.get("query"):      # a drop-down of the values of its query's first column (run: choices_of)
        if kind == "timerange":
            raise WorkbookError("a time range takes no query", f"{where}.query")
        out["query"] = _text(p["query"], f"{where}.query", limit=limits.WORKBOOK_MAX_QUERY_CHARS)
    if p.get("note"):
        out["note"] = _text(p["note"], f"{where}.note")
    return out


def multi_values(value: str, where: str) -> list[str]:
    """A multi parameter's value: a JSON array of strings in its text ("" or "[]": nothing selected)."""
    if not value.strip():
        return []
    try:
        values = json.loads(value)
    except ValueError:
        values = None
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise WorkbookError('a multi parameter\'s value is a JSON array of strings, such as ["web-01","web-02"] '
                            '("" or [] when nothing is selected)', where)
    if len(values) > limits.WORKBOOK_MAX_CHOICES:
        raise WorkbookError(f"{len(values)} values selected, more than the limit of {limits.WORKBOOK_MAX_CHOICES}",
                            where, code="WORKBOOK_TOO_LARGE")
    return values


def _multi_text(values: list[str]) -> str:
    """The stored text of a multi parameter's values, as the UI's JSON.stringify writes it."""
    return json.dumps(values, ensure_ascii=False, separators=(",", ":")) if values else ""


def _conditions(spec, where: str, params: dict[str, dict]) -> list[dict]:
    if not isinstance(spec, list) or len(spec) > limits.WORKBOOK_MAX_CONDITIONS:
        raise WorkbookError(f"must be a list of at most {limits.WORKBOOK_MAX_CONDITIONS} conditions "
                            '{"parameter", "comparison": equals or not_equals, "value"}', where)
    out = []
    for j, c in enumerate(spec):
        at = f"{where}[{j}]"
        if not isinstance(c, dict):
            raise WorkbookError("must be an object {parameter, comparison, value}", at)
        _unknown(c, CONDITION_KEYS, at)
        name = _text(c.get("parameter"), f"{at}.parameter", required=True)
        if name not in params:
            raise WorkbookError(f"{name!r} is not a parameter of this workbook", f"{at}.parameter")
        out.append({"parameter": name,
                    "comparison": _choice(c.get("comparison"), COMPARISONS, f"{at}.comparison", default="equals"),
                    "value": _text(c.get("value"), f"{at}.value")})
    return out


def _tile(t, i: int, params: dict[str, dict]) -> dict:
    where = f"tiles[{i}]"
    if not isinstance(t, dict):
        raise WorkbookError("must be an object", where)
    kind = _choice(t.get("type"), TILE_TYPES, f"{where}.type")
    _unknown(t, {"id", "type", "title", "size"} | COMMON_TILE_KEYS | TILE_KEYS[kind], where)
    tid = _text(t.get("id"), f"{where}.id", required=True)
    if not ID.fullmatch(tid):
        raise WorkbookError(f"{tid!r} is not a tile id (lower-case letters, digits and -, at most 64)", f"{where}.id")
    out = {"id": tid, "type": kind, "title": _text(t.get("title"), f"{where}.title"),
           "size": _choice(t.get("size"), SIZES, f"{where}.size", default="full")}
    if kind in ("query", "map") and t.get("timeRange"):
        name = _text(t["timeRange"], f"{where}.timeRange")
        if params.get(name, {}).get("type") != "timerange":
            raise WorkbookError(f"{name!r} is not a time range parameter of this workbook", f"{where}.timeRange")
        out["timeRange"] = name
    if kind == "query":
        out["query"] = _text(t.get("query"), f"{where}.query", required=True, limit=limits.WORKBOOK_MAX_QUERY_CHARS)
        out["visualization"] = _choice(t.get("visualization"), VISUALIZATIONS, f"{where}.visualization",
                                       default="auto")
        if t.get("timespan"):
            out["timespan"] = check_timerange(_text(t["timespan"], f"{where}.timespan"), f"{where}.timespan")
        if t.get("tiles") is not None:
            spec = t["tiles"]
            if not isinstance(spec, dict) or set(spec) - {"title", "value", "subtitle"}:
                raise WorkbookError("must be {title, value, subtitle}: the columns each number tile shows",
                                    f"{where}.tiles")
            out["tiles"] = {k: _text(v, f"{where}.tiles.{k}") for k, v in spec.items()}
    elif kind == "map":
        machine = _text(t.get("machine"), f"{where}.machine")
        group = _text(t.get("group"), f"{where}.group")
        if bool(machine.strip()) == bool(group.strip()):
            raise WorkbookError("a map tile shows a machine or a group: give one of machine and group", where)
        out.update({"machine": machine} if machine.strip() else {"group": group})
    elif kind == "text":
        out["text"] = _text(t.get("text"), f"{where}.text")
    else:
        out["note"] = _text(t.get("note"), f"{where}.note")
        if t.get("original") is not None:
            out["original"] = t["original"]
    if kind != "unsupported" and t.get("note"):     # what an import could not bring over of this tile
        out["note"] = _text(t["note"], f"{where}.note")
    if t.get("visibleWhen") is not None and t["visibleWhen"] != []:
        out["visibleWhen"] = _conditions(t["visibleWhen"], f"{where}.visibleWhen", params)
    return out


def validate(data, *, stored_id: str | None = None) -> dict:
    """A workbook of netatlas's format, checked and normalized (defaults filled in); WorkbookError
    naming the first field that is wrong."""
    if not isinstance(data, dict):
        raise WorkbookError(f"a workbook is a JSON object, got {type(data).__name__}")
    if data.get("format", FORMAT) != FORMAT:
        raise WorkbookError(f"{data.get('format')!r} is not {FORMAT!r}", "format")
    version = data.get("version", VERSION)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise WorkbookError(f"{version!r} is not a version number of netatlas's workbook format", "version")
    if version > VERSION:
        raise WorkbookError(f"version {version} was written by a newer netatlas; this one reads up to {VERSION}",
                            "version")
    _unknown(data, WORKBOOK_KEYS, "")
    params_in = data.get("parameters") or []
    tiles_in = data.get("tiles") or []
    if not isinstance(params_in, list):
        raise WorkbookError("must be a list", "parameters")
    if not isinstance(tiles_in, list):
        raise WorkbookError("must be a list", "tiles")
    if len(params_in) > limits.WORKBOOK_MAX_PARAMETERS:
        raise WorkbookError(f"{len(params_in)} parameters, more than the limit of {limits.WORKBOOK_MAX_PARAMETERS}",
                            "parameters", code="WORKBOOK_TOO_LARGE")
    if len(tiles_in) > limits.WORKBOOK_MAX_TILES:
        raise WorkbookError(f"{len(tiles_in)} tiles, more than the limit of {limits.WORKBOOK_MAX_TILES}", "tiles",
                            code="WORKBOOK_TOO_LARGE")
    params = {}
    for i, p in enumerate(params_in):
        p = _parameter(p, i)
        if p["name"] in params:
            raise WorkbookError(f"a second parameter named {p['name']!r}", f"parameters[{i}].name")
        params[p["name"]] = p
    tiles, seen = [], set()
    for i, t in enumerate(tiles_in):
        t = _tile(t, i, params)
        if t["id"] in seen:
            raise WorkbookError(f"a second tile with id {t['id']!r}", f"tiles[{i}].id")
        seen.add(t["id"])
        tiles.append(t)
    wid = stored_id or data.get("id") or ""
    if wid and not (isinstance(wid, str) and ID.fullmatch(wid)):
        raise WorkbookError(f"{wid!r} is not a workbook id (lower-case letters, digits and -, at most 64)", "id")
    out = {"format": FORMAT, "version": VERSION, "id": wid,
           "title": _text(data.get("title"), "title", required=True),
           "description": _text(data.get("description"), "description"),
           "parameters": list(params.values()), "tiles": tiles}
    if data.get("source") is not None:
        if not isinstance(data["source"], dict):
            raise WorkbookError("must be an object", "source")
        out["source"] = data["source"]
    size = len(json.dumps(out))
    if size > limits.WORKBOOK_MAX_BYTES:
        raise WorkbookError(f"the workbook is {size} bytes of JSON, more than the limit of "
                            f"{limits.WORKBOOK_MAX_BYTES}", status=413, code="WORKBOOK_TOO_LARGE")
    return out


# ---------------------------------------------------------------- parameter values in queries

def _duration_text(td: timedelta) -> str:
    """A timedelta as a KQL timespan literal (7d, 4h, 30m, 90s), in whole seconds, at least 1s."""
    from .kql.literals import short_timespan
    return short_timespan(timedelta(seconds=max(int(td.total_seconds()), 1)))


GRAINS = (timedelta(minutes=1), timedelta(minutes=5), timedelta(minutes=15), timedelta(minutes=30),
          timedelta(hours=1), timedelta(hours=3), timedelta(hours=6), timedelta(hours=12), timedelta(days=1),
          timedelta(days=7))


def grain(span: timedelta) -> timedelta:
    """A bin size giving about 100 points or fewer over ``span``."""
    return next((g for g in GRAINS if span / g <= 120), GRAINS[-1])


def _kql_datetime(t: datetime) -> str:
    return f"datetime({t.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')})"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("'", "\\'")


def _quoted(value: str, quote: str) -> str:
    """A value inside ``quote``s of a KQL string literal: its backslashes and quotes escaped (bare
    values, ``quote`` "", are put in as they are, as Azure's workbooks do)."""
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote) if quote else value


def time_range(value: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    from .server.timespan import parse_timespan
    return parse_timespan(value, now)


def range_label(value: str) -> str:
    if "/" in value:
        return value.replace("/", " to ")
    from .server.timespan import parse_duration
    text = _duration_text(parse_duration(value))
    n, unit = int(text[:-1]), UNIT_NAMES[text[-1]]
    return f"Last {unit}" if n == 1 else f"Last {n} {unit}s"


UNIT_NAMES = {"d": "day", "h": "hour", "m": "minute", "s": "second"}


def _timerange_formats(value: str, now: datetime) -> dict:
    start, end = time_range(value, now)
    relative = "/" not in value
    query = f"> ago({_duration_text(end - start)})" if relative else \
        f"between ({_kql_datetime(start)} .. {_kql_datetime(end)})"
    return {"": query, "query": query, "value": query, "start": _kql_datetime(start), "end": _kql_datetime(end),
            "grain": _duration_text(grain(end - start)), "label": range_label(value)}


class Values:
    """The values of a workbook's parameters for one run: the defaults, then the request's;
    formats needing the machines' inventory look it up once (``inventory``)."""

    def __init__(self, workbook: dict, given: dict | None, *, inventory=None, now: datetime | None = None):
        self.params = {p["name"]: p for p in workbook["parameters"]}
        self.now = now or datetime.now(timezone.utc)
        self._inventory, self._machines = inventory, None
        given = given or {}
        if not isinstance(given, dict):
            raise WorkbookError("must be an object of name: value", "parameters")
        self.values = {}
        self.lists: dict[str, list[str]] = {}      # a multi parameter's selected values
        for name, p in self.params.items():
            v = given.get(name)
            if v is None or v == "":
                v = p["value"]
            if p.get("multi") and isinstance(v, list):     # the API takes the list itself too
                v = json.dumps(v, ensure_ascii=False, separators=(",", ":"))
            if not isinstance(v, str):
                raise WorkbookError(f"must be a string, got {type(v).__name__}", f"parameters.{name}")
            if p.get("multi"):
                self.lists[name] = multi_values(v, f"parameters.{name}")
            elif v and p["type"] in VALUE_CHECKS:
                VALUE_CHECKS[p["type"]](v, f"parameters.{name}")
            self.values[name] = v

    def machines(self) -> dict:
        if self._machines is None:
            self._machines = self._inventory() if self._inventory else {}
        return self._machines

    def visible(self, tile: dict) -> bool:
        """Whether every condition of the tile's ``visibleWhen`` holds for these values."""
        return all((self.compared(c["parameter"]) == c["value"]) == (c["comparison"] == "equals")
                   for c in tile.get("visibleWhen") or ())

    def compared(self, name: str) -> str:
        """The text a condition compares: the value; a multi parameter's values joined by ","."""
        return ",".join(self.lists[name]) if name in self.lists else self.values.get(name, "")

    def _multi(self, name: str, fmt: str, context: str) -> str:
        p, values = self.params[name], self.lists[name]
        if not values:
            raise WorkbookError(f"the parameter {name} has no value: nothing is selected", f"parameters.{name}",
                                code="PARAMETER_MISSING")
        if fmt == "label" or (context == "text" and not fmt):
            return ", ".join(values)
        if p["type"] == "machine" and fmt == "id":
            from .webmap import machine_named
            ids = []
            for v in values:
                m = machine_named(self.machines(), v)
                if m is None:
                    raise WorkbookError(f"no machine is named {v!r}", f"parameters.{name}", status=404,
                                        code="MACHINE_NOT_FOUND")
                ids.append(m.id)
            values = ids
        elif fmt not in ("", "value"):
            raise WorkbookError(f"{{{name}:{fmt}}}: the formats of a multi {p['type']} parameter are "
                                f"{', '.join(FORMATS['multi' + p['type']])}", f"parameters.{name}", code="BAD_FORMAT")
        q = p.get("quote", "'")
        return p.get("delimiter", ",").join(f"{q}{_quoted(v, q)}{q}" for v in values)

    def format(self, name: str, fmt: str, context: str) -> str:
        p, v = self.params[name], self.values[name]
        fmt = (fmt or "").lower()
        if name in self.lists:
            return self._multi(name, fmt, context)
        if not v:
            if fmt in ("escape", "label", "") and p["type"] != "timerange":
                return v
            raise WorkbookError(f"the parameter {name} has no value", f"parameters.{name}", code="PARAMETER_MISSING")
        if fmt == "escape":
            return _escape(v)
        kind = p["type"]
        if kind == "timerange":
            forms = _timerange_formats(v, self.now)
            if context == "text" and not fmt:
                return forms["label"]
            if fmt in forms:
                return forms[fmt]
        elif kind == "machine" and fmt == "id":
            from .webmap import machine_named
            m = machine_named(self.machines(), v)
            if m is None:
                raise WorkbookError(f"no machine is named {v!r}", f"parameters.{name}", status=404,
                                    code="MACHINE_NOT_FOUND")
            return m.id
        elif kind == "group" and fmt in ("machines", "ids"):
            from .webmap import Selection, focus_of
            machines = self.machines()
            ids = focus_of(Selection.parse(None, v), machines)
            names = ids if fmt == "ids" else [machines[i].computer for i in ids]
            return "dynamic(" + json.dumps(names) + ")"
        elif fmt in ("", "label", "value"):
            return v
        raise WorkbookError(f"{{{name}:{fmt}}}: the formats of a {kind} parameter are "
                            f"{', '.join(FORMATS[kind])}", f"parameters.{name}", code="BAD_FORMAT")

    def expand(self, text: str, context: str = "query") -> str:
        """``{Name}`` and ``{Name:format}`` of the workbook's parameters replaced by their values
        (anything else in braces is left as it is)."""
        def one(m):
            name, fmt = m.group(1), m.group(2)
            if name not in self.params:
                return m.group(0)
            value = self.format(name, fmt or "", context)
            if (fmt or "").lower() in ("start", "end") and WRAPPED.search(text[max(0, m.start() - 24):m.start()]):
                value = value[len("datetime("):-1]      # datetime({TimeRange:start}), '{TimeRange:end}': the bare time
            return value
        return REFERENCE.sub(one, text)

    def timespan(self, tile: dict) -> tuple[datetime, datetime] | None:
        name = tile.get("timeRange")
        if name and self.values.get(name):
            return time_range(self.values[name], self.now)
        if tile.get("timespan"):
            return time_range(tile["timespan"], self.now)
        return None


FORMATS = {
    "timerange": ("(none: > ago(7d) or between (...)", "start", "end", "grain", "label", "query", "value", "escape"),
    "machine": ("(none: the name given)", "id", "escape", "label"),
    "group": ("(none: all, tag:K=V, subnet:CIDR)", "machines", "ids", "escape", "label"),
    "text": ("(none)", "escape", "label"),
    "multitext": ("(none: 'a','b', quoted and escaped, joined by the delimiter)", "label", "value"),
    "multimachine": ("(none: 'a','b', quoted and escaped, joined by the delimiter)", "id", "label", "value"),
}


# ---------------------------------------------------------------- storage

class Store:
    """The workbooks of one workspace: ``DIR/workbooks/<id>.json``, and the built-in ones."""

    def __init__(self, data_dir: str | os.PathLike):
        self.dir = Path(data_dir) / "workbooks"

    def _path(self, wid: str) -> Path:
        if not isinstance(wid, str) or not ID.fullmatch(wid):
            raise WorkbookError(f"no workbook {wid!r}", "id", status=404, code="WORKBOOK_NOT_FOUND")
        return self.dir / f"{wid}.json"

    def list(self) -> list[dict]:
        out = [summary(builtin())]
        if self.dir.is_dir():
            for path in sorted(self.dir.glob("*.json")):
                try:
                    out.append(summary(json.loads(path.read_text(encoding="utf-8")),
                                       updated=path.stat().st_mtime))
                except (OSError, ValueError):
                    continue
        return out

    def get(self, wid: str) -> dict:
        if wid == BUILTIN_ID:
            return builtin()
        path = self._path(wid)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise WorkbookError(f"no workbook {wid!r}", "id", status=404, code="WORKBOOK_NOT_FOUND") from None

    def _write(self, wb: dict) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".wb-", suffix=".tmp", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(wb, f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._path(wb["id"]))
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def create(self, data) -> dict:
        wb = validate(data)
        if not wb["id"]:
            base = re.sub(r"[^a-z0-9]+", "-", wb["title"].lower()).strip("-")[:50] or "workbook"
            wb["id"] = f"{base}-{secrets.token_hex(3)}"
        if wb["id"] == BUILTIN_ID or self._path(wb["id"]).exists():
            raise WorkbookError(f"a workbook {wb['id']!r} exists already: PUT /api/workbooks/{wb['id']} changes it",
                                "id", status=409, code="WORKBOOK_EXISTS")
        count = len(list(self.dir.glob("*.json"))) if self.dir.is_dir() else 0
        if count >= limits.WORKBOOKS_MAX:
            raise WorkbookError(f"the workspace holds {count} workbooks, the limit ({limits.WORKBOOKS_MAX}); "
                                "delete some first", status=409, code="WORKBOOKS_FULL")
        self._write(wb)
        return wb

    def update(self, wid: str, data) -> dict:
        if wid == BUILTIN_ID:
            raise WorkbookError("the built-in Service Map workbook is read only: save a copy instead", "id",
                                status=409, code="WORKBOOK_READ_ONLY")
        if not self._path(wid).exists():
            raise WorkbookError(f"no workbook {wid!r}", "id", status=404, code="WORKBOOK_NOT_FOUND")
        if isinstance(data, dict) and data.get("id") not in (None, "", wid):
            raise WorkbookError(f"the body's id {data['id']!r} is not the address's {wid!r}", "id")
        wb = validate(data, stored_id=wid)
        self._write(wb)
        return wb

    def delete(self, wid: str) -> None:
        if wid == BUILTIN_ID:
            raise WorkbookError("the built-in Service Map workbook cannot be deleted", "id", status=409,
                                code="WORKBOOK_READ_ONLY")
        try:
            self._path(wid).unlink()
        except FileNotFoundError:
            raise WorkbookError(f"no workbook {wid!r}", "id", status=404, code="WORKBOOK_NOT_FOUND") from None


def summary(wb: dict, updated: float | None = None) -> dict:
    out = {"id": wb.get("id"), "title": wb.get("title", ""), "description": wb.get("description", ""),
           "tiles": len(wb.get("tiles", [])), "builtin": bool(wb.get("builtin"))}
    if updated is not None:
        out["updated"] = datetime.fromtimestamp(updated, timezone.utc).isoformat().replace("+00:00", "Z")
    return out


# ---------------------------------------------------------------- the built-in Service Map workbook

SERVICE_MAP_PARAMETERS = [
    {"name": "TimeRange", "type": "timerange", "label": "Time range", "value": "P7D"},
    {"name": "Computer", "type": "machine", "label": "Machine", "value": "acme-demo"},
    {"name": "AppServer", "type": "machine", "label": "Application server", "value": "admdemo-appsvr"},
    {"name": "SqlServer", "type": "machine", "label": "Database server", "value": "sql-01.contoso.local"},
]
# the seed's literal machine names and ids -> the parameters that take their place (the
# parameters' defaults name the same machines in the demo)
SERVICE_MAP_LITERALS = {
    '"acme-demo"': '"{Computer}"',
    "'admdemo-appsvr'": "'{AppServer}'",
    '"m-4b9c93f9-bc37-46df-b43c-899ba829e07b"': '"{Computer:id}"',
    '"m-559dbcd8-3130-454d-8d1d-f624e57961bc"': '"{SqlServer:id}"',
    '"m-82412a7a-6a32-45a9-a8d6-538354224a25"': '"{AppServer:id}"',
}


def _service_map_tile(i: int, sample: dict) -> dict:
    query = sample["query"]
    for literal, param in SERVICE_MAP_LITERALS.items():
        query = query.replace(literal, param)
    vis = "auto" if "| render" in query else "table"
    return {"id": f"seed-{i + 1}", "type": "query", "title": sample["title"], "query": query,
            "visualization": vis, "timeRange": "TimeRange", "size": "full" if vis == "auto" else "half"}


_BUILTIN = None


def builtin() -> dict:
    """The Service Map workbook: the seed's examples, one tile each, and the map of the machine."""
    global _BUILTIN
    if _BUILTIN is None:
        from .webmap import samples
        tiles = [{"id": "intro", "type": "text", "title": "",
                  "text": "The queries of the Service Map documentation and blog (the seed's examples), over "
                          "{TimeRange}. Pick a machine above: the tiles that name one follow it."},
                 {"id": "machine-map", "type": "map", "title": "Dependency map of {Computer}",
                  "machine": "{Computer}", "timeRange": "TimeRange", "size": "full"}]
        tiles += [_service_map_tile(i, s) for i, s in enumerate(samples())]
        wb = validate({"format": FORMAT, "version": VERSION, "id": BUILTIN_ID, "title": "Service Map",
                       "description": "The seed's example queries of Service Map, as a workbook.",
                       "parameters": SERVICE_MAP_PARAMETERS, "tiles": tiles})
        wb["builtin"] = True
        _BUILTIN = wb
    return json.loads(json.dumps(_BUILTIN))


# ---------------------------------------------------------------- Azure Monitor's gallery format

AZURE_ITEM_NAMES = {10: "metric", 11: "links/tabs"}     # the kinds of item the import names when it leaves them out
AZURE_PARAMETER_TYPES = {1: "text", 2: "drop-down", 3: "?", 4: "time range picker", 5: "resource picker",
                         6: "subscription picker", 7: "resource type", 8: "location", 10: "checkbox",
                         11: "multi-value", 12: "options group"}
AZURE_VISUALIZATIONS = {
    None: "auto", "": "auto", "table": "table", "timechart": "timechart", "linechart": "linechart",
    "areachart": "areachart", "barchart": "barchart", "categoricalbar": "columnchart",
    "unstackedbar": "columnchart", "piechart": "piechart", "scatterchart": "scatterchart",
    "tiles": "tiles", "stat": "tiles",
    "map": "scatterchart",          # Azure's map of latitude/longitude columns: charts.js's world map
}
AZURE_SIZES = {0: "half", 1: "third", 2: "third", 3: "full", 4: "third"}
AZURE_COMPARISONS = {"isEqualTo": "equals", "isNotEqualTo": "not_equals"}    # an item's conditionalVisibility
AZURE_ALL = "value::all"        # a multi-select's "All" choice


def is_azure(data) -> bool:
    return isinstance(data, dict) and str(data.get("version", "")).startswith("Notebook/") and "items" in data


def _duration_ms(ms) -> str | None:
    """Azure's {"durationMs": N} -> an ISO 8601 duration (P1D, PT4H, PT30M, PT90S)."""
    if isinstance(ms, bool) or not isinstance(ms, (int, float)) or ms <= 0:
        return None
    s = int(ms // 1000) or 1
    if s % 86400 == 0:
        return f"P{s // 86400}D"
    if s % 3600 == 0:
        return f"PT{s // 3600}H"
    if s % 60 == 0:
        return f"PT{s // 60}M"
    return f"PT{s}S"


def _azure_range(value) -> str | None:
    if isinstance(value, dict):
        if value.get("durationMs"):
            return _duration_ms(value.get("durationMs"))
        if value.get("startTime") and value.get("endTime"):
            return f"{value['startTime']}/{value['endTime']}"
    return None


class _AzureImport:
    def __init__(self):
        self.params: list[dict] = []
        self.tiles: list[dict] = []
        self.ids: set[str] = set()
        self.items = 0
        self.unsupported = 0
        # the visibleWhen conditions of the items being read (a group's passed down to its items), and
        # notes of conditions netatlas cannot take (their items stay visible)
        self.conditions: tuple[dict, ...] = ()
        self.condition_notes: tuple[str, ...] = ()

    def add(self, tile: dict) -> None:
        """A tile of the item being read, with its (and its groups') conditions."""
        if self.conditions:
            tile["visibleWhen"] = list(self.conditions)
        if self.condition_notes:
            tile["note"] = "; ".join(filter(None, (tile.get("note"), *self.condition_notes)))
        self.tiles.append(tile)

    def item_conditions(self, item: dict) -> tuple[list[dict], list[str]]:
        """An item's conditionalVisibility / conditionalVisibilities as visibleWhen conditions; a
        comparison netatlas does not know is left out (the item stays visible) and counted."""
        raw = [item["conditionalVisibility"]] if isinstance(item.get("conditionalVisibility"), dict) else []
        if isinstance(item.get("conditionalVisibilities"), list):
            raw += item["conditionalVisibilities"]
        conds, notes = [], []
        for c in raw:
            if not isinstance(c, dict):
                continue
            name, comparison, value = c.get("parameterName"), c.get("comparison"), c.get("value")
            value = "" if value is None else json.dumps(value) if isinstance(value, bool) else value
            if comparison not in AZURE_COMPARISONS or not isinstance(name, str) or \
                    not isinstance(value, (str, int, float)):
                self.unsupported += 1
                notes.append(f"not supported: the condition {str(comparison)[:40]!r} on {str(name)[:64]!r} "
                             "(the item is always shown)")
                continue
            conds.append({"parameter": name, "comparison": AZURE_COMPARISONS[comparison], "value": str(value)})
        return conds, notes

    def tile_id(self, name) -> str:
        name = name if isinstance(name, str) else "item"
        base = re.sub(r"[^a-z0-9]+", "-", str(name or "item").lower()).strip("-")[:56] or "item"
        tid, n = base, 1
        while tid in self.ids:
            n += 1
            tid = f"{base}-{n}"
        self.ids.add(tid)
        return tid

    def unsupported_tile(self, item: dict, what: str, title: str = "") -> None:
        self.unsupported += 1
        original = {k: item.get(k) for k in ("type", "name") if isinstance(item.get(k), (int, str))}
        self.add({"id": self.tile_id(item.get("name")), "type": "unsupported", "title": title,
                  "note": f"not supported: {what}", "original": original})

    def walk(self, items, depth: int) -> None:
        if depth > limits.WORKBOOK_IMPORT_MAX_DEPTH:
            raise WorkbookError(f"groups nest deeper than {limits.WORKBOOK_IMPORT_MAX_DEPTH}", "items",
                                code="WORKBOOK_TOO_LARGE")
        if not isinstance(items, list):
            raise WorkbookError("must be a list of items", "items")
        for item in items:
            self.items += 1
            if self.items > limits.WORKBOOK_IMPORT_MAX_ITEMS:
                raise WorkbookError(f"more than {limits.WORKBOOK_IMPORT_MAX_ITEMS} items", "items",
                                    code="WORKBOOK_TOO_LARGE")
            if not isinstance(item, dict):
                continue
            outer = self.conditions, self.condition_notes
            conds, notes = self.item_conditions(item)
            self.conditions, self.condition_notes = outer[0] + tuple(conds), outer[1] + tuple(notes)
            try:
                self.item(item, depth)
            finally:
                self.conditions, self.condition_notes = outer

    def item(self, item: dict, depth: int) -> None:
        """One item: its handler (ITEM_HANDLERS), or an unsupported tile in its place."""
        content = item.get("content") if isinstance(item.get("content"), dict) else {}
        kind = item.get("type")
        kind = kind if isinstance(kind, (int, str)) and not isinstance(kind, bool) else repr(kind)
        handler = ITEM_HANDLERS.get(kind)
        if handler is None:
            self.unsupported_tile(item, f"Azure workbook item of type {kind!r}"
                                  + (f" ({AZURE_ITEM_NAMES[kind]})" if kind in AZURE_ITEM_NAMES else ""),
                                  str(content.get("title") or ""))
            return
        try:
            handler(self, item, content, depth)
        except WorkbookError:
            raise
        except (TypeError, ValueError, AttributeError, KeyError) as e:     # a malformed item: shown in place
            self.unsupported_tile(item, f"a malformed item of type {kind} ({type(e).__name__})")

    # -- items

    def text(self, item, content, depth) -> None:
        text = content.get("json")
        if not isinstance(text, str):
            return self.unsupported_tile(item, "a text item without markdown")
        self.add({"id": self.tile_id(item.get("name") or "text"), "type": "text", "title": "",
                  "text": text[:limits.WORKBOOK_MAX_TEXT_CHARS]})

    def query(self, item, content, depth) -> None:
        title = str(content.get("title") or "")
        query = content.get("query")
        query_type = content.get("queryType", 0)
        if query_type != 0 or not isinstance(query, str) or not query.strip():
            what = "a query that is not a Log Analytics (KQL) query" if query_type != 0 else "a query item without KQL"
            return self.unsupported_tile(item, f"{what} (queryType {query_type!r})", title)
        vis = content.get("visualization")
        if vis not in AZURE_VISUALIZATIONS:
            return self.unsupported_tile(item, f"the {vis!r} visualization", title)
        tile = {"id": self.tile_id(item.get("name") or title or "query"), "type": "query", "title": title,
                "query": query, "visualization": AZURE_VISUALIZATIONS[vis],
                "size": AZURE_SIZES.get(content.get("size"), "full")}
        if isinstance(content.get("timeContextFromParameter"), str):
            tile["timeRange"] = content["timeContextFromParameter"]
        elif _azure_range(content.get("timeContext")):
            tile["timespan"] = _azure_range(content.get("timeContext"))
        settings = content.get("tileSettings")
        if tile["visualization"] == "tiles" and isinstance(settings, dict):
            cols = {}
            for ours, theirs in (("title", "titleContent"), ("value", "leftContent"), ("subtitle", "subtitleContent")):
                col = (settings.get(theirs) or {}).get("columnMatch") if isinstance(settings.get(theirs), dict) else None
                if isinstance(col, str):
                    cols[ours] = col
            if cols:
                tile["tiles"] = cols
        self.add(tile)

    def parameters(self, item, content, depth) -> None:
        params = content.get("parameters")
        for p in params if isinstance(params, list) else []:
            if not isinstance(p, dict) or not isinstance(p.get("name"), str) or not NAME.fullmatch(p["name"]):
                continue
            if any(q["name"] == p["name"] for q in self.params):
                continue
            kind = p.get("type")
            out = {"name": p["name"], "label": str(p.get("label") or p["name"])}
            if kind == 4:
                out.update(type="timerange",
                           value=_azure_range(p.get("value")) or _azure_range(p.get("timeContext")) or "P1D")
            else:
                out["type"] = "text"
                value = p.get("value")
                if p.get("multiSelect") is True:
                    self.multi(p, out)
                else:
                    if isinstance(value, list):
                        value = ",".join(str(v) for v in value)
                    out["value"] = value if isinstance(value, str) else ""
                if kind == 2 and isinstance(p.get("jsonData"), str):
                    try:
                        data = json.loads(p["jsonData"])
                    except ValueError:
                        data = None
                    if isinstance(data, list):
                        out["choices"] = [str(d.get("value", "")) if isinstance(d, dict) else str(d) for d in data][:limits.WORKBOOK_MAX_CHOICES]
                elif kind == 2 and isinstance(p.get("query"), str) and p.get("queryType", 0) == 0:
                    out["query"] = p["query"]
                elif kind not in (1, 2):
                    self.unsupported += 1
                    out["note"] = "; ".join(filter(None, (
                        f"not supported: Azure's {AZURE_PARAMETER_TYPES.get(kind, f'type {kind}')} "
                        "parameter (shown as text)", out.get("note"))))
            if len(self.params) < limits.WORKBOOK_MAX_PARAMETERS:
                self.params.append(out)

    def multi(self, p: dict, out: dict) -> None:
        """A multi-select drop-down: its quote, delimiter and selected values (a list)."""
        notes = []
        quote, delimiter = p.get("quote", "'"), p.get("delimiter", ",")
        if quote not in QUOTES:
            notes.append(f"the quote {str(quote)[:8]!r} (' used)")
            quote = "'"
        if not isinstance(delimiter, str) or len(delimiter) > limits.WORKBOOK_MAX_DELIMITER_CHARS or \
                "\n" in delimiter or "\r" in delimiter:
            notes.append(f"the delimiter {str(delimiter)[:16]!r} (, used)")
            delimiter = ","
        value = p.get("value")
        values = value if isinstance(value, list) else [value] if isinstance(value, str) and value else []
        values = [v if isinstance(v, str) else json.dumps(v) for v in values if v is not None]
        if AZURE_ALL in values:
            notes.append("the \"All\" selection (nothing is selected)")
            values = []
        out.update(multi=True, quote=quote, delimiter=delimiter,
                   value=_multi_text(values[:limits.WORKBOOK_MAX_CHOICES]))
        if notes:
            self.unsupported += 1
            out["note"] = "not supported: " + ", ".join(notes)

    def group(self, item, content, depth) -> None:
        title = content.get("title")
        if isinstance(title, str) and title.strip():
            name = item.get("name") if isinstance(item.get("name"), str) else "group"
            self.add({"id": self.tile_id(name + "-title"), "type": "text", "title": "", "text": f"### {title}"})
        items = content.get("items") or []
        if not isinstance(items, list):
            return self.unsupported_tile(item, "a group whose items are not a list")
        self.walk(items, depth + 1)


ITEM_HANDLERS = {1: _AzureImport.text, 3: _AzureImport.query, 9: _AzureImport.parameters, 12: _AzureImport.group}


def from_azure(data: dict, title: str = "") -> dict:
    """An Azure Monitor workbook (gallery template JSON) -> a netatlas workbook (validated). What
    netatlas cannot show becomes an ``unsupported`` tile in its place; nothing makes it fail but
    passing the limits."""
    imp = _AzureImport()
    imp.walk(data.get("items"), 0)
    names = {p["name"] for p in imp.params}
    for t in imp.tiles:       # a time range bound to a parameter the workbook lacks: a fixed one
        if t.get("timeRange") and t["timeRange"] not in names:
            t.pop("timeRange")
        conds = t.pop("visibleWhen", [])
        kept = [c for c in conds if c["parameter"] in names]
        lost = sorted({c["parameter"] for c in conds if c["parameter"] not in names})
        if lost:      # a parameter set by something netatlas lacks (links, a query's selection, ...)
            imp.unsupported += 1
            t["note"] = "; ".join(filter(None, (t.get("note"), "not supported: a condition on "
                                                + ", ".join(lost) + ", not a parameter here (the item is always shown)")))
        if len(kept) > limits.WORKBOOK_MAX_CONDITIONS:
            imp.unsupported += 1
            t["note"] = "; ".join(filter(None, (t.get("note"), f"not supported: more than "
                                                f"{limits.WORKBOOK_MAX_CONDITIONS} conditions (the first kept)")))
            kept = kept[:limits.WORKBOOK_MAX_CONDITIONS]
        if kept:
            t["visibleWhen"] = kept
    tiles = imp.tiles[:limits.WORKBOOK_MAX_TILES]
    wb = {"format": FORMAT, "version": VERSION, "title": title or "Imported Azure workbook",
          "description": f"Imported from an Azure Monitor workbook ({data.get('version')}): {len(tiles)} tiles, "
                         f"{imp.unsupported} not supported.",
          "parameters": imp.params, "tiles": tiles,
          "source": {"kind": "azure", "version": str(data.get("version")), "items": imp.items,
                     "unsupported": imp.unsupported}}
    return validate(wb)


def import_json(data, title: str = "") -> dict:
    """A workbook in netatlas's format or Azure's, as netatlas's (not stored, without an id)."""
    if is_azure(data):
        return from_azure(data, title)
    if isinstance(data, dict) and isinstance(data.get("serializedData"), str):    # an ARM workbook resource
        try:
            inner = json.loads(data["serializedData"])
        except ValueError:
            raise WorkbookError("serializedData is not JSON", "serializedData") from None
        return from_azure(inner, title or str(data.get("displayName") or ""))
    wb = validate(data)
    wb["id"] = ""
    wb.pop("builtin", None)
    return wb
