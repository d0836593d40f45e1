"""The series_* functions: the same answers on DuckDB (numpy, dialects/duckdb/series.py) and on
ClickHouse (SQL functions, dialects/clickhouse/series.py) over series with nulls, strings, bools,
reals written as integers and series of different lengths; ClickHouse refuses the ones it lacks."""
from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest

from netatlas.errors import KqlError
from netatlas.kql import compile as kql_compile
from netatlas.kql.dialects.clickhouse.series import REFUSED

sys.path.insert(0, str(Path(__file__).parent))
from compare import close, result_json  # noqa: E402


def series(rng: random.Random, n: int) -> list:
    pick = rng.random
    out = []
    for _ in range(n):
        r = pick()
        out.append(None if r < 0.1 else "x" if r < 0.13 else True if r < 0.15 else float(rng.randint(-5, 5))
                   if r < 0.3 else rng.randint(-9, 9) if r < 0.7 else round(rng.uniform(-10, 10), 3))
    return out


def periodic(rng: random.Random, n: int) -> list:
    """A series with a period (4 to 9 bins), noise, sometimes a trend and a spike or a dip."""
    p, amp, slope = rng.randint(4, 9), rng.uniform(1, 10), rng.choice([0, 0, rng.uniform(-0.3, 0.3)])
    shape = [rng.uniform(-amp, amp) for _ in range(p)]
    out = [round(shape[i % p] + slope * i + rng.gauss(0, amp / 5), 3) for i in range(n)]
    if rng.random() < 0.7:
        out[rng.randrange(n)] += rng.choice([-1, 1]) * 4 * amp
    return out


def numbers(rng: random.Random, n: int) -> list:
    return [rng.randint(-9, 9) if rng.random() < 0.5 else round(rng.uniform(-10, 10), 3) for _ in range(n)]


EXPRESSIONS = [
    *(f"series_{op}(a, b)" for op in ("add", "subtract", "multiply", "divide", "pow", "greater", "greater_equals",
                                      "less", "less_equals", "equals", "not_equals")),
    "series_add(a, 2)", "series_multiply(1.5, b)", "series_greater(a, 0)",
    *(f"series_{op}(a)" for op in ("abs", "acos", "asin", "atan", "ceiling", "cos", "exp", "floor", "log", "sign",
                                   "sin", "tan", "sum", "magnitude")),
    "series_fill_const(a, 0)", "series_fill_const(a, -1, 3)", "series_fill_forward(a)", "series_fill_backward(a)",
    "series_fill_forward(a, 3)", "series_fill_linear(a)", "series_fill_linear(a, double(null), false)",
    "series_fill_linear(n, 3, true, 7)", "series_fill_linear(dynamic([null, null]), double(null), true, 2.5)",
    "series_stats_dynamic(a)", "series_stats_dynamic(a, true)", "series_stats_dynamic(n)", "series_fit_line_dynamic(n)",
    "series_dot_product(a, b)", "series_dot_product(a, 3)", "series_cosine_similarity(a, b)",
    "series_pearson_correlation(n, m)", "series_pearson_correlation(a, b)",
    "series_seasonal(n, 3)", "series_decompose_forecast(n, 2, 3, 'linefit')", "series_decompose_forecast(n, 0, 0, 'avg')",
    "series_stats_dynamic(dynamic([]))", "series_fit_line_dynamic(dynamic([4]))", "series_sum(dynamic([]))",
    "series_magnitude(dynamic([]))", "series_dot_product(dynamic([]), b)", "series_fill_linear(a, double(null), true)",
    "series_decompose_forecast(dynamic([1, 2, 3, null]), 1, 2, 'linefit')", "series_seasonal(a, 2)",
    "series_fir(a, dynamic([1, 1]))", "series_iir(a, dynamic([1]), dynamic([1, -1]))", "series_fit_line_dynamic(a)",
    "series_fir(n, dynamic([1, 2, 1]))", "series_fir(n, dynamic([1, -1]), false, true)", "series_iir(n, dynamic([1, 0.5]), dynamic([2, -1]))",
]
# outliers, two lines, periods, anomalies (compared in queries of their own: ClickHouse's query tree has a bound)
MORE = [
    "series_outliers(a)", "series_outliers(a, 'tukey')", "series_outliers(a, 'ctukey', 2, 20, 80)", "series_outliers(w)",
    "series_outliers(n, 'ctukey', double(null), 5, 95)", "series_outliers(a, 'other')", "series_outliers(dynamic([]))",
    "series_fit_2lines_dynamic(w)", "series_fit_2lines_dynamic(n)", "series_fit_2lines_dynamic(a)",
    "series_fit_2lines_dynamic(dynamic([1, 2, 3, 4, 5]))", "series_seasonal(w)", "series_seasonal(n)",
    "series_decompose_forecast(w, 5, -1, 'avg')", "series_decompose_forecast(w, 4, -1, 'linefit', 0.3)",
]
# functions of several columns: (item, names) -> the columns compared
TUPLE_ITEMS = [
    ("(pd1, pd2) = series_periods_detect(w, 0, 100, 3)", "pd1, pd2"),
    ("(pe1, pe2) = series_periods_detect(w, 5, 9, 2)", "pe1, pe2"),
    ("(pv1, pv2) = series_periods_validate(w, 4, 5.5, 7, 3, 30)", "pv1, pv2"),
    ("(da1, da2, da3) = series_decompose_anomalies(w)", "da1, da2, da3"),
    ("(db1, db2, db3) = series_decompose_anomalies(w, 2, 5, 'linefit', 3, 'tukey')", "db1, db2, db3"),
    ("(dc1, dc2, dc3) = series_decompose_anomalies(a, 1.5, 0)", "dc1, dc2, dc3"),
    ("(dd1, dd2, dd3, dd4) = series_decompose(w)", "dd1, dd2, dd3, dd4"),
    ("(de1, de2, de3) = series_decompose_anomalies(w, 1.5, -1, 'avg', 0, 'ctukey', 0.2)", "de1, de2, de3"),
]


@pytest.fixture(scope="module")
def stores():
    try:
        from netatlas.store.chdb import ChdbStore
    except ImportError as e:
        pytest.skip(f"chdb is not installed ({e})")
    import netatlas
    from netatlas.catalogue import Catalogue
    from netatlas.workspace import StoreWorkspace
    duck, ch = netatlas.connect(), StoreWorkspace(ChdbStore(None), Catalogue.load())
    yield duck, ch
    duck.close()
    ch.close()


@pytest.mark.parametrize("seed", range(6))
def test_both_stores_give_the_same_series(stores, seed):
    rng = random.Random(seed)
    la, lb = rng.randint(0, 9), rng.randint(0, 9)
    a, b = json.dumps(series(rng, la)), json.dumps(series(rng, lb))
    n = json.dumps(numbers(rng, 9))
    m = json.dumps(numbers(rng, 9))
    w = json.dumps(periodic(rng, rng.randint(20, 60)))
    items = ", ".join(f"e{i} = {e}" for i, e in enumerate(EXPRESSIONS))
    data = f"print a = dynamic({a}), b = dynamic({b}), n = dynamic({n}), m = dynamic({m}), w = dynamic({w})"
    texts = [(data + " | extend (f1, f2) = series_fft(n), (i1, i2) = series_ifft(n, m), (a1, a2) = series_fft(a), (z1, z2) = series_ifft(n, dynamic([1]))"
              f" | project {items}, f1, f2, i1, i2, a1, a2, z1, z2",
              EXPRESSIONS + ["fft(n)"] * 2 + ["ifft(n, m)"] * 2 + ["fft(a)"] * 2 + ["ifft(n, [1])"] * 2),
             (data + " | project " + ", ".join(f"e{i} = {e}" for i, e in enumerate(MORE)), MORE)]
    texts += [(data + f" | extend {t} | project {cs}", [f"{t} [{c}]" for c in cs.split(", ")]) for t, cs in TUPLE_ITEMS]
    for text, labels in texts:
        got = [result_json(ws.query(text))["rows"][0] for ws in stores]
        for e, x, y in zip(labels, *got):
            assert close(x, y), f"{e} over a={a} b={b} n={n} m={m} w={w}: duckdb {x}, clickhouse {y}"


@pytest.mark.parametrize("name", REFUSED)
def test_clickhouse_refuses_what_it_lacks(name):
    call = {"fit_poly": "extend (r, c, v, rv, f) = series_fit_poly(y)"}[name]
    text = f"print y = dynamic([1, 2, 3]) | {call}"
    kql_compile(text)                                   # DuckDB has it
    with pytest.raises(KqlError) as info:
        kql_compile(text, dialect="clickhouse")
    assert info.value.code == "KQL_NOT_SUPPORTED" and f"series_{name}()" in info.value.message
