"""The series_* functions the ClickHouse runtime installs (``runtime.FUNCTIONS``), the same answers
as the DuckDB runtime's Python (``dialects/duckdb/series.py``), and the ones it refuses.

A series is JSON text; its elements are worked on as their raw JSON texts: a number is an element
whose JSON type is a number (``netatlas_series_num``), anything else is null; an integer stays an
integer where DuckDB's Python keeps it one; a non-finite real is written as null. Fitting polynomials (fit_poly: least
squares by QR in numpy) has no SQL here that gives the same numbers: ``REFUSED``, and the
dialect refuses it at generation with KQL_NOT_SUPPORTED.

Outliers, periods, anomalies and two lines (``_MORE``) compute the formulas documented in
``dialects/duckdb/series.py``; ClickHouse's own seriesOutliersDetectTukey, seriesPeriodDetectFFT and
seriesDecomposeSTL are other methods (their own quantiles, a single FFT period, STL), not used. The
lambda variables in them are named <var>_<function>: a function's arguments are inlined into its
body, and an argument naming a variable the body binds would be captured by it.
"""
from __future__ import annotations

_NUM = "if(toString(JSONType({x})) IN ('Int64', 'UInt64', 'Double'), toFloat64OrNull({x}), NULL)"
# an integer is written without a point or an exponent (ClickHouse's JSONType calls 1.0 an Int64)
_INT = "match({x}, '^-?[0-9]+$')"


def num(x: str) -> str:
    return f"netatlas_series_num({x})"


def isint(x: str) -> str:
    return f"netatlas_series_isint({x})"


def real(v: str) -> str:
    return f"netatlas_series_real({v})"


# binary: (float expression, int expression or None, kind of result)
_BINARY = {
    "add": ("{a} + {b}", "{a} + {b}"), "subtract": ("{a} - {b}", "{a} - {b}"),
    "multiply": ("{a} * {b}", "{a} * {b}"), "divide": ("{a} / {b}", None), "pow": ("pow({a}, {b})", None),
    "greater": (">",), "greater_equals": (">=",), "less": ("<",), "less_equals": ("<=",), "equals": ("=",),
    "not_equals": ("!=",),
}


def _binary(op: str) -> str:
    spec = _BINARY[op]
    x, y = num("x"), num("y")
    if len(spec) == 1:
        body = f"if(isNull({x}) OR isNull({y}), 'null', if(assumeNotNull({x}) {spec[0]} assumeNotNull({y}), 'true', 'false'))"
    else:
        fexpr = spec[0].format(a=f"assumeNotNull({x})", b=f"assumeNotNull({y})")
        out = real(fexpr)
        if spec[1]:
            iexpr = spec[1].format(a="toInt64(x)", b="toInt64(y)")
            out = f"if({isint('x')} AND {isint('y')}, toString({iexpr}), {out})"
        body = f"if(isNull({x}) OR isNull({y}), 'null', {out})"
    return (f"(a, b) -> if(NOT netatlas_series_isarr(a) AND NOT netatlas_series_isarr(b), NULL, "
            f"netatlas_json_array(arrayMap((x, y) -> {body}, "
            f"netatlas_series_pad(a, greatest(netatlas_series_len(a), netatlas_series_len(b))), "
            f"netatlas_series_pad(b, greatest(netatlas_series_len(a), netatlas_series_len(b))))))")


_UNARY = {
    "abs": ("abs({v})", "abs({i})"), "sign": ("sign({v})", "sign({i})"),
    "ceiling": ("ceil({v})", "{i}"), "floor": ("floor({v})", "{i}"),
    "acos": ("acos({v})", None), "asin": ("asin({v})", None), "atan": ("atan({v})", None),
    "cos": ("cos({v})", None), "sin": ("sin({v})", None), "tan": ("tan({v})", None), "exp": ("exp({v})", None),
    "log": ("log({v})", None),
}


def _unary(op: str) -> str:
    fexpr, iexpr = _UNARY[op]
    v = f"assumeNotNull({num('x')})"
    out = real(fexpr.format(v=v))
    if op == "sign":
        out = f"toString(toInt64(sign({v})))"
    elif iexpr:
        out = f"if({isint('x')}, toString({iexpr.format(i='toInt64(x)')}), {out})"
    return (f"(a) -> if(NOT netatlas_series_isarr(a), NULL, netatlas_json_array(arrayMap(x -> "
            f"if(isNull({num('x')}), 'null', {out}), netatlas_series_raw(a))))")


def _missing(x: str, p: str) -> str:
    """Whether element x (raw JSON) is the placeholder p (JSON text; NULL: a null element)."""
    return f"if(isNull({p}) OR {p} = 'null', toString(JSONType({x})) = 'Null', ifNull({num(x)} = {num(p)}, false))"


_STATS_FIELDS = ("min", "min_idx", "max", "max_idx", "avg", "stdev", "variance", "sum", "len")

FUNCTIONS: dict[str, str] = {
    "netatlas_series_num": "(x) -> " + _NUM.format(x="x"),
    "netatlas_series_isint": "(x) -> " + _INT.format(x="x"),
    "netatlas_series_real": "(v) -> if(isNull(v) OR NOT isFinite(assumeNotNull(v)), 'null', toString(assumeNotNull(v)))",
    # the raw elements of a series; a real written as an integer (ClickHouse writes 1.0 back as 1) keeps ".0"
    "netatlas_series_raw": ("(j) -> arrayMap((x, t) -> if(t = 'Double' AND match(x, '^-?[0-9]+$'), concat(x, '.0'), x), "
                            "JSONExtractArrayRaw(assumeNotNull(j)), arrayMap(i -> toString(JSONType(assumeNotNull(j), i)), "
                            "range(1, toUInt64(JSONLength(assumeNotNull(j))) + 1)))"),
    "netatlas_series_isarr": "(j) -> toString(JSONType(ifNull(j, ''))) = 'Array'",
    "netatlas_series_len": "(j) -> if(netatlas_series_isarr(j), toUInt64(JSONLength(assumeNotNull(j))), toUInt64(0))",
    # an operand as n raw elements: a series padded with nulls, a scalar repeated
    "netatlas_series_pad": ("(j, n) -> if(netatlas_series_isarr(j), arrayResize(netatlas_series_raw(j), n, 'null'), "
                            "arrayResize([ifNull(j, 'null')], n, ifNull(j, 'null')))"),
    "netatlas_series_nums": "(j) -> arrayMap(x -> netatlas_series_num(x), netatlas_series_raw(j))",
    **{f"netatlas_series_{op}": _binary(op) for op in _BINARY},
    **{f"netatlas_series_{op}": _unary(op) for op in _UNARY},
    "netatlas_series_sum": ("(a) -> if(NOT netatlas_series_isarr(a), NULL, "
                            "arraySum(arrayMap(v -> ifNull(v, 0.), netatlas_series_nums(a))))"),
    "netatlas_series_fill_const": ("(a, c, p) -> if(NOT netatlas_series_isarr(a), NULL, netatlas_json_array(arrayMap(x -> "
                                   f"if({_missing('x', 'p')}, ifNull(c, 'null'), x), netatlas_series_raw(a))))"),
    "netatlas_series_fill_forward": ("(a, p) -> if(NOT netatlas_series_isarr(a), NULL, netatlas_json_array(arrayFill(x -> "
                                     f"NOT {_missing('x', 'p')}, netatlas_series_raw(a))))"),
    "netatlas_series_fill_backward": ("(a, p) -> if(NOT netatlas_series_isarr(a), NULL, netatlas_json_array(arrayReverseFill(x -> "
                                      f"NOT {_missing('x', 'p')}, netatlas_series_raw(a))))"),
    # stats over the finite elements v (all of them unless ignore), their places in the series
    "netatlas_series_stats": ("(a, ignore) -> if(NOT netatlas_series_isarr(a), NULL, netatlas_series_stats_of("
                              "netatlas_series_nums(a), ignore))"),
    "netatlas_series_stats_of": (
        "(v, ignore) -> if((NOT ignore AND has(v, NULL)) OR empty(arrayFilter(x -> isNotNull(x), v)), "
        + "'{" + ",".join(f'"{f}":null' for f in _STATS_FIELDS) + "}', "
        "netatlas_series_stats_json(v, arrayMap(x -> assumeNotNull(x), arrayFilter(x -> isNotNull(x), v))))"),
    "netatlas_series_stats_json": (
        "(v, f) -> concat('{\"min\":', netatlas_series_real(arrayMin(f)), ',\"min_idx\":', toString(indexOf(v, arrayMin(f)) - 1), "
        "',\"max\":', netatlas_series_real(arrayMax(f)), ',\"max_idx\":', toString(indexOf(v, arrayMax(f)) - 1), "
        "',\"avg\":', netatlas_series_real(arrayAvg(f)), ',\"stdev\":', netatlas_series_real(sqrt(netatlas_series_var(f))), "
        "',\"variance\":', netatlas_series_real(netatlas_series_var(f)), ',\"sum\":', netatlas_series_real(arraySum(f)), "
        "',\"len\":', toString(length(v)), '}')"),
    "netatlas_series_var": "(f) -> if(length(f) < 2, 0., arraySum(arrayMap(x -> (x - arrayAvg(f)) * (x - arrayAvg(f)), f)) / (length(f) - 1))",
    # one line over x = 1..n by least squares
    "netatlas_series_fit_line": ("(a) -> if(NOT netatlas_series_isarr(a) OR JSONLength(assumeNotNull(a)) = 0 "
                                 "OR has(netatlas_series_nums(a), NULL), NULL, "
                                 "netatlas_series_fit_of(arrayMap(x -> assumeNotNull(x), netatlas_series_nums(a))))"),
    "netatlas_series_fit_of": ("(y) -> netatlas_series_fit_json(y, netatlas_series_slope(y), "
                               "arrayAvg(y) - netatlas_series_slope(y) * (length(y) + 1) / 2)"),
    "netatlas_series_slope": ("(y) -> if(length(y) < 2, 0., arraySum(arrayMap((v, i) -> (i - (length(y) + 1) / 2) * (v - arrayAvg(y)), "
                              "y, arrayEnumerate(y))) / arraySum(arrayMap(i -> (i - (length(y) + 1) / 2) * (i - (length(y) + 1) / 2), "
                              "arrayEnumerate(y))))"),
    "netatlas_series_fit_json": (
        "(y, s, c) -> concat('{\"rsquare\":', netatlas_series_real(if(netatlas_series_sst(y) > 0, "
        "1 - netatlas_series_ssr(y, s, c) / netatlas_series_sst(y), 1.)), "
        "',\"slope\":', netatlas_series_real(s), ',\"variance\":', netatlas_series_real(if(length(y) > 1, "
        "netatlas_series_sst(y) / (length(y) - 1), 0.)), ',\"rvariance\":', netatlas_series_real(if(length(y) > 1, "
        "netatlas_series_ssr(y, s, c) / (length(y) - 1), 0.)), ',\"interception\":', netatlas_series_real(c), "
        "',\"line_fit\":', netatlas_json_array(arrayMap(i -> netatlas_series_real(s * i + c), arrayEnumerate(y))), '}')"),
    "netatlas_series_sst": "(y) -> arraySum(arrayMap(v -> (v - arrayAvg(y)) * (v - arrayAvg(y)), y))",
    "netatlas_series_ssr": "(y, s, c) -> arraySum(arrayMap((v, i) -> (v - (s * i + c)) * (v - (s * i + c)), y, arrayEnumerate(y)))",
    # vectors: the longer series cut to the shorter, non-numbers left out (0 in the sums)
    "netatlas_series_dot_product": (
        "(a, b) -> if((NOT netatlas_series_isarr(a) AND NOT netatlas_series_isarr(b)) "
        "OR (netatlas_series_isarr(a) AND netatlas_series_len(a) = 0) "
        "OR (netatlas_series_isarr(b) AND netatlas_series_len(b) = 0), NULL, arraySum(arrayMap((x, y) -> "
        "ifNull(netatlas_series_num(x) * netatlas_series_num(y), 0.), netatlas_series_pad(a, netatlas_series_shorter(a, b)), "
        "netatlas_series_pad(b, netatlas_series_shorter(a, b)))))"),
    # the length of the shorter series (a number, repeated, takes the series' length)
    "netatlas_series_shorter": ("(a, b) -> if(netatlas_series_isarr(a) AND netatlas_series_isarr(b), "
                                "least(netatlas_series_len(a), netatlas_series_len(b)), "
                                "greatest(netatlas_series_len(a), netatlas_series_len(b)))"),
    "netatlas_series_magnitude": ("(a) -> if(NOT netatlas_series_isarr(a), NULL, "
                                  "sqrt(arraySum(arrayMap(v -> ifNull(v * v, 0.), netatlas_series_nums(a)))))"),
    # pairs of numbers at the same places (the longer series cut to the shorter)
    "netatlas_series_pairs": (
        "(a, b) -> arrayMap(p -> (assumeNotNull(p.1), assumeNotNull(p.2)), arrayFilter(p -> isNotNull(p.1) AND isNotNull(p.2), "
        "arrayMap((x, y) -> (netatlas_series_num(x), netatlas_series_num(y)), "
        "netatlas_series_pad(a, netatlas_series_shorter(a, b)), netatlas_series_pad(b, netatlas_series_shorter(a, b)))))"),
    "netatlas_series_cosine_similarity": ("(a, b) -> if(NOT netatlas_series_isarr(a) OR NOT netatlas_series_isarr(b), NULL, "
                                          "netatlas_series_cosine_of(netatlas_series_pairs(a, b)))"),
    "netatlas_series_cosine_of": (
        "(ps) -> if(sqrt(arraySum(arrayMap(p -> p.1 * p.1, ps))) * sqrt(arraySum(arrayMap(p -> p.2 * p.2, ps))) = 0, NULL, "
        "arraySum(arrayMap(p -> p.1 * p.2, ps)) / (sqrt(arraySum(arrayMap(p -> p.1 * p.1, ps))) "
        "* sqrt(arraySum(arrayMap(p -> p.2 * p.2, ps)))))"),
    # series of the same length, all numbers, at least two (both branches of if() run: b is cut to a's length)
    "netatlas_series_pearson_correlation": (
        "(a, b) -> if(NOT netatlas_series_isarr(a) OR NOT netatlas_series_isarr(b) "
        "OR netatlas_series_len(a) != netatlas_series_len(b) OR netatlas_series_len(a) < 2 "
        "OR has(netatlas_series_nums(a), NULL) OR has(netatlas_series_nums(b), NULL), NULL, "
        "netatlas_series_pearson_of(arrayMap(v -> ifNull(v, 0.), netatlas_series_nums(a)), "
        "arrayResize(arrayMap(v -> ifNull(v, 0.), netatlas_series_nums(b)), netatlas_series_len(a), 0.)))"),
    "netatlas_series_pearson_of": (
        "(x, y) -> if(sqrt(arraySum(arrayMap(u -> (u - arrayAvg(x)) * (u - arrayAvg(x)), x)) "
        "* arraySum(arrayMap(v -> (v - arrayAvg(y)) * (v - arrayAvg(y)), y))) = 0, NULL, "
        "arraySum(arrayMap((u, v) -> (u - arrayAvg(x)) * (v - arrayAvg(y)), x, y)) / "
        "sqrt(arraySum(arrayMap(u -> (u - arrayAvg(x)) * (u - arrayAvg(x)), x)) "
        "* arraySum(arrayMap(v -> (v - arrayAvg(y)) * (v - arrayAvg(y)), y))))"),
    # fill_linear(series, placeholder, fill_edges, const): l the raw elements, f whether each is present
    "netatlas_series_fill_linear": (
        "(a, p, e, c) -> if(NOT netatlas_series_isarr(a), NULL, netatlas_series_fill_linear_of(netatlas_series_raw(a), "
        f"arrayMap(x -> NOT {_missing('x', 'p')}, netatlas_series_raw(a)), ifNull(e, true), ifNull(c, 'null')))"),
    "netatlas_series_fill_linear_of": (
        "(l, f, e, c) -> netatlas_json_array(if(NOT has(f, true), arrayMap(x -> c, l), arrayMap((x, i) -> "
        "netatlas_series_fill_at(l, f, e, x, i, arrayLastIndex((g, j) -> g AND j < i, f, arrayEnumerate(l)), "
        "arrayFirstIndex((g, j) -> g AND j > i, f, arrayEnumerate(l)), "
        "arrayAll((y, g) -> NOT g OR y = 'null' OR netatlas_series_isint(y), l, f)), l, arrayEnumerate(l))))"),
    # element x at i (1-based), the present ones before (lo) and after (hi) it (0: none)
    "netatlas_series_fill_at": (
        "(l, f, e, x, i, lo, hi, ints) -> multiIf(f[i], x, lo > 0 AND hi > 0, "
        "if(isNull(netatlas_series_num(l[lo])) OR isNull(netatlas_series_num(l[hi])), x, "
        "netatlas_series_between(assumeNotNull(netatlas_series_num(l[lo])), assumeNotNull(netatlas_series_num(l[hi])), "
        "toFloat64(i - lo), toFloat64(hi - lo), ints)), "
        "lo = 0 AND e, l[hi], hi = 0 AND e, l[lo], x)"),
    "netatlas_series_between": ("(va, vb, k, m, ints) -> if(ints, toString(toInt64(va + (vb - va) * k / m)), "
                                "netatlas_series_real(va + (vb - va) * k / m))"),
    # decompose(series, period, trend, test points): seasonal medians of the learning points of each phase,
    # the trend (avg, linefit, none) of the learning points less them, extended over the test points
    "netatlas_series_decompose": (
        "(a, p, tr, tp, th) -> arrayMap(q_period -> if(NOT netatlas_series_decompose_ok(a, q_period, tr, tp), NULL, netatlas_series_decompose_json("
        "netatlas_series_nums(a), netatlas_series_seasonal_of(netatlas_series_nums(a), q_period, netatlas_series_learn(a, tp)), "
        "netatlas_series_trend_of(netatlas_series_nums(a), netatlas_series_deseason(netatlas_series_nums(a), "
        "netatlas_series_seasonal_of(netatlas_series_nums(a), q_period, netatlas_series_learn(a, tp)), netatlas_series_learn(a, tp)), "
        "lower(ifNull(tr, 'avg'))))), [netatlas_series_period(a, p, tp, th)])[1]"),
    "netatlas_series_decompose_forecast": (
        "(a, tp, p, tr, th) -> arrayMap(q_period -> if(NOT netatlas_series_decompose_ok(a, q_period, tr, tp), NULL, netatlas_json_array(arrayMap((s, t) -> "
        "netatlas_series_real(s + t), "
        "netatlas_series_seasonal_of(netatlas_series_nums(a), q_period, netatlas_series_learn(a, tp)), "
        "netatlas_series_trend_of(netatlas_series_nums(a), netatlas_series_deseason(netatlas_series_nums(a), "
        "netatlas_series_seasonal_of(netatlas_series_nums(a), q_period, netatlas_series_learn(a, tp)), netatlas_series_learn(a, tp)), "
        "lower(ifNull(tr, 'avg')))))), [netatlas_series_period(a, p, tp, th)])[1]"),
    # the period: -1 (or null) detected in the learning points (their non-numbers as 0: such a series is refused anyway)
    "netatlas_series_period": (
        "(a, p, tp, th) -> if(ifNull(p, -1) = -1, netatlas_series_autoperiod(arrayMap(v -> ifNull(v, 0.), "
        "arraySlice(netatlas_series_nums(a), 1, greatest(netatlas_series_learn(a, tp), 0))), th), assumeNotNull(p))"),
    "netatlas_series_decompose_ok": (
        "(a, p, tr, tp) -> netatlas_series_isarr(a) AND isNotNull(p) AND ifNull(p, -1) >= 0 "
        "AND lower(ifNull(tr, 'avg')) IN ('avg', 'linefit', 'none') AND ifNull(tp, 0) >= 0 "
        "AND ifNull(tp, 0) < netatlas_series_len(a) "
        "AND NOT has(arraySlice(netatlas_series_nums(a), 1, netatlas_series_learn(a, tp)), NULL)"),
    "netatlas_series_learn": "(a, tp) -> toInt64(netatlas_series_len(a)) - ifNull(tp, 0)",
    "netatlas_series_seasonal_of": (
        "(y, p, learn) -> if(ifNull(p, 0) <= 0, arrayMap(v -> 0., y), "
        "arrayMap(i -> netatlas_series_phase_median(y, assumeNotNull(p), learn, i), range(length(y))))"),
    "netatlas_series_phase_median": (
        "(y, p, learn, i) -> if(empty(netatlas_series_phase(y, p, learn, i)), 0., "
        "toFloat64(arrayReduce('quantileExactInclusive(0.5)', netatlas_series_phase(y, p, learn, i))))"),
    "netatlas_series_phase": (
        "(y, p, learn, i) -> arrayMap(v -> assumeNotNull(v), arrayFilter((v, k) -> k <= learn AND (k - 1) % p = i % p, "
        "y, arrayEnumerate(y)))"),
    "netatlas_series_deseason": ("(y, s, learn) -> arrayMap((v, w) -> assumeNotNull(v) - w, arraySlice(y, 1, learn), "
                                 "arraySlice(s, 1, learn))"),
    "netatlas_series_trend_of": (
        "(y, d, tr) -> multiIf(tr = 'avg', arrayMap(v -> arrayAvg(d), y), tr = 'linefit', arrayMap(i -> "
        "netatlas_series_slope(d) * i + (arrayAvg(d) - netatlas_series_slope(d) * (length(d) + 1) / 2), arrayEnumerate(y)), "
        "arrayMap(v -> 0., y))"),
    "netatlas_series_decompose_json": (
        "(y, s, t) -> concat('{\"baseline\":', netatlas_json_array(arrayMap((u, w) -> netatlas_series_real(u + w), s, t)), "
        "',\"seasonal\":', netatlas_json_array(arrayMap(u -> netatlas_series_real(u), s)), "
        "',\"trend\":', netatlas_json_array(arrayMap(w -> netatlas_series_real(w), t)), "
        "',\"residual\":', netatlas_json_array(arrayMap((v, u, w) -> netatlas_series_real(v - (u + w)), y, s, t)), '}')"),
    "netatlas_series_seasonal": (
        "(a, p) -> if(NOT netatlas_series_isarr(a) OR isNull(p) OR has(netatlas_series_nums(a), NULL), NULL, "
        "netatlas_json_array(arrayMap(u -> netatlas_series_real(u), netatlas_series_seasonal_of(netatlas_series_nums(a), "
        "if(p = -1, netatlas_series_autoperiod(arrayMap(v -> ifNull(v, 0.), netatlas_series_nums(a)), 0.7), p), "
        "toInt64(netatlas_series_len(a))))))"),
    # fir(series, filter, normalize, center): y[i] = c[0] x[i + shift] + c[1] x[i + shift - 1] + ..., outside 0
    "netatlas_series_fir": (
        "(a, f, nz, ce) -> if(NOT netatlas_series_isarr(a) OR NOT netatlas_series_isarr(f) OR netatlas_series_len(f) = 0 "
        "OR has(netatlas_series_nums(a), NULL) OR has(netatlas_series_nums(f), NULL), NULL, netatlas_series_fir_of("
        "arrayMap(v -> assumeNotNull(v), netatlas_series_nums(a)), arrayMap(v -> assumeNotNull(v), netatlas_series_nums(f)), "
        "ifNull(nz, NOT arrayExists(v -> v < 0, arrayMap(v -> assumeNotNull(v), netatlas_series_nums(f)))), ifNull(ce, false)))"),
    "netatlas_series_fir_of": (
        "(x, c, nz, ce) -> if(nz AND (arrayExists(v -> v < 0, c) OR arraySum(c) = 0), NULL, netatlas_series_fir_apply(x, "
        "if(nz, arrayMap(v -> v / arraySum(c), c), c), if(ce, intDiv(toInt64(length(c)) - 1, 2), 0)))"),
    "netatlas_series_fir_apply": (
        "(x, c, sh) -> netatlas_json_array(arrayMap(i -> netatlas_series_real(arraySum(arrayMap(k -> "
        "if(toInt64(i) + sh - toInt64(k) + 1 BETWEEN 1 AND toInt64(length(x)), c[k] * x[toInt64(i) + sh - toInt64(k) + 1], 0.), "
        "arrayEnumerate(c)))), arrayEnumerate(x)))"),
    # iir(series, numerators b, denominators a): y[i] = (b[0] x[i] + b[1] x[i-1] + ... - a[1] y[i-1] - ...) / a[0]
    "netatlas_series_iir": (
        "(s, b, a) -> if(NOT netatlas_series_isarr(s) OR NOT netatlas_series_isarr(b) OR NOT netatlas_series_isarr(a) "
        "OR netatlas_series_len(b) = 0 OR netatlas_series_len(a) = 0 OR has(netatlas_series_nums(s), NULL) "
        "OR has(netatlas_series_nums(b), NULL) OR has(netatlas_series_nums(a), NULL) "
        "OR netatlas_series_nums(a)[1] = 0, NULL, netatlas_series_iir_of("
        "arrayMap(v -> assumeNotNull(v), netatlas_series_nums(s)), arrayMap(v -> assumeNotNull(v), netatlas_series_nums(b)), "
        "arrayMap(v -> assumeNotNull(v), netatlas_series_nums(a))))"),
    "netatlas_series_iir_of": (
        "(x, b, a) -> netatlas_json_array(arrayMap(v -> netatlas_series_real(v), arrayFold((acc, i) -> arrayPushBack(acc, "
        "(arraySum(arrayMap(k -> if(toInt64(i) - toInt64(k) >= 0, b[k + 1] * x[toInt64(i) - toInt64(k) + 1], 0.), range(length(b)))) "
        "- arraySum(arrayMap(k -> if(toInt64(i) - toInt64(k) >= 0, a[k + 1] * acc[toInt64(i) - toInt64(k) + 1], 0.), "
        "range(1, length(a))))) / a[1]), range(length(x)), CAST([], 'Array(Float64)'))))"),
    # fft / ifft(real, imaginary) as the discrete Fourier transform's sums (ifft scaled by 1/n): the same
    # numbers as numpy's FFT up to rounding (angles taken modulo the length)
    "netatlas_series_fft": "(re, im) -> netatlas_series_dft(re, im, -1., false)",
    "netatlas_series_ifft": "(re, im) -> netatlas_series_dft(re, im, 1., true)",
    # arrayMap(v -> ..., [x])[1] binds x once (a function's argument is copied at each of its uses)
    "netatlas_series_dft": (
        "(re, im, sg, inv) -> arrayMap(r -> arrayMap(i -> if(NOT netatlas_series_isarr(re) OR length(r) = 0 OR has(r, NULL) "
        "OR (netatlas_series_isarr(im) AND (length(i) != length(r) OR has(i, NULL))), NULL, netatlas_series_dft_json("
        "arrayMap(v -> ifNull(v, 0.), r), arrayResize(arrayMap(v -> ifNull(v, 0.), i), length(r), 0.), sg, "
        "if(inv, 1. / length(r), 1.))), [if(netatlas_series_isarr(im), netatlas_series_nums(im), [])])[1], "
        "[netatlas_series_nums(re)])[1]"),
    "netatlas_series_w": "(k, n, m) -> 2 * pi() * ((k * n) % m) / m",
    "netatlas_series_dft_json": (
        "(xr, xi, sg, sc) -> arrayMap(z -> concat('{\"real\":', netatlas_json_array(arrayMap(k -> netatlas_series_real(sc * "
        "arraySum(arrayMap((a, b, n) -> a * cos(netatlas_series_w(k, n, length(z.1))) - sg * b * sin(netatlas_series_w(k, n, "
        "length(z.1))), z.1, z.2, range(length(z.1))))), range(length(z.1)))), ',\"imag\":', netatlas_json_array(arrayMap(k -> "
        "netatlas_series_real(sc * arraySum(arrayMap((a, b, n) -> b * cos(netatlas_series_w(k, n, length(z.1))) "
        "+ sg * a * sin(netatlas_series_w(k, n, length(z.1))), z.1, z.2, range(length(z.1))))), range(length(z.1)))), '}'), "
        "[(xr, xi)])[1]"),
}

# ---- outliers, periods, anomalies, two lines (the formulas of dialects/duckdb/series.py) -----------------------

_MORE: dict[str, str] = {  # lambda variables named <var>_<function>: inlined arguments cannot be captured
    'netatlas_series_pct': '(s, p) -> if(empty(s), 0., arrayMap(r_pct -> s[toInt64(floor(r_pct)) + 1] + (r_pct - floor(r_pct)) * (s[least(toInt64(floor(r_pct)) + 2, toInt64(length(s)))] - s[toInt64(floor(r_pct)) + 1]), [(toInt64(length(s)) - 1) * p / 100.])[1])',
    'netatlas_series_tukey_of': '(v, lo, hi) -> arrayMap(s_tukey_of -> arrayMap(q_tukey_of -> arrayMap(x_tukey_of -> if(isNull(x_tukey_of) OR q_tukey_of.2 - q_tukey_of.1 <= 0, 0., multiIf(assumeNotNull(x_tukey_of) > q_tukey_of.2, (assumeNotNull(x_tukey_of) - q_tukey_of.2) / (q_tukey_of.2 - q_tukey_of.1), assumeNotNull(x_tukey_of) < q_tukey_of.1, (assumeNotNull(x_tukey_of) - q_tukey_of.1) / (q_tukey_of.2 - q_tukey_of.1), 0.)), v), [(netatlas_series_pct(s_tukey_of, lo), netatlas_series_pct(s_tukey_of, hi))])[1], [arraySort(arrayMap(x_tukey_of -> assumeNotNull(x_tukey_of), arrayFilter(x_tukey_of -> isNotNull(x_tukey_of), v)))])[1]',
    'netatlas_series_outlier_ok': "(k, lo, hi) -> lower(ifNull(k, 'ctukey')) IN ('tukey', 'ctukey') AND ifNull(lo, 10.) BETWEEN 2 AND 98 AND ifNull(hi, 90.) BETWEEN 2 AND 98 AND ifNull(lo, 10.) < ifNull(hi, 90.)",
    'netatlas_series_outliers': "(a, k, ig, lo, hi) -> if(NOT netatlas_series_isarr(a) OR NOT netatlas_series_outlier_ok(k, lo, hi), NULL, netatlas_json_array(arrayMap(v_outliers -> netatlas_series_real(v_outliers), netatlas_series_tukey_of(arrayMap(v_outliers -> if(isNull(ig) OR ifNull(v_outliers != ig, true), v_outliers, NULL), netatlas_series_nums(a)), if(lower(ifNull(k, 'ctukey')) = 'tukey', 25., ifNull(lo, 10.)), if(lower(ifNull(k, 'ctukey')) = 'tukey', 75., ifNull(hi, 90.))))))",
    'netatlas_series_power': '(d) -> arrayMap(k_power -> pow(arraySum(arrayMap((x_power, i_power) -> x_power * cos(netatlas_series_w(k_power, i_power, length(d))), d, range(length(d)))), 2) + pow(arraySum(arrayMap((x_power, i_power) -> x_power * sin(netatlas_series_w(k_power, i_power, length(d))), d, range(length(d)))), 2), range(intDiv(length(d), 2) + 1))',
    'netatlas_series_acf_at': '(d, L) -> if(L < 0 OR L >= length(d) OR arraySum(arrayMap(x_acf_at -> x_acf_at * x_acf_at, d)) = 0, 0., arraySum(arrayMap(i_acf_at -> d[i_acf_at] * d[i_acf_at + L], range(1, greatest(toInt64(length(d)) - L + 1, 1)))) / (toInt64(length(d)) - L) / (arraySum(arrayMap(x_acf_at -> x_acf_at * x_acf_at, d)) / length(d)))',
    'netatlas_series_acf': '(d, lag) -> if(lag = floor(lag), netatlas_series_acf_at(d, toInt64(floor(lag))), (1 - (lag - floor(lag))) * netatlas_series_acf_at(d, toInt64(floor(lag))) + (lag - floor(lag)) * netatlas_series_acf_at(d, toInt64(floor(lag)) + 1))',
    'netatlas_series_periods_of': '(y, lo, hi) -> netatlas_series_no_multiples(arrayMap(d_periods_of -> arrayMap(P_periods_of -> arraySort(c_periods_of -> (-c_periods_of.2, c_periods_of.1), arrayDistinct(arrayMap(c_periods_of -> (c_periods_of.1, least(c_periods_of.2, 1.)), arrayFilter(c_periods_of -> c_periods_of.2 >= 2 / sqrt(length(d_periods_of)), arrayMap(k_periods_of -> netatlas_series_best_lag(d_periods_of, greatest(toInt64(ceil(length(d_periods_of) / (k_periods_of + 1))), toInt64(ceil(greatest(lo, 4.)))), least(if(k_periods_of > 1, toInt64(floor(length(d_periods_of) / greatest(k_periods_of - 1, 1))), toInt64(intDiv(length(d_periods_of), 2))), toInt64(floor(least(hi, length(d_periods_of) / 2))))), arrayFilter(k_periods_of -> P_periods_of[k_periods_of + 1] > P_periods_of[k_periods_of] AND (k_periods_of = intDiv(length(d_periods_of), 2) OR P_periods_of[k_periods_of + 1] >= P_periods_of[k_periods_of + 2]) AND length(d_periods_of) / k_periods_of >= greatest(lo, 4.) AND length(d_periods_of) / k_periods_of <= least(hi, length(d_periods_of) / 2), range(1, intDiv(length(d_periods_of), 2) + 1))))))), [netatlas_series_power(d_periods_of)])[1], [netatlas_series_detrend(y)])[1])',
    'netatlas_series_best_lag': '(d, a, b) -> arrayMap(r_best_lag -> if(empty(r_best_lag), (0., 0.), (toFloat64(a + indexOf(r_best_lag, arrayMax(r_best_lag)) - 1), arrayMax(r_best_lag))), [arrayMap(L_best_lag -> netatlas_series_acf_at(d, L_best_lag), range(a, greatest(b + 1, a)))])[1]',
    'netatlas_series_periods_detect': '(a, lo, hi, num) -> if(NOT netatlas_series_isarr(a) OR has(netatlas_series_nums(a), NULL) OR isNull(lo) OR isNull(hi) OR isNull(num) OR num < 0, NULL, arrayMap(ps_periods_detect -> concat(\'{"periods":\', netatlas_json_array(arrayMap(i_periods_detect -> netatlas_series_real(if(i_periods_detect <= length(ps_periods_detect), ps_periods_detect[i_periods_detect].1, 0.)), range(1, greatest(num, 0) + 1))), \',"scores":\', netatlas_json_array(arrayMap(i_periods_detect -> netatlas_series_real(if(i_periods_detect <= length(ps_periods_detect), ps_periods_detect[i_periods_detect].2, 0.)), range(1, greatest(num, 0) + 1))), \'}\'), [arraySlice(netatlas_series_periods_of(arrayMap(v_periods_detect -> ifNull(v_periods_detect, 0.), netatlas_series_nums(a)), ifNull(lo, 0.), ifNull(hi, 0.)), 1, greatest(ifNull(num, 0), 0))])[1])',
    'netatlas_series_periods_validate': '(a, ps) -> if(NOT netatlas_series_isarr(a) OR has(netatlas_series_nums(a), NULL) OR NOT netatlas_series_isarr(ps), NULL, arrayMap(d_periods_validate -> concat(\'{"periods":\', netatlas_json_array(arrayMap(p_periods_validate -> netatlas_series_real(p_periods_validate), netatlas_series_nums(ps))), \',"scores":\', netatlas_json_array(arrayMap(p_periods_validate -> netatlas_series_real(if(isNotNull(p_periods_validate) AND assumeNotNull(p_periods_validate) >= 4 AND assumeNotNull(p_periods_validate) <= length(d_periods_validate) / 2, netatlas_series_significant(netatlas_series_acf(d_periods_validate, assumeNotNull(p_periods_validate)), length(d_periods_validate)), 0.)), netatlas_series_nums(ps))), \'}\'), [arrayMap(y_periods_validate -> netatlas_series_detrend(y_periods_validate), [arrayMap(v_periods_validate -> ifNull(v_periods_validate, 0.), netatlas_series_nums(a))])[1]])[1])',
    'netatlas_series_autoperiod': '(y, th) -> arrayMap(ps_autoperiod -> if(notEmpty(ps_autoperiod) AND ps_autoperiod[1].2 >= ifNull(th, 0.6), toInt64(ps_autoperiod[1].1), toInt64(0)), [netatlas_series_periods_of(y, 4., length(y) / 2)])[1]',
    'netatlas_series_decompose_anomalies': "(a, t, p, tr, tp, m, th) -> arrayMap(q_decompose_anomalies -> if(NOT netatlas_series_decompose_ok(a, q_decompose_anomalies, tr, tp) OR lower(ifNull(m, 'ctukey')) NOT IN ('tukey', 'ctukey'), NULL, arrayMap(y_decompose_anomalies -> arrayMap(s_decompose_anomalies -> netatlas_series_anomalies_of(y_decompose_anomalies, s_decompose_anomalies, netatlas_series_trend_of(y_decompose_anomalies, netatlas_series_deseason(y_decompose_anomalies, s_decompose_anomalies, netatlas_series_learn(a, tp)), lower(ifNull(tr, 'avg'))), ifNull(t, 1.5), if(lower(ifNull(m, 'ctukey')) = 'tukey', 25., 10.), if(lower(ifNull(m, 'ctukey')) = 'tukey', 75., 90.)), [netatlas_series_seasonal_of(y_decompose_anomalies, q_decompose_anomalies, netatlas_series_learn(a, tp))])[1], [netatlas_series_nums(a)])[1]), [netatlas_series_period(a, p, tp, th)])[1]",
    'netatlas_series_anomalies_of': '(y, s, w, thr, lo, hi) -> arrayMap(sc_anomalies_of -> concat(\'{"ad_flag":\', netatlas_json_array(arrayMap(x_anomalies_of -> if(x_anomalies_of > thr, \'1\', if(x_anomalies_of < -thr, \'-1\', \'0\')), sc_anomalies_of)), \',"ad_score":\', netatlas_json_array(arrayMap(x_anomalies_of -> netatlas_series_real(x_anomalies_of), sc_anomalies_of)), \',"baseline":\', netatlas_json_array(arrayMap((u_anomalies_of, v_anomalies_of) -> netatlas_series_real(u_anomalies_of + v_anomalies_of), s, w)), \'}\'), [netatlas_series_tukey_of(arrayMap((v_anomalies_of, u_anomalies_of, x_anomalies_of) -> v_anomalies_of - (u_anomalies_of + x_anomalies_of), y, s, w), lo, hi)])[1]',
    'netatlas_series_part': '(y, x) -> arrayMap(sl_part -> (sl_part, arrayAvg(y) - sl_part * arrayAvg(x)), [arraySum(arrayMap((u_part, v_part) -> (u_part - arrayAvg(x)) * (v_part - arrayAvg(y)), x, y)) / arraySum(arrayMap(u_part -> (u_part - arrayAvg(x)) * (u_part - arrayAvg(x)), x))])[1]',
    'netatlas_series_part_ssr': '(y, x, l) -> arraySum(arrayMap((u_part_ssr, v_part_ssr) -> (v_part_ssr - (l.1 * u_part_ssr + l.2)) * (v_part_ssr - (l.1 * u_part_ssr + l.2)), x, y))',
    'netatlas_series_part_err': '(y, x) -> netatlas_series_part_ssr(y, x, netatlas_series_part(y, x))',
    'netatlas_series_fit_2lines': '(a) -> if(NOT netatlas_series_isarr(a) OR has(netatlas_series_nums(a), NULL) OR netatlas_series_len(a) < 6, NULL, arrayMap(y_fit_2lines -> arrayMap(x_fit_2lines -> arrayMap(e_fit_2lines -> netatlas_series_2lines_at(y_fit_2lines, x_fit_2lines, toInt64(arrayFirstIndex(v_fit_2lines -> v_fit_2lines <= arrayMin(e_fit_2lines) + 1e-9 * netatlas_series_sst(y_fit_2lines), e_fit_2lines) + 2)), [arrayMap(i_fit_2lines -> netatlas_series_part_err(arraySlice(y_fit_2lines, 1, i_fit_2lines), arraySlice(x_fit_2lines, 1, i_fit_2lines)) + netatlas_series_part_err(arraySlice(y_fit_2lines, i_fit_2lines + 1), arraySlice(x_fit_2lines, i_fit_2lines + 1)), range(3, length(y_fit_2lines) - 2))])[1], [arrayMap(i_fit_2lines -> toFloat64(i_fit_2lines), arrayEnumerate(y_fit_2lines))])[1], [arrayMap(v_fit_2lines -> ifNull(v_fit_2lines, 0.), netatlas_series_nums(a))])[1])',
    'netatlas_series_2lines_at': '(y, x, i) -> arrayMap(l_2lines_at -> arrayMap(r_2lines_at -> concat(\'{"rsquare":\', netatlas_series_real(if(netatlas_series_sst(y) > 0, 1 - (l_2lines_at.2 + r_2lines_at.2) / netatlas_series_sst(y), 1.)), \',"split_idx":\', toString(i), \',"variance":\', netatlas_series_real(netatlas_series_sst(y) / (length(y) - 1)), \',"rvariance":\', netatlas_series_real((l_2lines_at.2 + r_2lines_at.2) / (length(y) - 1)), \',"line_fit":\', netatlas_json_array(arrayMap(u_2lines_at -> netatlas_series_real(if(u_2lines_at <= i, l_2lines_at.1.1 * u_2lines_at + l_2lines_at.1.2, r_2lines_at.1.1 * u_2lines_at + r_2lines_at.1.2)), x)), \',"right":\', netatlas_series_side(arraySlice(y, i + 1), r_2lines_at), \',"left":\', netatlas_series_side(arraySlice(y, 1, i), l_2lines_at), \'}\'), [arrayMap(c_2lines_at -> (c_2lines_at, netatlas_series_part_ssr(arraySlice(y, i + 1), arraySlice(x, i + 1), c_2lines_at)), [netatlas_series_part(arraySlice(y, i + 1), arraySlice(x, i + 1))])[1]])[1], [arrayMap(c_2lines_at -> (c_2lines_at, netatlas_series_part_ssr(arraySlice(y, 1, i), arraySlice(x, 1, i), c_2lines_at)), [netatlas_series_part(arraySlice(y, 1, i), arraySlice(x, 1, i))])[1]])[1]',
    'netatlas_series_side': '(y, l) -> concat(\'{"rsquare":\', netatlas_series_real(if(netatlas_series_sst(y) > 0, 1 - l.2 / netatlas_series_sst(y), 1.)), \',"slope":\', netatlas_series_real(l.1.1), \',"interception":\', netatlas_series_real(l.1.2), \',"variance":\', netatlas_series_real(netatlas_series_sst(y) / (length(y) - 1)), \',"rvariance":\', netatlas_series_real(l.2 / (length(y) - 1)), \'}\')',
}

_MORE.update({
    # the series less its least squares line over x = 1..n
    "netatlas_series_detrend": (
        "(y) -> arrayMap(s_detrend -> arrayMap((v_detrend, i_detrend) -> v_detrend - (s_detrend * i_detrend + "
        "(arrayAvg(y) - s_detrend * (length(y) + 1) / 2)), y, arrayEnumerate(y)), [netatlas_series_slope(y)])[1]"),
    # periods less the multiples of a shorter one among them scoring at least 0.9 times as much
    # (within one bin of r M, r = floor(L / M + 0.5) >= 2)
    "netatlas_series_no_multiples": (
        "(ps) -> arrayFilter(c_no_multiples -> NOT arrayExists(m_no_multiples -> m_no_multiples.1 < c_no_multiples.1 "
        "AND floor(c_no_multiples.1 / m_no_multiples.1 + 0.5) >= 2 AND abs(c_no_multiples.1 - floor(c_no_multiples.1 / "
        "m_no_multiples.1 + 0.5) * m_no_multiples.1) <= 1 AND m_no_multiples.2 >= 0.9 * c_no_multiples.2, ps), ps)"),
    # an autocorrelation as a score: at most 1, 0 under 2 / sqrt(n)
    "netatlas_series_significant": "(r, n) -> if(r >= 2 / sqrt(n), least(r, 1.), 0.)",
})
FUNCTIONS.update(_MORE)

REFUSED = ("fit_poly",)


def _bound(text: str) -> str:
    """(a, b) -> body as (a_, b_) -> arrayMap((a, b) -> body, [a_], [b_])[1]: each argument computed
    once (ClickHouse copies a function's argument at each of its uses, so series functions of series
    functions grew exponentially)."""
    params, _, body = text.partition(" -> ")
    names = [p.strip() for p in params.strip("()").split(",")]
    outer = ", ".join(f"{n}_" for n in names)
    return f"({outer}) -> arrayMap(({', '.join(names)}) -> {body}, {', '.join(f'[{n}_]' for n in names)})[1]"


PUBLIC = {f"netatlas_series_{name}" for name in (
    "add", "subtract", "multiply", "divide", "pow", "greater", "greater_equals", "less", "less_equals", "equals",
    "not_equals", "abs", "acos", "asin", "atan", "ceiling", "cos", "exp", "floor", "log", "sign", "sin", "tan",
    "sum", "stats", "fit_line", "fill_const", "fill_forward", "fill_backward", "fill_linear", "decompose",
    "decompose_forecast", "seasonal", "iir", "fir", "fft", "ifft", "dot_product", "cosine_similarity",
    "pearson_correlation", "magnitude", "outliers", "periods_detect", "periods_validate", "decompose_anomalies",
    "fit_2lines")}
FUNCTIONS = {name: _bound(text) if name in PUBLIC else text for name, text in FUNCTIONS.items()}

__all__ = ["FUNCTIONS", "REFUSED"]
