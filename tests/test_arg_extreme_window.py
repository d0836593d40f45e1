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
