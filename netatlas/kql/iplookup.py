"""evaluate ipv4_lookup / ipv6_lookup: each input row with the rows of a lookup table whose IP key
matches its own (as ipv4_is_match / ipv6_is_match: either side may be a prefix, the shorter prefix
decides), and equal extra keys.

T | evaluate ipv4_lookup(LookupTable, SourceKey, LookupKey [, ExtraKey ...] [, return_unmatched])

The output is T's columns, then the lookup table's (its extra keys once, from T; a name T has too
gets a number, as join's right side does); every matching lookup row gives a row. With
return_unmatched, an input row no lookup row matches stays, its lookup columns empty ("" for
strings): the lookup side has one more row, all null and flagged, that only such an input row keeps
(one pass, no join back: the input rows are numbered once, before the join).
"""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .plan import Rel
from .planner import Planner
from .plugins import register
from .relations import aliased, scope_of
from .scalars import Scope
from .typed import cast, col

N, L = exp.Literal.number, exp.Literal.string


def _qualified(name: str, table: str) -> exp.Column:
    c = col(name)
    c.set("table", exp.to_identifier(table))
    return c


def ip_lookup(version: int):
    fname = f"ipv{version}_lookup"
    match = f"ipv{version}_is_match"

    def plugin(pl: Planner, rel: Rel, call: s.Call) -> Rel:
        args = list(call.args)
        unmatched = False
        if args and isinstance(args[-1], s.Assign):
            a = args.pop()
            if a.names != ["return_unmatched"]:
                raise KqlSemanticError(f"{fname}() has no parameter '{'/'.join(a.names or [])}'", a.span,
                                       code="KQL_ARGUMENTS", hint="its named parameter is return_unmatched")
            unmatched = _flag(pl, a.expr, fname)
        elif len(args) > 3 and not isinstance(args[-1], s.Name):
            unmatched = _flag(pl, args.pop(), fname)
        if len(args) < 3:
            raise KqlSemanticError(f"{fname}() needs a lookup table, the input's IP column and the lookup table's",
                                   call.span, code="KQL_ARGUMENTS")
        table, src_key, lk_key, *extras = args
        lookup = pl.tab(table)
        for node, where, what in [(src_key, rel, "the input"), (lk_key, lookup, "the lookup table")] + \
                [(e, r, w) for e in extras for r, w in ((rel, "the input"), (lookup, "the lookup table"))]:
            if not isinstance(node, s.Name):
                raise KqlSemanticError(f"{fname}() takes column names here", node.span, code="KQL_ARGUMENTS")
            if node.name not in where.types:
                raise KqlSemanticError(f"{fname}(): {what} has no column '{node.name}'", node.span,
                                       code="KQL_UNKNOWN_COLUMN", hint=f"its columns: {', '.join(where.names())}")
        for node, where in ((src_key, rel), (lk_key, lookup)):
            if where.types[node.name] != T.STRING:
                raise KqlSemanticError(f"{fname}() matches IP addresses as strings, but '{node.name}' is "
                                       f"{where.types[node.name]}", node.span, code="KQL_TYPE")
        for e in extras:
            if rel.types[e.name] != lookup.types[e.name]:
                raise KqlSemanticError(f"{fname}(): the extra key '{e.name}' is {rel.types[e.name]} in the input but "
                                       f"{lookup.types[e.name]} in the lookup table", e.span, code="KQL_TYPE")
        extra = [e.name for e in extras]
        # the lookup side: its columns renamed apart from the input's, a flag for the all-null row
        hid = {c: pl.fresh("__lk") for c, _ in lookup.cols}
        flag = pl.fresh("__lk_null")
        right_sql = pl.wrap(lookup, [aliased(col(c), hid[c]) for c, _ in lookup.cols] + [aliased(exp.false(), flag)])
        if unmatched:
            empty = exp.Select(expressions=[aliased(cast(exp.null(), t), hid[c]) for c, t in lookup.cols]
                               + [aliased(exp.true(), flag)])
            right_sql = exp.Union(this=right_sql, expression=empty, distinct=False)
        left = rel
        rid = pl.fresh("__lk_row")
        if unmatched:
            left = Rel(pl.wrap(rel, [exp.Star(), aliased(exp.Window(this=exp.RowNumber()), rid)]),
                       list(rel.cols) + [(rid, T.LONG)], None, None)
        sel = [aliased(_qualified(c, "_l"), c) for c, _ in left.cols] + \
              [aliased(_qualified(hid[c], "_r"), hid[c]) for c, _ in lookup.cols] + [aliased(_qualified(flag, "_r"), flag)]
        cross = exp.Select(expressions=sel).from_(left.sql.subquery("_l", copy=False), copy=False)
        cross.set("joins", [exp.Join(this=exp.Subquery(this=right_sql, alias=exp.TableAlias(this=exp.to_identifier("_r"))),
                                     kind="CROSS")])
        xcols = list(left.cols) + [(hid[c], t) for c, t in lookup.cols] + [(flag, T.BOOL)]
        x = Rel(cross, xcols, None, None)
        # the match: the IP keys, then the extra keys equal
        span = call.span
        m = pl.scalar(s.Call(span, match, [s.Name(span, src_key.name), s.Name(span, hid[lk_key.name])], span),
                      scope_of(x)).sql
        for k in extra:
            m = exp.and_(m, exp.EQ(this=col(k), expression=col(hid[k])))
        m = exp.Coalesce(this=exp.Paren(this=m), expressions=[exp.false()])
        # the output: the input's columns, then the lookup table's but its extra keys
        taken = set(rel.names())
        out_sel = [col(c) for c, _ in rel.cols]
        out_cols = list(rel.cols)
        for c, t in lookup.cols:
            if c in extra:
                continue
            name = c
            i = 1
            while name in taken:
                name = f"{c}{i}"
                i += 1
            taken.add(name)
            value = col(hid[c])
            if unmatched and t == T.STRING:
                value = exp.Coalesce(this=value, expressions=[L("")])
            out_sel.append(aliased(value, name))
            out_cols.append((name, t))
        if not unmatched:
            return Rel(pl.wrap(x, out_sel, where=m), out_cols, None, None)
        # an input row keeps its lookup row when it matches, the all-null one when none does
        hit, any_hit = pl.fresh("__lk_hit"), pl.fresh("__lk_any")
        marked = Rel(pl.wrap(x, [exp.Star(), aliased(m, hit)]), xcols + [(hit, T.BOOL)], None, None)
        counted = exp.Window(this=exp.Max(this=exp.Case(ifs=[exp.If(this=col(hit), true=N(1))], default=N(0))),
                             partition_by=[col(rid)])
        marked = Rel(pl.wrap(marked, [exp.Star(), aliased(counted, any_hit)]), marked.cols + [(any_hit, T.LONG)],
                     None, None)
        keep = exp.or_(col(hit), exp.and_(exp.EQ(this=col(any_hit), expression=N(0)), col(flag)))
        return Rel(pl.wrap(marked, out_sel, where=keep, order=[exp.Ordered(this=col(rid))]), out_cols, None, None)

    return plugin


def _flag(pl: Planner, node: s.Node, fname: str) -> bool:
    t = pl.scalar(node, Scope())
    if not (t.is_const and isinstance(t.const, bool)):
        raise KqlSemanticError(f"{fname}()'s return_unmatched must be a constant bool", node.span, code="KQL_ARGUMENTS")
    return t.const


register("ipv4_lookup", ip_lookup(4))
register("ipv6_lookup", ip_lookup(6))
