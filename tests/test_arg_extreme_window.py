"""summarize arg_max/arg_min(...) by keys, planned as a window (row_number() ... = 1), gives the same
answer as the max_by/min_by ... GROUP BY plan it replaces: on random data with nulls, on both stores."""
from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas.catalogue import Catalogue
from netatlas.kql import operators

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)

# (query, whether the window plan applies)
QUERIES = [
    ("T | summarize arg_max(When, *) by K", True),
    ("T | summarize arg_min(When, *) by K", True),
    ("T | summarize arg_max(When, *) by K, J", True),
    ("T | summarize arg_max(V, *) by K", True),
    ("T | summarize arg_min(V, S, B, D) by J", True),
    ("T | summarize (Last, LastS) = arg_max(When, S, K, S, V) by K", True),
    ("T | summarize arg_max(V * 2 - 1, *) by J", True),
    ("T | summarize arg_max(When, strcat(S, 'x'), V + 1) by K", True),
    ("T | summarize arg_max(U, V, When) by K", True),
    ("T | summarize arg_max(When, *) by K | project K, S, V", True),
    ("T | where V > 0 | summarize arg_max(When, *) by K | where isnotempty(S)", True),
    ("T | summarize arg_max(When, *)", False),
    ("T | where V > 1000000 | summarize arg_max(When, *)", False),
    ("T | summarize arg_max(R, *) by K", False),
    ("T | summarize arg_max(When, *) by R", False),
    ("T | summarize n = count(), arg_max(When, S) by K", False),
    ("T | summarize arg_max(When, S) by bin(When, 1d)", False),
]


def table(seed: int, n: int = 120) -> str:
    rng = random.Random(seed)
    base = datetime(2024, 1, 1)
    whens = rng.sample(range(100000), n)       # distinct: a tie would make either plan pick any row
    vs = rng.sample(range(-500, 500), n)
    rows = []
    for i in range(n):
        k = rng.choice(['"a"', '"b"', '"c"', '""', '"allnull"'])
        j = rng.choice(["1", "2", "long(null)"])
        when = "datetime(null)" if k == '"allnull"' or rng.random() < 0.3 else \
            f"datetime({(base + timedelta(seconds=whens[i])).isoformat(sep=' ')})"
        v = "long(null)" if rng.random() < 0.25 else str(vs[i])
        s = rng.choice(['"x"', '"yy"', '""', '"z z"'])
        b = rng.choice(["true", "false", "bool(null)"])
        d = rng.choice(['dynamic({"a": 1})', "dynamic([1, 2])", "dynamic(null)", 'dynamic("s")'])
        r = rng.choice(["1.5", "real(null)", "-2.25"])
        u = '""' if rng.random() < 0.2 else f'"u{whens[i]:06d}"'    # distinct strings, some empty
        rows.append(", ".join([k, j, when, v, s, b, d, r, u]))
    return ("let T = datatable(K:string, J:long, When:datetime, V:long, S:string, B:bool, D:dynamic, R:real, U:string)\n[\n"
            + ",\n".join(rows) + "\n];\n")


def stores():
    out = [("duckdb", lambda: netatlas.connect())]
    try:
        from netatlas.store.chdb import ChdbStore
        from netatlas.workspace import StoreWorkspace
        out.append(("clickhouse", lambda: StoreWorkspace(ChdbStore(None), Catalogue.load())))
    except ImportError:
        pass
    return out


def key(row):
    return repr(row)


@pytest.mark.parametrize("store,make", stores(), ids=[s for s, _ in stores()])
def test_window_plan_matches_max_by(store, make, monkeypatch):
    ws = make()
    try:
        for seed in range(3):
            data = table(seed)
            for q, applies in QUERIES:
                text = data + q
                monkeypatch.setattr(operators, "WINDOW_ARG_EXTREMES", True)
                ws.compile_cache.clear()        # the switch is not part of the cache's key
                new_sql = ws.compile(text, now=NOW).sql
                new = ws.query(text, now=NOW)
                monkeypatch.setattr(operators, "WINDOW_ARG_EXTREMES", False)
                ws.compile_cache.clear()
                old_sql = ws.compile(text, now=NOW).sql
                old = ws.query(text, now=NOW)
                assert ("ROW_NUMBER()" in new_sql.upper()) == applies, (q, new_sql)
                assert "ROW_NUMBER()" not in old_sql.upper(), (q, old_sql)
                assert list(zip(new.columns, new.types)) == list(zip(old.columns, old.types)), q
                assert sorted(map(key, new.rows)) == sorted(map(key, old.rows)), (store, seed, q)
                assert new.rows, q
    finally:
        ws.close()


# ---- stored tables: the rows picked by their identity (operators._stored_extremes) ---------------

STORED = [
    # (query, whether the picked rows are read by row identity on DuckDB)
    ("Latest_CL | summarize arg_max(TimeGenerated, *) by K", True),
    ("Latest_CL | summarize arg_min(TimeGenerated, *) by K", True),
    ("Latest_CL | where V > 0 | summarize arg_max(TimeGenerated, S, V) by K", True),
    ("Latest_CL | summarize arg_max(TimeGenerated, *) by K, S | project K, S, V", True),
    ("let M = materialize(Latest_CL | summarize arg_max(TimeGenerated, *) by K); "
     "M | where V > 0 | union (M | where V <= 0 | extend S = 'neg')", True),
    ("Latest_CL | summarize arg_max(V, *) by K", False),          # V may be null: the window plan
    ("Latest_CL | extend W = V * 2 | summarize arg_max(TimeGenerated, W) by K", False),   # not the table's rows
]


def _stored(ws, seed: int, n: int = 300):
    rng = random.Random(seed)
    ws.define_table("Latest_CL", [("K", "string"), ("V", "long"), ("S", "string")])
    base = datetime(2024, 5, 1, tzinfo=timezone.utc)
    seconds = rng.sample(range(86400), n)      # distinct: a tie would let either plan pick any row
    ws.ingest("Latest_CL", [
        {"TimeGenerated": (base + timedelta(seconds=s)).isoformat(), "K": rng.choice(["a", "b", "c", ""]),
         "V": None if rng.random() < 0.2 else rng.randrange(-50, 50), "S": rng.choice(["x", "y", ""])}
        for s in seconds])


def test_stored_rows_picked_by_identity(tmp_path, monkeypatch):
    """On a stored DuckDB table, arg_max(TimeGenerated, ...) by keys reads the keys and TimeGenerated
    of every row and the other columns of the picked rows only: the same answer as max_by's plan."""
    ws = netatlas.connect(tmp_path)
    try:
        _stored(ws, 1)
        for q, by_identity in STORED:
            monkeypatch.setattr(operators, "WINDOW_ARG_EXTREMES", True)
            ws.compile_cache.clear()
            new_sql = ws.compile(q, now=NOW).sql
            new = ws.query(q, now=NOW)
            monkeypatch.setattr(operators, "WINDOW_ARG_EXTREMES", False)
            ws.compile_cache.clear()
            old = ws.query(q, now=NOW)
            assert ('"rowid"' in new_sql) == by_identity, (q, new_sql)
            assert new.columns == old.columns, q
            assert sorted(map(key, new.rows)) == sorted(map(key, old.rows)), q
            assert new.rows, q
        # a time range given beside the query filters the rows the identities are picked from
        monkeypatch.setattr(operators, "WINDOW_ARG_EXTREMES", True)
        span = (datetime(2024, 5, 1, 6, tzinfo=timezone.utc), datetime(2024, 5, 1, 12, tzinfo=timezone.utc))
        q = "Latest_CL | summarize arg_max(TimeGenerated, *) by K"
        got = ws.query(q, now=NOW, timespan=span)
        want = ws.query("Latest_CL | where TimeGenerated >= datetime(2024-05-01 06:00) and TimeGenerated < "
                        "datetime(2024-05-01 12:00) | summarize arg_max(TimeGenerated, *) by K", now=NOW)
        assert sorted(map(key, got.rows)) == sorted(map(key, want.rows)) and got.rows
        assert all(span[0] <= r[got.columns.index("TimeGenerated")] < span[1] for r in got.rows)
    finally:
        ws.close()


def test_stored_rows_ties_pick_one_whole_row(tmp_path):
    ws = netatlas.connect(tmp_path)
    try:
        ws.define_table("Ties_CL", [("K", "string"), ("V", "long"), ("S", "string")])
        when = "2024-05-01T10:00:00Z"
        ws.ingest("Ties_CL", [{"TimeGenerated": when, "K": "a", "V": 1, "S": "one"},
                              {"TimeGenerated": when, "K": "a", "V": 2, "S": "two"},
                              {"TimeGenerated": "2024-05-01T09:00:00Z", "K": "a", "V": 3, "S": "three"}])
        r = ws.query("Ties_CL | summarize arg_max(TimeGenerated, *) by K | project K, V, S", now=NOW)
        assert '"rowid"' in ws.compile("Ties_CL | summarize arg_max(TimeGenerated, *) by K", now=NOW).sql
        assert r.rows in ([["a", 1, "one"]], [["a", 2, "two"]])      # one of the tied rows, whole
    finally:
        ws.close()


def test_no_row_identity_where_there_is_none(tmp_path):
    """A view (Usage), a table with its own column named rowid, and ClickHouse keep the window plan."""
    ws = netatlas.connect(tmp_path)
    try:
        ws.define_table("Own_CL", [("K", "string"), ("rowid", "long")])
        ws.ingest("Own_CL", [{"TimeGenerated": "2024-05-01T10:00:00Z", "K": "a", "rowid": 7},
                             {"TimeGenerated": "2024-05-01T11:00:00Z", "K": "a", "rowid": 8},
                             {"TimeGenerated": "2024-05-01T09:00:00Z", "K": "b", "rowid": 9}])
        q = "Own_CL | summarize arg_max(TimeGenerated, *) by K | project K, rowid | order by K asc"
        assert "IN (SELECT MAX_BY(" not in ws.compile(q, now=NOW).sql.upper()
        assert ws.query(q, now=NOW).rows == [["a", 8], ["b", 9]]
        q = "Usage | summarize arg_max(TimeGenerated, *) by DataType"
        sql = ws.compile(q, now=NOW).sql
        assert '"rowid"' not in sql and "ROW_NUMBER()" in sql.upper()
        assert {r[0] for r in ws.query(q + " | project DataType", now=NOW).rows} == {"Own_CL"}
    finally:
        ws.close()
    for store, make in stores()[1:]:
        ch = make()
        try:
            q = "VMConnection | summarize arg_max(TimeGenerated, *) by ConnectionId"
            sql = ch.compile(q, now=NOW).sql
            assert "rowid" not in sql.lower() and "row_number()" in sql.lower(), sql
            assert ch.query(q, now=NOW).rows == []
        finally:
            ch.close()
