"""Plan stage, tabular half: one function per KQL operator, found through OPERATORS (copied into
plan.OPERATORS when this module loads).

Each takes the planner, the input ``Rel`` and the operator node, and returns a new ``Rel``
whose SQL selects from the input's.
"""
from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass

from sqlglot import exp

from .. import catalogue as _catalogue   # a module: catalogue.py imports kql.types, which loads this package
from ..errors import KqlSemanticError, Span, did_you_mean
from . import syntax as s
from . import types as T
from .aggregates import AGGREGATES, ARG_EXTREMES
from .builtins import PLUGINS as KUSTO_PLUGINS, not_yet
from .makeseries import make_series, top_nested
from .plan import OPERATORS as _OPERATORS, SOURCES as _SOURCES, Binding, Rel
from .planner import Planner, _filtered_source, _narrowed
from .plugins import PLUGINS, conform
from .relations import aliased, contains_aggregate, mv_cast, next_column_name, scope_of, values_rel
from .regex import check as check_regex, re2_error
from .functions.series import NAMES_NEEDED, PATHS, TUPLES
from .scalars import Scope, binary, dynamic_to, to_bool, to_string, unify
from .typed import Typed, cast, col, const, fn, ident, sql_literal

N = exp.Literal.number
L = exp.Literal.string


def select_all(rel: Rel, table: str | None = None) -> list[exp.Expression]:
    """Every column of rel, in order: * when unqualified (a Rel's SQL yields exactly its columns)."""
    if table is None:
        return [exp.Star()]
    return [col(c, table) for c, _ in rel.cols]


def order_survives(order, cols: dict[str, str], changed: set[str] = frozenset()):
    """Keep the row order only while every column it sorts on is still there, unchanged."""
    if not order:
        return order
    for o in order:
        for c in o.find_all(exp.Column):
            if c.name not in cols or c.name in changed:
                return None
    return order


def pruned(rel: Rel, exprs: list[exp.Expression]) -> Rel:
    """rel rebuilt to produce only the columns exprs read, when it knows how (see Rel.rebuild)."""
    if rel.rebuild is None or any(isinstance(e, exp.Star) or e.find(exp.Star) for e in exprs):
        return rel
    needed = {c.name for e in exprs for c in e.find_all(exp.Column) if not c.table}
    return rel.rebuild(frozenset(needed))


def unknown_column(name: str, span: Span, rel: Rel):
    raise KqlSemanticError(f"unknown column '{name}'", span, code="KQL_UNKNOWN_COLUMN",
                           hint=did_you_mean(name, rel.names()) or f"available columns: {', '.join(rel.names()[:12])}")


# ---- where, project, extend -----------------------------------------------------------------

def _plain_filter(sql: exp.Expression) -> bool:
    """SELECT * FROM one source [WHERE ...]: a filter can join its WHERE instead of wrapping it."""
    if not isinstance(sql, exp.Select) or len(sql.expressions) != 1 or not isinstance(sql.expressions[0], exp.Star):
        return False
    return not any(sql.args.get(k) for k in ("joins", "group", "having", "qualify", "order", "limit", "distinct",
                                             "with_", "windows", "offset"))


def op_where(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    pred = to_bool(pl.scalar(op.args["predicate"], scope_of(rel)), "the where condition")
    if _plain_filter(rel.sql):
        # where after a table or another where: one WHERE with both conditions, not another subquery
        args = dict(rel.sql.args)
        old = args.get("where")
        cond = pred.sql if old is None else exp.And(this=old.this, expression=pred.sql)
        args["where"] = exp.Where(this=cond)
        sql = exp.Select(**args)
    else:
        sql = pl.wrap(rel, select_all(rel), where=pred.sql)
    out = Rel(sql, rel.cols, rel.order, rel.name, rel.serialized, notnull=rel.notnull)
    if rel.rebuild is not None:
        reads = {c.name for c in pred.sql.find_all(exp.Column)}
        out.rebuild = lambda needed: op_where(pl, rel.rebuild(needed | reads), op)
    return out


def named_items(pl: Planner, rel: Rel, items: list[s.Assign], taken: set[str], scope: Scope | None = None,
                agg: bool = False, all_fields: bool = False, tuples: bool = False) -> list[tuple[str, Typed]]:
    """The items' names and values; ``tuples``: an item may be a function of several columns
    (extend and project: ``tuple_items``), else it is refused as any other use of one is."""
    out = []
    scope = scope or scope_of(rel)
    for it in items:
        if tuples and is_tuple_call(pl, it.expr):
            out += tuple_items(pl, it, scope, all_fields)
            continue
        if it.names and len(it.names) > 1:
            raise KqlSemanticError("tuple assignment is not supported here", it.span, code="KQL_UNSUPPORTED")
        t = pl.scalar(it.expr, scope, agg)
        name = it.names[0] if it.names else (t.name or next_column_name(taken | {n for n, _ in out}))
        out.append((name, t))
    return out


def is_tuple_call(pl: Planner, node: s.Node) -> bool:
    if not isinstance(node, s.Call) or node.name not in TUPLES:
        return False
    b = pl.env.get(node.name)
    return b is None or b.kind != "function"


def tuple_items(pl: Planner, it: s.Assign, scope: Scope, all_fields: bool) -> list[tuple[str, Typed]]:
    """A function of several columns (functions/series.TUPLES) as an item: one helper column of
    the JSON object of its fields, computed below the operator (``Scope.pre``), read field by field.
    ``(a, b) = f(x)`` names them in order; with fewer names than fields, extend keeps only the named
    ones and project (``all_fields``) names the rest as ``f(x)`` does: ``f_x_<field>``."""
    call = it.expr
    f, fields = TUPLES[call.name]
    args = [pl.scalar(a, scope) for a in call.args]
    bag = f.call(pl, args, call.span, call.name_span)
    if it.names and len(it.names) > len(fields):
        raise KqlSemanticError(f"{call.name}() gives {len(fields)} columns, not {len(it.names)}", it.span,
                               code="KQL_ARGUMENTS")
    names = list(it.names or [])
    if not names or (all_fields and len(names) < len(fields)):
        if call.name in NAMES_NEEDED:
            raise KqlSemanticError(f"name the columns {call.name}() gives", call.span, code="KQL_ARGUMENTS",
                                   hint=f"| extend ({', '.join(n for n, _ in fields)}) = {call.name}(...)")
        base = (args[0].name if args else None) or ""      # series_stats(f(x)): series_stats__min
        names += [f"{call.name}_{base}_{n}" for n, _ in fields[len(names):]]
    h = pl.fresh("__tuple")
    scope.pre[h] = bag.sql
    out = []
    for name, (field, typ) in zip(names, fields):
        path = PATHS.get(call.name, {}).get(field, field)
        v = Typed(fn("json_at", col(h), exp.Literal.string(f"$.{path}")), T.DYNAMIC, it.span)
        out.append((name, dynamic_to(v, typ)))
    return out


def op_project(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    scope = scope_of(rel)
    items = named_items(pl, rel, op.args["items"], set(), scope, all_fields=True, tuples=True)
    seen = set()
    for name, t in items:
        if name in seen:
            raise KqlSemanticError(f"column '{name}' appears twice in project", t.span, code="KQL_ARGUMENTS",
                                   hint="give one of them another name: NewName = ...")
        seen.add(name)
    cols = [(n, t.type) for n, t in items]
    changed = {n for n, t in items if not (isinstance(t.sql, exp.Column) and t.sql.name == n)}
    select = [aliased(t.sql, n) for n, t in items]
    rel, pre = with_pre(pl, rel, scope)
    if not pre:
        rel = pruned(rel, [t.sql for _, t in items] + [o for o in rel.order or []])
    return Rel(pl.wrap(rel, select), cols, order_survives(rel.order, dict(cols), changed), None, rel.serialized)


def with_pre(pl: Planner, rel: Rel, scope) -> tuple[Rel, bool]:
    """The input with the helper columns its operator's expressions asked for (``Scope.pre``)
    computed below it, each in a SELECT of its own (one may use the one before), not among its KQL
    columns; and whether there were any."""
    if not scope.pre:
        return rel, False
    for n, e in scope.pre.items():
        reorder = e.meta.get("reorder") if e.meta else None    # restore the serialized order by this column
        rel = Rel(pl.wrap(rel, [exp.Star(), aliased(e, n)], order=[exp.Ordered(this=col(reorder))] if reorder else None),
                  list(rel.cols), rel.order, rel.name, rel.serialized)
    return rel, True


def op_extend(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    # later items may use columns defined by earlier ones: compile them with those inlined
    scope = scope_of(rel)
    items = []
    for it in op.args["items"]:
        for name, t in named_items(pl, rel, [it], set(rel.names()) | {n for n, _ in items}, scope, tuples=True):
            items.append((name, t))
            scope.inline[name] = t
    new = dict(items)
    select, cols = [], []
    rel, pre = with_pre(pl, rel, scope)
    if not pre and not any(c in new for c, _ in rel.cols):   # only new columns: *, then them
        select, cols = [exp.Star()], list(rel.cols)
    else:
        for c, typ in rel.cols:
            if c in new:
                select.append(aliased(new[c].sql, c))
                cols.append((c, new[c].type))
            else:
                select.append(col(c))
                cols.append((c, typ))
    existing = set(rel.names())
    for n, t in items:
        if n not in existing:
            select.append(aliased(t.sql, n))
            cols.append((n, t.type))
            existing.add(n)
    return Rel(pl.wrap(rel, select), cols, order_survives(rel.order, dict(cols), set(new) & set(rel.names())),
               rel.name, rel.serialized)


def match_names(rel: Rel, pattern: str, span: Span, must: bool = True) -> list[str]:
    if "*" in pattern:
        return [c for c in rel.names() if fnmatch.fnmatchcase(c, pattern)]
    if pattern not in rel.types:
        if must:
            unknown_column(pattern, span, rel)
        return []
    return [pattern]


def op_project_away(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    drop = set()
    for pat, span in op.args["names"]:
        drop.update(match_names(rel, pat, span))
    cols = [(c, t) for c, t in rel.cols if c not in drop]
    return Rel(pl.wrap(rel, [col(c) for c, _ in cols]), cols, order_survives(rel.order, dict(cols)), rel.name,
               rel.serialized)


def op_project_keep(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    keep = set()
    for pat, span in op.args["names"]:
        keep.update(match_names(rel, pat, span))
    cols = [(c, t) for c, t in rel.cols if c in keep]
    return Rel(pl.wrap(rel, [col(c) for c, _ in cols]), cols, order_survives(rel.order, dict(cols)), rel.name,
               rel.serialized)


def op_project_rename(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    renames = {}
    for new, old, span in op.args["pairs"]:
        if old not in rel.types:
            unknown_column(old, span, rel)
        renames[old] = new
    cols = [(renames.get(c, c), t) for c, t in rel.cols]
    select = [aliased(col(c), renames.get(c, c)) for c, _ in rel.cols]
    return Rel(pl.wrap(rel, select), cols, order_survives(rel.order, dict(cols), set(renames)), rel.name,
               rel.serialized)


def op_project_reorder(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    first = []
    for (pat, span), order in op.args["names"]:
        hits = [c for c in match_names(rel, pat, span) if c not in first]
        if order in ("asc", "granny-asc"):
            hits.sort()
        elif order in ("desc", "granny-desc"):
            hits.sort(reverse=True)
        first.extend(hits)
    rest = [c for c in rel.names() if c not in first]
    types = rel.types
    cols = [(c, types[c]) for c in first + rest]
    return Rel(pl.wrap(rel, [col(c) for c, _ in cols]), cols, rel.order, rel.name, rel.serialized)


# ---- summarize ------------------------------------------------------------------------------

def op_summarize(pl: Planner, rel: Rel, op: s.Operator, keep: frozenset | None = None) -> Rel:
    if rel.join is not None and (eager := eager_summarize(pl, rel, op)) is not None:
        return eager
    scope = scope_of(rel)
    whole_rows = False
    by = named_items(pl, rel, op.args["by"], set())
    by_names = [n for n, _ in by]
    if (window := window_arg_extreme(pl, rel, op, by, keep)) is not None:
        return window
    select = [aliased(t.sql, n) for n, t in by]
    cols = [(n, t.type) for n, t in by]
    group = [t.sql for _, t in by]
    row_alias = pl.fresh("__row")   # the input row, as a struct, for arg_max(x, *)
    taken = set(by_names)
    for it in op.args["aggs"]:
        e = it.expr
        if isinstance(e, s.Call) and e.name in ARG_EXTREMES:
            whole_rows |= len(e.args) == 2 and isinstance(e.args[1], s.Star)
            for name, typ, sql in arg_extreme(pl, rel, e, it, by_names, taken, scope, row_alias, keep):
                select.append(aliased(sql, name))
                cols.append((name, typ))
                taken.add(name)
            continue
        if isinstance(e, s.Call) and e.name in AGGREGATES and AGGREGATES[e.name].multi:
            a = AGGREGATES[e.name]
            args = [pl.scalar(x, scope) for x in e.args]
            pl.check_agg_arity(a, e, args)
            outs = a.build(*args)
            names = it.names or []
            for i, (default, t) in enumerate(outs):
                name = names[i] if i < len(names) else default
                select.append(aliased(t.sql, name))
                cols.append((name, t.type))
                taken.add(name)
            continue
        t = pl.scalar(e, scope, agg=True)
        if t.is_const and t.type != T.DYNAMIC:
            # a constant is an aggregate of itself (summarize Scope = 'Overall', n = count()): one
            # value per group, and one row over no rows at all, as any summarize without by
            # (count(*) makes the SELECT an aggregate one even when nothing else does)
            t = t.with_sql(exp.Case(ifs=[exp.If(this=exp.GTE(this=exp.Count(this=exp.Star()), expression=N(0)),
                                                true=t.sql)], default=t.sql.copy()))
        elif not contains_aggregate(t.sql):
            raise KqlSemanticError("summarize needs an aggregation here, such as count() or sum(x)", it.expr.span,
                                   code="KQL_ARGUMENTS", hint="put plain expressions after 'by'")
        name = it.names[0] if it.names else (t.name or next_column_name(taken))
        if name in taken:
            name = _dedupe(name, taken)
        taken.add(name)
        sql = t.sql
        if not by and isinstance(sql.this if isinstance(sql, exp.Cast) else sql, exp.Sum):
            sql = exp.Coalesce(this=sql, expressions=[N(0)])   # sum over no rows is 0
        elif not by and isinstance(sql, exp.Avg) and t.type == T.REAL:
            sql = exp.Coalesce(this=sql, expressions=[sql_literal(float("nan"), T.REAL)])   # avg over no rows: NaN
        select.append(aliased(sql, name))
        cols.append((name, t.type))
    if not op.args["aggs"] and not by:
        raise KqlSemanticError("summarize needs an aggregation or a 'by' clause", op.span, code="KQL_SYNTAX")
    if not whole_rows:
        rel = pruned(rel, [x.this if isinstance(x, exp.Alias) else x for x in select])
    sql = pl.wrap(rel, select, group=group or None, alias=row_alias)
    out = Rel(sql, cols, None, None)
    if any(isinstance(x, exp.Alias) and x.alias.startswith("__am") for x in select):
        out = expand_structs(pl, out)
    if whole_rows and keep is None:
        out.rebuild = lambda needed: op_summarize(pl, rel, op, keep=needed)
    return out


def _dedupe(name: str, taken: set[str]) -> str:
    i = 1
    while f"{name}{i}" in taken:
        i += 1
    return f"{name}{i}"


def _arg_fields(pl: Planner, rel: Rel, call: s.Call, by_names, taken, scope, keep: frozenset | None):
    """arg_max(Expr, ...)'s target and its output fields (Expr first), as (default name, value)."""
    if not call.args:
        raise KqlSemanticError(f"{call.name}() needs the expression to maximize", call.span, code="KQL_ARGUMENTS")
    target = pl.scalar(call.args[0], scope)
    prefix = "max" if call.name == "arg_max" else "min"
    tname = target.name or f"{prefix}_"
    fields: list[tuple[str, Typed]] = [(tname, target)]
    rest = call.args[1:]
    if len(rest) == 1 and isinstance(rest[0], s.Star):
        for c, typ in rel.cols:
            if c not in by_names and c != tname and (keep is None or c in keep):
                fields.append((c, Typed(col(c), typ, name=c)))
    else:
        for x in rest:
            if isinstance(x, s.Assign):
                fields.append((x.names[0], pl.scalar(x.expr, scope)))
            else:
                t = pl.scalar(x, scope)
                fields.append((t.name or next_column_name(taken), t))
    return target, fields


def _arg_names(fields, item: s.Assign, taken) -> list[str]:
    """The output name of each field: (T, P) = arg_max(t, p) names them in order, repeats get 1, 2..."""
    out = []
    names_here = set()
    given = item.names or []
    for i, (n, _) in enumerate(fields):
        name = given[i] if i < len(given) else n
        if name in taken or name in names_here:
            name = _dedupe(name, taken | names_here)
        names_here.add(name)
        out.append(name)
    return out


def arg_extreme(pl: Planner, rel: Rel, call: s.Call, item: s.Assign, by_names, taken, scope, row_alias: str,
                keep: frozenset | None = None):
    """arg_max(Expr, *) / arg_max(Expr, Col1, Col2): the row where Expr is largest."""
    target, fields = _arg_fields(pl, rel, call, by_names, taken, scope, keep)
    rest = call.args[1:]
    alias = pl.fresh("__am")
    whole_row = len(rest) == 1 and isinstance(rest[0], s.Star) and isinstance(target.sql, exp.Column) \
        and target.name in rel.types and keep is None
    if whole_row:
        # the input row itself is the struct: max_by(row, x), then "__am"."Column" picks a field
        row = col(row_alias)
        row.meta["row_columns"] = [c for c, _ in rel.cols]    # a store without row values builds the tuple
        agg = fn(ARG_EXTREMES[call.name], row, target.sql)
        keys = [n if i else target.name for i, (n, _) in enumerate(fields)]
    elif len(fields) == 2 and target.type != T.DYNAMIC:
        # one column beside Expr: max(Expr) and value_at_max(col, Expr) (a null col kept: DuckDB's
        # arg_max_null) are that row's values (a tie on Expr has one value of Expr), without a
        # struct per input row (0.31 s -> 0.22 s on 5M rows)
        names = _arg_names(fields, item, taken)
        extreme = exp.Max if call.name == "arg_max" else exp.Min
        (_, value) = fields[1]
        return [(names[0], target.type, extreme(this=target.sql.copy())),
                (names[1], value.type, fn(ARG_EXTREMES[call.name], value.sql, target.sql.copy()))]
    else:
        struct = exp.Struct(expressions=[exp.PropertyEQ(this=ident(f"f{i}"), expression=t.sql)
                                         for i, (_, t) in enumerate(fields)])
        agg = fn(ARG_EXTREMES[call.name], struct, target.sql)
        keys = [f"f{i}" for i in range(len(fields))]
    names = _arg_names(fields, item, taken)
    out = [(name, t.type, key) for name, (_, t), key in zip(names, fields, keys)]
    # one struct column, expanded by expand_structs() into "alias"."key" AS name
    return [(alias, "__struct__", agg)] + [(f"{alias}{SEP}{key}{SEP}{name}", typ, None) for name, typ, key in out]


# summarize arg_max(Expr, ...) by keys, alone, as a window: the row numbered 1 in each group when ordered
# by Expr (DESC for arg_max, ASC for arg_min), nulls last. DuckDB runs it 1.2-1.75x faster than
# max_by(row, Expr) ... GROUP BY on wide tables. max_by skips rows whose Expr is null, and a group with
# no other row gives null for every column: the picked row's Expr is then null (nulls sort last), and
# every column but the keys is read as null. The window is used only where it gives max_by's answer on
# both stores: plain column keys of types whose grouping and ordering agree with max_by's (not real,
# where ClickHouse's argMax and ORDER BY place NaN differently; not dynamic), and at least one key
# (without keys, summarize gives one row even over no rows). WINDOW_ARG_EXTREMES = False turns it off
# (the tests compare both plans).
WINDOW_ARG_EXTREMES = True
_WINDOW_ORDER_TYPES = (T.LONG, T.INT, T.DATETIME, T.TIMESPAN, T.STRING, T.BOOL)
_WINDOW_KEY_TYPES = (T.LONG, T.INT, T.DATETIME, T.TIMESPAN, T.STRING, T.BOOL, T.GUID)


def _row_local(sql: exp.Expression) -> bool:
    """A value of the row alone, from its columns by name: the same on the picked row as in max_by's
    struct (no aggregate, window, subquery or column of a named table)."""
    if contains_aggregate(sql) or sql.find(exp.Window, exp.Subquery, exp.Select, exp.Star) is not None:
        return False
    return all(not c.table and isinstance(c.this, exp.Identifier) for c in sql.find_all(exp.Column))


def window_arg_extreme(pl: Planner, rel: Rel, op: s.Operator, by, keep: frozenset | None) -> Rel | None:
    """summarize arg_max(x, ...) by k as SELECT k, ... QUALIFY row_number() OVER (...) = 1, or None."""
    aggs = op.args["aggs"]
    if not WINDOW_ARG_EXTREMES or len(aggs) != 1 or not by:
        return None
    item = aggs[0]
    call = item.expr
    if not (isinstance(call, s.Call) and call.name in ARG_EXTREMES and call.args):
        return None
    by_names = [n for n, _ in by]
    if len(set(by_names)) != len(by_names):
        return None
    for n, t in by:
        if not (isinstance(t.sql, exp.Column) and not t.sql.table and t.sql.name == n and n in rel.types
                and rel.types[n] in _WINDOW_KEY_TYPES):
            return None
    scope = scope_of(rel)
    target, fields = _arg_fields(pl, rel, call, by_names, set(by_names), scope, keep)
    if target.type not in _WINDOW_ORDER_TYPES or any(not _row_local(t.sql) for t in [target] + [t for _, t in fields]):
        return None
    if len(fields) == 1:
        return None     # only Expr is read (... | count): max(Expr) by keys, as max_by plans it, is cheaper
    names = _arg_names(fields, item, set(by_names))
    select = [col(n) for n in by_names]
    cols = [(n, rel.types[n]) for n in by_names]
    nullable = not (isinstance(target.sql, exp.Column) and target.sql.name in rel.notnull)
    for i, (name, (_, t)) in enumerate(zip(names, fields)):
        value = t.sql.copy()
        if i and nullable:
            # a group whose Expr is null on every row: max_by gives null, so does every column here
            value = exp.Case(ifs=[exp.If(this=exp.Is(this=target.sql.copy(), expression=exp.Null()),
                                         true=exp.Null())], default=value)
        select.append(aliased(value, name))
        cols.append((name, t.type))
    order = exp.Ordered(this=target.sql.copy(), desc=call.name == "arg_max", nulls_first=False)
    number = exp.Window(this=exp.RowNumber(), partition_by=[col(n) for n in by_names],
                        order=exp.Order(expressions=[order]))
    whole_rows = len(call.args) == 2 and isinstance(call.args[1], s.Star)
    if not whole_rows:
        rel = pruned(rel, [x.this if isinstance(x, exp.Alias) else x for x in select] + [target.sql])
    # the rows numbered 1 first, then the columns: the CASEs run on one row per group, not on every row
    # (the columns they read, by name: DuckDB carries every column a window's input has through the window)
    read = {c.name for e in select + [target.sql] for c in e.find_all(exp.Column) if not c.table}
    inner = [(c, t) for c, t in rel.cols if c in read or c in by_names]
    picked = (_stored_extremes(pl, rel, target, by_names, call.name, inner)
              or Rel(pl.wrap(rel, [col(c) for c, _ in inner], qualify=exp.EQ(this=number, expression=N(1))), inner,
                     None, rel.name))
    out = Rel(pl.wrap(picked, select), cols, None, None)
    if whole_rows and keep is None:
        out.rebuild = lambda needed: op_summarize(pl, rel, op, keep=needed)
    return out


def _stored_extremes(pl: Planner, rel: Rel, target: Typed, keys: list[str], name: str, inner) -> Rel | None:
    """The window's rows by their identity, where rel is a stored table's rows [WHERE ...] and Expr
    one of its never-null columns: SELECT cols FROM T WHERE rowid IN (SELECT max_by(rowid, Expr)
    FROM T [WHERE ...] GROUP BY keys), or None. Only the keys and Expr are read from every row; the
    other columns from one row per group. DuckDB finds this plan itself for a lone window, but not
    for one that feeds several readers (a materialized let), and its own reads every column of
    every row first: 7.7 ms here against 12 ms for 14,000 rows of VMConnection. The dialect names
    the identity (flags: row_id); ClickHouse has none. Ties pick any one of the tied rows, as the
    window does."""
    row_id = pl.flag("row_id")
    if row_id is None or not (isinstance(target.sql, exp.Column) and not target.sql.table
                              and target.sql.name in rel.notnull):
        return None
    source = _filtered_source(rel.sql, [col(c) for c, _ in inner])
    if source is None:
        return None
    src, where = source
    table = pl.catalogue.get(src.name) if isinstance(src, exp.Table) and not src.args.get("db") else None
    if table is None or table.name in _catalogue.COMPUTED or any(c.lower() == row_id for c in table.column_types):
        return None
    identity = exp.Column(this=exp.Identifier(this=row_id, quoted=True))
    pick = fn("value_at_max" if name == "arg_max" else "value_at_min", identity, target.sql.copy())
    rows = exp.Select(expressions=[pick], from_=exp.From(this=src.copy()),
                      group=exp.Group(expressions=[col(k) for k in keys]))
    if where is not None:
        rows.set("where", exp.Where(this=where.copy()))
    alias = exp.TableAlias(this=exp.Identifier(this=pl.fresh(), quoted=False))
    sel = exp.Select(expressions=[col(c) for c, _ in inner],
                     from_=exp.From(this=exp.Table(this=ident(table.name), alias=alias)),
                     where=exp.Where(this=exp.In(this=identity.copy(), query=exp.Subquery(this=rows))))
    return Rel(sel, inner, None, rel.name)


SEP = "\x00"


def expand_structs(pl: Planner, rel: Rel) -> Rel:
    """Replace the __am struct columns of arg_max/arg_min by their fields."""
    sel: exp.Select = rel.sql
    keep_select, cols, outer = [], [], []
    for e, (name, typ) in zip(list(sel.expressions), rel.cols):
        if typ == "__struct__":
            keep_select.append(e)
            continue
        if name.startswith("__am") and SEP in name:
            alias, key, real = name.split(SEP, 2)
            outer.append(aliased(col(key, alias), real))
            cols.append((real, typ))
            continue
        keep_select.append(e)
        outer.append(col(name))
        cols.append((name, typ))
    sel.set("expressions", keep_select)
    inner = Rel(sel, [], None)
    return Rel(pl.wrap(inner, outer), cols, None, None)


# ---- order, top, take, distinct, count ---------------------------------------------------------

def sort_keys(pl: Planner, rel: Rel, keys: list[s.SortKey]) -> list[exp.Ordered]:
    scope = scope_of(rel)
    out = []
    for k in keys:
        t = pl.scalar(k.expr, scope)
        if t.type == T.DYNAMIC:
            t = to_string(t)
        nulls_first = k.nulls_first if k.nulls_first is not None else (not k.desc)
        out.append(exp.Ordered(this=t.sql, desc=k.desc, nulls_first=nulls_first))
    return out


def op_order(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    keys = sort_keys(pl, rel, op.args["keys"])
    return Rel(rel.sql, rel.cols, keys, rel.name, True)


def limit_value(pl: Planner, node: s.Node) -> exp.Expression:
    t = pl.scalar(node, Scope())
    if t.type not in T.INTEGER and not (t.is_const and isinstance(t.const, (int, float))):
        raise KqlSemanticError(f"the row count must be a number, not {t.type}", node.span, code="KQL_TYPE")
    if t.is_const and t.const is not None:
        return N(max(0, int(t.const)))
    return t.sql


def op_top(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    keys = sort_keys(pl, rel, op.args["keys"])
    sql = pl.wrap(rel, select_all(rel), order=keys, limit=limit_value(pl, op.args["count"]))
    return Rel(sql, rel.cols, keys, rel.name, True)


def op_take(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    sql = pl.wrap(rel, select_all(rel), order=rel.order, limit=limit_value(pl, op.args["count"]))
    return Rel(sql, rel.cols, rel.order, rel.name, rel.serialized)


def op_distinct(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    items = op.args["items"]
    if items is None:
        return Rel(pl.wrap(rel, select_all(rel), distinct=True), rel.cols, None, rel.name)
    named = named_items(pl, rel, items, set())
    rel = pruned(rel, [t.sql for _, t in named])
    sql = pl.wrap(rel, [aliased(t.sql, n) for n, t in named], distinct=True)
    return Rel(sql, [(n, t.type) for n, t in named], None, None)


def op_count(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    rel = pruned(rel, [])
    return Rel(pl.wrap(rel, [aliased(exp.Count(this=exp.Star()), "Count")]), [("Count", T.LONG)], None, None)


def op_sample(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    n = limit_value(pl, op.args["count"])
    sql = pl.wrap(rel, select_all(rel), order=[exp.Ordered(this=fn(exp.Rand))], limit=n)
    return Rel(sql, rel.cols, None, rel.name)


# ---- join, lookup ---------------------------------------------------------------------------

def join_keys(pl: Planner, left: Rel, right: Rel, on: list[s.Node]) -> list[tuple[Typed, Typed, str, str]]:
    """(left key, right key, left name, right name) for each `on` clause."""
    keys = []
    ls, rs = scope_of(left, "_l"), scope_of(right, "_r")

    def side(node: s.Node):
        if isinstance(node, s.Member) and isinstance(node.target, s.Name) and node.target.name in ("$left", "$right"):
            return node.target.name, s.Name(node.span, node.name)
        return None, node

    for cond in on:
        if isinstance(cond, s.Name):
            for rel, which in ((left, "left"), (right, "right")):
                if cond.name not in rel.types:
                    raise KqlSemanticError(f"join key '{cond.name}' is not a column of the {which} side", cond.span,
                                           code="KQL_UNKNOWN_COLUMN", hint=did_you_mean(cond.name, rel.names()))
            lk, rk = pl.scalar(cond, ls), pl.scalar(cond, rs)
            keys.append((lk, rk, cond.name, cond.name))
            continue
        if isinstance(cond, s.Binary) and cond.op == "==":
            a_side, a = side(cond.left)
            b_side, b = side(cond.right)
            if a_side == "$right" or b_side == "$left":
                a_side, a, b_side, b = b_side, b, a_side, a
            if a_side in ("$left", None) and b_side in ("$right", None) and (a_side or b_side):
                lk, rk = pl.scalar(a, ls), pl.scalar(b, rs)
                keys.append((lk, rk, getattr(a, "name", None), getattr(b, "name", None)))
                continue
        raise KqlSemanticError("join condition must be a column name or $left.Col == $right.Col", cond.span,
                               code="KQL_SYNTAX")
    out = []
    for lk, rk, ln, rn in keys:
        lk2, rk2, _ = unify(lk, rk, lk.span, "join on")
        out.append((lk2, rk2, ln, rn))
    return out


def _on(keys) -> exp.Expression:
    cond = None
    for lk, rk, _, _ in keys:
        c = exp.EQ(this=lk.sql, expression=rk.sql)
        cond = c if cond is None else exp.And(this=cond, expression=c)
    return cond


def _right_names(left: Rel, right: Rel, drop: set[str] = frozenset()) -> list[tuple[str, str, str]]:
    taken = set(left.names())
    out = []
    for c, typ in right.cols:
        if c in drop:
            continue
        name = c
        if name in taken:
            i = 1
            while f"{c}{i}" in taken:
                i += 1
            name = f"{c}{i}"
        taken.add(name)
        out.append((c, name, typ))
    return out


def _nz(e: exp.Expression, typ: str) -> exp.Expression:
    return exp.Coalesce(this=e, expressions=[L("")]) if typ == T.STRING else e


def _star(table: str) -> exp.Column:
    return exp.Column(this=exp.Star(), table=exp.Identifier(this=table, quoted=True))


JOIN_SQL = {"inner": "INNER", "innerunique": "INNER", "leftouter": "LEFT", "rightouter": "RIGHT",
            "fullouter": "FULL"}


def op_join(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    kind = op.args["kind"]
    kind = {"anti": "leftanti", "leftantisemi": "leftanti", "rightantisemi": "rightanti"}.get(kind, kind)
    right = pl.tab(op.args["right"])
    keys = join_keys(pl, rel, right, op.args["on"])
    left = rel
    if kind == "innerunique":
        part_exprs = [k[0].sql.copy().transform(lambda n: exp.Column(this=n.this) if isinstance(n, exp.Column) else n)
                      for k in keys]
        qual = exp.EQ(this=exp.Window(this=exp.RowNumber(), partition_by=part_exprs), expression=N(1))
        left = Rel(pl.wrap(rel, select_all(rel), qualify=qual), rel.cols, None, rel.name)
    if kind in ("leftsemi", "leftanti", "rightsemi", "rightanti"):
        keep, other = (left, right) if kind.startswith("left") else (right, left)
        keep_alias, other_alias = ("_l", "_r") if kind.startswith("left") else ("_r", "_l")
        sub = exp.Select(expressions=[N(1)]).from_(other.sql.subquery(other_alias, copy=False), copy=False).where(_on(keys), copy=False)
        cond = exp.Exists(this=sub)
        if kind.endswith("anti"):
            cond = exp.Not(this=cond)
        sql = exp.Select(expressions=select_all(keep, keep_alias)).from_(keep.sql.subquery(keep_alias, copy=False), copy=False).where(cond, copy=False)
        return Rel(sql, keep.cols, None, keep.name)
    rnames = _right_names(left, right)
    lnull = kind in ("rightouter", "fullouter")
    rnull = kind in ("leftouter", "fullouter")
    if lnull:
        select = [aliased(_nz(col(c, "_l"), t), c) for c, t in left.cols]
    else:
        select = [_star("_l")]   # the left side's columns pass through unchanged
    if not rnull and all(c == n for c, n, _ in rnames):
        select.append(_star("_r"))
    else:
        select += [aliased(_nz(col(c, "_r"), t) if rnull else col(c, "_r"), n) for c, n, t in rnames]
    jsql = JOIN_SQL[kind]
    sql = _joined(select, left, right, _on(keys), jsql)
    cols = list(left.cols) + [(n, t) for _, n, t in rnames]
    out = Rel(sql, cols, None, None)
    out.join = JoinParts(left, right, keys, jsql, lnull, rnull, rnames)
    return out


# ---- summarize right after a join: each side aggregated first ---------------------------------
# `A | join kind=fullouter (B) on K | summarize count() by a` builds every pair of rows sharing
# K before counting them: a machine's 100,000 connections times its 1,500 inventory records is
# 150 million pairs for one machine. When every aggregate is in EAGER and every `by` is a plain
# column, each side is grouped by its join keys and its own `by` columns first (PARTIAL), the
# (far fewer) groups are joined, and a pair of groups stands for n_left x n_right pairs: counts
# and sums are sums of a side's part times the other side's rows, extremes the extremes of the
# parts (a side missing in an outer join counts one row, whose columns are null). The rows are
# the same; the work is the sides' sizes, not their product.

# the aggregates counted on each side first: name -> the column types it takes (count: any);
# sums of whole numbers only (a sum of reals in another order could differ in its last bits)
EAGER = {"count": None, "sum": (T.LONG, T.INT), "min": (T.LONG, T.INT, T.REAL, T.DATETIME, T.TIMESPAN),
         "max": (T.LONG, T.INT, T.REAL, T.DATETIME, T.TIMESPAN)}
# each side's part of one (grouped by its keys and by columns)
PARTIAL = {"count": lambda c: exp.Count(this=c), "sum": lambda c: exp.Sum(this=c),
           "min": lambda c: exp.Min(this=c), "max": lambda c: exp.Max(this=c)}


@dataclass
class JoinParts:
    left: Rel                  # after innerunique's dedup
    right: Rel
    keys: list                 # join_keys(): (left key, right key, left name, right name)
    sql_kind: str              # JOIN_SQL's
    lnull: bool                # the left side may be missing (right and full outer)
    rnull: bool
    rnames: list               # (right column, its name in the output, type)


def eager_summarize(pl: Planner, rel: Rel, op: s.Operator) -> Rel | None:
    """The summarize over the join's sides counted (and summed, and their extremes taken) first, or
    None when it does not qualify."""
    jp: JoinParts = rel.join
    if op.args.get("params") or any(it.names and len(it.names) > 1 for it in op.args["aggs"] + op.args["by"]):
        return None
    if not op.args["aggs"]:
        # a plain `summarize by` (distinct pairs): no count to multiply out; grouping each side
        # first only adds two groupings (outbound_dependencies: 26.0 -> 24.3 ms)
        return None
    if any(ln is None or rn is None or ln not in jp.left.types or rn not in jp.right.types
           or not isinstance(lk.sql, exp.Column) or not isinstance(rk.sql, exp.Column) for lk, rk, ln, rn in jp.keys):
        return None                        # keys must be plain columns of each side
    right_of = {n: c for c, n, _ in jp.rnames}
    left_names = set(jp.left.names())

    def side_of(name: str):
        return ("l", name) if name in left_names else ("r", right_of[name]) if name in right_of else None

    by = []                                # (output name, side, column)
    for it in op.args["by"]:
        if not isinstance(it.expr, s.Name) or (where := side_of(it.expr.name)) is None:
            return None
        by.append((it.names[0] if it.names else it.expr.name, *where))
    counts = []                            # (aggregate, side or None for count(), column or None)
    for it in op.args["aggs"]:
        e = it.expr
        if not (isinstance(e, s.Call) and e.name in EAGER and len(e.args) <= 1) or (e.name != "count" and not e.args):
            return None
        if e.args:
            if not isinstance(e.args[0], s.Name) or (where := side_of(e.args[0].name)) is None:
                return None
            side, c = where
            if e.name != "count" and (jp.left if side == "l" else jp.right).types[c] not in EAGER[e.name]:
                return None
            counts.append((e.name, side, c))
        else:
            counts.append(("count", None, None))
    plain = op_summarize(pl, Rel(rel.sql, rel.cols), op)     # its names and types, planned the usual way
    if len(plain.cols) != len(by) + len(counts):
        return None

    def grouped(side: str, srel: Rel, keys: list[str]) -> tuple[Rel, dict]:
        names = list(dict.fromkeys(keys + [c for _, sd, c in by if sd == side]))
        select = [col(c) for c in names] + [aliased(exp.Count(this=exp.Star()), "__n")]
        counted, types = {}, []
        for i, (agg, sd, c) in enumerate(counts):
            if sd == side:
                counted[i] = f"__c{i}"
                select.append(aliased(PARTIAL[agg](col(c)), f"__c{i}"))
                types.append((f"__c{i}", T.LONG if agg in ("count", "sum") else srel.types[c]))
        sql = pl.wrap(srel, select, group=[col(c) for c in names])
        return Rel(sql, [(c, srel.types[c]) for c in names] + [("__n", T.LONG)] + types), counted

    left, lcounted = grouped("l", jp.left, [ln for _, _, ln, _ in jp.keys])
    right, rcounted = grouped("r", jp.right, [rn for _, _, _, rn in jp.keys])

    def side_col(side: str, c: str, typ: str) -> exp.Expression:
        nullable = jp.lnull if side == "l" else jp.rnull
        e = col(c, "_" + side)
        return _nz(e, typ) if nullable else e

    def rows(side: str) -> exp.Expression:     # the pairs one group of this side stands for
        n = col("__n", "_" + side)
        return exp.Coalesce(this=n, expressions=[N(1)]) if (jp.lnull if side == "l" else jp.rnull) else n

    select, group = [], []
    for (name, side, c), (_, typ) in zip(by, plain.cols):
        e = side_col(side, c, typ)
        select.append(aliased(e, name))
        group.append(e.copy())
    for i, ((agg, side, c), (name, typ)) in enumerate(zip(counts, plain.cols[len(by):])):
        if side is None:
            term = exp.Mul(this=rows("l"), expression=rows("r"))
        else:
            mine = col((lcounted if side == "l" else rcounted)[i], "_" + side)
            if agg in ("min", "max"):           # the extreme over the pairs: over the groups paired
                select.append(aliased(cast((exp.Min if agg == "min" else exp.Max)(this=mine), typ), name))
                continue
            if agg == "count":
                # a missing side's column is null, except a string's: '' (never null in KQL), counted
                absent = N(1) if (jp.left if side == "l" else jp.right).types[c] == T.STRING else N(0)
                mine = exp.Coalesce(this=mine, expressions=[absent])
            term = exp.Mul(this=mine, expression=rows("r" if side == "l" else "l"))
        total = exp.Sum(this=term)
        if agg == "count" or not by:            # count() of no pairs is 0, and so is sum() without by
            total = exp.Coalesce(this=total, expressions=[N(0)])
        select.append(aliased(cast(total, typ), name))
    sql = _joined(select, left, right, _on(jp.keys), jp.sql_kind)
    if group:
        sql.set("group", exp.Group(expressions=group))
    return Rel(sql, list(plain.cols), None, None)


def _joined(select: list, left: Rel, right: Rel, on: exp.Expression, sql_kind: str) -> exp.Select:
    """SELECT ``select`` FROM left AS _l <sql_kind> JOIN right AS _r ON ``on``."""
    j = exp.Join(this=right.sql.subquery("_r", copy=False), on=on)
    if sql_kind == "INNER":
        j.set("kind", "INNER")
    else:
        j.set("side", sql_kind)
        j.set("kind", "OUTER")
    sql = exp.Select(expressions=select).from_(left.sql.subquery("_l", copy=False), copy=False)
    sql.set("joins", [j])
    return sql


def op_lookup(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    right = pl.tab(op.args["right"])
    keys = join_keys(pl, rel, right, op.args["on"])
    rkeys = {rn for _, _, _, rn in keys if rn}
    rnames = _right_names(rel, right, drop=rkeys)
    outer = op.args["kind"] == "leftouter"
    select = [_star("_l")]
    select += [aliased(_nz(col(c, "_r"), t) if outer else col(c, "_r"), n) for c, n, t in rnames]
    j = exp.Join(this=right.sql.subquery("_r", copy=False), on=_on(keys))
    if outer:
        j.set("side", "LEFT")
        j.set("kind", "OUTER")
    else:
        j.set("kind", "INNER")
    sql = exp.Select(expressions=select).from_(rel.sql.subquery("_l", copy=False), copy=False)
    sql.set("joins", [j])
    return Rel(sql, list(rel.cols) + [(n, t) for _, n, t in rnames], None, None)


# ---- union ----------------------------------------------------------------------------------

def union_rels(pl: Planner, rels: list[Rel], params: dict, span: Span) -> Rel:
    kind = params.get("kind", ("outer", None))[0]
    source = params.get("withsource", params.get("WithSource", (None, None)))[0]
    types_by_name: dict[str, list[str]] = {}
    for r in rels:
        for c, t in r.cols:
            types_by_name.setdefault(c, [])
            if t not in types_by_name[c]:
                types_by_name[c].append(t)
    if kind == "inner":
        common = [c for c, _ in rels[0].cols if all(c in r.types for r in rels)]
        names = [(c, c, types_by_name[c][0]) for c in common]
    else:
        names = []
        for c, ts in types_by_name.items():
            if len(ts) == 1:
                names.append((c, c, ts[0]))
            else:
                names.extend((c, f"{c}_{t}", t) for t in ts)
    # no two output columns share a name: the withsource column, a column named like another's
    # typed suffix (a_long beside a of long and string), get a number as join's right side does
    taken = {source} if source else set()
    unique = []
    for orig, out, t in names:
        if out in taken:
            out = _dedupe(out, taken | {o for _, o, _ in names})
        taken.add(out)
        unique.append((orig, out, t))
    names = unique
    branches = []
    for i, r in enumerate(rels):
        types = r.types
        sel = []
        if source:
            sel.append(aliased(L(r.name or f"union_arg{i}"), source))
        for orig, out, t in names:
            if types.get(orig) == t:
                sel.append(aliased(col(orig), out))
            else:
                sel.append(aliased(L("") if t == T.STRING else cast(exp.null(), t), out))
        inner = pl.finish(r)
        if not any(inner.args.get(k) for k in ("order", "limit", "offset", "with_")) \
                and (merged := _narrowed(inner, sel)) is not None:
            branches.append(merged)     # its own columns, as they are: one nesting level less
            continue
        branches.append(exp.Select(expressions=sel).from_(inner.subquery(pl.fresh(), copy=False), copy=False))
    sql = branches[0]
    for b in branches[1:]:
        sql = exp.Union(this=sql, expression=b, distinct=False)
    if len(branches) > 1:
        sql = exp.Select(expressions=[exp.Star()]).from_(sql.subquery(pl.fresh(), copy=False), copy=False)
    cols = ([(source, T.STRING)] if source else []) + [(out, t) for _, out, t in names]
    return Rel(sql, cols, None, None)


# what a leg of union isfuzzy=true may fail with and be left out: a table or column that is not there
FUZZY_FAILURES = {"KQL_UNKNOWN_TABLE", "KQL_UNKNOWN_COLUMN"}


def _fuzzy(params: dict) -> bool:
    v = params.get("isfuzzy", (False, None))[0]
    return v is True or (isinstance(v, str) and v.lower() == "true")


def union_inputs(pl: Planner, tables: list[s.Node], fuzzy: bool = False) -> list[Rel]:
    """The legs' relations; with ``fuzzy`` (isfuzzy=true) a leg naming a table or a column that is
    not there is left out, as Kusto does (the union fails when no leg is left)."""
    rels = []
    for t in tables:
        if isinstance(t, s.Name) and "*" in t.name:
            hits = [n for n in pl.catalogue.names() if fnmatch.fnmatchcase(n, t.name)]
            hits += [k for k, b in pl.env.items() if b.kind == "table" and fnmatch.fnmatchcase(k, t.name)]
            rels.extend(pl.table_ref(s.Name(t.span, n)) for n in hits)
        elif fuzzy:
            try:
                rels.append(pl.tab(t))
            except KqlSemanticError as e:
                if e.code not in FUZZY_FAILURES:
                    raise
        else:
            rels.append(pl.tab(t))
    return rels


def op_union(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    params = op.args["params"]
    return union_rels(pl, [rel] + union_inputs(pl, op.args["tables"], _fuzzy(params)), params, op.span)


def src_union(pl: Planner, node: s.UnionSource) -> Rel:
    fuzzy = _fuzzy(node.params)
    rels = union_inputs(pl, node.tables, fuzzy)
    if not rels:
        raise KqlSemanticError("union matched no tables" + (" (isfuzzy=true left out every leg: none names a "
                               "table and columns that are there)" if fuzzy else ""), node.span, code="KQL_UNKNOWN_TABLE")
    return union_rels(pl, rels, node.params, node.span)


# ---- mv-expand ------------------------------------------------------------------------------

def op_mv_expand(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    scope = scope_of(rel)
    params = op.args["params"]
    bagexp = params.get("bagexpansion", params.get("kind", ("bag", None)))[0]
    itemindex = params.get("with_itemindex", (None, None))[0]
    expanded = []
    for a, to in op.args["items"]:
        t = pl.scalar(a.expr, scope)
        name = a.names[0] if a.names else t.name
        if name is None:
            raise KqlSemanticError("name the expanded expression: mv-expand Name = expr", a.span, code="KQL_ARGUMENTS")
        if t.type != T.DYNAMIC:
            raise KqlSemanticError(f"mv-expand needs a dynamic array or bag, but '{name}' is {t.type}", a.span,
                                   code="KQL_TYPE")
        expanded.append((name, t, to or T.DYNAMIC))
    # Stage 1: turn each column into a list (arrays as is, bags as {key: value} entries, scalars as one item)
    pre_cols = [col(c) for c, _ in rel.cols if c not in {n for n, _, _ in expanded}]
    lists = []
    for i, (name, t, to) in enumerate(expanded):
        lists.append(aliased(fn("netatlas_mv_list", t.sql, L(bagexp)), f"__mv{i}"))
    pre = Rel(pl.wrap(rel, pre_cols + lists), [], None)
    # Stage 2: unnest them side by side (the longest decides the row count; shorter ones pad with null)
    limit = op.args["limit"]
    sel, cols = [], []
    newcols = {n: (i, to) for i, (n, _, to) in enumerate(expanded)}
    for c, typ in rel.cols:
        if c in newcols:
            i, to = newcols[c]
            sel.append(aliased(mv_cast(col(f"__mv{i}"), to), c))
            cols.append((c, to))
        else:
            sel.append(col(c))
            cols.append((c, typ))
    for n, (i, to) in newcols.items():
        if n not in rel.types:
            sel.append(aliased(mv_cast(col(f"__mv{i}"), to), n))
            cols.append((n, to))
    unn = [aliased(fn(exp.Explode, col(f"__mv{i}")), f"__mv{i}") for i in range(len(expanded))]
    keep = [col(c) for c, _ in rel.cols if c not in newcols]
    if itemindex or limit is not None:
        # the places of the longest list (the others pad with null beyond their ends)
        longest = col("__mv0")
        for i in range(1, len(expanded)):
            longer = exp.GTE(this=exp.Coalesce(this=fn("list_length", longest.copy()), expressions=[N(0)]),
                             expression=exp.Coalesce(this=fn("list_length", col(f"__mv{i}")), expressions=[N(0)]))
            longest = exp.Case(ifs=[exp.If(this=longer, true=longest)], default=col(f"__mv{i}"))
        unn.append(aliased(exp.Sub(this=fn("list_positions", longest, N(1)), expression=N(1)), "__idx"))
    inner = Rel(pl.wrap(pre, keep + unn), [], None)
    if itemindex:
        sel.append(aliased(cast(col("__idx"), T.LONG), itemindex))
        cols.append((itemindex, T.LONG))
    where = None
    if limit is not None:
        where = exp.LT(this=col("__idx"), expression=limit_value(pl, limit))
    return Rel(pl.wrap(inner, sel, where=where), cols, None, rel.name)


# ---- search ---------------------------------------------------------------------------------

def search_predicate(pl: Planner, node: s.Node, rel: Rel, cs: bool = False) -> Typed:
    scope = scope_of(rel)
    if isinstance(node, s.Literal) and node.type == T.STRING:
        return term_anywhere(rel, node.value, node.span, cs)
    if isinstance(node, s.Binary) and node.op == ":":
        name = node.left.name
        if name not in rel.types:
            return Typed(exp.false(), T.BOOL)
        v = pl.scalar(node.right, scope)
        return term_match(Typed(col(name), rel.types[name]), v.const if v.is_const else "", node.span, cs)
    if isinstance(node, s.Binary) and node.op in ("and", "or"):
        a = search_predicate(pl, node.left, rel, cs)
        b = search_predicate(pl, node.right, rel, cs)
        return binary(node.op, a, b, node.span)
    if isinstance(node, s.Call) and node.name == "not" and len(node.args) == 1:
        a = search_predicate(pl, node.args[0], rel, cs)
        return Typed(exp.Not(this=exp.Paren(this=a.sql)), T.BOOL, node.span)
    if isinstance(node, s.Binary) and isinstance(node.left, s.Star):
        if isinstance(node.right, s.Literal):
            parts = []
            for c, typ in rel.cols:
                parts.append(binary(node.op, Typed(col(c), typ), const(node.right.value, node.right.type), node.span).sql
                             if typ == T.STRING else exp.false())
            return _any(parts)
    return to_bool(pl.scalar(node, scope), "the search condition")


def _any(parts: list[exp.Expression]) -> Typed:
    e = parts[0] if parts else exp.false()
    for p in parts[1:]:
        e = exp.Or(this=e, expression=p)
    return Typed(exp.Paren(this=e), T.BOOL)


def term_match(t: Typed, term: str, span: Span, cs: bool = False) -> Typed:
    """Kusto search semantics for one column: has, or contains/prefix/suffix with wildcards."""
    term = str(term)
    op = "has"
    if term.startswith("*") and term.endswith("*") and len(term) > 1:
        op, term = "contains", term[1:-1]
    elif term.endswith("*"):
        op, term = "hasprefix", term[:-1]
    elif term.startswith("*"):
        op, term = "hassuffix", term[1:]
    if "*" in term:
        regex = ".*".join(re.escape(p) for p in term.split("*"))
        if cs:
            return Typed(fn(exp.RegexpLike, to_string(t).sql, L(regex)), T.BOOL)
        return Typed(fn(exp.RegexpLike, exp.Lower(this=to_string(t).sql), L(regex.lower())), T.BOOL)
    return binary(op + ("_cs" if cs else ""), t, const(term, T.STRING), span)


def term_anywhere(rel: Rel, term: str, span: Span, cs: bool = False) -> Typed:
    parts = []
    numeric_term = bool(re.fullmatch(r"-?\d+(\.\d+)?", term))
    for c, typ in rel.cols:
        if typ in (T.STRING, T.DYNAMIC, T.GUID) or (numeric_term and typ in T.NUMERIC):
            parts.append(term_match(Typed(col(c), typ), term, span, cs).sql)
    return _any(parts)


def search_rel(pl: Planner, rel: Rel, predicate: s.Node, table_name: str | None, params: dict) -> Rel:
    kind = params.get("kind", ("default", None))[0]
    pred = search_predicate(pl, predicate, rel, cs=kind == "case_sensitive")
    sel = [aliased(L(table_name or rel.name or ""), "$table")] + select_all(rel)
    return Rel(pl.wrap(rel, sel, where=pred.sql), [("$table", T.STRING)] + list(rel.cols), rel.order, None)


def op_search(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    return search_rel(pl, rel, op.args["predicate"], rel.name, op.args["params"])


def src_search(pl: Planner, node: s.SearchSource) -> Rel:
    names = []
    if node.tables is None:
        names = pl.catalogue.names()
    else:
        for t in node.tables:
            if "*" in t.name:
                names.extend(n for n in pl.catalogue.names() if fnmatch.fnmatchcase(n, t.name))
            else:
                names.append(t.name)
    rels = [search_rel(pl, pl.table_ref(s.Name(node.span, n)), node.predicate, n, node.params) for n in names]
    if len(rels) == 1:
        return rels[0]
    out = union_rels(pl, rels, {}, node.span)
    return out


# ---- parse ----------------------------------------------------------------------------------

CAPTURE = {T.LONG: r"(-?\d+)", T.INT: r"(-?\d+)", T.REAL: r"(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)",
           T.DECIMAL: r"(-?\d+(?:\.\d+)?)", T.BOOL: r"(true|false|True|False|TRUE|FALSE)",
           T.GUID: r"([0-9a-fA-F-]{36})"}


def parse_regex(pattern, kind: str) -> tuple[str, list[tuple[str, str]]]:
    parts, cols = ["^"], []
    n = len(pattern)
    for i, (what, value, span) in enumerate(pattern):
        last = i == n - 1
        if what == "*":
            parts.append(".*?" if not last else ".*")
        elif what == "lit":
            parts.append(value if kind == "regex" else re.escape(value))
        else:
            name, typ = value
            typ = typ or T.STRING
            cols.append((name, typ))
            if typ in CAPTURE:
                parts.append(CAPTURE[typ])
            else:
                parts.append("(.*)" if last else "(.*?)")
    if pattern[-1][0] == "col":
        parts.append("$")
    return "".join(parts), cols


def check_parse_regex(op: s.Operator, regex: str) -> None:
    """parse kind=regex whose assembled regex RE2 rejects: the error points at the first literal
    RE2 rejects on its own, else at the whole operator."""
    for what, value, span in op.args["pattern"]:
        if what == "lit" and re2_error(value):
            check_regex(value, span)
    check_regex(regex, op.span, "regular expression (assembled from the parse pattern)")


def _parse_rel(pl: Planner, rel: Rel, op: s.Operator, filter_matches: bool) -> Rel:
    kind = op.args["params"].get("kind", ("simple", None))[0]
    src = to_string(pl.scalar(op.args["source"], scope_of(rel)))
    flags = op.args["params"].get("flags", ("", None))[0]
    regex, cols = parse_regex(op.args["pattern"], kind)
    if flags:
        regex = f"(?{flags})" + regex
    if kind == "regex" and re2_error(regex):
        check_parse_regex(op, regex)
    matched = fn(exp.RegexpLike, src.sql, L(regex))
    new = {}
    for i, (name, typ) in enumerate(cols, start=1):
        raw = fn(exp.RegexpExtract, src.sql, L(regex), group=N(i), null_if_pos_overflow=True)
        new[name] = (_when(matched, captured(raw, typ), typ), typ)
    return with_columns(pl, rel, new, where=matched if filter_matches else None)


def op_parse(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    return _parse_rel(pl, rel, op, False)


# how a captured text becomes a value of each type (strings as they are; the rest try-cast)
CAPTURED = {T.STRING: lambda raw: raw,
            T.DATETIME: lambda raw: fn("netatlas_todatetime", raw),
            T.TIMESPAN: lambda raw: fn("netatlas_totimespan", raw),
            T.DYNAMIC: lambda raw: fn("netatlas_parse_json", raw)}


def captured(raw: exp.Expression, typ: str) -> exp.Expression:
    """A captured text as a value of ``typ`` (null when it is none)."""
    convert = CAPTURED.get(typ)
    return convert(raw) if convert else exp.TryCast(this=raw, to=T.storage(typ))


def _when(found: exp.Expression, value: exp.Expression, typ: str) -> exp.Expression:
    """value where the text matched, else "" for a string and null for the rest (as parse gives)."""
    default = L("") if typ == T.STRING else cast(exp.null(), typ)
    return exp.Case(ifs=[exp.If(this=found, true=value)], default=default)


def with_columns(pl: Planner, rel: Rel, new: dict, where: exp.Expression | None = None) -> Rel:
    """rel with the columns ``new`` ({name: (sql, type)}): those it has are replaced in place, the
    others appended in order; the order survives unless it rests on a replaced column."""
    select, out = [], []
    for c, t in rel.cols:
        e, t = new.get(c, (col(c), t))
        select.append(aliased(e, c) if c in new else e)
        out.append((c, t))
    for name, (e, typ) in new.items():
        if name not in rel.types:
            select.append(aliased(e, name))
            out.append((name, typ))
    return Rel(pl.wrap(rel, select, where=where), out, order_survives(rel.order, dict(out), set(new)),
               rel.name, rel.serialized)


# ---- parse-kv -------------------------------------------------------------------------------

KV_OPTIONS = {"pair_delimiter", "kv_delimiter", "quote", "escape", "greedy", "regex"}


def _class(chars: str) -> str:
    """A regex character class body matching any of ``chars`` (escaped)."""
    return "".join("\\" + c if c in "\\]^-[" else c for c in chars)


def kv_pattern(key: str, options: dict) -> tuple[str, int]:
    """(a regex whose group ``n`` is key's value in the text, n): parse-kv's modes as RE2 patterns."""
    one = lambda name, default=None: options[name][0][0] if name in options else default   # noqa: E731
    quotes = [q for q, _ in options.get("quote", [])]
    escapes = "".join(e for e, _ in options.get("escape", []))
    pd, kvd = one("pair_delimiter"), one("kv_delimiter")
    k = re.escape(key)
    keys = [k] + [re.escape(q[0]) + k + re.escape(q[-1]) for q in quotes]
    key_re = "(?:" + "|".join(keys) + ")"
    quoted = []
    for q in quotes:
        o, c = re.escape(q[0]), q[-1]
        body = f"(?:[{_class(escapes)}].|[^{_class(c + escapes)}])*" if escapes else f"[^{_class(c)}]*"
        quoted.append(f"{o}({body}){re.escape(c)}")
    if pd is None:            # no delimiters named: any character but a letter or a digit delimits
        lead = "(?:^|[^0-9A-Za-z_])"
        sep = f"[^0-9A-Za-z_{_class(''.join(q[0] for q in quotes))}]+"
        plain = "([0-9A-Za-z_.\\-]+)"
    else:
        lead = f"(?:^|{re.escape(pd)})"
        sep = f"\\s*{re.escape(kvd or '=')}\\s*"
        if one("greedy", False):   # up to the next key (a pair delimiter, a word, the kv delimiter) or the end
            plain = f"(.*?)\\s*(?:{re.escape(pd)}+[^{_class(pd + (kvd or '='))}]+{re.escape(kvd or '=')}|$)"
        else:
            plain = f"([^{_class(pd)}]*)"
    alternatives = "|".join(quoted + [plain])
    return f"{lead}\\s*{key_re}{sep}(?:{alternatives})", len(quoted) + 1


def kv_regex_key(pattern: str, key: str) -> str | None:
    """A parse-kv regex (two groups: key, value) with its first group replaced by the key itself,
    so its one group left is that key's value; None when it has no first group."""
    i, n, depth, start = 0, len(pattern), 0, None
    in_class = False
    while i < n:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if in_class:
            in_class = c != "]"
        elif c == "[":
            in_class = True
        elif c == "(":
            if start is None and not pattern.startswith("(?", i):
                start, depth = i, 0
            if start is not None:
                depth += 1
        elif c == ")" and start is not None:
            depth -= 1
            if depth == 0:
                return pattern[:start] + "(?:" + re.escape(key) + ")" + pattern[i + 1:]
        i += 1
    return None


def op_parse_kv(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    """parse-kv Expr as (Key:Type, ...) with (...): a column per key, its first value in the text
    (trimmed; quoted values unquoted and unescaped), null or "" where the key is missing."""
    options = op.args["options"]
    for name, values in options.items():
        if name not in KV_OPTIONS:
            raise KqlSemanticError(f"parse-kv has no option '{name}'", values[0][1], code="KQL_ARGUMENTS",
                                   hint=did_you_mean(name, KV_OPTIONS) or f"the options: {', '.join(sorted(KV_OPTIONS))}")
    if ("pair_delimiter" in options) != ("kv_delimiter" in options):
        raise KqlSemanticError("parse-kv needs both pair_delimiter and kv_delimiter, or neither", op.span,
                               code="KQL_ARGUMENTS")
    src = to_string(pl.scalar(op.args["source"], scope_of(rel)))
    escapes = "".join(e for e, _ in options.get("escape", []))
    new = {}
    for key, typ, span in op.args["keys"]:
        if "regex" in options:
            user = options["regex"][0][0]
            check_regex(user, options["regex"][0][1])
            pattern, groups = kv_regex_key(user, key), 1
            if pattern is None:
                raise KqlSemanticError("parse-kv's regex needs two groups: the key, then the value",
                                       options["regex"][0][1], code="KQL_ARGUMENTS")
        else:
            pattern, groups = kv_pattern(key, options)
        found = fn(exp.RegexpLike, src.sql, L(pattern))
        parts = [fn(exp.RegexpExtract, src.sql, L(pattern), group=N(g), null_if_pos_overflow=True)
                 for g in range(1, groups + 1)]
        # the one alternative that matched gives its group, the others "": the greatest is it
        raw = parts[0] if len(parts) == 1 else fn(exp.Greatest, *parts, ignore_nulls=True)
        raw = fn(exp.Trim, raw)
        if escapes:     # \x -> x inside quoted values
            raw = fn(exp.RegexpReplace, raw, L(f"[{_class(escapes)}](.)"), L("\\1"), modifiers=L("g"))
        new[key] = (_when(found, captured(raw, typ), typ), typ)
    return with_columns(pl, rel, new)


def op_parse_where(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    return _parse_rel(pl, rel, op, True)


# ---- as, serialize, getschema, render, evaluate, invoke ----------------------------------------

def op_as(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    from .planner import Binding
    name = op.args["name"]
    rel = pl.shared(rel, name, uses=1)    # a CTE when the query names it too: the pipeline goes on with it
    pl.env[name] = Binding("table", Rel(rel.sql.copy(), list(rel.cols), rel.order, name, rel.serialized))
    return Rel(rel.sql, rel.cols, rel.order, name, rel.serialized)


def op_serialize(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    rel = Rel(rel.sql, rel.cols, rel.order, rel.name, True)
    if op.args["items"]:
        return op_extend(pl, rel, s.Operator(op.span, "extend", {"items": op.args["items"]}))
    return rel


def op_getschema(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    rows = []
    for i, (c, t) in enumerate(rel.cols):
        rows.append(exp.Tuple(expressions=[L(c), cast(N(i), T.INT), L(T.DOTNET[t]), L(t)]))
    cols = [("ColumnName", T.STRING), ("ColumnOrdinal", T.INT), ("DataType", T.STRING), ("ColumnType", T.STRING)]
    return values_rel(pl, rows, cols)


RENDER_KINDS = {"table", "timechart", "barchart", "columnchart", "piechart", "scatterchart", "areachart",
                "linechart", "stackedareachart", "anomalychart", "card", "pivotchart", "ladderchart",
                "timepivot", "treemap", "3Dchart"}


def op_render(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    viz = op.args["visualization"]
    if viz not in RENDER_KINDS:
        raise KqlSemanticError(f"unknown visualization '{viz}'", op.args["viz_span"], code="KQL_ARGUMENTS",
                               hint=did_you_mean(viz, RENDER_KINDS) or f"one of {', '.join(sorted(RENDER_KINDS))}")
    pl.render = {"visualization": viz, **op.args["props"]}
    return rel


def op_evaluate(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    call: s.Call = op.args["plugin"]
    plugin = PLUGINS.get(call.name)
    if plugin is None and call.name in KUSTO_PLUGINS:
        raise KqlSemanticError(not_yet(call.name, "plugin"), call.name_span, code="KQL_NOT_SUPPORTED",
                               hint=f"the plugins netatlas has: {', '.join(sorted(PLUGINS))}")
    if plugin is None:
        raise KqlSemanticError(f"unknown plugin '{call.name}'", call.name_span, code="KQL_UNKNOWN_FUNCTION",
                               hint=did_you_mean(call.name, PLUGINS) or f"plugins: {', '.join(sorted(PLUGINS))}")
    schema = op.args.get("schema")
    if schema is not None and call.name == "bag_unpack":      # the schema names the slots: no look at the data
        return plugin(pl, rel, call, schema)
    if schema is not None and call.name == "pivot":           # ... or the pivoted values
        return conform(pl, plugin(pl, rel, call, schema), schema)
    out = plugin(pl, rel, call)
    return conform(pl, out, schema) if schema is not None else out


def op_invoke(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    call: s.Call = op.args["call"]
    b = pl.env.get(call.name)
    if b is None or b.kind != "function" or not b.value.params or b.value.params[0].type is not None:
        raise KqlSemanticError(f"'{call.name}' is not a function taking a table as its first parameter",
                               call.name_span, code="KQL_UNKNOWN_FUNCTION")
    tmp = pl.fresh("__invoke")
    pl.env[tmp] = Binding("table", rel)
    new_call = s.Call(call.span, call.name, [s.Name(call.span, tmp)] + call.args, call.name_span)
    return pl.call_function(new_call, b, Scope(), tabular=True)


# ---- make-series, top-nested ------------------------------------------------------------------

def op_make_series(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    return make_series(pl, rel, op)


def op_top_nested(pl: Planner, rel: Rel, op: s.Operator) -> Rel:
    return top_nested(pl, rel, op)


# ---- sources --------------------------------------------------------------------------------

def src_datatable(pl: Planner, node: s.Datatable) -> Rel:
    ncols = len(node.columns)
    rows = []
    for r in range(0, len(node.values), ncols):
        row = []
        for (c, typ), v in zip(node.columns, node.values[r:r + ncols]):
            t = pl.scalar(v, Scope())
            if not t.is_const:
                raise KqlSemanticError("datatable values must be literals", v.span, code="KQL_SYNTAX")
            row.append(datatable_value(t, typ, v.span).sql)
        rows.append(exp.Tuple(expressions=row))
    rel = values_rel(pl, rows, list(node.columns))
    if len(rows) <= LITERAL_ROWS_MAX:
        rel.literals = [list(r.expressions) for r in rows]
    return rel


LITERAL_ROWS_MAX = 1000     # a datatable `in` lists as literals (Rel.literals)


def datatable_value(t: Typed, typ: str, span: Span) -> Typed:
    v = t.const
    if v is None:
        return const("", T.STRING) if typ == T.STRING else Typed(cast(exp.null(), typ), typ)
    if t.type == typ:
        return Typed(cast(t.sql, typ) if typ in (T.LONG, T.TIMESPAN) else t.sql, typ)
    if typ in T.NUMERIC and t.type in T.NUMERIC:
        return const(int(v) if typ in T.INTEGER else v, typ)
    if typ == T.DYNAMIC:
        return const(v if t.type in (T.STRING, T.LONG, T.REAL, T.BOOL, T.INT) else str(v), T.DYNAMIC)
    if typ == T.STRING:
        return const(str(v), T.STRING)
    if typ == T.GUID and t.type == T.STRING:
        return const(v, T.GUID)
    raise KqlSemanticError(f"a {t.type} value cannot go in a {typ} column", span, code="KQL_TYPE")


def src_range(pl: Planner, node: s.RangeSource) -> Rel:
    start = pl.scalar(node.start, Scope())
    stop = pl.scalar(node.stop, Scope())
    step = pl.scalar(node.step, Scope())
    if start.type == T.DATETIME:
        if step.type != T.TIMESPAN:
            raise KqlSemanticError("a datetime range needs a timespan step", node.step.span, code="KQL_TYPE")
        stop2 = stop if stop.type == T.DATETIME else binary("+", start, stop, node.stop.span)
        interval = fn("microseconds", exp.IntDiv(this=step.sql, expression=N(10)))
        series = fn(exp.GenerateSeries, start.sql, stop2.sql, interval)
        typ = T.DATETIME
    else:
        typ = T.promote(start.type, stop.type) or start.type
        if typ not in T.NUMERIC:
            raise KqlSemanticError(f"range needs numbers or datetimes, not {start.type}", node.start.span, code="KQL_TYPE")
        typ = T.promote(typ, step.type) or typ
        if typ == T.INT:
            typ = T.LONG
        series = fn(exp.GenerateSeries, cast(start.sql, typ), cast(stop.sql, typ), cast(step.sql, typ))
    # the table function streams; unnest() of a list would build the whole range in memory
    sel = exp.Select(expressions=[aliased(col("generate_series"), node.column)]).from_(
        exp.Table(this=series), copy=False)
    # its order is the one generate_series streams in: the final SELECT needs no ORDER BY for it
    # (generator.build), so a huge range with a row cap stops early instead of sorting it all
    order = exp.Ordered(this=col(node.column), desc=False, nulls_first=True)
    order.meta["natural"] = True
    return Rel(sel, [(node.column, typ)], [order], None, True)


def src_print(pl: Planner, node: s.PrintSource) -> Rel:
    """print's items; a function of several columns (``tuple_items``) as in extend: its object
    computed in a SELECT below."""
    sel, cols, scope = [], [], Scope()
    for i, it in enumerate(node.items):
        if is_tuple_call(pl, it.expr):
            named = tuple_items(pl, it, scope, False)
        else:
            named = [(it.names[0] if it.names else f"print_{i}", pl.scalar(it.expr, scope))]
        for name, t in named:
            sel.append(aliased(t.sql, name))
            cols.append((name, t.type))
    if not scope.pre:
        return Rel(exp.Select(expressions=sel), cols, None)
    base, _ = with_pre(pl, Rel(exp.Select(expressions=[aliased(exp.Literal.number(0), "__print")]), [], None), scope)
    return Rel(pl.wrap(base, sel), cols, None)


OPERATORS = {
    "where": op_where, "project": op_project, "extend": op_extend, "project-away": op_project_away,
    "project-keep": op_project_keep, "project-rename": op_project_rename,
    "project-reorder": op_project_reorder, "summarize": op_summarize, "order": op_order,
    "top": op_top, "take": op_take, "distinct": op_distinct, "count": op_count, "join": op_join,
    "lookup": op_lookup, "union": op_union, "mv-expand": op_mv_expand, "search": op_search,
    "parse": op_parse, "parse-where": op_parse_where, "parse-kv": op_parse_kv, "as": op_as, "serialize": op_serialize,
    "make-series": op_make_series, "top-nested": op_top_nested, "getschema": op_getschema,
    "render": op_render, "evaluate": op_evaluate, "invoke": op_invoke, "sample": op_sample,
}
SOURCES = {
    s.Datatable: src_datatable, s.RangeSource: src_range, s.PrintSource: src_print,
    s.UnionSource: src_union, s.SearchSource: src_search,
}

_OPERATORS.update(OPERATORS)      # the planner dispatches through plan.py's tables
_SOURCES.update(SOURCES)
