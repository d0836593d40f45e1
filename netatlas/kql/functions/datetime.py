"""Date and time functions. Datetimes are TIMESTAMP (UTC); timespans are BIGINT ticks."""
from __future__ import annotations

from datetime import timedelta

from sqlglot import exp

from ...errors import KqlSemanticError
from .. import types as T
from ..scalars import arithmetic, type_error
from ..typed import Typed, cast, const, fn, from_microseconds as _from_microseconds
from . import scalar

L, N = exp.Literal.string, exp.Literal.number
TICKS_PER_DAY = 864_000_000_000
KUSTO_EPOCH_US = 62135596800000000   # microseconds from 0001-01-01 to 1970-01-01


@scalar("now", "t?", T.DATETIME, ctx=True)
def now(ctx, offset=None):
    t = const(ctx.now, T.DATETIME)
    if offset is not None:
        return arithmetic("+", t, offset, offset.span)
    return t


@scalar("ago", "t", T.DATETIME, ctx=True)
def ago(ctx, span):
    if span.is_const and span.const is not None:
        return const(ctx.now - timedelta(microseconds=span.const // 10), T.DATETIME)
    return arithmetic("-", const(ctx.now, T.DATETIME), span, span.span)


TRUNC_UNITS = {10_000_000: "second", 600_000_000: "minute", 36_000_000_000: "hour", TICKS_PER_DAY: "day"}


def _bin(value: Typed, size: Typed, origin: Typed | None = None):
    if value.type == T.DATETIME:
        if size.type != T.TIMESPAN:
            type_error("bin() of a datetime needs a timespan size, e.g. bin(TimeGenerated, 1h)", size.span)
        if size.is_const and size.const in TRUNC_UNITS and not origin:
            # a whole second, minute, hour or day: date_trunc is the same and cheaper than time_bucket
            return Typed(fn("datetime_trunc", L(TRUNC_UNITS[size.const]), value.sql), T.DATETIME, name=value.name)
        if size.is_const and size.const and not origin:
            us = size.const // 10
            interval = exp.Interval(this=L(str(us)), unit=exp.var("MICROSECOND"))
            args = [interval, value.sql]
            if TICKS_PER_DAY % size.const:
                args.append(cast(L("0001-01-01 00:00:00"), T.DATETIME))
            return Typed(fn(exp.DateBin, *args), T.DATETIME, name=value.name)
        # general form: floor((ticks - origin) / size) * size + origin
        base = origin.sql if origin is not None else cast(L("0001-01-01 00:00:00"), T.DATETIME)
        diff = exp.Sub(this=fn("epoch_microseconds", value.sql), expression=fn("epoch_microseconds", base))
        step = exp.IntDiv(this=size.sql, expression=N(10))
        floored = exp.Mul(this=fn(exp.Floor, exp.Div(this=diff, expression=step, typed=False, safe=False)), expression=step)
        return Typed(exp.Add(this=base, expression=fn("microseconds", cast(floored, T.LONG))), T.DATETIME, name=value.name)
    if value.type == T.TIMESPAN:
        e = exp.Mul(this=fn(exp.Floor, exp.Div(this=value.sql, expression=size.sql, typed=False, safe=False)), expression=size.sql)
        return Typed(cast(e, T.LONG), T.TIMESPAN, name=value.name)
    if value.type in T.NUMERIC:
        off = origin.sql if origin is not None else None
        v = exp.Sub(this=value.sql, expression=off) if off is not None else value.sql
        e = exp.Mul(this=fn(exp.Floor, exp.Div(this=v, expression=size.sql, typed=False, safe=False)), expression=size.sql)
        if off is not None:
            e = exp.Add(this=e, expression=off)
        rtype = T.REAL if T.REAL in (value.type, size.type) else value.type
        if rtype in T.INTEGER:
            e = cast(e, rtype)
        return Typed(e, rtype, name=value.name)
    type_error(f"bin() cannot round a {value.type}", value.span)


@scalar("bin", "aa", T.DATETIME, "floor", keeps_name=True)
def bin_(value, size):
    if value.type in T.NUMERIC and size.type not in T.NUMERIC:
        type_error("bin() of a number needs a number size", size.span)
    return _bin(value, size)


@scalar("bin_at", "aaa", T.DATETIME, keeps_name=True)
def bin_at(value, size, origin):
    return _bin(value, size, origin)


def _trunc(part):
    def build(d, offset=None):
        e = fn("datetime_trunc", L(part), d.sql)
        if offset is not None:
            e = exp.Add(this=e, expression=exp.Interval(this=offset.sql, unit=exp.var(part.upper())))
        return e
    return build


def _endof(part):
    def build(d, offset=None):
        start = _trunc(part)(d, offset)
        nxt = exp.Add(this=start, expression=exp.Interval(this=N(1), unit=exp.var(part.upper())))
        return exp.Sub(this=nxt, expression=exp.Interval(this=N(1), unit=exp.var("MICROSECOND")))
    return build


for _part in ("day", "month", "year"):
    scalar(f"startof{_part}", "di?", T.DATETIME)(_trunc(_part))
    scalar(f"endof{_part}", "di?", T.DATETIME)(_endof(_part))


@scalar("startofweek", "di?", T.DATETIME)
def startofweek(d, offset=None):   # weeks start on Sunday
    day = fn("datetime_trunc", L("day"), d.sql)
    e = exp.Sub(this=day, expression=fn(exp.ToDays, cast(fn(exp.DayOfWeek, d.sql), T.INT)))
    if offset is not None:
        e = exp.Add(this=e, expression=fn(exp.ToDays, cast(exp.Mul(this=offset.sql, expression=N(7)), T.INT)))
    return e


@scalar("endofweek", "di?", T.DATETIME)
def endofweek(d, offset=None):
    start = startofweek(d, offset)
    return exp.Sub(this=exp.Add(this=start, expression=fn(exp.ToDays, N(7))),
                   expression=exp.Interval(this=N(1), unit=exp.var("MICROSECOND")))


@scalar("dayofweek", "d", T.TIMESPAN)
def dayofweek(d):
    return exp.Mul(this=cast(fn(exp.DayOfWeek, d.sql), T.LONG), expression=N(TICKS_PER_DAY))


def _part(name, typ=T.INT):
    def build(d):
        return cast(fn(name, d.sql), typ)
    return build


scalar("dayofmonth", "d", T.INT)(_part(exp.Day))
scalar("dayofyear", "d", T.INT)(_part(exp.DayOfYear))
scalar("getmonth", "d", T.INT, "monthofyear")(_part(exp.Month))
scalar("getyear", "d", T.INT)(_part(exp.Year))
scalar("hourofday", "d", T.INT)(_part(exp.Hour))
scalar("week_of_year", "d", T.INT, "weekofyear")(_part(exp.WeekOfYear))

# datetime_part / datetime_add / datetime_diff parts -> DuckDB parts
PARTS = {"year": "year", "quarter": "quarter", "month": "month", "week_of_year": "week", "week": "week",
         "day": "day", "dayofyear": "dayofyear", "hour": "hour", "minute": "minute", "second": "second",
         "millisecond": "millisecond", "microsecond": "microsecond", "nanosecond": "nanosecond"}


def _part_name(p: Typed, fname: str) -> str:
    if not p.is_const or str(p.const).lower() not in PARTS:
        raise KqlSemanticError(f"{fname}() needs a constant part: one of {', '.join(PARTS)}", p.span,
                               code="KQL_ARGUMENTS")
    return PARTS[str(p.const).lower()]


@scalar("datetime_part", "sd", T.INT, "datepart")
def datetime_part(p, d):
    part = _part_name(p, "datetime_part")
    if part == "millisecond":
        return cast(exp.Mod(this=fn("minute_milliseconds", d.sql), expression=N(1000)), T.INT)
    if part == "microsecond":
        return cast(exp.Mod(this=fn("minute_microseconds", d.sql), expression=N(1000000)), T.INT)
    if part == "nanosecond":
        return cast(exp.Mul(this=exp.Mod(this=fn("minute_microseconds", d.sql), expression=N(1000000)), expression=N(1000)), T.INT)
    return cast(fn("datetime_part", L(part), d.sql), T.INT)


@scalar("datetime_add", "sid", T.DATETIME)
def datetime_add(p, amount, d):
    part = _part_name(p, "datetime_add")
    if part == "nanosecond":
        return exp.Add(this=d.sql, expression=fn("microseconds", exp.IntDiv(this=amount.sql, expression=N(1000))))
    if part == "week":
        return exp.Add(this=d.sql, expression=fn(exp.ToDays, cast(exp.Mul(this=amount.sql, expression=N(7)), T.INT)))
    return exp.Add(this=d.sql, expression=exp.Interval(this=amount.sql, unit=exp.var(part.upper())))


@scalar("datetime_diff", "sdd", T.LONG)
def datetime_diff(p, d1, d2):
    part = _part_name(p, "datetime_diff")
    if part == "nanosecond":
        return exp.Mul(this=fn("datetime_diff", L("microsecond"), d2.sql, d1.sql), expression=N(1000))
    if part == "week":   # Sunday boundaries crossed, like startofweek()
        days = fn("datetime_diff", L("day"), startofweek(d2), startofweek(d1))
        return cast(exp.IntDiv(this=days, expression=N(7)), T.LONG)
    return cast(fn("datetime_diff", L(part), d2.sql, d1.sql), T.LONG)


# Kusto format specifiers -> strftime (longest first)
_FMT = [("yyyy", "%Y"), ("yy", "%y"), ("MM", "%m"), ("dd", "%d"), ("HH", "%H"), ("hh", "%I"), ("mm", "%M"),
        ("ss", "%S"), ("fffffff", "%f0"), ("ffffff", "%f"), ("fff", "%g"), ("tt", "%p"), ("M", "%-m"),
        ("d", "%-d"), ("H", "%-H"), ("h", "%-I"), ("m", "%-M"), ("s", "%-S")]


def kusto_to_strftime(f: str) -> str:
    out, i = [], 0
    while i < len(f):
        for k, v in _FMT:
            if f.startswith(k, i):
                out.append(v)
                i += len(k)
                break
        else:
            out.append(f[i].replace("%", "%%"))
            i += 1
    return "".join(out)


@scalar("format_datetime", "ds", T.STRING)
def format_datetime(d, f):
    if not f.is_const:
        type_error("format_datetime() needs a constant format", f.span)
    return exp.Coalesce(this=fn(exp.TimeToStr, d.sql, L(kusto_to_strftime(f.const))), expressions=[L("")])


@scalar("format_timespan", "ts", T.STRING)
def format_timespan(t, f):
    if not f.is_const:
        type_error("format_timespan() needs a constant format", f.span)
    return fn("netatlas_format_timespan", t.sql, L(f.const))


def _from_unix(per_second: int):
    """unixtime_*_todatetime: a number of units since 1970 -> datetime (microsecond store)."""
    def build(n):
        us = exp.Mul(this=cast(n.sql, T.REAL), expression=N(1_000_000 / per_second))
        return _from_microseconds(cast(fn(exp.Round, us), T.LONG))
    return build


scalar("unixtime_seconds_todatetime", "n", T.DATETIME)(_from_unix(1))
scalar("unixtime_milliseconds_todatetime", "n", T.DATETIME)(_from_unix(1_000))


@scalar("unixtime_microseconds_todatetime", "n", T.DATETIME)
def unix_us(n):
    return _from_microseconds(cast(n.sql, T.LONG))


@scalar("unixtime_nanoseconds_todatetime", "n", T.DATETIME)
def unix_ns(n):
    return _from_microseconds(cast(exp.IntDiv(this=cast(n.sql, T.LONG), expression=N(1000)), T.LONG))


@scalar("make_datetime", "iiii?i?r?", T.DATETIME)
def make_datetime(y, m, d, h=None, mi=None, s=None):
    # an invalid date (2023-02-29) is null, not an error
    z = N(0)
    return fn(exp.Try, fn(exp.TimestampFromParts, cast(y.sql, T.LONG), cast(m.sql, T.LONG), cast(d.sql, T.LONG),
                        cast(h.sql, T.LONG) if h else z, cast(mi.sql, T.LONG) if mi else z,
                        cast(s.sql if s else z, T.REAL)))


# make_timespan's arguments by arity: (hour, minute), (hour, minute, second), (day, hour, minute, second)
_SPAN_ARGS = {2: ("h", "m"), 3: ("h", "m", "s"), 4: ("d", "h", "m", "s")}
_SPAN_TICKS = {"d": TICKS_PER_DAY, "h": 36_000_000_000, "m": 600_000_000}


@scalar("make_timespan", "iir?r?", T.TIMESPAN)
def make_timespan(*args):
    args = [a for a in args if a is not None]
    terms = []
    for unit, a in zip(_SPAN_ARGS[len(args)], args):
        if unit == "s":    # seconds may have a fraction: round to ticks
            terms.append(cast(fn(exp.Round, exp.Mul(this=a.sql, expression=N(10_000_000))), T.LONG))
        else:
            terms.append(exp.Mul(this=cast(a.sql, T.LONG), expression=N(_SPAN_TICKS[unit])))
    tot = terms[0]
    for t in terms[1:]:
        tot = exp.Add(this=tot, expression=t)
    return exp.Paren(this=tot)


@scalar("totimestamp_seconds", "d", T.LONG, "tounixtime")
def unix_seconds(d):
    return cast(fn(exp.TimeToUnix, d.sql), T.LONG)
