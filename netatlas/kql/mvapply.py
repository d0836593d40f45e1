"""mv-apply: a subquery applied to the expanded arrays of each input record (its subtable), the
record's other columns beside each row the subquery gives.

One stream, no join back: the records are numbered, expanded as mv-expand does (with the element's
place), and the subtable carries hidden columns through the subquery: the record's number, its other
columns, the row's place in its subtable and a deleted flag. Each subquery operator is applied per
record: ``where`` and ``take`` flag rows as deleted instead of dropping them, so that a summarize
without ``by`` still gives its one row for a subtable they emptied (its aggregates FILTERed to the
rows left); ``top`` and ``sort`` number the rows within their record; ``summarize`` groups by the
record too; ``make_list`` and the like follow the places. An operator that cannot be applied per
record this way (joins, row windows such as prev(), ...) is refused (KQL_NOT_SUPPORTED).
"""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .aggregates import ARG_EXTREMES
from .operators import (OPERATORS, limit_value, op_mv_expand, op_project, op_summarize, select_all, sort_keys)
from .plan import OPERATORS as _OPERATORS, Rel
from .planner import Planner
from .relations import aliased, contains_aggregate, scope_of
from .scalars import to_bool
from .typed import cast, col, fn, sql_literal

N, L = exp.Literal.number, exp.Literal.string

# operators applied as they are: they neither drop nor order rows (a new row window is refused)
AS_IS = {"extend", "project-rename", "project-reorder", "project-away", "project-keep", "parse", "serialize"}


class Sub:
    """The hidden columns of one mv-apply's subtable."""

    def __init__(self, pl: Planner, outer: list[tuple[str, str]]):
        h = pl.fresh("__mva")
        self.id, self.pos, self.deleted = h + "_id", h + "_pos", h + "_del"
        self.outer = [(c, f"{h}_o{i}", t) for i, (c, t) in enumerate(outer)]   # (name, hidden name, type)

    def record(self) -> list[str]:
        """The columns naming a record: its number and its other columns."""
        return [self.id] + [h for _, h, _ in self.outer]

    def hidden(self) -> list[str]:
        return self.record() + [self.pos, self.deleted]


def op_mv_apply(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    params = dict(op.args["params"])
    itemindex = params.pop("with_itemindex", (None, None))[0]
    if params:
        name, (_, span) = next(iter(params.items()))
        raise KqlSemanticError(f"mv-apply takes no parameter '{name}'", span, code="KQL_ARGUMENTS")
    # 1. the records, numbered in their order (the serialized one when there is one)
    order = [o.copy() for o in rel.order] if rel.order else None
    idname = pl.fresh("__mva_n")
    number = exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=order) if order else None)
    records = Rel(pl.wrap(rel, [exp.Star(), aliased(number, idname)]), list(rel.cols) + [(idname, T.LONG)],
                   rel.order, rel.name, rel.serialized)
    # 2. expanded as mv-expand does, with each element's place
    place = pl.fresh("__mva_p")
    expand = s.Operator(op.span, "mv-expand", {"params": {"with_itemindex": (place, op.span)},
                                               "items": op.args["items"], "limit": op.args["limit"]})
    expanded = op_mv_expand(pl, records, expand)
    new = [a.names[0] if a.names else a.expr.name for a, _ in op.args["items"]]   # mv-expand named each
    outer = [(c, t) for c, t in rel.cols if c not in new]
    sub = Sub(pl, outer)
    if itemindex and (itemindex in new or itemindex in rel.types):
        raise KqlSemanticError(f"with_itemindex names a column that is there already: '{itemindex}'",
                               op.args["params"]["with_itemindex"][1], code="KQL_ARGUMENTS")
    # 3. the subtable: the record with its expanded columns (and the element's place as the item
    # index); hidden, the record's other columns again (a subquery may drop or change them), its
    # number, the row's place and whether it is deleted
    visible = [(c, t) for c, t in expanded.cols if c not in (idname, place)]
    sel = [col(c) for c, _ in visible]
    cols = list(visible)
    if itemindex:
        sel.append(aliased(col(place), itemindex))
        cols.append((itemindex, T.LONG))
    sel += [aliased(col(c), h) for c, h, _ in sub.outer]
    cols += [(h, t) for _, h, t in sub.outer]
    sel += [aliased(col(idname), sub.id), aliased(col(place), sub.pos), aliased(exp.false(), sub.deleted)]
    cols += [(sub.id, T.LONG), (sub.pos, T.LONG), (sub.deleted, T.BOOL)]
    cur = Rel(pl.wrap(expanded, sel), cols, None, None)
    # 4. the subquery, per record
    for sop in op.args["subquery"]:
        pl.step()
        cur = apply(pl, cur, sop, sub)
        missing = [h for h in sub.hidden() if h not in cur.types]
        if missing:
            raise KqlSemanticError(f"mv-apply's subquery cannot keep its records apart through this '{sop.name}' "
                                   "in netatlas", sop.span, code="KQL_NOT_SUPPORTED")
    # 5. the records' other columns the subquery did not keep, then the subquery's (as mv-expand's
    # order when it kept them all), in the records' order and each subtable's
    hidden = set(sub.hidden())
    result = [(c, t) for c, t in cur.cols if c not in hidden]
    kept = {c for c, _ in result}
    sel = [aliased(col(h), c) for c, h, _ in sub.outer if c not in kept] + [col(c) for c, _ in result]
    out_cols = [(c, t) for c, _, t in sub.outer if c not in kept] + result
    sql = pl.wrap(cur, sel, where=exp.Not(this=col(sub.deleted)),
                  order=[exp.Ordered(this=col(sub.id)), exp.Ordered(this=col(sub.pos))])
    return Rel(sql, out_cols, None, None)


def new_windows(before: Rel, after: Rel) -> bool:
    return len(list(after.sql.find_all(exp.Window))) > len(list(before.sql.find_all(exp.Window)))


def refuse(sop: s.Operator, why: str = ""):
    raise KqlSemanticError(f"mv-apply's subquery cannot apply '{sop.name}' to each record in netatlas{why}",
                           sop.span, code="KQL_NOT_SUPPORTED",
                           hint="its subquery may use where, extend, project (-away, -keep, -rename, -reorder), "
                                "parse, mv-expand, summarize, count, take, top and sort")


def replaced(pl: Planner, rel: Rel, new: dict, where: exp.Expression | None = None) -> Rel:
    """rel with the columns in ``new`` ({name: sql}) computed anew, in place."""
    sel = [aliased(new[c], c) if c in new else col(c) for c, _ in rel.cols]
    return Rel(pl.wrap(rel, sel, where=where), list(rel.cols), None, None)


def with_column(pl: Planner, rel: Rel, name: str, sql: exp.Expression, typ: str) -> Rel:
    return Rel(pl.wrap(rel, select_all(rel) + [aliased(sql, name)]), list(rel.cols) + [(name, typ)], None, None)


def without(pl: Planner, rel: Rel, name: str) -> Rel:
    cols = [(c, t) for c, t in rel.cols if c != name]
    return Rel(pl.wrap(rel, [col(c) for c, _ in cols]), cols, None, None)


def numbered(sub: Sub, keys: list[exp.Ordered]) -> exp.Expression:
    """Each row's place among the rows of its record that are not deleted, in the order of keys."""
    return exp.Window(this=exp.RowNumber(), partition_by=[col(sub.id), col(sub.deleted)],
                      order=exp.Order(expressions=keys + [exp.Ordered(this=col(sub.pos))]))


def apply(pl: Planner, cur: Rel, sop: s.Operator, sub: Sub) -> Rel:
    name = sop.name
    if name == "where":
        scope = scope_of(cur)
        pred = to_bool(pl.scalar(sop.args["predicate"], scope))
        if scope.pre or any(True for _ in pred.sql.find_all(exp.Window)):
            refuse(sop, " (a row window, such as prev() or row_number(), would cross records)")
        keep = exp.Coalesce(this=pred.sql, expressions=[exp.false()])
        return replaced(pl, cur, {sub.deleted: exp.or_(col(sub.deleted), exp.Not(this=exp.Paren(this=keep)))})
    if name in ("take", "top", "order"):
        keys = sort_keys(pl, cur, sop.args["keys"]) if name != "take" else []
        rn = pl.fresh("__mva_rn")
        cur = with_column(pl, cur, rn, numbered(sub, keys), T.LONG)
        new = {}
        if name != "order":
            n = limit_value(pl, sop.args["count"])
            new[sub.deleted] = exp.or_(col(sub.deleted), exp.GT(this=col(rn), expression=n))
        if name != "take":
            new[sub.pos] = col(rn)
        return without(pl, replaced(pl, cur, new), rn)
    if name == "project":
        items = list(sop.args["items"]) + [s.Assign(sop.span, None, s.Name(sop.span, h)) for h in sub.hidden()]
        out = op_project(pl, cur, s.Operator(sop.span, "project", {**sop.args, "items": items}))
        if new_windows(cur, out):
            refuse(sop, " (a row window, such as prev() or row_number(), would cross records)")
        return Rel(out.sql, out.cols, None, None)
    if name == "count":
        agg = s.Assign(sop.span, ["Count"], s.Call(sop.span, "count", [], sop.span))
        return summarize(pl, cur, s.Operator(sop.span, "summarize", {"aggs": [agg], "by": [], "params": {}}), sub)
    if name == "summarize":
        return summarize(pl, cur, sop, sub)
    if name == "mv-expand":
        params = dict(sop.args["params"])
        j = params.get("with_itemindex", (None, None))[0]
        drop = j is None
        if drop:
            j = pl.fresh("__mva_j")
            params["with_itemindex"] = (j, sop.span)
        # a row whose arrays are all empty would vanish, and with it maybe its record's every row (a
        # summarize without by still owes that record its row): it expands to one null row, deleted
        bagexp = params.get("bagexpansion", params.get("kind", ("bag", None)))[0]
        scope = scope_of(cur)
        items, values, empties = [], {}, []
        for a, to in sop.args["items"]:
            t = pl.scalar(a.expr, scope)
            name = a.names[0] if a.names else t.name
            if name is None or t.type != T.DYNAMIC:
                items = None            # mv-expand says what is wrong
                break
            h = pl.fresh("__mva_x")
            values[h] = t.sql
            empties.append(exp.EQ(this=fn("list_length", fn("netatlas_mv_list", t.sql.copy(), L(bagexp))),
                                  expression=N(0)))
            items.append((s.Assign(a.span, [name], s.Name(a.span, h)), to))
        if items is not None:
            empty = exp.and_(*empties)
            sel = [aliased(exp.or_(col(sub.deleted), exp.Paren(this=empty)), c) if c == sub.deleted else col(c)
                   for c, _ in cur.cols]
            sel += [aliased(exp.Case(ifs=[exp.If(this=empty.copy(), true=cast(exp.null(), T.DYNAMIC))], default=v), h)
                    for h, v in values.items()]
            cur = Rel(pl.wrap(cur, sel), list(cur.cols) + [(h, T.DYNAMIC) for h in values], None, None)
        out = op_mv_expand(pl, cur, s.Operator(sop.span, "mv-expand", {**sop.args, "params": params,
                                                                      **({"items": items} if items else {})}))
        for h in values:
            if h in out.types:
                out = without(pl, out, h)
        out = Rel(out.sql, out.cols, None, None)
        # the places in the record again: the row's, then the element's
        place = exp.Window(this=exp.RowNumber(), partition_by=[col(sub.id)],
                           order=exp.Order(expressions=[exp.Ordered(this=col(sub.pos)), exp.Ordered(this=col(j))]))
        out = replaced(pl, out, {sub.pos: place})
        return without(pl, out, j) if drop else out
    if name in AS_IS:
        out = OPERATORS[name](pl, cur, sop)
        if new_windows(cur, out):
            refuse(sop, " (a row window, such as prev() or row_number(), would cross records)")
        return Rel(out.sql, out.cols, None, None)
    refuse(sop)


def summarize(pl: Planner, cur: Rel, sop: s.Operator, sub: Sub) -> Rel:
    for it in sop.args["aggs"]:
        if isinstance(it.expr, s.Call) and it.expr.name in ARG_EXTREMES:
            refuse(sop, f" ({it.expr.name}() is not applied per record yet)")
    record = [s.Assign(sop.span, None, s.Name(sop.span, h)) for h in sub.record()]
    grouped = bool(sop.args["by"])
    if grouped:
        # groups of the rows left: a record whose rows were all deleted has none, as summarize by gives
        cur = Rel(pl.wrap(cur, select_all(cur), where=exp.Not(this=col(sub.deleted))), list(cur.cols), None, None)
    out = op_summarize(pl, cur, s.Operator(sop.span, "summarize", {**sop.args, "by": list(sop.args["by"]) + record}))
    select = out.sql
    if not isinstance(select, exp.Select) or not select.args.get("group"):
        refuse(sop)
    user_by = {c for c, _ in out.cols[:len(sop.args["by"])]}
    for e in select.expressions:
        alias = e.alias if isinstance(e, exp.Alias) else None
        if alias in user_by or alias in sub.record():
            continue
        body = e.this if isinstance(e, exp.Alias) else e
        ordered_lists(body, sub)
        if not grouped:
            # a record's one row: its aggregates over the rows left (none: as over no rows at all)
            body = filtered(body, sub)
            if isinstance(_agg(body), exp.Sum):
                body = exp.Coalesce(this=body, expressions=[N(0)])      # sum over no rows is 0
            elif isinstance(_agg(body), exp.Avg) and dict(out.cols).get(alias) == T.REAL:
                body = exp.Coalesce(this=body, expressions=[sql_literal(float("nan"), T.REAL)])
            if isinstance(e, exp.Alias):
                e.set("this", body)
            else:
                e.replace(body)
    out = Rel(out.sql, out.cols, None, None)
    out = with_column(pl, out, sub.pos, exp.Cast(this=N(0), to=exp.DataType.build("BIGINT")), T.LONG)
    return with_column(pl, out, sub.deleted, exp.false(), T.BOOL)


def _agg(e: exp.Expression) -> exp.Expression:
    e = e.this if isinstance(e, exp.Cast) else e
    return e.this if isinstance(e, exp.Filter) else e


def _is_aggregate(node: exp.Expression) -> bool:
    return contains_aggregate(node) and (isinstance(node, exp.AggFunc) or (
        isinstance(node, exp.Anonymous) and not any(contains_aggregate(a) for a in node.expressions)))


UNORDERED = {"netatlas_make_set_dynamic", "netatlas_make_bag"}   # sets and bags: no order to keep


def ordered_lists(body: exp.Expression, sub: Sub) -> None:
    """collect_list(x) -> collect_list(x ORDER BY place): make_list and the like follow the subtable."""
    for node in list(body.find_all(exp.Anonymous)):
        parent = node.parent.parent if isinstance(node.parent, exp.Filter) else node.parent
        if isinstance(parent, exp.Anonymous) and parent.name in UNORDERED:
            continue
        if node.name == "collect_list" and node.expressions and not isinstance(node.expressions[0], (exp.Order, exp.Distinct)):
            node.set("expressions", [exp.Order(this=node.expressions[0],
                                               expressions=[exp.Ordered(this=col(sub.pos))])])


def filtered(body: exp.Expression, sub: Sub) -> exp.Expression:
    """Each aggregate of body counting only the rows not deleted."""
    keep = exp.Not(this=col(sub.deleted))
    targets = []

    def find(node):
        if isinstance(node, exp.Filter) or _is_aggregate(node):
            targets.append(node)
            return
        for child in node.iter_expressions():
            find(child)

    find(body)
    for t in targets:
        if isinstance(t, exp.Filter):
            t.set("expression", exp.Where(this=exp.and_(exp.Paren(this=t.expression.this), keep.copy())))
            continue
        new = exp.Filter(this=t.copy(), expression=exp.Where(this=keep.copy()))
        if t is body:
            body = new
        else:
            t.replace(new)
    return body


OPERATORS["mv-apply"] = op_mv_apply
_OPERATORS["mv-apply"] = op_mv_apply
