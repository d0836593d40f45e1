"""basket() and diffpatterns() (netatlas/kql/basket.py): their limits (autocluster's dimensions
too), the deadline, the rules the goldens (tests/golden/plugins/basket_*, diffpatterns_*) do not
reach."""
from __future__ import annotations

import pytest

import netatlas
from netatlas import limits
from netatlas.errors import KqlError, QueryLimitError
from netatlas.kql.basket import basket_segments, diff_segments, frequent_patterns
from netatlas.limits import Deadline


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def test_rows_past_the_limit_are_an_error(ws):
    q = f"range i from 1 to {limits.PATTERN_MAX_ROWS + 1} step 1 | evaluate basket()"
    with pytest.raises(KqlError) as info:
        ws.query(q)
    assert info.value.code == "KQL_QUERY_TOO_COMPLEX"
    assert f"at most {limits.PATTERN_MAX_ROWS:,} distinct combinations" in str(info.value)


def test_rows_up_to_the_limit_are_read(ws):
    # as many distinct combinations as the limit allows: no error, no value frequent enough
    q = f"range i from 1 to {limits.PATTERN_MAX_ROWS} step 1 | evaluate basket()"
    assert ws.query(q).rows == []


def test_dimensions_past_the_limit_are_an_error(ws):
    n = limits.PATTERN_MAX_DIMENSIONS

    def cols(k):
        return ", ".join(f"c{i} = 'v'" for i in range(k))
    with pytest.raises(KqlError) as info:
        ws.query(f"print {cols(n + 1)} | evaluate basket()")
    assert info.value.code == "KQL_QUERY_TOO_COMPLEX" and f"at most {n} dimensions" in str(info.value)
    res = ws.query(f"print {cols(n)} | evaluate basket()")
    assert res.rows == [[0, 1, 100.0] + ["v"] * n]
    # diffpatterns: the split column is not a dimension
    with pytest.raises(KqlError) as info:
        ws.query(f"print {cols(n + 2)} | evaluate diffpatterns(c0, 'v', 'w')")
    assert info.value.code == "KQL_QUERY_TOO_COMPLEX" and f"at most {n} dimensions" in str(info.value)
    assert ws.query(f"print {cols(n + 1)} | evaluate diffpatterns(c0, 'v', 'w')").rows == []
    # autocluster: the same limit (over two rows: a segment holds at least two)
    with pytest.raises(KqlError) as info:
        ws.query(f"range r from 1 to 2 step 1 | project {cols(n + 1)} | evaluate autocluster()")
    assert info.value.code == "KQL_QUERY_TOO_COMPLEX" and f"at most {n} dimensions" in str(info.value)
    got = ws.query(f"range r from 1 to 2 step 1 | project {cols(n)} | evaluate autocluster()").rows
    assert got == [[0, 2, 100.0] + ["v"] * n]


def test_too_many_patterns_is_an_error(ws):
    # 11 independent two-valued columns over 2048 rows: every pattern of up to 6 columns holds at
    # least 1/64 of the rows, more patterns than the limit
    cols = ", ".join(f"c{k} = i / {2 ** k} % 2" for k in range(11))
    q = f"range i from 0 to 2047 step 1 | extend {cols} | project-away i | evaluate basket(0.015, '~', 11)"
    with pytest.raises(KqlError) as info:
        ws.query(q)
    assert info.value.code == "KQL_QUERY_TOO_COMPLEX"
    assert f"more than {limits.PATTERN_MAX_ITEMSETS:,} frequent patterns" in str(info.value)
    assert "^" in str(info.value)
    # fewer dimensions per pattern: under the limit
    assert len(ws.query(q.replace("'~', 11)", "'~', 2)")).rows) == 22 + 220


def test_the_search_checks_the_deadline():
    values = [tuple(str(i // 2 ** k % 2) for k in range(10)) for i in range(1024)]
    with pytest.raises(QueryLimitError):
        frequent_patterns(values, 10, 10, lambda rows: True, check=Deadline(0.0).check)


def test_shares_equal_to_the_threshold_count():
    # A: 3 of 5 rows x, B: 2 of 5: the difference 0.6 - 0.4 is 0.2 (a hair under in floats)
    values = [("x",)] * 5 + [("y",)] * 5
    wa = [1.0] * 3 + [0.0] * 2 + [1.0] * 2 + [0.0] * 3
    wb = [0.0] * 3 + [1.0] * 2 + [0.0] * 2 + [1.0] * 3
    got = diff_segments(values, wa, wb, 1, 0.2, 1)
    assert [(p, a, b) for p, a, b in got] == [(((0, "x"),), 3.0, 2.0), (((0, "y"),), 2.0, 3.0)]
    # basket: 3 of 20 rows is a share of 0.15 exactly
    assert basket_segments([("x",)] * 3 + [(str(i),) for i in range(17)], [1.0] * 20, 1, 0.15, 5) == [
        (((0, "x"),), 3.0)]


def test_null_is_in_no_pattern(ws):
    q = """datatable(a:string, n:long) ["x", long(null), "x", long(null), "y", 1]
           | evaluate basket(0.5, '~', '~', '*')"""
    assert ws.query(q).rows == [[0, 2, pytest.approx(200 / 3), "x", None]]


def test_a_plan_that_read_the_data_is_not_cached(ws):
    # the answer depends on the data: a second run reads it again (the compile cache keeps no
    # plan that ran SQL while planning)
    q = "datatable(a:string) ['x', 'x', 'y'] | evaluate basket(0.5)"
    before = len(ws.compile_cache)
    assert ws.query(q).rows == [[0, 2, pytest.approx(200 / 3), "x"]]
    assert len(ws.compile_cache) == before


def test_autocluster_takes_the_tilde_for_a_default(ws):
    # the argument reader basket shares with autocluster: '~' is the default there too
    data = 'datatable(a:string, b:string) ["x", "p", "x", "p", "x", "q", "y", "q", "x", "p"]'
    plain = ws.query(f"{data} | evaluate autocluster()").rows
    assert ws.query(f"{data} | evaluate autocluster('~', '~', '~', '~')").rows == plain
    with pytest.raises(KqlError) as info:
        ws.query(f"{data} | evaluate autocluster('half')")
    assert info.value.code == "KQL_ARGUMENTS" and "SizeWeight cannot be 'half'" in str(info.value)
