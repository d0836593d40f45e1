"""The series_* functions: numeric arrays (dynamic), as make-series and make_list give them.

Every one is a call of the runtime (``netatlas_series_<name>``: DuckDB's Python functions in
``dialects/duckdb/series.py``; ClickHouse's SQL functions where they give the same answers, a
refusal where they cannot, ``dialects/clickhouse``). Scalars that keep their type inside the
series (fill values, a number broadcast over a series) are passed as dynamic values.

Functions that return several columns (``series_stats``, ``series_fit_line``, ``series_decompose``
...) are in ``TUPLES``: used alone as an item of extend or project, ``(a, b) = f(x)`` names the
columns in order (fewer names keep fewer columns) and ``f(x)`` names them ``f_x_<field>``
(``operators.tuple_items``). The runtime returns them as one JSON object of the fields.
"""
from __future__ import annotations

from sqlglot import exp

from ...errors import KqlSemanticError
from .. import types as T
from ..scalars import to_dynamic
from ..typed import Typed, cast, fn
from . import Function, _arity, scalar

L = exp.Literal.string


def _y(t: Typed):
    """A dynamic argument as JSON text."""
    return cast(to_dynamic(t).sql, T.STRING)


def _null(typ: str):
    return cast(exp.null(), typ)


def _opt(t: Typed | None, typ: str):
    return _null(typ) if t is None else cast(t.sql, typ)


def _runtime(name: str, *args):
    return fn(f"netatlas_series_{name}", *args)


# ---- element-wise -------------------------------------------------------------------------------

BINARY = ("add", "subtract", "multiply", "divide", "pow", "greater", "greater_equals", "less",
          "less_equals", "equals", "not_equals")
UNARY = ("abs", "acos", "asin", "atan", "ceiling", "cos", "exp", "floor", "log", "sign", "sin", "tan")


def _binary(op):
    scalar(f"series_{op}", "aa", T.DYNAMIC)(lambda a, b: _runtime(op, _y(a), _y(b)))


def _unary(op):
    scalar(f"series_{op}", "y", T.DYNAMIC)(lambda a: _runtime(op, _y(a)))


for _op in BINARY:
    _binary(_op)
for _op in UNARY:
    _unary(_op)


@scalar("series_sum", "y", T.REAL)
def series_sum(y):
    return _runtime("sum", _y(y))


# ---- filling ----------------------------------------------------------------------------------------

def _scalar_json(t: Typed | None):
    return _null(T.STRING) if t is None else _y(t)


@scalar("series_fill_const", "yaa?", T.DYNAMIC)
def fill_const(y, const, missing=None):
    return _runtime("fill_const", _y(y), _y(const), _scalar_json(missing))


@scalar("series_fill_forward", "ya?", T.DYNAMIC)
def fill_forward(y, missing=None):
    return _runtime("fill_forward", _y(y), _scalar_json(missing))


@scalar("series_fill_backward", "ya?", T.DYNAMIC)
def fill_backward(y, missing=None):
    return _runtime("fill_backward", _y(y), _scalar_json(missing))


@scalar("series_fill_linear", "ya?b?a?", T.DYNAMIC)
def fill_linear(y, missing=None, edges=None, const=None):
    return _runtime("fill_linear", _y(y), _scalar_json(missing), _opt(edges, T.BOOL),
                    _y(const) if const is not None else L("0"))


# ---- whole series ----------------------------------------------------------------------------------

@scalar("series_stats_dynamic", "yb?", T.DYNAMIC)
def stats_dynamic(y, ignore=None):
    return _runtime("stats", _y(y), _opt(ignore, T.BOOL) if ignore is not None else exp.false())


@scalar("series_fit_line_dynamic", "y", T.DYNAMIC)
def fit_line_dynamic(y):
    return _runtime("fit_line", _y(y))


@scalar("series_decompose_forecast", "yii?s?r?", T.DYNAMIC)
def decompose_forecast(y, points, seasonality=None, trend=None, s_threshold=None):
    if trend is None:     # its page's table says avg, its example and older pages linefit
        raise KqlSemanticError("series_decompose_forecast() needs its trend given: 'avg', 'linefit' or 'none' "
                               "(Kusto's pages disagree on its default)", y.span, code="KQL_NOT_SUPPORTED")
    return _runtime("decompose_forecast", _y(y), cast(points.sql, T.LONG), _season(seasonality),
                    _opt(trend, T.STRING), _opt(s_threshold, T.REAL))


@scalar("series_seasonal", "yi?", T.DYNAMIC)
def seasonal(y, period=None):
    return _runtime("seasonal", _y(y), _season(period))


def _season(seasonality: Typed | None):
    """Seasonality: a period in bins, 0 (none) or -1 (the default): detected (series_periods_detect's
    best period in [4, n / 2] when it scores at least the seasonality threshold, 0.6 by default)."""
    return cast(exp.Literal.number(-1), T.LONG) if seasonality is None else cast(seasonality.sql, T.LONG)


@scalar("series_outliers", "ys?r?r?r?", T.DYNAMIC)
def outliers(y, kind=None, ignore=None, lo=None, hi=None):
    return _runtime("outliers", _y(y), _opt(kind, T.STRING), _opt(ignore, T.REAL), _opt(lo, T.REAL), _opt(hi, T.REAL))


@scalar("series_fit_2lines_dynamic", "y", T.DYNAMIC)
def fit_2lines_dynamic(y):
    return _runtime("fit_2lines", _y(y))


@scalar("series_iir", "yyy", T.DYNAMIC)
def iir(y, numerators, denominators):
    return _runtime("iir", _y(y), _y(numerators), _y(denominators))


@scalar("series_fir", "yyb?b?", T.DYNAMIC)
def fir(y, filt, normalize=None, center=None):
    return _runtime("fir", _y(y), _y(filt), _opt(normalize, T.BOOL), _opt(center, T.BOOL) if center is not None
                    else exp.false())


@scalar("series_dot_product", "aa", T.REAL)
def dot_product(a, b):
    return _runtime("dot_product", _y(a), _y(b))


@scalar("series_cosine_similarity", "yy", T.REAL)
def cosine_similarity(a, b):
    return _runtime("cosine_similarity", _y(a), _y(b))


@scalar("series_pearson_correlation", "yy", T.REAL)
def pearson_correlation(a, b):
    return _runtime("pearson_correlation", _y(a), _y(b))


@scalar("series_magnitude", "y", T.REAL)
def magnitude(y):
    return _runtime("magnitude", _y(y))


# ---- functions of several columns ----------------------------------------------------------------------

R, LG, D = T.REAL, T.LONG, T.DYNAMIC
TUPLES: dict[str, tuple[Function, list[tuple[str, str]]]] = {}


NAMES_NEEDED: set[str] = set()
PATHS: dict[str, dict[str, str]] = {}     # a field's JSON path in the runtime's object, when not its name


def tuple_function(name: str, sig: str, fields: list[tuple[str, str]], named: bool = False):
    """Register a function of several columns: ``fields`` (name, KQL type) in Kusto's order;
    ``named``: its columns must be named (Kusto's pages name them only so: the default names
    are not known)."""
    def deco(build):
        lo, hi = _arity(sig)
        TUPLES[name] = (Function(name, sig, T.DYNAMIC, build, lo, hi, False, False), fields)
        if named:
            NAMES_NEEDED.add(name)
        return build
    return deco


tuple_function("series_stats", "yb?", [("min", R), ("min_idx", LG), ("max", R), ("max_idx", LG), ("avg", R),
                                       ("stdev", R), ("variance", R)])(stats_dynamic)
tuple_function("series_fit_line", "y", [("rsquare", R), ("slope", R), ("variance", R), ("rvariance", R),
                                        ("interception", R), ("line_fit", D)])(fit_line_dynamic)


@tuple_function("series_decompose", "yi?s?i?r?", [("baseline", D), ("seasonal", D), ("trend", D), ("residual", D)])
def decompose(y, seasonality=None, trend=None, test_points=None, s_threshold=None):
    return _runtime("decompose", _y(y), _season(seasonality), _opt(trend, T.STRING), _opt(test_points, T.LONG),
                    _opt(s_threshold, T.REAL))


@tuple_function("series_periods_detect", "yrri", [("periods", D), ("scores", D)])
def periods_detect(y, min_period, max_period, num_periods):
    return _runtime("periods_detect", _y(y), cast(min_period.sql, T.REAL), cast(max_period.sql, T.REAL),
                    cast(num_periods.sql, T.LONG))


@tuple_function("series_periods_validate", "yrr*", [("periods", D), ("scores", D)])
def periods_validate(y, *periods):
    return _runtime("periods_validate", _y(y), cast(fn(exp.JSONArray, *[to_dynamic(p).sql for p in periods]), T.STRING))


@tuple_function("series_decompose_anomalies", "yr?i?s?i?s?r?", [("ad_flag", D), ("ad_score", D), ("baseline", D)])
def decompose_anomalies(y, threshold=None, seasonality=None, trend=None, test_points=None, method=None,
                        s_threshold=None):
    return _runtime("decompose_anomalies", _y(y), _opt(threshold, T.REAL), _season(seasonality), _opt(trend, T.STRING),
                    _opt(test_points, T.LONG), _opt(method, T.STRING), _opt(s_threshold, T.REAL))


_SIDE = [("rsquare", R), ("slope", R), ("interception", R), ("variance", R), ("rvariance", R)]
tuple_function("series_fit_2lines", "y", [("rsquare", R), ("split_idx", LG), ("variance", R), ("rvariance", R),
                                          ("line_fit", D)] + [(f"{side}_{f}", t) for side in ("right", "left")
                                                              for f, t in _SIDE])(fit_2lines_dynamic)
PATHS["series_fit_2lines"] = {f"{side}_{f}": f"{side}.{f}" for side in ("right", "left") for f, _ in _SIDE}


@tuple_function("series_fit_poly", "yy?i?", [("rsquare", R), ("coefficients", D), ("variance", R), ("rvariance", R),
                                            ("poly_fit", D)])
def fit_poly(y, x=None, degree=None):
    return _runtime("fit_poly", _y(y), _scalar_json(x), _opt(degree, T.LONG))


@tuple_function("series_fft", "yy?", [("real", D), ("imag", D)], named=True)
def fft(re, im=None):
    return _runtime("fft", _y(re), _scalar_json(im))


@tuple_function("series_ifft", "yy?", [("real", D), ("imag", D)], named=True)
def ifft(re, im=None):
    return _runtime("ifft", _y(re), _scalar_json(im))


def not_alone(name: str, span) -> None:
    raise KqlSemanticError(f"{name}() returns several columns: use it alone as an item of extend or project",
                           span, code="KQL_ARGUMENTS",
                           hint=f"| extend ({', '.join(f for f, _ in TUPLES[name][1][:2])}, ...) = {name}(...)")
