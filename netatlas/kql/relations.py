"""Small helpers over planned relations (``plan.Rel``) that the operator modules share
(operators.py, makeseries.py, plugins.py, autocluster.py): the scope of a relation, an aliased
column, the next free ColumnN name, whether an expression aggregates, a dynamic value cast for
mv-expand, a relation of literal rows."""
from __future__ import annotations

from sqlglot import exp

from . import types as T
from .plan import Rel
from .scalars import Scope
from .dialects.base import AGGREGATES as VOCABULARY_AGGREGATES
from .typed import cast, col, fn, ident

L = exp.Literal.string


def scope_of(rel: Rel, table: str | None = None) -> Scope:
    return Scope(dict(rel.cols), table, rel.order)


def aliased(e: exp.Expression, name: str) -> exp.Expression:
    if isinstance(e, exp.Column) and e.name == name and not e.table:
        return e
    return exp.Alias(this=e, alias=ident(name))


def next_column_name(taken) -> str:
    i = 1
    while f"Column{i}" in taken:
        i += 1
    return f"Column{i}"


def contains_aggregate(e: exp.Expression) -> bool:
    if isinstance(e, exp.AggFunc):
        return True
    for node in e.walk():
        if isinstance(node, exp.AggFunc) or (isinstance(node, exp.Anonymous) and node.name in VOCABULARY_AGGREGATES):
            return True
    return False


def mv_cast(e: exp.Expression, to: str) -> exp.Expression:
    if to == T.DYNAMIC:
        return e
    if to == T.STRING:
        return exp.Coalesce(this=fn("netatlas_dynamic_str", e), expressions=[L("")])
    if to in (T.DATETIME, T.BOOL, T.GUID):
        return exp.TryCast(this=fn("json_text_at", e, L("$")), to=T.storage(to))
    if to == T.TIMESPAN:
        return fn("netatlas_totimespan", fn("json_text_at", e, L("$")))
    # numbers: only JSON numbers convert ("2" as a JSON string does not)
    is_number = exp.In(this=fn(exp.JSONType, e), expressions=[L("BIGINT"), L("UBIGINT"), L("DOUBLE")])
    return exp.Case(ifs=[exp.If(this=is_number, true=exp.TryCast(this=e.copy(), to=T.storage(to)))], default=exp.null())


def values_rel(pl, rows: list[exp.Tuple], cols: list[tuple[str, str]]) -> Rel:
    if not rows:
        sel = exp.Select(expressions=[aliased(cast(exp.null(), t), c) for c, t in cols]).where(exp.false())
        return Rel(sel, cols, None)
    alias = pl.fresh("_v")
    values = exp.Values(expressions=rows, alias=exp.TableAlias(this=ident(alias), columns=[ident(c) for c, _ in cols]))
    sel = exp.Select(expressions=[col(c) for c, _ in cols]).from_(values, copy=False)
    return Rel(sel, cols, None)
