"""Columns whose names differ only in case: KQL tells them apart, DuckDB does not (its names fold
case), so on DuckDB a query that makes two of them is refused, pointing at the operator, instead of
reading one for the other (`extend b = 2` beside `B` answered B's value for b). ClickHouse's names
are case-sensitive: there the query runs."""
from __future__ import annotations

import pytest

import netatlas
from netatlas.errors import KqlError


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


@pytest.mark.parametrize("text,where", [
    ("datatable(B:long)[1] | extend b = 2 | project B, b", "extend b = 2"),
    ("datatable(B:long)[1] | extend b = 2 | where b == 2", "extend b = 2"),
    ("datatable(B:long, b:long)[1, 2]", "datatable(B:long, b:long)[1, 2]"),
    ("print a = 1, A = 2", "print"),
    ("datatable(k:long, B:long)[1, 1] | join (datatable(k:long, b:long)[1, 2]) on k", "join"),
])
def test_two_columns_differing_only_in_case_are_refused_on_duckdb(ws, text, where):
    with pytest.raises(KqlError) as info:
        ws.query(text)
    e = info.value
    assert e.code == "KQL_UNSUPPORTED" and "differ only in case" in e.message
    assert text[e.span.start:e.span.end].startswith(where), (text[e.span.start:e.span.end], where)


def test_names_that_differ_in_more_than_case_still_work(ws):
    assert ws.query("datatable(B:long)[1] | extend b2 = 2 | project B, b2").rows == [[1, 2]]
    assert ws.query("datatable(B:long)[1] | project-rename b = B | project b").rows == [[1]]
    assert ws.query("datatable(B:long)[1] | project b = B * 2").rows == [[2]]


def test_clickhouse_answers_them():
    chdb = pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed: pip install -e '.[clickhouse]'")
    from netatlas.catalogue import Catalogue
    from netatlas.workspace import StoreWorkspace
    ch = StoreWorkspace(chdb.ChdbStore(None), Catalogue.load())
    try:
        assert ch.query("datatable(B:long)[1] | extend b = 2 | project B, b").rows == [[1, 2]]
        assert ch.query("datatable(B:long)[1] | extend b = 2 | where b == 2 | count").rows == [[1]]
    finally:
        ch.close()
