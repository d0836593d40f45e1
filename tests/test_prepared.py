"""A query run again runs as a statement its cursor prepared (pool.QueryPool.execute): the same
answers as the SQL run afresh, new rows and new columns seen, a statement that fails forgotten,
at most PREPARED_PER_CURSOR kept per cursor, and a text run once (a template of now() at a new
now) not prepared."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

import netatlas
from netatlas import pool
from netatlas.errors import QueryLimitError

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture()
def ws(tmp_path):
    w = netatlas.connect(tmp_path)
    w.define_table("Prep_CL", [("K", "string"), ("V", "long")])
    w.ingest("Prep_CL", [{"TimeGenerated": "2024-05-01T10:00:00Z", "K": "a", "V": 1},
                         {"TimeGenerated": "2024-05-01T11:00:00Z", "K": "b", "V": 2}])
    yield w
    w.close()


def prepared(ws) -> dict[str, str]:
    """SQL text -> statement name, over every cursor of the pool; checked against DuckDB's own list."""
    out = {}
    for cur, names in ws.pool._prepared.items():
        have = {r[0] for r in cur.execute("SELECT name FROM duckdb_prepared_statements()").fetchall()}
        assert set(names.values()) == have
        out.update(names)
    return out


def test_a_query_run_again_is_prepared_and_sees_new_rows(ws):
    q = "Prep_CL | summarize n = count(), total = sum(V) by K | order by K asc"
    first = ws.query(q, now=NOW)
    assert first.sql not in prepared(ws)                 # the first run compiles and runs it as it is
    second = ws.query(q, now=NOW)
    assert "cached" in second.timings and second.sql in prepared(ws)
    assert second.rows == first.rows == [["a", 1, 1], ["b", 1, 2]]
    ws.ingest("Prep_CL", [{"TimeGenerated": "2024-05-01T12:00:00Z", "K": "a", "V": 5}])
    assert ws.query(q, now=NOW).rows == [["a", 2, 6], ["b", 1, 2]]
    # a column added to the table: the compile cache's key changes with the catalogue, and
    # DuckDB binds a prepared statement again when a table it reads changed
    ws.define_table("Prep_CL", [("K", "string"), ("V", "long"), ("W", "string")])
    ws.ingest("Prep_CL", [{"TimeGenerated": "2024-05-01T13:00:00Z", "K": "c", "V": 7, "W": "x"}])
    assert ws.query(q, now=NOW).rows == [["a", 2, 6], ["b", 1, 2], ["c", 1, 7]]
    assert ws.query("Prep_CL | where isnotempty(W) | project K, W", now=NOW).rows == [["c", "x"]]
    assert ws.query("Prep_CL | where isnotempty(W) | project K, W", now=NOW).rows == [["c", "x"]]


def test_a_text_run_once_is_not_prepared(ws):
    """A template of now() gives a new SQL text at every now (a server's clock): none is prepared;
    the same now twice is the same text, prepared the second time."""
    from datetime import timedelta
    q = "Prep_CL | where TimeGenerated > ago(2d) | count"
    texts = set()
    for i in range(3):
        r = ws.query(q, now=NOW + timedelta(seconds=i))
        assert r.rows == [[2]]
        texts.add(r.sql)
    assert len(texts) == 3 and not texts & set(prepared(ws))
    assert ws.query(q, now=NOW).sql in prepared(ws)


def test_each_cursor_keeps_its_most_recent(ws, monkeypatch):
    monkeypatch.setattr(pool, "PREPARED_PER_CURSOR", 2)
    texts = [f"Prep_CL | where V >= {i} | count" for i in range(4)]
    for t in texts:
        for _ in range(2):
            ws.query(t, now=NOW)
    kept = prepared(ws)
    assert len(kept) == 2
    assert ws.query(texts[0], now=NOW).rows == [[2]]         # evicted: prepared once more, same answer
    assert len(prepared(ws)) == 2


def test_a_statement_that_fails_is_forgotten(ws):
    slow = ("range i from 1 to 300000000 step 1 | extend s = strcat('x', tostring(i)) "
            "| summarize dcount(s)")
    with pytest.raises(QueryLimitError):
        ws.query(slow, now=NOW, timeout=0.3)
    with pytest.raises(QueryLimitError):
        ws.query(slow, now=NOW, timeout=0.3)                  # prepared, then interrupted
    assert not [sql for sql in prepared(ws) if "300000000" in sql]
    assert ws.query("Prep_CL | count", now=NOW).rows == [[2]]
