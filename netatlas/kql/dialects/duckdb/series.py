"""The series_* functions as Python, for the DuckDB runtime (``runtime.UDFS``): each takes the
series as JSON text (a dynamic value) and the other arguments as SQL values, and returns JSON text.

Kusto's rules kept here: an element that is not a number (null, a string, a bool) or is missing
(arrays of different lengths) gives a null element; a series that is not an array gives null;
integer arithmetic stays integer where Kusto's does (add, subtract, multiply of two longs), division
and the math functions give reals; the fill functions keep the elements' own types. A non-finite
real (NaN, an infinity) cannot be written in JSON text and becomes null.

Outliers, periods, anomalies and two lines (Kusto publishes no numbers for them; these are
netatlas' formulas, the same in the ClickHouse runtime's SQL):

- series_outliers(y, kind, ignore_val, min_percentile, max_percentile): the numbers of y other than
  ignore_val, sorted, s[0..m-1]; the p-th percentile is linear between the closest ranks: r = (m - 1)
  p / 100, i = floor(r), s[i] + (r - i) (s[i + 1] - s[i]) (numpy's 'linear', ClickHouse's
  quantileExactInclusive); Q_lo, Q_hi the 25th/75th percentiles ("tukey") or min/max_percentile
  (10/90 by default, "ctukey", the default); each element x scores (x - Q_hi) / (Q_hi - Q_lo) above
  Q_hi, (x - Q_lo) / (Q_hi - Q_lo) below Q_lo, else 0; nulls, non-numbers and ignore_val score 0, and
  every element when Q_hi = Q_lo. Percentiles outside [2, 98], min >= max or another kind: null.
- the autocorrelation of d (n points) at lag L: (sum_i d[i] d[i + L] / (n - L)) / (sum_i d[i]^2 / n),
  linear between the integer lags around a real one; a score is it capped at 1, 0 under 2 / sqrt(n)
  (the 95% bound of white noise's). d is the series less its least squares line over x = 1..n.
- series_periods_validate: each period's score; 0 for periods under 4 or over n / 2.
- series_periods_detect(y, min, max, k): within [max(min, 4), min(max, n / 2)]; each peak k of the
  periodogram |DFT(d)_k|^2 (1 <= k <= n / 2, above k - 1 and at least k + 1) with n / k in range
  gives the integer lag of the highest autocorrelation between n / (k + 1) and n / (k - 1) (n / 2
  for k = 1), scored; 0 scores dropped, and periods within one bin of a multiple (r >= 2) of a
  shorter one found scoring at least 0.9 times as much; best first (ties: shorter first); padded to
  k with period 0, score 0.
- seasonality -1 (series_decompose, _forecast, _anomalies, series_seasonal): the best period
  series_periods_detect finds in [4, n / 2] of the learning points if it scores at least the
  seasonality threshold (0.6 by default; series_seasonal's 0.7), else no seasonality.
- series_decompose_anomalies: series_decompose's baseline and residual; ad_score = series_outliers of
  the residual (ctukey 10/90 or tukey 25/75); ad_flag +1 above threshold (1.5), -1 below -threshold.
- series_fit_2lines: lines by least squares over x = 1..n (both on that axis); split_idx is the first
  index of the right line, each line at least 3 points (n < 6: null); the split of the least total
  squared error E (the first whose E is within 1e-9 SST of it); rsquare = 1 - E / SST, variance =
  SST / (n - 1), rvariance = E / (n - 1); each side's as series_fit_line's over its points.
"""
from __future__ import annotations

import json
import math

import numpy as np


def _load(text):
    """A dynamic value (JSON text) as a list, or None when it is not an array."""
    if text is None:
        return None
    try:
        v = json.loads(text)
    except (TypeError, ValueError):
        return None
    return v if isinstance(v, list) else None


def _num(v):
    """An element as a number, or None (bools, strings, nulls, arrays are not numbers)."""
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return v


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def _dump(values) -> str:
    return json.dumps([_clean(v) for v in values], separators=(",", ":"))


def _dump_bag(bag: dict) -> str:
    out = {}
    for k, v in bag.items():
        out[k] = [_clean(x) for x in v] if isinstance(v, (list, np.ndarray)) else _clean(v)
    return json.dumps(out, separators=(",", ":"))


# ---- element-wise ---------------------------------------------------------------------------------

def _int_result(a, b):
    return isinstance(a, int) and isinstance(b, int)


def _wrap(v: int) -> int:
    """A long as Kusto's arithmetic leaves it: 64 bits, wrapping around."""
    return (v + 2 ** 63) % 2 ** 64 - 2 ** 63


def _add(a, b):
    return a + b


def _sub(a, b):
    return a - b


def _mul(a, b):
    return a * b


def _div(a, b):
    a, b = float(a), float(b)
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * (1 if math.copysign(1, b) > 0 else -1)
    return a / b


def _pow(a, b):
    try:
        r = math.pow(float(a), float(b))
    except (OverflowError, ValueError):
        return None
    return r


BINARY = {
    "add": _add, "subtract": _sub, "multiply": _mul, "divide": _div, "pow": _pow,
    "greater": lambda a, b: a > b, "greater_equals": lambda a, b: a >= b, "less": lambda a, b: a < b,
    "less_equals": lambda a, b: a <= b, "equals": lambda a, b: a == b, "not_equals": lambda a, b: a != b,
}
_KEEPS_INT = {"add", "subtract", "multiply"}


def binary(op: str, j1, j2):
    """series_<op>(series1, series2): either side may be a number (a scalar) broadcast over the other."""
    v1 = json.loads(j1) if j1 is not None else None
    v2 = json.loads(j2) if j2 is not None else None
    l1 = v1 if isinstance(v1, list) else None
    l2 = v2 if isinstance(v2, list) else None
    if l1 is None and l2 is None:
        return None
    x1 = None if l1 is not None else _num(v1)
    x2 = None if l2 is not None else _num(v2)
    n = max(len(l1) if l1 is not None else 0, len(l2) if l2 is not None else 0)
    f = BINARY[op]
    out = []
    for i in range(n):
        a = (_num(l1[i]) if i < len(l1) else None) if l1 is not None else x1
        b = (_num(l2[i]) if i < len(l2) else None) if l2 is not None else x2
        if a is None or b is None:
            out.append(None)
            continue
        if op in _KEEPS_INT and not _int_result(a, b):
            a, b = float(a), float(b)
        v = f(a, b)
        out.append(_wrap(v) if op in _KEEPS_INT and isinstance(v, int) else v)
    return _dump(out)


def _sign(v):
    return (v > 0) - (v < 0) if not (isinstance(v, float) and math.isnan(v)) else math.nan


def _domain(f):
    def g(v):
        try:
            return f(float(v))
        except (ValueError, OverflowError):
            return None
    return g


UNARY = {
    "abs": abs, "sign": _sign,
    "ceiling": lambda v: v if isinstance(v, int) else float(math.ceil(v)) if math.isfinite(v) else v,
    "floor": lambda v: v if isinstance(v, int) else float(math.floor(v)) if math.isfinite(v) else v,
    "acos": _domain(math.acos), "asin": _domain(math.asin), "atan": _domain(math.atan), "cos": _domain(math.cos),
    "sin": _domain(math.sin), "tan": _domain(math.tan), "exp": _domain(math.exp),
    "log": lambda v: _domain(math.log)(v) if v > 0 else (-math.inf if v == 0 else None),
}


def unary(op: str, s):
    values = _load(s)
    if values is None:
        return None
    f = UNARY[op]
    return _dump([None if _num(v) is None else f(v) for v in values])


# ---- whole-series numbers -------------------------------------------------------------------------

def _floats(values) -> np.ndarray:
    """The elements as float64, non-numbers as NaN."""
    return np.array([float(v) if _num(v) is not None else np.nan for v in values], dtype=float)


def series_sum(s):
    values = _load(s)
    if values is None:
        return None
    return float(sum(float(v) for v in values if _num(v) is not None))


STATS = ("min", "min_idx", "max", "max_idx", "avg", "stdev", "variance", "sum", "len")


def stats(s, ignore_nonfinite):
    """series_stats: min, its first index, max, its first index, average, sample stdev and variance,
    the sum and the series' length; all null when a non-finite element (null, NaN, infinity, not a number) is there, unless ignored."""
    values = _load(s)
    if values is None:
        return None
    x = _floats(values)
    finite = np.isfinite(x)
    if not finite.all() and not ignore_nonfinite:
        return _dump_bag({k: None for k in STATS})
    idx = np.flatnonzero(finite)
    if len(idx) == 0:
        return _dump_bag({k: None for k in STATS})
    v = x[idx]
    var = float(v.var(ddof=1)) if len(v) > 1 else 0.0
    return _dump_bag({"min": float(v.min()), "min_idx": int(idx[int(np.argmin(v))]),
                      "max": float(v.max()), "max_idx": int(idx[int(np.argmax(v))]),
                      "avg": float(v.mean()), "stdev": math.sqrt(var), "variance": var,
                      "sum": float(v.sum()), "len": len(values)})


def _line(y: np.ndarray):
    """Least squares y = slope * x + interception over x = 1..n; (slope, interception)."""
    n = len(y)
    x = np.arange(1, n + 1, dtype=float)
    if n < 2:
        return 0.0, float(y[0]) if n else 0.0
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    return slope, float(ym - slope * xm)


def _fit(y: np.ndarray):
    """rsquare, slope, variance, rvariance, interception, line_fit of one straight line."""
    n = len(y)
    slope, icpt = _line(y)
    fit = slope * np.arange(1, n + 1, dtype=float) + icpt
    res = y - fit
    ss_tot = float(((y - y.mean()) ** 2).sum()) if n else 0.0
    ss_res = float((res ** 2).sum())
    var = ss_tot / (n - 1) if n > 1 else 0.0
    rvar = ss_res / (n - 1) if n > 1 else 0.0
    rsq = 1.0 - ss_res / ss_tot if ss_tot > 0 else (1.0 if n else math.nan)
    return {"rsquare": rsq, "slope": slope, "variance": var, "rvariance": rvar, "interception": icpt,
            "line_fit": list(fit)}


def _numeric(s):
    """The series as float64 with every element a finite number, or None."""
    values = _load(s)
    if values is None:
        return None
    x = _floats(values)
    return x if np.isfinite(x).all() else None


def fit_line(s):
    y = _numeric(s)
    if y is None or len(y) == 0:
        return None
    return _dump_bag(_fit(y))


# ---- filling missing values -------------------------------------------------------------------------

def _is_missing(v, placeholder):
    if placeholder is None:
        return v is None
    return _num(v) is not None and v == placeholder


def fill_const(s, const, placeholder):
    values = _load(s)
    if values is None:
        return None
    return _dump([const if _is_missing(v, placeholder) else v for v in values])


def fill_forward(s, placeholder):
    """Each missing element takes the nearest element before it that is not missing (a null too, when
    the placeholder is another value); the first ones stay."""
    values = _load(s)
    if values is None:
        return None
    return _dump(_fill_forward(values, placeholder))


def _fill_forward(values, placeholder):
    out, last, seen = [], None, False
    for v in values:
        if _is_missing(v, placeholder):
            out.append(last if seen else v)
        else:
            out.append(v)
            last, seen = v, True
    return out


def fill_backward(s, placeholder):
    """The same from the right: each missing element takes the nearest one after it; the last ones stay."""
    values = _load(s)
    if values is None:
        return None
    return _dump(_fill_forward(values[::-1], placeholder)[::-1])


def fill_linear(s, placeholder, fill_edges, const):
    """Missing values between two present ones on the straight line between them (an integer
    series truncates the interpolated values); the edges take the nearest present value unless
    fill_edges is false; a series of missing values only is filled with const (0 by default)."""
    values = _load(s)
    if values is None:
        return None
    present = [i for i, v in enumerate(values) if not _is_missing(v, placeholder)]
    if not present:
        return _dump([const for _ in values])
    ints = all(isinstance(values[i], int) and not isinstance(values[i], bool) for i in present if values[i] is not None)
    out = list(values)
    for a, b in zip(present, present[1:]):
        va, vb = values[a], values[b]
        if _num(va) is None or _num(vb) is None:
            continue
        for i in range(a + 1, b):
            v = va + (vb - va) * (i - a) / (b - a)
            out[i] = int(v) if ints else float(v)
    if fill_edges is None or fill_edges:
        first, last = present[0], present[-1]
        for i in range(first):
            out[i] = values[first]
        for i in range(last + 1, len(values)):
            out[i] = values[last]
    return _dump(out)


# ---- decomposition ------------------------------------------------------------------------------------

def _decompose(y: np.ndarray, period: int, trend: str, test_points: int):
    """Seasonal: the median of the learning points of each phase; trend: the average or the line
    fitted to the deseasonalized learning points (extended over the test points), or none."""
    n = len(y)
    learn = n - test_points
    seasonal = np.zeros(n)
    if period > 0:
        for ph in range(period):
            pts = y[ph:learn:period]
            seasonal[ph::period] = float(np.median(pts)) if len(pts) else 0.0
    des = y - seasonal
    if trend == "avg":
        tr = np.full(n, float(des[:learn].mean()) if learn else 0.0)
    elif trend == "linefit":
        slope, icpt = _line(des[:learn])
        tr = slope * np.arange(1, n + 1, dtype=float) + icpt
    else:
        tr = np.zeros(n)
    baseline = seasonal + tr
    return baseline, seasonal, tr, y - baseline


def _decompose_args(s, seasonality, trend, test_points, s_threshold=None):
    """The series (its learning points all numbers; the test points, to forecast, may be anything),
    the period (-1, the default: detected in the learning points, ``_autoperiod``), the trend's kind
    and the test points; None when they are not valid."""
    values = _load(s)
    if values is None:
        return None
    y = _floats(values)
    period = -1 if seasonality is None else int(seasonality)
    trend = "avg" if trend is None else trend.lower()
    test_points = 0 if test_points is None else int(test_points)
    if period < -1 or trend not in ("avg", "linefit", "none") or not 0 <= test_points < len(y):
        return None
    if not np.isfinite(y[:len(y) - test_points]).all():
        return None
    if period == -1:
        period = _autoperiod(y[:len(y) - test_points], s_threshold)
    return y, period, trend, test_points


def decompose(s, seasonality, trend, test_points, s_threshold):
    args = _decompose_args(s, seasonality, trend, test_points, s_threshold)
    if args is None:
        return None
    baseline, seasonal, tr, residual = _decompose(*args)
    return _dump_bag({"baseline": list(baseline), "seasonal": list(seasonal), "trend": list(tr),
                      "residual": list(residual)})


def decompose_forecast(s, points, seasonality, trend, s_threshold):
    args = _decompose_args(s, seasonality, trend, points, s_threshold)
    if args is None:
        return None
    baseline, _, _, _ = _decompose(*args)
    return _dump(list(baseline))


def seasonal(s, period):
    """The median of the points of each phase of the period, repeated; zeros for a period of 0 (or below -1); -1
    detects the period (``_autoperiod``)."""
    y = _numeric(s)
    if y is None or period is None:
        return None
    if period == -1:
        period = _autoperiod(y, SEASONAL_THRESHOLD)
    seasonal = np.zeros(len(y))
    if period > 0:
        for ph in range(min(period, len(y))):
            seasonal[ph::period] = float(np.median(y[ph::period]))
    return _dump(list(seasonal))


def fit_poly(s, xs, degree):
    """Least squares polynomial of the degree (1 by default) from x (1..n by default) to y:
    rsquare, coefficients (highest power first), variance, rvariance, poly_fit."""
    y = _numeric(s)
    if y is None or len(y) == 0:
        return None
    degree = 1 if degree is None else int(degree)
    if xs is None or _load(xs) is None:
        x = np.arange(1, len(y) + 1, dtype=float)
    else:
        x = _numeric(xs)
        if x is None or len(x) != len(y):
            return None
    if degree < 1 or len(y) <= degree:
        return None
    coef = np.polyfit(x, y, degree)
    fit = np.polyval(coef, x)
    n = len(y)
    ss_tot = float(((y - y.mean()) ** 2).sum())
    ss_res = float(((y - fit) ** 2).sum())
    return _dump_bag({"rsquare": 1.0 - ss_res / ss_tot if ss_tot > 0 else 1.0, "coefficients": list(coef),
                      "variance": ss_tot / (n - 1), "rvariance": ss_res / (n - 1), "poly_fit": list(fit)})


def _complex(re, im):
    x = _numeric(re)
    if x is None:
        return None
    if im is None or _load(im) is None:
        return x.astype(complex)
    i = _numeric(im)
    if i is None or len(i) != len(x):
        return None
    return x + 1j * i


def fft(re, im):
    """The discrete Fourier transform (no scaling): the real and the imaginary parts."""
    z = _complex(re, im)
    if z is None or len(z) == 0:
        return None
    f = np.fft.fft(z)
    return _dump_bag({"real": list(f.real), "imag": list(f.imag)})


def ifft(re, im):
    """The inverse discrete Fourier transform (scaled by 1/n): the real and the imaginary parts."""
    z = _complex(re, im)
    if z is None or len(z) == 0:
        return None
    f = np.fft.ifft(z)
    return _dump_bag({"real": list(f.real), "imag": list(f.imag)})


# ---- filters ------------------------------------------------------------------------------------------

def _coefficients(text):
    c = _load(text)
    if c is None or not c or any(_num(v) is None for v in c):
        return None
    return [float(v) for v in c]


def iir(s, numerators, denominators):
    """y[i] = (b[0] x[i] + b[1] x[i-1] + ... - a[1] y[i-1] - a[2] y[i-2] - ...) / a[0], the points
    before the series 0; null for a series with a non-number, or a[0] = 0."""
    values = _load(s)
    b, a = _coefficients(numerators), _coefficients(denominators)
    if values is None or b is None or a is None or a[0] == 0:
        return None
    if any(_num(v) is None for v in values):
        return None
    x = [float(v) for v in values]
    y: list[float] = []
    for i in range(len(x)):
        acc = sum(b[k] * x[i - k] for k in range(len(b)) if i - k >= 0)
        acc -= sum(a[k] * y[i - k] for k in range(1, len(a)) if i - k >= 0)
        y.append(acc / a[0])
    return _dump(y)


def fir(s, filt, normalize, center):
    """y[i] = c[0] x[i] + c[1] x[i-1] + ... (the points outside the series 0); normalize (by default
    unless a coefficient is negative) divides the coefficients by their sum; center moves the window
    (m - 1) / 2 points forward so that it is around the point."""
    values = _load(s)
    c = _coefficients(filt)
    if values is None or c is None or any(_num(v) is None for v in values):
        return None
    negative = any(v < 0 for v in c)
    if normalize is None:
        normalize = not negative
    if normalize:
        total = sum(c)
        if negative or total == 0:
            return None
        c = [v / total for v in c]
    x = [float(v) for v in values]
    shift = (len(c) - 1) // 2 if center else 0
    out = []
    for i in range(len(x)):
        j0 = i + shift
        out.append(sum(c[k] * x[j0 - k] for k in range(len(c)) if 0 <= j0 - k < len(x)))
    return _dump(out)


# ---- vectors ------------------------------------------------------------------------------------------

def _pair(s1, s2):
    a, b = _load(s1), _load(s2)
    if a is None or b is None:
        return None
    n = max(len(a), len(b))
    x = _floats(a + [None] * (n - len(a)))
    y = _floats(b + [None] * (n - len(b)))
    return x, y


def dot_product(s1, s2):
    """The sum of the products of the elements at the same place (the longer series cut to the
    shorter; a number is repeated along the other series); non-numbers left out; null when a series
    is empty."""
    v1 = json.loads(s1) if s1 is not None else None
    v2 = json.loads(s2) if s2 is not None else None
    if not isinstance(v1, list) and not isinstance(v2, list):
        return None
    if not isinstance(v1, list):
        v1 = [v1] * len(v2)
    if not isinstance(v2, list):
        v2 = [v2] * len(v1)
    if not v1 or not v2:
        return None
    n = min(len(v1), len(v2))
    x, y = _floats(v1[:n]), _floats(v2[:n])
    ok = np.isfinite(x) & np.isfinite(y)
    return float((x[ok] * y[ok]).sum())


def magnitude(s):
    values = _load(s)
    if values is None:
        return None
    x = _floats(values)
    return float(math.sqrt((x[np.isfinite(x)] ** 2).sum()))


def cosine_similarity(s1, s2):
    p = _pair(s1, s2)
    if p is None:
        return None
    x, y = p
    ok = np.isfinite(x) & np.isfinite(y)
    d = math.sqrt((x[ok] ** 2).sum()) * math.sqrt((y[ok] ** 2).sum())
    return _clean(float((x[ok] * y[ok]).sum()) / d) if d else None


def pearson_correlation(s1, s2):
    a, b = _load(s1), _load(s2)
    if a is None or b is None or len(a) != len(b):
        return None
    x, y = _floats(a), _floats(b)
    if not (np.isfinite(x).all() and np.isfinite(y).all()) or len(x) < 2:
        return None
    xm, ym = x - x.mean(), y - y.mean()
    d = math.sqrt((xm ** 2).sum() * (ym ** 2).sum())
    return float((xm * ym).sum() / d) if d else None


# ---- outliers, periods, anomalies, two lines ------------------------------------------------------------------
# The formulas are documented in ARCHITECTURE.md ("series: outliers, periods, anomalies, two lines") and are
# the same in the ClickHouse runtime's SQL (dialects/clickhouse/series.py).

def _percentile(v: np.ndarray, p: float) -> float:
    """The p-th percentile (0..100) by linear interpolation between the closest ranks: the point
    at rank (n - 1) p / 100 of the sorted values (numpy's 'linear', ClickHouse's
    quantileExactInclusive): with s sorted, r = (n - 1) p / 100, i = floor(r),
    s[i] + (r - i) (s[i + 1] - s[i]) (s[i] alone at the end)."""
    s = sorted(float(x) for x in v)
    r = (len(s) - 1) * p / 100
    i = math.floor(r)
    return s[i] + (r - i) * (s[min(i + 1, len(s) - 1)] - s[i])


def _outlier_scores(x: np.ndarray, skip: np.ndarray, kind: str, lo_p: float, hi_p: float):
    """Tukey's k of each element: (x - Q_hi) / (Q_hi - Q_lo) above Q_hi, (x - Q_lo) / (Q_hi - Q_lo)
    below Q_lo, 0 between them; 0 for the skipped elements (nulls, the ignored value) and everywhere
    when Q_hi = Q_lo. The quantiles are of the elements not skipped."""
    if kind == "tukey":
        lo_p, hi_p = 25.0, 75.0
    v = x[~skip]
    out = np.zeros(len(x))
    if len(v) == 0:
        return out
    q1, q3 = _percentile(v, lo_p), _percentile(v, hi_p)
    iqr = q3 - q1
    if iqr <= 0:
        return out
    for i in range(len(x)):
        if skip[i]:
            continue
        if x[i] > q3:
            out[i] = (x[i] - q3) / iqr
        elif x[i] < q1:
            out[i] = (x[i] - q1) / iqr
    return out


def _outlier_args(kind, lo_p, hi_p):
    kind = "ctukey" if kind is None else kind.lower()
    lo_p = 10.0 if lo_p is None else float(lo_p)
    hi_p = 90.0 if hi_p is None else float(hi_p)
    if kind not in ("tukey", "ctukey") or not (2 <= lo_p <= 98 and 2 <= hi_p <= 98 and lo_p < hi_p):
        return None
    return kind, lo_p, hi_p


def outliers(s, kind, ignore, lo_p, hi_p):
    """series_outliers(series, kind, ignore_val, min_percentile, max_percentile)."""
    values = _load(s)
    args = _outlier_args(kind, lo_p, hi_p)
    if values is None or args is None:
        return None
    x = _floats(values)
    skip = ~np.isfinite(x)
    if ignore is not None:
        skip |= x == float(ignore)
    return _dump(list(_outlier_scores(np.where(skip, 0.0, x), skip, *args)))


def _acf(d: np.ndarray, lag: float) -> float:
    """The autocorrelation of the centered series d (n points) at a lag L, each sum by its number of
    terms: (sum d[i] d[i + L] / (n - L)) / (sum d[i]^2 / n); a lag between two integers
    interpolates linearly between theirs; 0 for a constant series."""
    n = len(d)
    den = float((d * d).sum())
    if den == 0:
        return 0.0

    def at(L: int) -> float:
        return float((d[:n - L] * d[L:]).sum()) / (n - L) / (den / n) if 0 <= L < n else 0.0
    lo = math.floor(lag)
    f = lag - lo
    return at(lo) if f == 0 else (1 - f) * at(lo) + f * at(lo + 1)


def _significant(r: float, n: int) -> float:
    """An autocorrelation as a score: at most 1; 0 under 2 / sqrt(n), the bound white noise's stays
    under 95% of the time (Bartlett)."""
    return min(r, 1.0) if r >= 2 / math.sqrt(n) else 0.0


def _detrend(y: np.ndarray) -> np.ndarray:
    """The series less its least squares line over x = 1..n (``_line``)."""
    slope, icpt = _line(y)
    return y - (slope * np.arange(1, len(y) + 1, dtype=float) + icpt)


def _periods(y: np.ndarray, min_p: float, max_p: float):
    """The periods found in [max(min_p, 4), min(max_p, n / 2)] with their scores, best first: each
    peak k of the periodogram |DFT(d)_k|^2 of the series less its
    least squares line d (``_detrend``) (1 <= k <= n / 2, higher than k - 1 and at least
    k + 1) with n / k in range is a candidate; its period is the integer lag L between n / (k + 1)
    and n / (k - 1) (n / 2 for k = 1) in range with the highest autocorrelation (the smallest of
    equal ones); its score that autocorrelation (``_significant``). Periods scoring 0 are dropped,
    and so are multiples of a shorter period found scoring about as much (``_multiple``); a period found twice counts once."""
    n = len(y)
    lo, hi = max(float(min_p), 4.0), min(float(max_p), n / 2)
    d = _detrend(y)
    half = n // 2
    f = np.fft.fft(d)
    p = (f.real ** 2 + f.imag ** 2)[:half + 1]
    found: dict[int, float] = {}
    for k in range(1, half + 1):
        if not (p[k] > p[k - 1] and (k == half or p[k] >= p[k + 1])):
            continue
        if not lo <= n / k <= hi:
            continue
        a, b = max(math.ceil(n / (k + 1)), math.ceil(lo)), min(math.floor(n / (k - 1)) if k > 1 else half, math.floor(hi))
        best, score = None, None
        for L in range(a, b + 1):
            r = _acf(d, L)
            if score is None or r > score:
                best, score = L, r
        if best is not None and _significant(score, n) > 0:
            found[best] = _significant(score, n)
    return sorted(((L, v) for L, v in found.items() if not _multiple(L, found)), key=lambda kv: (-kv[1], kv[0]))


def _multiple(L: int, found) -> bool:
    """Whether L is a multiple of a shorter period M found (within one bin of r M, r = floor(L / M +
    0.5) >= 2) that scores at least 0.9 times as much."""
    for M in found:
        r = math.floor(L / M + 0.5)
        if M < L and r >= 2 and abs(L - r * M) <= 1 and found[M] >= 0.9 * found[L]:
            return True
    return False


def periods_detect(s, min_p, max_p, num):
    y = _numeric(s)
    if y is None or min_p is None or max_p is None or num is None or num < 0:
        return None
    got = _periods(y, min_p, max_p)[:int(num)] if len(y) else []
    got += [(0, 0.0)] * (int(num) - len(got))
    return _dump_bag({"periods": [float(k) for k, _ in got], "scores": [v for _, v in got]})


def periods_validate(s, periods):
    """Each period's score: the autocorrelation at that lag (``_acf``, ``_significant``), 0 outside [4, n / 2]."""
    y = _numeric(s)
    ps = _load(periods)
    if y is None or ps is None:
        return None
    d = _detrend(y) if len(y) else y
    scores = []
    for p in ps:
        p = _num(p)
        ok = p is not None and 4 <= p <= len(y) / 2
        scores.append(_significant(_acf(d, float(p)), len(y)) if ok else 0.0)
    return _dump_bag({"periods": [None if _num(p) is None else float(p) for p in ps], "scores": scores})


SEASONALITY_THRESHOLD = 0.6     # series_decompose's, series_decompose_anomalies' and _forecast's default
SEASONAL_THRESHOLD = 0.7        # series_seasonal's (its reference page)


def _autoperiod(y: np.ndarray, threshold: float | None) -> int:
    """Seasonality -1: the best period series_periods_detect finds in [4, n / 2] when its score is
    at least the threshold (0.6 by default; series_seasonal's 0.7), else 0 (none)."""
    got = _periods(y, 4, len(y) / 2) if len(y) else []
    t = SEASONALITY_THRESHOLD if threshold is None else float(threshold)
    return got[0][0] if got and got[0][1] >= t else 0


def anomalies(s, threshold, seasonality, trend, test_points, method, s_threshold):
    """series_decompose_anomalies: series_decompose's baseline and residual, Tukey's scores
    (series_outliers, ctukey 10/90 or tukey 25/75) of the residual, +1 / -1 where a score is above
    threshold / below -threshold."""
    args = _decompose_args(s, seasonality, trend, test_points, s_threshold)
    kind = "ctukey" if method is None else method.lower()
    if args is None or kind not in ("tukey", "ctukey"):
        return None
    baseline, _, _, residual = _decompose(*args)
    skip = ~np.isfinite(residual)
    score = _outlier_scores(np.where(skip, 0.0, residual), skip, kind, 10.0, 90.0)
    t = 1.5 if threshold is None else float(threshold)
    flag = [1 if v > t else -1 if v < -t else 0 for v in score]
    return _dump_bag({"ad_flag": flag, "ad_score": list(score), "baseline": list(baseline)})


def _line_part(y: np.ndarray, x: np.ndarray):
    """Least squares over (x, y): slope, interception, sum of squares about the mean and of the residuals."""
    xm, ym = x.mean(), y.mean()
    sxx = float(((x - xm) ** 2).sum())
    slope = float(((x - xm) * (y - ym)).sum() / sxx)
    icpt = float(ym - slope * xm)
    sst = float(((y - ym) ** 2).sum())
    ssr = float(((y - (slope * x + icpt)) ** 2).sum())
    return slope, icpt, sst, ssr


MIN_SEGMENT = 3


def _side(slope, icpt, sst, ssr, m):
    return {"rsquare": 1.0 - ssr / sst if sst > 0 else 1.0, "slope": slope, "interception": icpt,
            "variance": sst / (m - 1), "rvariance": ssr / (m - 1)}


def fit_2lines(s):
    """Two lines over x = 1..n, split at i (the first index, zero-based, of the right line): each
    side has at least MIN_SEGMENT (3) points; the split is the first i whose total squared error
    (left's + right's) is within 1e-9 of the series' sum of squares about its mean of the least."""
    y = _numeric(s)
    if y is None or len(y) < 2 * MIN_SEGMENT:
        return None
    n = len(y)
    x = np.arange(1, n + 1, dtype=float)
    splits = list(range(MIN_SEGMENT, n - MIN_SEGMENT + 1))
    errs = [_line_part(y[:i], x[:i])[3] + _line_part(y[i:], x[i:])[3] for i in splits]
    sst = float(((y - y.mean()) ** 2).sum())
    best = min(errs)
    i = next(sp for sp, e in zip(splits, errs) if e <= best + 1e-9 * sst)
    left, right = _line_part(y[:i], x[:i]), _line_part(y[i:], x[i:])
    fit = np.concatenate([left[0] * x[:i] + left[1], right[0] * x[i:] + right[1]])
    ssr = left[3] + right[3]
    return _dump_bag({"rsquare": 1.0 - ssr / sst if sst > 0 else 1.0, "split_idx": i, "variance": sst / (n - 1),
                      "rvariance": ssr / (n - 1), "line_fit": list(fit),
                      "right": _dump_side(_side(*right, n - i)), "left": _dump_side(_side(*left, i))})


def _dump_side(d):
    return {k: _clean(v) for k, v in d.items()}
