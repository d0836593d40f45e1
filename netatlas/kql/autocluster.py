"""evaluate autocluster([SizeWeight, WeightColumn, NumSeeds, CustomWildcard, ...]): common patterns.

The input's discrete columns are the dimensions: strings, bools, guids, and numbers whose values
repeat (at most MAX_DISTINCT_NUMERIC of them, and at most MAX_NUMERIC_SHARE of the rows); dynamic,
datetime and timespan columns are not. A segment is a pattern: values for some dimensions, the
others free. A null (or NaN) value is in no pattern. The planner reads the input at plan time,
grouped by the dimensions (basket.py's read: the database counts), then picks segments greedily:
at each step the pattern whose score over the rows not yet covered

    coverage ^ SizeWeight  x  specificity ^ (1 - SizeWeight)

is highest (coverage: those rows' share of all the rows, or of their summed WeightColumn;
specificity: the share of dimensions it fixes), among the patterns holding at least 5% of the
rows (and at least 2 rows when unweighted); until 10 segments, or until what is left is under 5%
of the rows or shares no such pattern. Adding a column every matched row holds keeps a pattern's
coverage and raises its specificity, so the best pattern is always closed (every such column
fixed): the candidates are the frequent closed patterns, enumerated as basket's are.

Kusto does not publish its algorithm (it names Seed-Expand, a local search from NumSeeds rows);
this search considers every frequent pattern, so NumSeeds, checked (a whole number of at least 1),
changes nothing. The output keeps Kusto's shape: SegmentId, Count (over all the rows), Percent,
then each dimension with its own type, holding the segment's value or the wildcard of its type:
'' for strings and null for the others, unless a CustomWildcard of that type is given (one per
type: '*', int(-1), ...; '~' for any argument means its default). Segments are listed in the
order chosen, as the reference lists them.
"""
from __future__ import annotations

from sqlglot import exp

from .. import limits
from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .basket import (NOT_DIMENSIONS, _cell, _check, _const, _is_value, _long, _number, _read, _real,
                     _weight_column, _whole, _wildcards, closure, frequent_patterns)
from .plan import Rel
from .relations import scope_of, values_rel
from .typed import col

MAX_SEGMENTS = 10
MIN_LEFT = 0.05             # a segment holds at least this share of the rows; stop when fewer are left
MAX_DISTINCT_NUMERIC = 64   # a numeric column with more distinct values is not a dimension
MAX_NUMERIC_SHARE = 0.2     # ... or more distinct values than this share of the rows
DEFAULT_SEEDS = 25
NOT_DISCRETE = NOT_DIMENSIONS + (T.DATETIME, T.TIMESPAN)
NUMERIC = (T.REAL, T.DECIMAL, T.LONG, T.INT)


def autocluster(pl, rel: Rel, call: s.Call) -> Rel:
    args = [pl.scalar(a, scope_of(rel)) for a in call.args]
    size_weight = _const(args, 0, 0.5, _number, "SizeWeight", "autocluster")
    if not 0 < size_weight < 1:
        raise KqlSemanticError(f"autocluster(): SizeWeight is between 0 and 1 (exclusive), not {size_weight:g}",
                               args[0].span, code="KQL_ARGUMENTS")
    weight = _weight_column(args, 1, rel, "autocluster")
    _whole(args, 2, DEFAULT_SEEDS, "NumSeeds", "autocluster")
    wildcards = _wildcards(args, 3, "autocluster")
    dims, rows = _discrete(pl, rel, call, weight)
    n = len(dims)
    try:
        segments = find_segments([r[:n] for r in rows], [float(r[n] or 0) for r in rows], n, size_weight,
                                 least_rows=0 if weight else 2, check=_check(pl))
    except KqlSemanticError as e:
        if e.span is not None:
            raise
        raise KqlSemanticError(f"autocluster(): {e.message}", call.span, code=e.code,
                               hint="project fewer columns, or coarser ones (bin() the numbers)") from None
    total = sum(float(r[n] or 0) for r in rows)
    out = []
    for i, (pattern, count) in enumerate(segments):
        out.append(exp.Tuple(expressions=[exp.Literal.number(i), _long(count), _real(100.0 * count / total)] +
                             [_cell(pattern, d, t, wildcards) for d, (_, t) in enumerate(dims)]))
    cols = [("SegmentId", T.LONG), ("Count", T.LONG), ("Percent", T.REAL)] + dims
    return values_rel(pl, out, cols)


def _discrete(pl, rel: Rel, call: s.Call, weight: str | None):
    """The dimensions and the input grouped by them: rows (values..., weight). One read when the
    candidates' combinations fit; else the numbers' distinct counts first, then a read by the
    columns kept."""
    cands = [(c, t) for c, t in rel.cols if c != weight and t not in NOT_DISCRETE]
    if not cands:
        raise _no_dimension(call)
    numeric = [i for i, (_, t) in enumerate(cands) if t in NUMERIC]
    rows = _read(pl, rel, call, "autocluster", cands, weight, counted=True, refuse=not numeric)
    nc = len(cands)
    if len(rows) <= limits.PATTERN_MAX_ROWS:
        nrows = sum(r[nc + 1] for r in rows)
        distinct = [len({r[i] for r in rows if _is_value(r[i])}) for i in numeric]
    else:
        q = exp.Select(expressions=[exp.Count(this=exp.Star())] +
                       [exp.Count(this=exp.Distinct(expressions=[col(cands[i][0])])) for i in numeric]).from_(
            pl.finish(rel).subquery(pl.fresh(), copy=False), copy=False)
        nrows, *distinct = pl.run(q)[0]
        rows = None
    # a number is a dimension when its values repeat: few of them, each on several rows
    most = min(MAX_DISTINCT_NUMERIC, nrows * MAX_NUMERIC_SHARE)
    dropped = {i for i, k in zip(numeric, distinct) if k > most}
    kept = [i for i in range(nc) if i not in dropped]
    dims = [cands[i] for i in kept]
    if not dims:
        raise _no_dimension(call)
    if len(dims) > limits.PATTERN_MAX_DIMENSIONS:
        raise KqlSemanticError(f"autocluster() takes at most {limits.PATTERN_MAX_DIMENSIONS} dimensions; its input "
                               f"has {len(dims)} discrete columns", call.span, code="KQL_QUERY_TOO_COMPLEX",
                               hint="project the columns to look at first")
    if rows is None:
        return dims, _read(pl, rel, call, "autocluster", dims, weight)
    merged: dict = {}
    for r in rows:
        key = tuple(r[i] for i in kept)
        merged[key] = merged.get(key, 0) + (r[nc] or 0)
    return dims, [key + (w,) for key, w in merged.items()]


def _no_dimension(call):
    return KqlSemanticError("autocluster() found no discrete column to cluster on (strings, bools, or numbers "
                            "whose values repeat)", call.span, code="KQL_ARGUMENTS")


def find_segments(values: list[tuple], weights: list[float], ndims: int, size_weight: float, least_rows: int = 0,
                  check=None) -> list[tuple[dict, float]]:
    """Greedy segments over grouped rows (``values[i]`` holds ``weights[i]``): [(pattern
    {dimension index: value}, weight over all the rows)], in the order chosen. ``check``: the
    query's deadline, called every few hundred patterns."""
    total = sum(weights)
    if total <= 0:
        return []
    least = max(MIN_LEFT * total, least_rows)
    slack = 1e-9 * total
    # each pattern's closure (the columns all its rows hold) has its rows and a better score
    closed: dict = {}
    for p, rows in frequent_patterns(values, ndims, ndims, lambda rows: sum(weights[i] for i in rows) >= least - slack,
                                     check, prune_implied=True):
        closed.setdefault(closure(values, ndims, p, rows), rows)
    cands = [(p, rows, sum(weights[i] for i in rows)) for p, rows in closed.items()]
    left = [w for _, _, w in cands]        # each candidate's weight among the rows not yet covered
    covered: set = set()
    left_total = total
    chosen = []
    while len(chosen) < MAX_SEGMENTS and left_total >= MIN_LEFT * total - slack:
        best, best_score = None, -1.0
        for k, (p, _, _) in enumerate(cands):
            if left[k] < least - slack:
                continue
            score = (left[k] / total) ** size_weight * (len(p) / ndims) ** (1 - size_weight)
            if score > best_score or (score == best_score and p < cands[best][0]):
                best, best_score = k, score
        if best is None:
            break   # what is left shares no pattern worth a segment
        p, rows, w = cands[best]
        chosen.append((dict(p), w))
        new = rows - covered
        covered |= new
        left_total -= sum(weights[i] for i in new)
        for k, (_, rows_k, _) in enumerate(cands):
            if check is not None and not k & 255:
                check()
            if left[k] > 0:
                left[k] -= sum(weights[i] for i in (rows_k & new))
    return chosen
