"""Typed literal bodies: datetime(...), timespan(...), dynamic(...), guid(...), long(...), ...

Parsing helpers shared by the parser (literals in queries) and the ingest stage (values in
records). Datetimes are naive UTC; timespans are ticks of 100 ns.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation

from ..errors import KqlSyntaxError
from . import syntax as s
from .tokens import INT, REAL, STRING, TICKS, Token

_TS = re.compile(r"^(-)?(?:(\d+)\.)?(\d{1,2}):(\d{1,2})(?::(\d{1,2})(?:\.(\d{1,7}))?)?$")
_SPAN_UNIT = re.compile(r"^(-)?(\d+(?:\.\d+)?)\s*([A-Za-z]+)$")
EPOCH = datetime(1970, 1, 1)


def parse_datetime(text: str) -> datetime | None:
    """ISO 8601 and the common Kusto datetime spellings -> naive UTC datetime; None if unparsable."""
    t = text.strip().strip("'\"")
    if not t:
        return None
    t = t.replace(" ", "T", 1) if re.match(r"^\d{4}-\d{1,2}-\d{1,2} ", t) else t
    offset = None
    m = re.search(r"(Z|[+-]\d{2}:?\d{2})$", t)
    if m and "T" in t:
        z = m.group(1)
        t = t[: m.start()]
        if z != "Z":
            sign = 1 if z[0] == "+" else -1
            hh, mm = int(z[1:3]), int(z[-2:])
            offset = sign * timedelta(hours=hh, minutes=mm)
    frac = re.search(r"\.(\d+)$", t)
    micro = 0
    if frac:
        digits = frac.group(1)
        micro = int((digits + "000000")[:6])
        t = t[: frac.start()]
    for fmt in ("%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M", "%Y-%m-%dT%H", "%Y-%m-%d", "%Y%m%d",
                "%Y/%m/%d", "%Y/%m/%dT%H:%M:%S", "%Y/%m/%dT%H:%M"):
        try:
            d = datetime.strptime(t, fmt).replace(microsecond=micro)
            return d - offset if offset else d
        except ValueError:
            continue
    for fmt in ("%a, %d %b %Y %H:%M:%S GMT", "%d %b %Y %H:%M:%S GMT", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y"):
        try:
            return datetime.strptime(text.strip(), fmt)
        except ValueError:
            continue
    return None


def parse_timespan(text: str) -> int | None:
    """Kusto timespan text ('1.02:03:04.5', '2h', '1.5d', '00:30:00') -> ticks; None if unparsable."""
    t = text.strip().strip("'\"")
    m = _TS.match(t)
    if m:
        neg, d, h, mi, sec, frac = m.groups()
        ticks = ((int(d or 0) * 24 + int(h)) * 60 + int(mi)) * 60 * 10_000_000 + int(sec or 0) * 10_000_000
        if frac:
            ticks += int((frac + "0000000")[:7])
        return -ticks if neg else ticks
    m = _SPAN_UNIT.match(t)
    if m and m.group(3).lower() in TICKS:
        v = round(float(m.group(2)) * TICKS[m.group(3).lower()])
        return -v if m.group(1) else v
    try:
        return round(float(t) * TICKS["d"])
    except ValueError:
        return None


def timespan_format_tokens(fmt: str) -> list[tuple[str, str, int]]:
    """A format_timespan format as tokens: ("field", letter, run length) for d h H m s f F, and
    ("text", text, 0) for the rest (quoted text, a backslash's next character, other characters)."""
    out, i = [], 0
    while i < len(fmt):
        c = fmt[i]
        j = i
        while j < len(fmt) and fmt[j] == c:
            j += 1
        if c in "dhHmsfF":
            out.append(("field", c, j - i))
        elif c in "'\"":
            end = fmt.find(c, i + 1)
            out.append(("text", fmt[i + 1:end if end > 0 else len(fmt)], 0))
            j = end + 1 if end > 0 else len(fmt)
        elif c == "\\" and i + 1 < len(fmt):
            out.append(("text", fmt[i + 1], 0))
            j = i + 2
        else:
            out.append(("text", fmt[i:j], 0))
        i = j
    return out


_timedelta_new = timedelta.__new__


class Timespan(timedelta):
    """A timedelta that remembers its exact ticks (100 ns), which a timedelta cannot hold."""
    __slots__ = ("ticks",)

    def __new__(cls, ticks: int):
        # positional (days, seconds, microseconds): a third faster than microseconds=, and a query's
        # answer may hold many (convert_rows makes one per value)
        self = _timedelta_new(cls, 0, 0, ticks // 10 if ticks >= 0 else -((-ticks) // 10))
        self.ticks = ticks
        return self

    def __reduce__(self):
        return (Timespan, (self.ticks,))


def ticks_to_timedelta(ticks: int) -> timedelta:
    return Timespan(ticks)


def timedelta_to_ticks(td: timedelta) -> int:
    if isinstance(td, Timespan):
        return td.ticks
    return (td.days * 86400 + td.seconds) * 10_000_000 + td.microseconds * 10


def format_timespan(ticks: int) -> str:
    """Kusto's display form: [-][d.]hh:mm:ss[.fffffff]."""
    neg = ticks < 0
    ticks = abs(ticks)
    secs, frac = divmod(ticks, 10_000_000)
    days, secs = divmod(secs, 86400)
    h, secs = divmod(secs, 3600)
    m, sec = divmod(secs, 60)
    out = f"{h:02d}:{m:02d}:{sec:02d}"
    if days:
        out = f"{days}.{out}"
    if frac:
        out += f".{frac:07d}"
    return ("-" if neg else "") + out


def short_timespan(td: timedelta) -> str:
    """A timedelta as the shortest KQL timespan literal that says it: 5m, 1d, 90s (25h, not 1d1h)."""
    seconds = td.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_datetime_iso(d: datetime) -> str:
    if d.tzinfo is not None:
        d = d.astimezone(timezone.utc).replace(tzinfo=None)
    out = f"{d.year:04d}" + d.strftime("-%m-%dT%H:%M:%S")     # %Y is "1", not "0001", for year 1
    if d.microsecond:
        out += f".{d.microsecond:06d}".rstrip("0")
    return out + "Z"


def raw_literal(tok: Token, text: str) -> s.Literal:
    kind, body = tok.value
    if body.lower() == "null":
        typ = {"date": "datetime", "time": "timespan", "uuid": "guid", "uniqueid": "guid"}.get(kind, kind)
        return s.Literal(tok.span, None, typ)
    if kind in ("datetime", "date"):
        v = parse_datetime(body)
        if v is None:
            raise KqlSyntaxError(f"cannot read {body!r} as a datetime", tok.span, text=text,
                                 hint="write datetime(2024-01-31) or datetime(2024-01-31 10:30:00)")
        return s.Literal(tok.span, v, "datetime")
    if kind in ("time", "timespan"):
        v = parse_timespan(body)
        if v is None:
            raise KqlSyntaxError(f"cannot read {body!r} as a timespan", tok.span, text=text,
                                 hint="write time(1.02:03:04), time(2h) or 2h")
        return s.Literal(tok.span, v, "timespan")
    if kind == "dynamic":
        try:
            v = json.loads(body) if body else None
        except json.JSONDecodeError as e:
            try:
                v = json.loads(_relax_json(body))
            except json.JSONDecodeError:
                raise KqlSyntaxError(f"invalid dynamic literal: {e.msg}", tok.span, text=text) from None
        try:
            json.dumps(v, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise KqlSyntaxError("invalid dynamic literal: it holds half of a UTF-16 surrogate pair (\\uD800-\\uDFFF)",
                                 tok.span, text=text) from None
        return s.Literal(tok.span, v, "dynamic")
    try:
        return s.Literal(tok.span, uuid.UUID(body), "guid")
    except ValueError:
        raise KqlSyntaxError(f"cannot read {body!r} as a guid", tok.span, text=text) from None


def _relax_json(body: str) -> str:
    # single-quoted strings, as Kusto accepts inside dynamic(...)
    return re.sub(r"'((?:[^'\\]|\\.)*)'", lambda m: json.dumps(m.group(1)), body)


def typed_literal_value(typ: str, tok: Token, neg: bool, text: str):
    v = tok.value
    try:
        if typ in ("long", "int"):
            if tok.kind not in (INT, REAL):
                raise ValueError
            return int(-v if neg else v)
        if typ == "real":
            if tok.kind == INT or tok.kind == REAL:
                return float(-v if neg else v)
            if tok.kind != STRING and tok.value in ("nan", "inf", "+inf", "-inf"):
                return float(v)
            raise ValueError
        if typ == "decimal":
            return Decimal(("-" if neg else "") + str(tok.text))
        if typ == "bool":
            if tok.value in ("true", "false"):
                return tok.value == "true"
            if tok.kind == INT:
                return bool(v)
            raise ValueError
        if typ == "string" and tok.kind == STRING:
            return v
    except (ValueError, InvalidOperation):
        pass
    raise KqlSyntaxError(f"cannot read {tok.text!r} as a {typ} literal", tok.span, text=text)
