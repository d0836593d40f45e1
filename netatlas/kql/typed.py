"""Typed SQL fragments: the scalar half of a Plan.

A ``Typed`` is a sqlglot expression together with its KQL type, the span of the KQL text it
came from, its compile-time value when known (``const``) and the column name it would get in
a projection when it is a plain column reference or a name-keeping function such as bin().
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlglot import exp

from ..errors import Span
from . import types as T
from .dialects.base import FUNCTIONS

NOCONST = object()


@dataclass(slots=True)
class Typed:
    sql: exp.Expression
    type: str
    span: Span | None = None
    const: object = NOCONST
    name: str | None = None

    @property
    def is_const(self) -> bool:
        return self.const is not NOCONST

    def with_sql(self, sql: exp.Expression, type: str | None = None) -> "Typed":
        return Typed(sql, type or self.type, self.span, NOCONST, self.name)


def ident(name: str) -> exp.Identifier:
    return exp.Identifier(this=name, quoted=True)


def col(name: str, table: str | None = None) -> exp.Column:
    if table:
        return exp.Column(this=exp.Identifier(this=name, quoted=True), table=exp.Identifier(this=table, quoted=True))
    return exp.Column(this=exp.Identifier(this=name, quoted=True))


def cast(e: exp.Expression, kql_type: str) -> exp.Expression:
    return exp.Cast(this=e, to=T.storage(kql_type))


def fn(f: str | type, *args: exp.Expression, **flags) -> exp.Expression:
    """A function call: ``f`` a sqlglot function node class (that typed node: the arguments in its
    ``arg_types`` order, ``flags`` its other arguments, e.g. ``ignore_nulls=True``) or a name of the
    planner's vocabulary (``dialects/base.FUNCTIONS``, for what sqlglot has no node for: each
    dialect spells it)."""
    if type(f) is str:
        if f not in FUNCTIONS:
            raise KeyError(f"{f!r} is not in the planner's vocabulary (kql/dialects/base.FUNCTIONS)")
        return exp.Anonymous(this=f, expressions=list(args))
    node = f.from_arg_list(list(args))
    for k, v in flags.items():
        node.set(k, v)
    return node


def from_microseconds(us: exp.Expression) -> exp.Expression:
    """The datetime ``us`` microseconds after 1970-01-01 (a whole number)."""
    return fn(exp.UnixToTime, us, exp.Literal.number(6))


def sql_literal(value, typ: str) -> exp.Expression:
    """The SQL for a KQL literal value (already validated)."""
    if value is None:
        return cast(exp.null(), typ)
    if typ == T.STRING:
        return exp.Literal.string(value)
    if typ in (T.LONG, T.TIMESPAN):
        v = int(value)
        lit = exp.Literal.number(abs(v))
        out = exp.Neg(this=lit) if v < 0 else lit
        return out if -2**31 <= v < 2**31 else cast(out, T.LONG)
    if typ == T.INT:
        v = int(value)
        return cast(exp.Neg(this=exp.Literal.number(-v)) if v < 0 else exp.Literal.number(v), T.INT)
    if typ == T.REAL:
        v = float(value)
        if v != v or v in (float("inf"), float("-inf")):
            return cast(exp.Literal.string({True: "nan"}.get(v != v, "inf" if v > 0 else "-inf")), T.REAL)
        text = repr(abs(v))
        lit = exp.Literal.number(text)
        return cast(exp.Neg(this=lit) if v < 0 or (v == 0 and str(v).startswith("-")) else lit, T.REAL)
    if typ == T.DECIMAL:
        return cast(exp.Literal.string(str(Decimal(value))), T.DECIMAL)
    if typ == T.BOOL:
        return exp.true() if value else exp.false()
    if typ == T.DATETIME:
        d: datetime = value
        return cast(exp.Literal.string(d.strftime("%Y-%m-%d %H:%M:%S.%f")), T.DATETIME)
    if typ == T.DYNAMIC:
        return cast(exp.Literal.string(json.dumps(value, default=str, separators=(",", ":"))), T.DYNAMIC)
    if typ == T.GUID:
        return cast(exp.Literal.string(str(uuid.UUID(str(value)))), T.GUID)
    raise ValueError(typ)


def const(value, typ: str, span: Span | None = None) -> Typed:
    return Typed(sql_literal(value, typ), typ, span, value)


def null(typ: str) -> Typed:
    return Typed(cast(exp.null(), typ), typ, None, None)


def json_key_path(key: str) -> str:
    """The DuckDB JSON path of a bag's key: $."key" with " and \\ escaped, or a JSON pointer for
    the empty key, which $."" cannot name."""
    if not key:
        return "/"
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
