"""Small helpers over planned relations (``plan.Rel``) that the operator modules share
(operators.py, makeseries.py, plugins.py, autocluster.py): the scope of a relation, an aliased
column, the next free ColumnN name, whether an expression aggregates, a dynamic value cast for
mv-expand, a relation of literal rows, a plugin's constant arguments."""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
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


def constant_args(pl, rel: Rel, args: list, names: tuple, plugin: str, before: int = 0) -> dict:
    """A plugin's constant arguments, by position (in the order of ``names``) and by name:
    name -> (value, span); a dynamic constant is its JSON value. ``before``: the arguments ahead of
    these (bag_unpack's column), counted in the error that says how many there may be."""
    import json
    out: dict = {}
    for i, a in enumerate(args):
        if isinstance(a, s.Assign):
            name = a.names[0] if a.names else ""
            if name not in names:
                raise KqlSemanticError(f"{plugin}() has no argument '{name}'", a.span, code="KQL_ARGUMENTS",
                                       hint=f"its arguments: {', '.join(names)}")
            value = a.expr
        else:
            if i >= len(names):
                raise KqlSemanticError(f"{plugin}() takes at most {len(names) + before} arguments", a.span,
                                       code="KQL_ARGUMENTS")
            name, value = names[i], a
        v = pl.scalar(value, scope_of(rel))
        if not v.is_const:
            raise KqlSemanticError(f"{plugin}(): {name} must be a constant", value.span, code="KQL_ARGUMENTS")
        c = v.const
        if isinstance(c, str) and v.type == T.DYNAMIC:
            c = json.loads(c)
        out[name] = (c, value.span)
    return out
