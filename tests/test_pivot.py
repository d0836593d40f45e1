"""evaluate pivot / narrow beyond the golden files: pivot reads its values at plan time (so its plan
is not kept by the compile cache) unless an output schema names them."""
from __future__ import annotations

import pytest

import netatlas
from netatlas.kql import compile as compile_kql

DATA = 'datatable(Group:string, State:string, n:long)["g", "a", 1, "h", "b", 2, "g", "a", 3]'


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def test_pivot_reads_its_values_so_its_plan_is_not_cached(ws):
    compiled = ws.compile(f"{DATA} | evaluate pivot(State, sum(n))")
    assert compiled.ran_sql
    assert ws.query(f"{DATA} | evaluate pivot(State, sum(n))").rows == ws.query(
        f"{DATA} | evaluate pivot(State, sum(n))").rows


def test_pivot_with_an_output_schema_reads_nothing():
    # no workspace at all: the schema names the values
    compiled = compile_kql(f"{DATA} | evaluate pivot(State, sum(n)) : (Group:string, a:long, b:real, c:long)")
    assert not compiled.ran_sql
    assert compiled.columns == ["Group", "a", "b", "c"]
    assert compiled.types == ["string", "long", "real", "long"]


def test_pivot_without_a_workspace_or_schema_says_so():
    with pytest.raises(netatlas.errors.KqlError) as info:
        compile_kql(f"{DATA} | evaluate pivot(State)")
    assert "output schema" in str(info.value)


def test_pivot_follows_the_data(ws):
    q = "T | evaluate pivot(State)"
    one = ws.query(f"let T = {DATA}; {q}")
    two = ws.query(f"let T = {DATA} | where State == 'a'; {q}")
    assert one.columns == ["Group", "n", "a", "b"] and two.columns == ["Group", "n", "a"]


def test_pivot_without_the_aggregation_takes_columns(ws):
    res = ws.query(f"{DATA} | evaluate pivot(State, Group)")
    assert res.columns == ["Group", "a", "b"]
    assert sorted(res.rows) == [["g", 2, 0], ["h", 0, 1]]


def test_narrow_takes_no_arguments(ws):
    with pytest.raises(netatlas.errors.KqlError) as info:
        ws.query(f"{DATA} | evaluate narrow(1)")
    assert info.value.code == "KQL_ARGUMENTS"
