"""Conversion functions: tostring, toint, tolong, toreal, tobool, todatetime, totimespan, ..."""
from __future__ import annotations

from sqlglot import exp

from .. import types as T
from ..scalars import dynamic_to, to_string
from ..typed import Typed, fn, from_microseconds
from . import scalar

L = exp.Literal.string


@scalar("tostring", "a", T.STRING)
def tostring(a):
    return to_string(a)


def _to_number(typ):
    def build(a: Typed):
        if a.type == T.DYNAMIC:
            return dynamic_to(a, typ)
        if a.type == T.STRING:
            e = exp.TryCast(this=fn(exp.Trim, a.sql), to=T.storage(T.REAL if typ in T.INTEGER else typ))
            if typ in T.INTEGER:
                e = exp.TryCast(this=fn(exp.Trunc, e), to=T.storage(typ))
            return Typed(e, typ)
        if a.type == T.BOOL:
            return Typed(exp.Cast(this=a.sql, to=T.storage(typ)), typ)
        if a.type == T.DATETIME:
            return Typed(exp.Cast(this=exp.Add(this=exp.Mul(this=fn("epoch_microseconds", a.sql), expression=exp.Literal.number(10)),
                                               expression=exp.Literal.number(621355968000000000)), to=T.storage(typ)), typ)
        if a.type in (T.TIMESPAN,):
            return Typed(exp.Cast(this=a.sql, to=T.storage(typ)), typ)
        if a.type in T.NUMERIC:
            if typ in T.INTEGER and a.type in (T.REAL, T.DECIMAL):
                return Typed(exp.TryCast(this=fn(exp.Trunc, a.sql), to=T.storage(typ)), typ)
            return Typed(exp.TryCast(this=a.sql, to=T.storage(typ)), typ)
        return Typed(exp.Cast(this=exp.null(), to=T.storage(typ)), typ)
    return build


scalar("toint", "a", T.INT, "int")(_to_number(T.INT))
scalar("tolong", "a", T.LONG, "long")(_to_number(T.LONG))
scalar("toreal", "a", T.REAL, "todouble", "real", "double")(_to_number(T.REAL))
scalar("todecimal", "a", T.DECIMAL, "decimal")(_to_number(T.DECIMAL))


@scalar("tobool", "a", T.BOOL, "toboolean", "bool", "boolean")
def tobool(a):
    if a.type == T.BOOL:
        return a
    if a.type in T.NUMERIC:
        return Typed(exp.NEQ(this=a.sql, expression=exp.Literal.number(0)), T.BOOL)
    s = exp.Lower(this=fn(exp.Trim, to_string(a).sql))
    return Typed(exp.Case(ifs=[exp.If(this=exp.In(this=s, expressions=[L("true"), L("1")]), true=exp.true()),
                               exp.If(this=exp.In(this=s, expressions=[L("false"), L("0")]), true=exp.false())],
                          default=exp.null()), T.BOOL)


@scalar("todatetime", "a", T.DATETIME, "datetime")
def todatetime(a):
    if a.type == T.DATETIME:
        return a
    if a.type == T.STRING and a.is_const:
        from ..literals import parse_datetime
        from ..typed import const, null
        v = parse_datetime(a.const)
        return const(v, T.DATETIME) if v else null(T.DATETIME)
    if a.type in (T.STRING, T.DYNAMIC):
        return Typed(fn("netatlas_todatetime", to_string(a).sql), T.DATETIME)
    if a.type in T.INTEGER:   # ticks since 0001-01-01
        return Typed(from_microseconds(exp.IntDiv(this=exp.Sub(this=a.sql, expression=exp.Literal.number(621355968000000000)),
                                                  expression=exp.Literal.number(10))), T.DATETIME)
    return Typed(exp.Cast(this=exp.null(), to=T.storage(T.DATETIME)), T.DATETIME)


@scalar("totimespan", "a", T.TIMESPAN, "timespan")
def totimespan(a):
    if a.type == T.TIMESPAN:
        return a
    if a.type == T.STRING and a.is_const:
        from ..literals import parse_timespan
        from ..typed import const, null
        v = parse_timespan(a.const)
        return const(v, T.TIMESPAN) if v is not None else null(T.TIMESPAN)
    if a.type in T.INTEGER:
        return Typed(a.sql, T.TIMESPAN)
    if a.type in (T.STRING, T.DYNAMIC):
        return Typed(fn("netatlas_totimespan", to_string(a).sql), T.TIMESPAN)
    return Typed(exp.Cast(this=exp.null(), to=T.storage(T.TIMESPAN)), T.TIMESPAN)


@scalar("toguid", "a", T.GUID, "guid")
def toguid(a):
    if a.type == T.GUID:
        return a
    return Typed(exp.TryCast(this=to_string(a).sql, to=T.storage(T.GUID)), T.GUID)


@scalar("todynamic", "a", T.DYNAMIC, "parse_json", "toobject")
def todynamic(a):
    if a.type == T.DYNAMIC:
        return a
    if a.type == T.STRING:
        if a.is_const:
            import json
            from ..typed import const
            try:
                return const(json.loads(a.const), T.DYNAMIC)
            except ValueError:
                return const(a.const, T.DYNAMIC)
        return Typed(fn("netatlas_parse_json", a.sql), T.DYNAMIC)
    from ..scalars import to_dynamic
    return to_dynamic(a)


@scalar("gettype", "a", T.STRING)
def gettype(a):
    if a.type != T.DYNAMIC:
        names = {T.REAL: "real", T.TIMESPAN: "timespan", T.INT: "int", T.GUID: "guid"}
        return exp.Literal.string(names.get(a.type, a.type))
    return fn("netatlas_gettype", a.sql)
