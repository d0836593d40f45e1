"""evaluate basket() and evaluate diffpatterns(): frequent and differing patterns of discrete columns.

    T | evaluate basket([Threshold, WeightColumn, MaxDimensions, CustomWildcard, ...])
    T | evaluate diffpatterns(SplitColumn, SplitValueA, SplitValueB [, WeightColumn, Threshold,
                              MaxDimensions, CustomWildcard, ...])

Like autocluster (autocluster.py, which shares this module's argument readers, its read and its
search), both read their input at plan time through the planner's executor and answer with
literal rows. The read is grouped: one row per distinct combination of the dimensions (and of the
split value), with its count or its summed weight, so the database does the counting and Python
sees few rows.

A *pattern* assigns values to some dimensions; it matches the rows holding those values. Its
weight is its rows' count, or their summed WeightColumn (null as 0). A null (or NaN) value is in
no pattern. Kusto does not publish its algorithms; the rules netatlas follows, deterministic:

- Dimensions: every input column but the weight column (and, for diffpatterns, the split
  column) and the dynamic columns; an output column keeps its type. A column without a frequent
  value simply stays a wildcard. At most ``limits.PATTERN_MAX_DIMENSIONS`` dimensions and
  ``limits.PATTERN_MAX_ROWS`` distinct combinations are read, and at most
  ``limits.PATTERN_MAX_ITEMSETS`` patterns enumerated; past any, a KQL_QUERY_TOO_COMPLEX error.
- Wildcards: a column a pattern leaves free shows its type's wildcard: '' for strings, null for
  the others, unless a CustomWildcard of that type is given (one per type: '*', int(-1),
  long(0), double(-1), datetime(1900-1-1) ...). '~' for any argument means its default.
- basket: the frequent patterns (weight at least Threshold x the total, Threshold in
  [0.015, 1], default 0.05) of at most MaxDimensions columns (default 5), each widened to its
  closure: every other column whose value is the same on all the rows it matches joins it
  (Kusto's "uncorrelated dimensions": columns a pattern implies do not count against
  MaxDimensions; the reference's example shows {Hail, NO, 0}, never {Hail, NO}). Distinct
  closures are the answer: SegmentId, Count, Percent (100 x weight / total, unrounded), then the
  dimensions; ordered by Count descending, then fewer fixed columns, then the values in column
  order.
- diffpatterns: A is the rows whose tostring(SplitColumn) is SplitValueA, B those of
  SplitValueB (strings; the other rows are ignored; no row in A or in B: no patterns). A pattern
  (at most MaxDimensions columns, default all) is a candidate when its share of A and its share
  of B differ by at least Threshold (in [0.015, 1], default 0.05) and none of its columns is
  implied by its others (on A and B, dropping it matches the same rows). Candidates are taken
  by difference, largest first (to 9 decimals; ties: fewer columns, then the values in column order); one is
  skipped when it contains, or is contained in, a pattern already taken (the reference's
  example keeps {Hail, 0} and drops {Hail} and {0}). Columns: SegmentId, CountA, CountB,
  PercentA, PercentB, PercentDiffAB (|PercentA - PercentB|), the percentages rounded to 2
  decimals as in the reference's example (the difference from the unrounded ones), then the
  dimensions.
"""
from __future__ import annotations

from decimal import Decimal

from sqlglot import exp

from .. import limits
from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .plan import Rel
from .relations import scope_of, values_rel
from .scalars import to_string
from .typed import Typed, col, sql_literal

MIN_THRESHOLD = 0.015
DEFAULT_THRESHOLD = 0.05
BASKET_MAX_DIMENSIONS = 5
EPSILON = 1e-9          # shares compared to the threshold with this slack (0.6 - 0.4 < 0.2 in floats)
NOT_DIMENSIONS = (T.DYNAMIC,)


# ---- arguments (autocluster's too) --------------------------------------------------------------

def _const(args, i, default, conv, what, plugin):
    """Argument ``i`` (a constant) through ``conv``; ``default`` when it is left out, null or the
    tilde '~' (Kusto's "use the default")."""
    if len(args) <= i or (args[i].is_const and (args[i].const is None or
                                                 (isinstance(args[i].const, str) and args[i].const == "~"))):
        return default
    if not args[i].is_const:
        raise KqlSemanticError(f"{plugin}(): {what} must be a constant", args[i].span, code="KQL_ARGUMENTS")
    try:
        return conv(args[i].const)
    except (TypeError, ValueError):
        raise KqlSemanticError(f"{plugin}(): {what} cannot be {args[i].const!r}", args[i].span,
                               code="KQL_ARGUMENTS") from None


def _number(v) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float, Decimal)):
        raise ValueError(v)
    return float(v)


def _threshold(args, i, plugin, span):
    t = _const(args, i, DEFAULT_THRESHOLD, _number, "Threshold", plugin)
    if not MIN_THRESHOLD <= t <= 1:
        raise KqlSemanticError(f"{plugin}(): Threshold is between {MIN_THRESHOLD} and 1, not {t:g}",
                               args[i].span if len(args) > i else span, code="KQL_ARGUMENTS")
    return t


def _whole(args, i, default, what, plugin):
    """A whole-number argument of at least 1 (MaxDimensions, autocluster's NumSeeds)."""
    m = _const(args, i, default, _number, what, plugin)
    if m < 1 or m != int(m):
        raise KqlSemanticError(f"{plugin}(): {what} is a whole number of at least 1, not {m:g}", args[i].span,
                               code="KQL_ARGUMENTS")
    return int(m)


def _weight_column(args, i, rel: Rel, plugin) -> str | None:
    if len(args) <= i or (args[i].is_const and (args[i].const is None or args[i].const == "~")):
        return None
    a = args[i]
    if a.is_const or not a.name or a.name not in rel.types:
        raise KqlSemanticError(f"{plugin}(): WeightColumn is a column of the input", a.span, code="KQL_ARGUMENTS",
                               hint="name it without quotes, or '~' for a weight of 1 per row")
    if not T.is_numeric(a.type):
        raise KqlSemanticError(f"{plugin}(): WeightColumn must be numeric, not {a.type}", a.span, code="KQL_TYPE")
    return a.name


def _wildcards(args, start, plugin) -> dict:
    """CustomWildcard arguments: the wildcard of each one's type ('~' leaves a type's default)."""
    out = {T.STRING: ""}
    given = set()
    for a in args[start:]:
        if not a.is_const:
            raise KqlSemanticError(f"{plugin}(): a CustomWildcard must be a constant", a.span, code="KQL_ARGUMENTS")
        if a.const == "~" and a.type == T.STRING:
            continue
        if a.type in given:
            raise KqlSemanticError(f"{plugin}(): two CustomWildcards of type {a.type}", a.span, code="KQL_ARGUMENTS",
                                   hint="give one wildcard per type")
        if a.type in NOT_DIMENSIONS:
            raise KqlSemanticError(f"{plugin}(): no wildcard of type {a.type} (a {a.type} column is not a dimension)",
                                   a.span, code="KQL_ARGUMENTS")
        given.add(a.type)
        out[a.type] = a.const
    return out


# ---- reading the input ------------------------------------------------------------------------

def _dimensions(rel: Rel, skip: set, call: s.Call, plugin) -> list[tuple[str, str]]:
    dims = [(c, t) for c, t in rel.cols if c not in skip and t not in NOT_DIMENSIONS]
    if not dims:
        raise KqlSemanticError(f"{plugin}() found no column to find patterns in", call.span, code="KQL_ARGUMENTS")
    if len(dims) > limits.PATTERN_MAX_DIMENSIONS:
        raise KqlSemanticError(f"{plugin}() takes at most {limits.PATTERN_MAX_DIMENSIONS} dimensions; its input has "
                               f"{len(dims)} columns", call.span, code="KQL_QUERY_TOO_COMPLEX",
                               hint="project the columns to look at first")
    return dims


def _read(pl, rel: Rel, call: s.Call, plugin, dims, weight: str | None, split: exp.Expression | None = None,
          split_values: tuple = (), counted: bool = False, refuse: bool = True) -> list[tuple]:
    """The input grouped by its dimensions (and split value): rows (values..., [split,] weight
    [, rows when ``counted``]). Past limits.PATTERN_MAX_ROWS groups, a KQL_QUERY_TOO_COMPLEX
    error; without ``refuse``, the first PATTERN_MAX_ROWS + 1 groups (the caller groups by fewer
    columns)."""
    if pl.executor is None:
        raise KqlSemanticError(f"{plugin}() needs a workspace to read its input", call.span, code="KQL_UNSUPPORTED")
    inner = [col(c) for c, _ in dims]
    if split is not None:
        inner.append(exp.alias_(split, "__split", quoted=True))
    w = (exp.Coalesce(this=exp.Cast(this=col(weight), to=T.storage(T.REAL)), expressions=[exp.Literal.number(0)])
         if weight else exp.Literal.number(1))
    inner.append(exp.alias_(w, "__weight", quoted=True))
    q = exp.Select(expressions=inner).from_(pl.finish(rel).subquery(pl.fresh(), copy=False), copy=False)
    keys = [col(c) for c, _ in dims] + ([col("__split")] if split is not None else [])
    total = [exp.Sum(this=col("__weight")) if weight else exp.Count(this=exp.Star())]
    if counted:
        total.append(exp.Count(this=exp.Star()))
    outer = exp.Select(expressions=keys + total).from_(q.subquery(pl.fresh(), copy=False), copy=False)
    if split is not None:
        outer = outer.where(exp.In(this=col("__split"), expressions=[exp.Literal.string(v) for v in split_values]),
                            copy=False)
    outer = outer.group_by(*[k.copy() for k in keys], copy=False).limit(limits.PATTERN_MAX_ROWS + 1, copy=False)
    rows = pl.run(outer)
    if refuse and len(rows) > limits.PATTERN_MAX_ROWS:
        raise KqlSemanticError(f"{plugin}() reads at most {limits.PATTERN_MAX_ROWS:,} distinct combinations of its "
                               f"dimensions; its input has more", call.span, code="KQL_QUERY_TOO_COMPLEX",
                               hint="filter the input, or project fewer or coarser columns (bin() the numbers)")
    return rows


def _is_value(v) -> bool:
    return v is not None and v == v         # not null, not NaN


# ---- the search -------------------------------------------------------------------------------

def frequent_patterns(values: list[tuple], ndims: int, max_dims: int, frequent, check=None, prune_implied=False):
    """Every pattern of at most ``max_dims`` columns whose rows ``frequent(rows)`` accepts (it must
    hold for a pattern's supersets only if for the pattern: Apriori), depth first (Eclat): a list
    of (((dim, value), ...) sorted by dim, frozenset of row indexes). ``prune_implied``: an item
    holding on all the rows of the pattern it would extend is not tried under it (basket's
    closures absorb it; diffpatterns drops patterns with an implied column). ``check``: the query's deadline, every few hundred patterns."""
    items: dict = {}
    for i, row in enumerate(values):
        for d in range(ndims):
            if _is_value(row[d]):
                items.setdefault((d, row[d]), set()).add(i)
    level = [(item, frozenset(rows)) for item, rows in sorted(items.items(), key=_item_key) if frequent(rows)]
    out: list = []

    def grow(prefix: tuple, rows, cands: list) -> None:
        for i, (item, r) in enumerate(cands):
            pattern = prefix + (item,)
            out.append((pattern, r))
            if len(out) > limits.PATTERN_MAX_ITEMSETS:
                raise _too_many()
            if check is not None and not len(out) & 255:
                check()
            if len(pattern) >= max_dims:
                continue
            nxt = []
            for item2, r2 in cands[i + 1:]:
                if item2[0] == item[0]:
                    continue
                both = r & r2
                if prune_implied and len(both) == len(r):
                    continue
                if frequent(both):
                    nxt.append((item2, both))
            if nxt:
                grow(pattern, r, nxt)

    grow((), None, level)
    return out


def _item_key(kv):
    (d, v), _ = kv
    return (d, v)


def _too_many():
    return KqlSemanticError(f"more than {limits.PATTERN_MAX_ITEMSETS:,} frequent patterns", None,
                            code="KQL_QUERY_TOO_COMPLEX")


def _pattern_key(pattern: tuple):
    return (len(pattern), pattern)


def closure(values: list[tuple], ndims: int, pattern: tuple, rows) -> tuple:
    """``pattern`` widened by every other column that holds one value (not null) on all its
    ``rows``: ((dim, value), ...) sorted by dim."""
    fixed = dict(pattern)
    for d in range(ndims):
        if d not in fixed:
            seen = {values[i][d] for i in rows}
            if len(seen) == 1 and _is_value(v := next(iter(seen))):
                fixed[d] = v
    return tuple(sorted(fixed.items()))


def basket_segments(values: list[tuple], weights: list[float], ndims: int, threshold: float, max_dims: int,
                    check=None) -> list[tuple[tuple, float]]:
    """basket's answer: [(closed pattern, weight)], by weight descending (the module's rules)."""
    total = sum(weights)
    if total <= 0:
        return []
    need = threshold * total - EPSILON * abs(total)

    def frequent(rows) -> bool:
        return sum(weights[i] for i in rows) >= need

    closures: dict = {}
    for pattern, rows in frequent_patterns(values, ndims, max_dims, frequent, check, prune_implied=True):
        closed = closure(values, ndims, pattern, rows)
        if closed not in closures:
            closures[closed] = sum(weights[i] for i in rows)
    return sorted(closures.items(), key=lambda pc: (-pc[1], _pattern_key(pc[0])))


def diff_segments(values: list[tuple], wa: list[float], wb: list[float], ndims: int, threshold: float,
                  max_dims: int, check=None) -> list[tuple[tuple, float, float]]:
    """diffpatterns' answer: [(pattern, weight in A, weight in B)], largest difference first."""
    ta, tb = sum(wa), sum(wb)
    if ta <= 0 or tb <= 0:
        return []
    need = threshold - EPSILON

    def shares(rows):
        return sum(wa[i] for i in rows) / ta, sum(wb[i] for i in rows) / tb

    def frequent(rows) -> bool:
        return max(shares(rows)) >= need

    # an item implied by the pattern it would extend only makes patterns with an implied column,
    # which are no candidates: not tried
    found = frequent_patterns(values, ndims, max_dims, frequent, check, prune_implied=True)
    by_pattern = {p: r for p, r in found}
    cands = []
    for pattern, rows in found:
        pa, pb = shares(rows)
        if abs(pa - pb) < need:
            continue
        if len(pattern) > 1 and any(_rows_of(by_pattern, values, pattern[:k] + pattern[k + 1:]) == rows
                                    for k in range(len(pattern))):
            continue            # one of its columns is implied by the others
        cands.append((abs(pa - pb), pattern, rows))
    cands.sort(key=lambda c: (-round(c[0], 9), _pattern_key(c[1])))   # 0.5 - 1/6 ties 2/6
    taken: list = []
    for diff, pattern, rows in cands:
        mine = set(pattern)
        if any(mine <= set(p) or set(p) <= mine for p, _ in taken):
            continue
        taken.append((pattern, rows))
    return [(p, sum(wa[i] for i in r), sum(wb[i] for i in r)) for p, r in taken]


def _rows_of(by_pattern: dict, values, pattern: tuple):
    """The rows of ``pattern`` (found by the search when it was frequent, else counted)."""
    r = by_pattern.get(pattern)
    if r is not None:
        return r
    return frozenset(i for i, row in enumerate(values) if all(row[d] == v for d, v in pattern))


# ---- the plugins ------------------------------------------------------------------------------

def _cell(pattern: dict, d: int, typ: str, wildcards: dict) -> exp.Expression:
    return sql_literal(pattern[d], typ) if d in pattern else sql_literal(wildcards.get(typ), typ)


def _long(v: float) -> exp.Expression:
    return exp.Cast(this=sql_literal(round(v), T.LONG), to=T.storage(T.LONG))


def _real(v: float) -> exp.Expression:
    return exp.Cast(this=exp.Literal.number(repr(float(v))), to=T.storage(T.REAL))


def _check(pl):
    return pl.deadline.check if pl.deadline is not None else None


def basket(pl, rel: Rel, call: s.Call) -> Rel:
    args = [pl.scalar(a, scope_of(rel)) for a in call.args]
    threshold = _threshold(args, 0, "basket", call.span)
    weight = _weight_column(args, 1, rel, "basket")
    max_dims = _whole(args, 2, BASKET_MAX_DIMENSIONS, "MaxDimensions", "basket")
    wildcards = _wildcards(args, 3, "basket")
    dims = _dimensions(rel, {weight}, call, "basket")
    rows = _read(pl, rel, call, "basket", dims, weight)
    n = len(dims)
    try:
        segments = basket_segments([r[:n] for r in rows], [float(r[n] or 0) for r in rows], n, threshold,
                                   max_dims, _check(pl))
    except KqlSemanticError as e:
        raise _at(e, call)
    total = sum(float(r[n] or 0) for r in rows)
    out = []
    for i, (pattern, count) in enumerate(segments):
        fixed = dict(pattern)
        out.append(exp.Tuple(expressions=[sql_literal(i, T.LONG), _long(count), _real(100.0 * count / total)] +
                             [_cell(fixed, d, t, wildcards) for d, (_, t) in enumerate(dims)]))
    cols = [("SegmentId", T.LONG), ("Count", T.LONG), ("Percent", T.REAL)] + dims
    return values_rel(pl, out, cols)


def diffpatterns(pl, rel: Rel, call: s.Call) -> Rel:
    args = [pl.scalar(a, scope_of(rel)) for a in call.args]
    if len(args) < 3:
        raise KqlSemanticError("diffpatterns() needs SplitColumn, SplitValueA and SplitValueB", call.span,
                               code="KQL_ARGUMENTS")
    split = args[0]
    if split.is_const or not split.name or split.name not in rel.types:
        raise KqlSemanticError("diffpatterns(): SplitColumn is a column of the input", split.span, code="KQL_ARGUMENTS")
    split_values = []
    for a, what in ((args[1], "SplitValueA"), (args[2], "SplitValueB")):
        if not (a.is_const and isinstance(a.const, str)):
            raise KqlSemanticError(f"diffpatterns(): {what} is a string constant (a value of the split column as "
                                   "tostring() gives it)", a.span, code="KQL_ARGUMENTS")
        split_values.append(a.const)
    if split_values[0] == split_values[1]:
        raise KqlSemanticError("diffpatterns(): SplitValueA and SplitValueB must differ", args[2].span,
                               code="KQL_ARGUMENTS")
    weight = _weight_column(args, 3, rel, "diffpatterns")
    threshold = _threshold(args, 4, "diffpatterns", call.span)
    wildcards = _wildcards(args, 6, "diffpatterns")
    dims = _dimensions(rel, {weight, split.name}, call, "diffpatterns")
    max_dims = _whole(args, 5, len(dims), "MaxDimensions", "diffpatterns")
    rows = _read(pl, rel, call, "diffpatterns", dims, weight, to_string(Typed(col(split.name), split.type)).sql,
                 tuple(split_values))
    n = len(dims)
    a_value = split_values[0]
    values = [r[:n] for r in rows]
    wa = [float(r[n + 1] or 0) if r[n] == a_value else 0.0 for r in rows]
    wb = [0.0 if r[n] == a_value else float(r[n + 1] or 0) for r in rows]
    try:
        segments = diff_segments(values, wa, wb, n, threshold, max_dims, _check(pl))
    except KqlSemanticError as e:
        raise _at(e, call)
    ta, tb = sum(wa), sum(wb)
    out = []
    for i, (pattern, ca, cb) in enumerate(segments):
        fixed = dict(pattern)
        pa, pb = 100.0 * ca / ta, 100.0 * cb / tb
        out.append(exp.Tuple(expressions=[sql_literal(i, T.LONG), _long(ca), _long(cb), _real(round(pa, 2)),
                                          _real(round(pb, 2)), _real(round(abs(pa - pb), 2))] +
                             [_cell(fixed, d, t, wildcards) for d, (_, t) in enumerate(dims)]))
    cols = [("SegmentId", T.LONG), ("CountA", T.LONG), ("CountB", T.LONG), ("PercentA", T.REAL),
            ("PercentB", T.REAL), ("PercentDiffAB", T.REAL)] + dims
    return values_rel(pl, out, cols)


def _at(e: KqlSemanticError, call: s.Call) -> KqlSemanticError:
    """The search's too-many-patterns error, pointed at the plugin call."""
    if e.span is not None:
        return e
    return KqlSemanticError(f"{call.name}(): {e.message}", call.span, code=e.code,
                            hint="raise Threshold or lower MaxDimensions")
