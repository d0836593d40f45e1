"""evaluate autocluster([SizeWeight, WeightColumn, NumSeeds, CustomWildcard]): common patterns.

The input's discrete columns (strings, bools, ints, and numbers with few distinct values) are the
dimensions. A segment is an assignment of values to some dimensions, the others wildcards. The
planner reads the input at plan time, then picks segments greedily: at each step the pattern,
among those shared by the rows not yet covered, whose score

    coverage ^ SizeWeight  x  specificity ^ (1 - SizeWeight)

is highest (coverage: the share of all rows it matches; specificity: the share of dimensions it
fixes), until 10 segments, or until what is left is under 5% of the rows or shares no pattern
of at least 2 rows and 5% of the rows. Kusto does not publish
its algorithm; this one is deterministic and keeps Kusto's output shape: SegmentId, Count,
Percent, then one column per dimension with its value or the wildcard ("" unless CustomWildcard
says otherwise; '~' for any argument means its default).
"""
from __future__ import annotations

from collections import Counter
from itertools import combinations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .relations import scope_of, values_rel
from .scalars import to_string
from .typed import Typed, col

MAX_SEGMENTS = 10
MIN_LEFT = 0.05             # stop when the uncovered rows are fewer than this share
MAX_ROWS = 200_000          # rows read from the input
MAX_DISTINCT_NUMERIC = 64   # a numeric column with more distinct values is not a dimension
MAX_NUMERIC_SHARE = 0.2    # ... or more distinct values than this share of the rows
MAX_DIMENSIONS = 10


def autocluster(pl, rel, call: s.Call):
    args = [pl.scalar(a, scope_of(rel)) for a in call.args]
    size_weight = _const(args, 0, 0.5, float, "SizeWeight")
    weight_col = args[1].name if len(args) > 1 and args[1].name else None
    # Kusto's wildcard is null by default, which a string column shows as ""
    wildcard = _const(args, 3, "", str, "CustomWildcard")
    if not 0 < size_weight < 1:
        raise KqlSemanticError("autocluster(): SizeWeight is between 0 and 1", call.span, code="KQL_ARGUMENTS")
    candidates = [(c, t) for c, t in rel.cols if c != weight_col and t not in (T.DYNAMIC, T.DATETIME, T.TIMESPAN)]
    numeric = [c for c, t in candidates if t in (T.REAL, T.DECIMAL, T.LONG, T.INT)]
    types = rel.types
    # one read of the input: each candidate as text, the numbers as they are, the weight; when it
    # holds at most MAX_ROWS rows (the usual case: autocluster follows a summarize) the numbers'
    # distinct counts come from these rows, without a second pass over the input
    select = [to_string(Typed(col(c), types[c])).sql for c, _ in candidates] + [col(c) for c in numeric]
    if weight_col:
        select.append(exp.Coalesce(this=exp.Cast(this=col(weight_col), to=T.storage(T.REAL)),
                                   expressions=[exp.Literal.number(0)]))
    q = exp.Select(expressions=select).from_(pl.finish(rel).subquery(pl.fresh(), copy=False), copy=False)
    read = pl.run(q.limit(MAX_ROWS + 1))
    distinct = {}
    if numeric:
        if len(read) <= MAX_ROWS:
            nrows = len(read)
            at = len(candidates)
            counts = [len({r[at + i] for r in read} - {None}) for i in range(len(numeric))]
        else:
            q = exp.Select(expressions=[exp.Count(this=exp.Star())] +
                           [exp.Count(this=exp.Distinct(expressions=[col(c)])) for c in numeric]).from_(
                pl.finish(rel).subquery(pl.fresh(), copy=False), copy=False)
            nrows, *counts = pl.run(q)[0]
        # a number is a dimension when its values repeat: few of them, each on several rows
        limit = min(MAX_DISTINCT_NUMERIC, nrows * MAX_NUMERIC_SHARE)
        distinct = {c: n for c, n in zip(numeric, counts) if n > limit}
    picked = [i for i, (c, _) in enumerate(candidates) if c not in distinct][:MAX_DIMENSIONS]
    dims = [candidates[i][0] for i in picked]
    if not dims:
        raise KqlSemanticError("autocluster() found no discrete column to cluster on", call.span, code="KQL_ARGUMENTS")
    rows = [tuple(r[i] for i in picked) + ((r[-1],) if weight_col else ()) for r in read[:MAX_ROWS]]
    segments = find_segments(rows, len(dims), size_weight, weighted=bool(weight_col),
                             check=pl.deadline.check if pl.deadline is not None else None)
    out_rows = []
    total = sum(r[-1] for r in rows) if weight_col else len(rows)
    for i, (pattern, count) in enumerate(segments):
        values = [pattern.get(d, wildcard) for d in range(len(dims))]
        pct = 100.0 * count / total if total else 0.0
        out_rows.append(exp.Tuple(expressions=[
            exp.Literal.number(i), exp.Cast(this=exp.Literal.number(round(count)), to=T.storage(T.LONG)),
            exp.Cast(this=exp.Literal.number(repr(pct)), to=T.storage(T.REAL))] +
            [exp.Literal.string(v) for v in values]))
    cols = [("SegmentId", T.LONG), ("Count", T.LONG), ("Percent", T.REAL)] + [(d, T.STRING) for d in dims]
    return values_rel(pl, out_rows, cols)


def _const(args, i, default, conv, what, plugin="autocluster"):
    """Argument ``i`` (a constant) through ``conv``; ``default`` when it is left out, null or the
    tilde '~' (Kusto's "use the default"). Shared by the pattern plugins (basket.py)."""
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


def find_segments(rows: list[tuple], ndims: int, size_weight: float, weighted: bool = False, check=None):
    """Greedy segments: [(pattern {dimension index: value}, count over all rows)], best first.
    ``check``: called every few hundred rows (the query's deadline)."""
    if not rows:
        return []
    weight = (lambda r: r[-1]) if weighted else (lambda r: 1)
    total = sum(weight(r) for r in rows)
    subsets = [c for k in range(1, ndims + 1) for c in combinations(range(ndims), k)]
    left = list(rows)
    chosen = []
    while left and len(chosen) < MAX_SEGMENTS and sum(weight(r) for r in left) >= MIN_LEFT * total:
        counts: Counter = Counter()
        for i, r in enumerate(left):
            if check is not None and not i & 255:
                check()
            w = weight(r)
            for sub in subsets:
                counts[tuple((d, r[d]) for d in sub)] += w
        # the best scoring pattern among those worth a segment (a rarer, more specific one
        # scoring higher must not end the search while a worthy one is left)
        least = max(2, MIN_LEFT * total)
        best, best_score = None, -1.0
        for pat, n in counts.items():
            if n < least:
                continue
            score = (n / total) ** size_weight * (len(pat) / ndims) ** (1 - size_weight)
            if score > best_score or (score == best_score and pat < best):
                best, best_score = pat, score
        if best is None:
            break   # what is left has no shared pattern worth a segment
        pattern = dict(best)
        chosen.append(pattern)
        left = [r for r in left if any(r[d] != v for d, v in pattern.items())]
    # in the order they were chosen, as Kusto lists them (its reference example gives a 512-row
    # segment before an 898-row one); Count is over all the rows
    return [(pattern, sum(weight(r) for r in rows if all(r[d] == v for d, v in pattern.items())))
            for pattern in chosen]
