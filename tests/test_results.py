"""A query of several tabular statements (Kusto's batch, ``T1; T2``): a result for each, in order,
on DuckDB and on ClickHouse; lets between them; each under its own row limit and its share of the byte limit; the count
limit (limits.MAX_RESULTS); the compile cache keeps them all; Result's JSON round trip; and
graph-to-table's two-table form. Goldens: tests/golden/statements/several_results_*,
graph/graph_to_table_nodes_and_edges_*."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas.errors import KqlError
from netatlas.limits import MAX_RESULTS
from netatlas.result import Result

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


@pytest.fixture(scope="module")
def clickhouse():
    try:
        from netatlas.store.chdb import ChdbStore
    except ImportError as e:
        pytest.skip(f"chdb is not installed ({e})")
    from netatlas.catalogue import Catalogue
    from netatlas.workspace import StoreWorkspace
    w = StoreWorkspace(ChdbStore(None), Catalogue.load())
    yield w
    w.close()


def tables(res) -> list:
    return [(t.columns, t.rows) for t in res.tables()]


@pytest.mark.parametrize("store", ["ws", "clickhouse"])
def test_each_statement_gives_its_table_and_the_first_is_the_result(store, request):
    w = request.getfixturevalue(store)
    res = w.query("range x from 1 to 5 step 1 | count; let k = 'z'; print s = k | render table; "
                  "range x from 1 to 3 step 1 | project y = x * 10 | order by y asc")
    assert (res.columns, res.rows) == (["Count"], [[5]])            # as before: the first table
    assert tables(res)[1:] == [(["s"], [["z"]]), (["y"], [[10], [20], [30]])]
    assert res.render is None and res.more[0].render == {"visualization": "table"}


def test_each_table_has_its_own_row_limit(ws, clickhouse):
    for w in (ws, clickhouse):
        res = w.query("range x from 1 to 10 step 1; print a = 1; range y from 1 to 3 step 1", max_rows=3)
        assert [len(t.rows) for t in res.tables()] == [3, 1, 3]
        assert [t.truncated for t in res.tables()] == [True, False, False]
        assert res.truncated_by == "max_rows" and res.limit == 3


def test_the_tables_share_the_byte_limit(ws, clickhouse):
    """Each of n tables may take max_result_bytes / n: 16 results answer within the one limit, as one does."""
    text = "range x from 1 to 1000 step 1 | project s = strcat('row ', x)"
    for w in (ws, clickhouse):
        alone = w.query(text, max_result_bytes=8_000)
        assert alone.truncated_by == "max_result_bytes" and alone.limit == 8_000
        both = w.query(f"{text}; {text}", max_result_bytes=8_000)
        assert [t.truncated_by for t in both.tables()] == ["max_result_bytes"] * 2
        assert [t.limit for t in both.tables()] == [4_000, 4_000]
        assert all(len(t.rows) < len(alone.rows) for t in both.tables())
        small = w.query("print a = 1; print b = 2", max_result_bytes=8_000)
        assert not any(t.truncated for t in small.tables())


def test_a_let_shared_by_two_results_keeps_every_column_each_reads(ws):
    # generate prunes the SQL in place for its own result: each result has its own copy
    text = ("let T = range i from 1 to 3 step 1 | extend j = i * 2, k = i * 3; "
            "T | project i; T | project j, k | order by j asc")
    res = ws.query(text)
    assert tables(res) == [(["i"], [[1], [2], [3]]), (["j", "k"], [[2, 3], [4, 6], [6, 9]])]
    compiled = ws.compile(text)
    assert [p.columns for p in compiled.more] == [["j", "k"]] and '"k"' not in compiled.sql


def test_more_results_than_the_limit_is_an_error_at_the_statement_past_it(ws):
    text = "; ".join(f"print n = {i}" for i in range(MAX_RESULTS + 1))
    with pytest.raises(KqlError) as e:
        ws.query(text)
    assert e.value.code == "KQL_QUERY_TOO_COMPLEX" and f"at most {MAX_RESULTS} results" in str(e.value)
    assert e.value.span.start == text.index(f"print n = {MAX_RESULTS}")     # the statement past the limit
    ok = ws.query("; ".join(f"print n = {i}" for i in range(MAX_RESULTS)))
    assert [t.rows[0][0] for t in ok.tables()] == list(range(MAX_RESULTS))


def test_the_compile_cache_keeps_every_result_and_moves_their_now(ws):
    text = "print a = now(); print b = ago(1h); print c = 1"
    first = ws.query(text, now=NOW)
    later = NOW + timedelta(minutes=7)
    hits = ws.compile_cache.hits
    again = ws.query(text, now=later)
    assert ws.compile_cache.hits == hits + 1
    assert [t.rows for t in again.tables()] == [[[later]], [[later - timedelta(hours=1)]], [[1]]]
    assert [t.rows for t in first.tables()] == [[[NOW]], [[NOW - timedelta(hours=1)]], [[1]]]


def test_result_json_lists_every_table_and_reads_them_back(ws):
    res = ws.query("print a = 1; print b = 'x', c = datetime(2024-01-01) | render table", max_rows=5)
    doc = json.loads(json.dumps(res.to_json()))
    assert [t["name"] for t in doc["tables"]] == ["PrimaryResult", "Table_1"]
    assert doc["tables"][1]["render"] == {"visualization": "table"}
    assert doc["tables"][1]["statistics"] == {"rows": 1, "truncated": False}
    again = Result.from_json(doc)
    assert tables(again) == tables(res) and again.more[0].render == res.more[0].render
    assert again.to_json() == res.to_json()


def test_graph_to_table_nodes_and_edges_binds_its_names_for_later_statements(ws):
    graph = ('datatable(s:string, d:string)["a", "b", "b", "c"] | make-graph s --> d '
             '| graph-to-table nodes as N with_node_id=Id, edges as E')
    alone = ws.query(graph)
    assert [t.columns for t in alone.tables()] == [["Id"], ["s", "d"]]
    # followed by statements, it gives no table itself: Kusto's `...; N; E` is two tables, not four
    both = ws.query(graph + "; E | count; N | count")
    assert tables(both) == [(["Count"], [[2]]), (["Count"], [[3]])]
    with pytest.raises(KqlError) as e:
        ws.query(graph.replace("edges as E", "edges"))
    assert e.value.code == "KQL_ARGUMENTS" and "needs a name" in str(e.value)
    with pytest.raises(KqlError) as e:
        ws.query("let x = " + graph + "; x")
    assert e.value.code == "KQL_NOT_SUPPORTED"


def test_the_cli_table_format_prints_every_table_under_its_name(ws):
    from netatlas.cli import format_table
    out = format_table(ws.query("print a = 1; print b = 2"))
    assert out == "PrimaryResult\na\n-\n1\n(1 row)\n\nTable_1\nb\n-\n2\n(1 row)\n"
    assert format_table(ws.query("print a = 1")) == "a\n-\n1\n(1 row)\n"
