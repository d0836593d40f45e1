"""evaluate pivot / narrow: a column's values turned into columns, and a table turned into rows.

T | evaluate pivot(pivotColumn [, aggregationFunction(column) [, column1, column2, ...]]) [: Schema]

One column per distinct value of pivotColumn (its text, as tostring gives it), after the grouping
columns: those listed, or else every column but the pivot column and the aggregated one. Each cell
is the aggregation (count() by default) over the rows of its group holding that value. The values
are read from the data at plan time (``pl.run``), in the order they first appear; an output schema
names them instead, and then nothing is read. A group without a value's rows gets 0 for count,
dcount and sum, an empty array or bag for make_list, make_set and make_bag, null otherwise. An
empty (or null) value names its column as an unnamed column is named (Column1, ...); a value equal
to a grouping column's name, or to an earlier value's column name, gets a number (Name1, ...).

T | evaluate narrow(): Row (the row's number from 0), Column (each column's name) and Value (the
cell as text: tostring, but bools as True/False and datetimes as yyyy-MM-dd HH:mm:ss.fffffff).
"""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from ..limits import MAX_PIVOT_COLUMNS
from . import syntax as s
from . import types as T
from .plan import Rel
from .planner import Planner
from .plugins import register
from .relations import aliased, next_column_name, scope_of
from .scalars import to_string
from .typed import Typed, cast, col, fn

N, L = exp.Literal.number, exp.Literal.string

# Kusto's aggregations for pivot -> the value of a cell no row reaches (None: null)
PIVOT_AGGREGATES = {"count": 0, "dcount": 0, "sum": 0, "min": None, "max": None, "take_any": None, "avg": None,
                    "stdev": None, "variance": None, "make_list": "[]", "make_set": "[]", "make_bag": "{}"}


def pivot(pl: Planner, rel: Rel, call: s.Call, schema: dict | None = None) -> Rel:
    if not call.args:
        raise KqlSemanticError("pivot() needs the column to pivot", call.span, code="KQL_ARGUMENTS",
                               hint="evaluate pivot(Column [, aggregation(column) [, column1, ...]])")
    key, *rest = call.args
    types = rel.types
    _column(key, types, "the column to pivot")
    # the aggregation may be left out: count(), and any arguments after the column are columns
    agg_node = rest.pop(0) if rest and not isinstance(rest[0], s.Name) else s.Call(call.span, "count", [], call.span)
    group_nodes = rest
    if not (isinstance(agg_node, s.Call) and agg_node.name in PIVOT_AGGREGATES):
        raise KqlSemanticError("pivot()'s second argument is its aggregation, one of "
                               + ", ".join(f"{a}()" for a in PIVOT_AGGREGATES), agg_node.span, code="KQL_ARGUMENTS")
    for g in group_nodes:
        _column(g, types, "a grouping column")
    if group_nodes:
        groups = [g.name for g in group_nodes]
    else:
        aggregated = _names(agg_node)
        groups = [c for c, _ in rel.cols if c != key.name and c not in aggregated]
    scope = scope_of(rel)
    agg = pl.scalar(agg_node, scope, agg=True)
    pv = pl.fresh("__pv")
    value = pl.fresh("__pa")
    # one row per group and value: the groups, the value's text, the aggregation
    by = [col(g) for g in groups] + [to_string(Typed(col(key.name), types[key.name])).sql]
    inner = Rel(pl.wrap(rel, [col(g) for g in groups] + [aliased(by[-1], pv), aliased(agg.sql, value)],
                        group=[b.copy() for b in by]),
                [(g, types[g]) for g in groups] + [(pv, T.STRING), (value, agg.type)], None, None)
    if schema is not None:
        values = [c for c, _ in schema["columns"] if c not in groups]
    else:
        values = _values(pl, rel, key.name, types[key.name], call)
    missing = PIVOT_AGGREGATES[agg_node.name]
    sel = [col(g) for g in groups]
    cols = [(g, types[g]) for g in groups]
    taken = set(groups)
    for v in values:
        name = _name(v, taken) if schema is None else v
        taken.add(name)
        cell = fn(exp.AnyValue, exp.Case(ifs=[exp.If(this=exp.EQ(this=col(pv), expression=L(v)), true=col(value))],
                                        default=exp.null()))
        if missing is not None:
            fill = N(missing) if isinstance(missing, int) else cast(L(missing), T.DYNAMIC)
            cell = exp.Coalesce(this=cell, expressions=[cast(fill, agg.type) if agg.type != T.DYNAMIC else fill])
        sel.append(aliased(cell, name))
        cols.append((name, agg.type))
    if not sel:
        raise KqlSemanticError("pivot() has nothing to give: no grouping column and no value to pivot",
                               call.span, code="KQL_ARGUMENTS")
    return Rel(pl.wrap(inner, sel, group=[col(g) for g in groups] or None), cols, None, rel.name)


def _column(node, types: dict, what: str) -> None:
    if not isinstance(node, s.Name):
        raise KqlSemanticError(f"pivot() takes a column name as {what}", node.span, code="KQL_ARGUMENTS")
    if node.name not in types:
        raise KqlSemanticError(f"pivot(): the input has no column '{node.name}'", node.span,
                               code="KQL_UNKNOWN_COLUMN", hint=f"its columns: {', '.join(types)}")


def _values(pl: Planner, rel: Rel, key: str, typ: str, call: s.Call) -> list[str]:
    """The pivot column's distinct values as text, in the order they first appear."""
    if pl.executor is None:
        raise KqlSemanticError("pivot() needs a workspace to read the pivot column's values (or an output "
                               "schema naming them)", call.span, code="KQL_UNSUPPORTED")
    v, rn = pl.fresh("__pv"), pl.fresh("__rn")
    numbered = exp.Select(expressions=[aliased(to_string(Typed(col(key), typ)).sql, v),
                                       aliased(_row_number(rel), rn)]).from_(
        rel.sql.subquery(pl.fresh(), copy=False), copy=False)
    q = exp.Select(expressions=[col(v)]).from_(numbered.subquery(pl.fresh(), copy=False), copy=False).group_by(
        col(v), copy=False).order_by(exp.Ordered(this=exp.Min(this=col(rn))), copy=False).limit(
        MAX_PIVOT_COLUMNS + 1, copy=False)
    values = [r[0] if r[0] is not None else "" for r in pl.run(q)]
    if len(values) > MAX_PIVOT_COLUMNS:
        raise KqlSemanticError(f"pivot(): the column '{key}' has more than {MAX_PIVOT_COLUMNS} distinct values, "
                               f"each of which would be a column", call.args[0].span, code="KQL_QUERY_TOO_COMPLEX",
                               hint="filter or summarize the rows first, or pivot a column with fewer values")
    return values


def _names(node) -> set:
    """The names an expression reads (the aggregated columns)."""
    if isinstance(node, s.Name):
        return {node.name}
    out = set()
    for f in getattr(node, "__slots__", ()):
        v = getattr(node, f, None)
        for x in (v if isinstance(v, list) else [v]):
            if isinstance(x, s.Node):
                out |= _names(x)
    return out


def _row_number(rel: Rel) -> exp.Window:
    """The rows' numbers from 1, in the rel's order (a sort's order lives in ``rel.order``)."""
    order = [o.copy() for o in rel.order] if rel.order else None
    return exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=order) if order else None)


def _name(value: str, taken: set) -> str:
    """A value's column name; names are compared without case (DuckDB binds names so)."""
    folded = {t.casefold() for t in taken}
    if value == "":
        return next_column_name(folded | taken)
    name, i = value, 1
    while name.casefold() in folded:
        name = f"{value}{i}"
        i += 1
    return name


# ---- narrow ----------------------------------------------------------------------------------

def _narrow_bool(x: Typed) -> exp.Expression:
    return exp.Case(ifs=[exp.If(this=x.sql, true=L("True")), exp.If(this=exp.Not(this=x.sql.copy()), true=L("False"))],
                    default=L(""))


def narrow(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    if call.args:
        raise KqlSemanticError("narrow() takes no arguments", call.args[0].span, code="KQL_ARGUMENTS")
    scope = scope_of(rel)
    row, i = pl.fresh("__row"), pl.fresh("__col")
    values = []
    for c, t in rel.cols:
        if t == T.BOOL:
            v = _narrow_bool(Typed(col(c), t))
        elif t == T.DATETIME:
            fmt = s.Literal(call.span, "yyyy-MM-dd HH:mm:ss.fffffff", T.STRING)
            v = pl.scalar(s.Call(call.span, "format_datetime", [s.Name(call.span, c), fmt], call.span), scope).sql
        else:
            v = to_string(Typed(col(c), t)).sql
        values.append(v)
    numbered = Rel(pl.wrap(rel, [exp.Star(), aliased(exp.Sub(this=_row_number(rel), expression=N(1)), row)]),
                   list(rel.cols) + [(row, T.LONG)], None, None)
    n = len(rel.cols)
    rows = [aliased(cast(col(row), T.LONG), "Row"),
            aliased(fn(exp.Explode, exp.Array(expressions=[L(c) for c, _ in rel.cols])), "Column"),
            aliased(fn(exp.Explode, exp.Array(expressions=values)), "Value"),
            aliased(fn(exp.Explode, exp.Array(expressions=[N(k) for k in range(n)])), i)]
    exploded = Rel(pl.wrap(numbered, rows), [("Row", T.LONG), ("Column", T.STRING), ("Value", T.STRING), (i, T.LONG)],
                   None, None)
    out = [col("Row"), col("Column"), col("Value")]
    return Rel(pl.wrap(exploded, out, order=[exp.Ordered(this=col("Row")), exp.Ordered(this=col(i))]),
               [("Row", T.LONG), ("Column", T.STRING), ("Value", T.STRING)], None, None)


register("pivot", pivot)
register("narrow", narrow)
