"""Plan stage: the two operators that aggregate into shapes SQL has no word for.

make-series: a grid of (group, bin) cells, left-joined with the aggregates and folded into one
array per aggregate, ordered by bin. top-nested: one ranked GROUP BY per level, joined on the
keys of the levels above.
"""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .plan import Rel
from .planner import Planner
from .relations import aliased, contains_aggregate, next_column_name, scope_of
from .scalars import binary, unify
from .typed import Typed, cast, col, const, fn

N = exp.Literal.number
L = exp.Literal.string


def _null_safe_eq(a, b):
    return exp.NullSafeEQ(this=a, expression=b)


def make_series(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    args = op.args
    scope = scope_of(rel)
    axis = pl.scalar(args["on"], scope)
    if axis.type not in (T.DATETIME,) + T.NUMERIC:
        raise KqlSemanticError(f"make-series needs a datetime or numeric axis, not {axis.type}", args["on"].span,
                               code="KQL_TYPE")
    axis_name = axis.name or "Column1"
    step = pl.scalar(args["step"], scope)
    by = []
    for it in args["by"]:
        t = pl.scalar(it.expr, scope)
        by.append((it.names[0] if it.names else (t.name or next_column_name({n for n, _ in by})), t))
    aggs = []
    taken = {n for n, _ in by} | {axis_name}
    for a, default in args["aggs"]:
        t = pl.scalar(a.expr, scope, agg=True)
        if not contains_aggregate(t.sql):
            raise KqlSemanticError("make-series needs an aggregation here", a.expr.span, code="KQL_ARGUMENTS")
        name = a.names[0] if a.names else (t.name or next_column_name(taken))
        taken.add(name)
        d = pl.scalar(default, scope) if default is not None else const(0, T.LONG)
        if t.type in T.NUMERIC and d.type in T.NUMERIC:
            rtype = T.promote(t.type, d.type)
            dv = cast(d.sql, rtype)
        else:
            rtype = t.type
            dv = unify(d, Typed(exp.null(), t.type), d.span, "default")[0].sql if d.type != t.type else d.sql
        aggs.append((name, t, dv, rtype))

    def bound(node, fallback):
        if node is not None:
            v = pl.scalar(node, scope)
            return unify(v, axis, v.span, "compare (make-series range)")[0] if v.type != axis.type else v
        return fallback

    src = pl.finish(rel).subquery(pl.fresh(), copy=False)
    minq = exp.Subquery(this=exp.Select(expressions=[exp.Min(this=axis.sql.copy())]).from_(src.copy(), copy=False))
    maxq = exp.Subquery(this=exp.Select(expressions=[exp.Max(this=axis.sql.copy())]).from_(src.copy(), copy=False))
    start = bound(args["from"], None)
    if start is None:
        from .functions.datetime import _bin
        start = _bin(Typed(minq, axis.type), step)
    stop = bound(args["to"], None)
    if stop is None:
        stop = binary("+", Typed(maxq, axis.type), step, op.span)
    from .functions.datetime import _bin
    binned = _bin(axis, step, start)
    keys = [(n, t) for n, t in by]
    # aggregated cells
    agg_sel = [aliased(t.sql, f"__k{i}") for i, (_, t) in enumerate(keys)] + [aliased(binned.sql, "__bin")]
    agg_sel += [aliased(t.sql, f"__a{i}") for i, (_, t, _, _) in enumerate(aggs)]
    inrange = exp.And(this=exp.GTE(this=axis.sql.copy(), expression=start.sql.copy()),
                      expression=exp.LT(this=axis.sql.copy(), expression=stop.sql.copy()))
    cells = pl.wrap(rel, agg_sel, where=inrange, group=[t.sql.copy() for _, t in keys] + [binned.sql.copy()])
    # the grid: every group key present in the input times every bin
    if keys:
        kq = pl.wrap(rel, [aliased(t.sql.copy(), f"__k{i}") for i, (_, t) in enumerate(keys)], distinct=True)
    else:
        kq = exp.Select(expressions=[aliased(N(1), "__one")])
    if axis.type == T.DATETIME:
        series = fn(exp.GenerateSeries, start.sql.copy(), stop.sql.copy(),
                    fn("microseconds", exp.IntDiv(this=step.sql.copy(), expression=N(10))))
    else:
        series = fn(exp.GenerateSeries, start.sql.copy(), stop.sql.copy(), step.sql.copy())
    grid_inner = exp.Select(expressions=[exp.Star(), aliased(fn(exp.Explode, series), "__bin")]).from_(
        kq.subquery(pl.fresh(), copy=False), copy=False)
    grid = exp.Select(expressions=[exp.Star()]).from_(grid_inner.subquery(pl.fresh(), copy=False), copy=False).where(
        exp.LT(this=col("__bin"), expression=stop.sql.copy()), copy=False)
    on = exp.EQ(this=col("__bin", "_g"), expression=col("__bin", "_c"))
    for i in range(len(keys)):
        on = exp.And(this=on, expression=_null_safe_eq(col(f"__k{i}", "_g"), col(f"__k{i}", "_c")))
    order = exp.Order(expressions=[exp.Ordered(this=col("__bin", "_g"))])
    sel = [aliased(col(f"__k{i}", "_g"), n) for i, (n, _) in enumerate(keys)]
    for i, (n, t, dv, rtype) in enumerate(aggs):
        v = exp.Coalesce(this=cast(col(f"__a{i}", "_c"), rtype) if rtype != t.type else col(f"__a{i}", "_c"), expressions=[dv])
        sel.append(aliased(_json_list_ordered(v, order.copy()), n))
    if axis.type == T.DATETIME:
        shown = exp.DPipe(this=fn(exp.TimeToStr, col("__bin", "_g"), L("%Y-%m-%dT%H:%M:%S.%f")), expression=L("0Z"))
    else:
        shown = col("__bin", "_g")
    sel.append(aliased(_json_list_ordered(shown, order.copy()), axis_name))
    q = exp.Select(expressions=sel).from_(grid.subquery("_g", copy=False), copy=False)
    q.set("joins", [exp.Join(this=cells.subquery("_c", copy=False), on=on, side="LEFT", kind="OUTER")])
    if keys:
        q = q.group_by(*[col(f"__k{i}", "_g") for i in range(len(keys))], copy=False)
    cols = [(n, t.type) for n, t in keys] + [(n, T.DYNAMIC) for n, *_ in aggs] + [(axis_name, T.DYNAMIC)]
    return Rel(q, cols, None, None)


def _json_list_ordered(value: exp.Expression, order: exp.Order) -> exp.Expression:
    agg = fn("collect_list", exp.Order(this=value, expressions=order.expressions))
    return exp.Coalesce(this=cast(fn("as_json", agg), T.DYNAMIC), expressions=[cast(L("[]"), T.DYNAMIC)])


def top_nested(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    scope = scope_of(rel)
    levels = []
    taken: set[str] = set()
    nlevels = len(op.args["levels"])
    for li, lv in enumerate(op.args["levels"]):
        others = None
        if lv["others"] is not None:
            if li != nlevels - 1:
                raise KqlSemanticError("top-nested 'with others' is supported on the last level only",
                                       lv["others"].span, code="KQL_UNSUPPORTED")
            others = pl.scalar(lv["others"], scope)
        k = pl.scalar(lv["of"].expr, scope)
        kname = lv["of"].names[0] if lv["of"].names else (k.name or next_column_name(taken))
        taken.add(kname)
        a = pl.scalar(lv["by"].expr, scope, agg=True)
        aname = lv["by"].names[0] if lv["by"].names else f"aggregated_{kname}"
        taken.add(aname)
        n = None
        if lv["count"] is not None:
            c = pl.scalar(lv["count"], scope)
            n = int(c.const) if c.is_const and c.const is not None else None
        levels.append((kname, k, aname, a, n, lv["desc"]))
    parts = []
    for i, (kname, k, aname, a, n, desc) in enumerate(levels):
        group = [lv[1] for lv in levels[: i + 1]]
        sel = [aliased(g.sql.copy(), f"__k{j}") for j, g in enumerate(group)] + [aliased(a.sql.copy(), "__a")]
        g = pl.wrap(rel, sel, group=[x.sql.copy() for x in group])
        if n is not None:
            win = exp.Window(this=exp.RowNumber(), partition_by=[col(f"__k{j}") for j in range(i)] or None,
                             order=exp.Order(expressions=[exp.Ordered(this=col("__a"), desc=desc, nulls_first=not desc)]))
            if others is not None and i == len(levels) - 1:
                g = _with_others(pl, rel, group, a, win, n, others, i)
            else:
                g = exp.Select(expressions=[exp.Star()]).from_(g.subquery(pl.fresh(), copy=False), copy=False)
                g.set("qualify", exp.Qualify(this=exp.LTE(this=win, expression=N(n))))
        parts.append(g)
    q = exp.Select(expressions=[]).from_(parts[0].subquery("_t0", copy=False), copy=False)
    joins = []
    for i in range(1, len(parts)):
        on = None
        for j in range(i):
            c = _null_safe_eq(col(f"__k{j}", f"_t{i - 1}"), col(f"__k{j}", f"_t{i}"))
            on = c if on is None else exp.And(this=on, expression=c)
        joins.append(exp.Join(this=parts[i].subquery(f"_t{i}", copy=False), on=on, kind="INNER"))
    q.set("joins", joins)
    sel, cols = [], []
    for i, (kname, k, aname, a, n, desc) in enumerate(levels):
        sel.append(aliased(col(f"__k{i}", f"_t{i}"), kname))
        sel.append(aliased(col("__a", f"_t{i}"), aname))
        cols += [(kname, k.type), (aname, a.type)]
    q.set("expressions", sel)
    return Rel(q, cols, None, None)


def _with_others(pl: Planner, rel: Rel, group, agg, win, n, others, i):
    """The last level with 'with others': rows outside the top n fold into one row keyed by the others value."""
    ranked = pl.wrap(rel, [aliased(g.sql.copy(), f"__k{j}") for j, g in enumerate(group)] + [aliased(agg.sql.copy(), "__a")],
                     group=[x.sql.copy() for x in group])
    ranked = exp.Select(expressions=[col(f"__k{j}") for j in range(len(group))] + [aliased(win, "__r")]).from_(
        ranked.subquery(pl.fresh(), copy=False), copy=False)
    # raw rows with their group's rank
    raw_sel = [aliased(g.sql.copy(), f"__k{j}") for j, g in enumerate(group)] + [col(c) for c, _ in rel.cols]
    raw = pl.wrap(rel, raw_sel)
    on = None
    for j in range(len(group)):
        c = _null_safe_eq(col(f"__k{j}", "_raw"), col(f"__k{j}", "_rk"))
        on = c if on is None else exp.And(this=on, expression=c)
    eff = exp.Case(ifs=[exp.If(this=exp.LTE(this=col("__r", "_rk"), expression=N(n)), true=col(f"__k{i}", "_raw"))],
                   default=others.sql.copy())
    joined_sel = [col(f"__k{j}", "_raw") for j in range(i)] + [aliased(eff, f"__k{i}")] + \
        [col(c, "_raw") for c, _ in rel.cols]
    joined = exp.Select(expressions=joined_sel).from_(raw.subquery("_raw", copy=False), copy=False)
    joined.set("joins", [exp.Join(this=ranked.subquery("_rk", copy=False), on=on, kind="INNER")])
    inner = Rel(joined, [(f"__k{j}", g.type) for j, g in enumerate(group)] + list(rel.cols))
    return pl.wrap(inner, [col(f"__k{j}") for j in range(len(group))] + [aliased(agg.sql.copy(), "__a")],
                   group=[col(f"__k{j}") for j in range(len(group))])
