"""The aggregate function table, used by summarize, make-series and top-nested.

Each entry names its default output prefix (``sum(X)`` -> ``sum_X``), its arity, and a builder
from typed arguments to one or more output columns. Multi-column aggregates (arg_max with
several columns, percentiles) return several (name, sql, type) triples.
"""
from __future__ import annotations

import json

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from ..errors import KqlSemanticError
from . import types as T
from .scalars import to_bool, to_dynamic, to_real, type_error
from .typed import Typed, cast, fn

N = exp.Literal.number


@dataclass(slots=True)
class Aggregate:
    name: str
    prefix: str
    min_args: int
    max_args: int | None
    build: Callable            # (args: list[Typed]) -> Typed  (single column)
    multi: bool = False        # builder returns a list of (name, Typed) instead

    def default_name(self, args: list[Typed]) -> str:
        if self.name in ("count",) and not args:
            return "count_"
        first = args[0].name if args and args[0].name else ""
        if not self.prefix:          # take_any(Col) keeps the column's own name
            return first or None
        return f"{self.prefix}_{first}"


AGGREGATES: dict[str, Aggregate] = {}


def aggregate(name, prefix, min_args, max_args, *aliases, multi=False):
    def deco(build):
        a = Aggregate(name, prefix, min_args, max_args, build, multi)
        for n in (name, *aliases):
            AGGREGATES[n] = a
        return build
    return deco


def _when(pred: Typed, value: exp.Expression) -> exp.Expression:
    return exp.Case(ifs=[exp.If(this=to_bool(pred, "the predicate").sql, true=value)], default=exp.null())


def _sum_type(t: str) -> str:
    return T.LONG if t in T.INTEGER else t


def _sum(x: Typed) -> Typed:
    if x.type not in T.NUMERIC and x.type != T.TIMESPAN:
        if x.type == T.DYNAMIC:
            return Typed(fn(exp.Sum, to_real(x).sql), T.REAL)
        type_error(f"sum() needs a number, not {x.type}", x.span)
    rtype = _sum_type(x.type)
    e = exp.Sum(this=x.sql)
    return Typed(cast(e, rtype) if rtype in (T.LONG, T.TIMESPAN) else e, rtype)


@aggregate("count", "count", 0, 1)
def count(x=None):
    if x is None:
        return Typed(exp.Count(this=exp.Star()), T.LONG)
    return Typed(exp.Count(this=x.sql), T.LONG)


@aggregate("countif", "countif", 1, 1)
def countif(p):
    return Typed(exp.Count(this=_when(p, N(1))), T.LONG)


@aggregate("dcount", "dcount", 1, 2)
def dcount(x, accuracy=None):
    return Typed(exp.Count(this=exp.Distinct(expressions=[x.sql])), T.LONG)


@aggregate("dcountif", "dcountif", 2, 3)
def dcountif(x, p, accuracy=None):
    return Typed(exp.Count(this=exp.Distinct(expressions=[_when(p, x.sql)])), T.LONG)


@aggregate("sum", "sum", 1, 1)
def sum_(x):
    return _sum(x)


@aggregate("sumif", "sumif", 2, 2)
def sumif(x, p):
    s = _sum(x)
    inner = s.sql.this if isinstance(s.sql, exp.Cast) else s.sql
    e = exp.Sum(this=_when(p, inner.this))
    return Typed(cast(e, s.type) if s.type in (T.LONG, T.TIMESPAN) else e, s.type)


@aggregate("avg", "avg", 1, 1)
def avg(x):
    if x.type == T.TIMESPAN:
        return Typed(cast(fn(exp.Round, exp.Avg(this=x.sql)), T.LONG), T.TIMESPAN)
    return Typed(exp.Avg(this=to_real(x).sql), T.REAL)


@aggregate("avgif", "avgif", 2, 2)
def avgif(x, p):
    return Typed(exp.Avg(this=_when(p, to_real(x).sql)), T.REAL)


def _minmax(cls):
    def build(x):
        return Typed(cls(this=x.sql), x.type)
    return build


aggregate("min", "min", 1, 1)(_minmax(exp.Min))
aggregate("max", "max", 1, 1)(_minmax(exp.Max))


@aggregate("minif", "minif", 2, 2)
def minif(x, p):
    return Typed(exp.Min(this=_when(p, x.sql)), x.type)


@aggregate("maxif", "maxif", 2, 2)
def maxif(x, p):
    return Typed(exp.Max(this=_when(p, x.sql)), x.type)


def _json_list(values: exp.Expression, distinct: bool, limit: Typed | None = None,
               where: exp.Expression | None = None, of_dynamic: bool = False) -> exp.Expression:
    inner = exp.Distinct(expressions=[values]) if distinct else values
    agg = fn("collect_list", inner)
    cond = exp.Not(this=exp.Is(this=values, expression=exp.null()))
    if where is not None:
        cond = exp.And(this=cond, expression=where)
    agg = exp.Filter(this=agg, expression=exp.Where(this=cond))
    if limit is not None:
        agg = fn("sublist", agg, N(1), limit.sql)
    to_json = fn("as_json", agg)
    to_json.meta["json_list"] = of_dynamic          # see functions/dynamic._json
    return exp.Coalesce(this=cast(to_json, T.DYNAMIC), expressions=[cast(exp.Literal.string("[]"), T.DYNAMIC)])


def _element(x: Typed) -> exp.Expression:
    """Values as they go into a dynamic array."""
    if x.type in (T.DATETIME, T.TIMESPAN, T.GUID):
        from .scalars import to_string
        return to_string(x).sql
    return x.sql


@aggregate("make_list", "list", 1, 2, "makelist")
def make_list(x, limit=None):
    return Typed(_json_list(_element(x), False, limit, of_dynamic=x.type == T.DYNAMIC), T.DYNAMIC)


@aggregate("make_list_if", "list", 2, 3, "makelist_if")
def make_list_if(x, p, limit=None):
    return Typed(_json_list(_element(x), False, limit, to_bool(p).sql, of_dynamic=x.type == T.DYNAMIC), T.DYNAMIC)


def _never_array(e: exp.Expression) -> bool:
    """Whether a dynamic expression's value is known never to be an array: a bag packed by
    pack()/bag_pack(), a JSON constant that is not an array, null, or a choice among those."""
    while isinstance(e, exp.Paren):
        e = e.this
    if isinstance(e, exp.Case):
        return all(_never_array(i.args["true"]) for i in e.args.get("ifs") or []) and \
            (e.args.get("default") is None or _never_array(e.args["default"]))
    if isinstance(e, exp.Anonymous):
        return e.name == "json_of_pairs"
    if isinstance(e, exp.Cast) and isinstance(e.this, exp.Literal) and e.this.is_string:
        try:
            return not isinstance(json.loads(e.this.this), list)
        except ValueError:
            return False
    return isinstance(e, exp.Null)


def _dynamic_set(x: Typed, limit: Typed | None, where: exp.Expression | None = None) -> Typed:
    """make_set of dynamic values: the elements of arrays, the other values themselves, each once.
    The values are made distinct before their elements are: a group's rows often repeat one array
    (a machine's addresses on every inventory record), and the elements' work is then done once."""
    agg = fn("collect_list", exp.Distinct(expressions=[x.sql]))
    if where is not None:
        agg = exp.Filter(this=agg, expression=exp.Where(this=where))
    # values that are never arrays (property bags packed here, JSON constants): no elements to
    # take out, the distinct values themselves (no per-value type test)
    out = fn("netatlas_make_set_values" if _never_array(x.sql) else "netatlas_make_set_dynamic", agg)
    if limit is not None:
        out = fn("netatlas_array_slice", out, N(0), exp.Sub(this=limit.sql, expression=N(1)))
    return Typed(out, T.DYNAMIC)


@aggregate("make_set", "set", 1, 2, "makeset")
def make_set(x, limit=None):
    if x.type == T.DYNAMIC:
        return _dynamic_set(x, limit)
    return Typed(_json_list(_element(x), True, limit, of_dynamic=x.type == T.DYNAMIC), T.DYNAMIC)


@aggregate("make_set_if", "set", 2, 3, "makeset_if")
def make_set_if(x, p, limit=None):
    if x.type == T.DYNAMIC:
        return _dynamic_set(x, limit, to_bool(p).sql)
    return Typed(_json_list(_element(x), True, limit, to_bool(p).sql, of_dynamic=x.type == T.DYNAMIC), T.DYNAMIC)


@aggregate("make_bag", "bag", 1, 2, "make_dictionary")
def make_bag(x, limit=None):
    return Typed(fn("netatlas_make_bag", fn("collect_list", to_dynamic(x).sql)), T.DYNAMIC)


@aggregate("any", "any", 1, None)
def any_(*xs):   # deprecated alias: adds the any_ prefix
    return take_any(*xs)


@aggregate("take_any", "", 1, None)
def take_any(*xs):
    if len(xs) != 1:
        raise KqlSemanticError("take_any() with several arguments must be the only expression; name each column",
                               xs[0].span, code="KQL_UNSUPPORTED")
    return Typed(fn(exp.AnyValue, xs[0].sql), xs[0].type)


@aggregate("stdev", "stdev", 1, 1)
def stdev(x):
    return Typed(fn(exp.StddevSamp, to_real(x).sql), T.REAL)


@aggregate("stdevp", "stdevp", 1, 1)
def stdevp(x):
    return Typed(fn(exp.StddevPop, to_real(x).sql), T.REAL)


@aggregate("variance", "variance", 1, 1)
def variance(x):
    return Typed(fn("sample_variance", to_real(x).sql), T.REAL)


@aggregate("variancep", "variancep", 1, 1)
def variancep(x):
    return Typed(fn(exp.VariancePop, to_real(x).sql), T.REAL)


def _pct_value(p: Typed) -> float:
    if not p.is_const or p.const is None:
        type_error("percentile needs a constant percentage", p.span)
    return float(p.const)


def _pct_name(v: float) -> str:
    return str(int(v)) if v == int(v) else str(v).replace(".", "_")


def _percentile(x: Typed, v: float) -> Typed:
    # nearest-rank percentile, as Kusto computes it
    e = fn(exp.PercentileDisc, x.sql, exp.Literal.number(v / 100.0))
    rtype = x.type if x.type != T.INT else T.INT
    return Typed(e, rtype)


@aggregate("percentile", "percentile", 2, 2, multi=True)
def percentile(x, p):
    v = _pct_value(p)
    return [(f"percentile_{x.name or ''}_{_pct_name(v)}", _percentile(x, v))]


@aggregate("percentiles", "percentile", 2, None, multi=True)
def percentiles(x, *ps):
    return [(f"percentile_{x.name or ''}_{_pct_name(_pct_value(p))}", _percentile(x, _pct_value(p))) for p in ps]


@aggregate("percentiles_array", "percentiles", 2, None)
def percentiles_array(x, *ps):
    items = [_percentile(x, _pct_value(p)).sql for p in ps]
    return Typed(fn(exp.JSONArray, *items), T.DYNAMIC)


# arg_max / arg_min are planned by the summarize operator itself (they need the whole row).
ARG_EXTREMES = {"arg_max": "value_at_max", "arg_min": "value_at_min"}
