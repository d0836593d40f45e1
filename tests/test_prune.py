"""Generate's pruning pass (kql/prune.py): the columns nobody reads are dropped from the SELECTs
under the result, above all out of materialized CTEs, and every answer stays what it was."""
from __future__ import annotations

import pathlib
import re
from datetime import datetime, timezone

import pytest

import netatlas
from netatlas.kql import generator

NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
GOLDEN = pathlib.Path(__file__).parent / "golden"
SEEDS = pathlib.Path(netatlas.__file__).parent / "seed-queries.kql"

DATA = """let T = datatable(K:string, A:long, B:long, S:string, When:datetime)[
  'p', 1, 10, 'x', datetime(2024-01-01), 'p', 5, 1, 'yy', datetime(2024-01-02), 'q', 2, 3, 'z', datetime(2024-01-03)];
"""


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def cte(sql: str, name: str) -> str:
    """The SELECT list of CTE ``name`` in the SQL text (up to its first FROM); a let read once is
    not MATERIALIZED (generator._inline_single_uses)."""
    m = re.search(rf'"{name}" AS (?:MATERIALIZED )?\((SELECT .*?) FROM ', sql)
    assert m, sql
    return m.group(1)


def both(ws, monkeypatch, text):
    monkeypatch.setattr(generator, "PRUNE", False)
    ws.compile_cache.clear()            # the switch is not part of the cache's key
    whole = ws.compile(text, now=NOW).sql
    off = ws.connection.execute(whole).fetchall()
    monkeypatch.setattr(generator, "PRUNE", True)
    ws.compile_cache.clear()
    pruned = ws.compile(text, now=NOW).sql
    on = ws.connection.execute(pruned).fetchall()
    assert sorted(map(repr, on)) == sorted(map(repr, off)), (text, pruned)
    return whole, pruned


def test_a_materialized_let_keeps_only_the_columns_its_uses_read(ws, monkeypatch):
    text = DATA + "let M = materialize(T | summarize arg_max(When, *) by K); M | project K, A | join (M | project K, S) on K"
    whole, pruned = both(ws, monkeypatch, text)
    name = re.search(r'"(_m\d+)" AS MATERIALIZED', pruned).group(1)
    assert '"B"' in cte(whole, name) and '"B"' not in cte(pruned, name)
    assert all(f'"{c}"' in cte(pruned, name) for c in ("K", "A", "S", "When"))


@pytest.mark.parametrize("use", [
    "M",                                              # read whole
    "M | union (M | where A > 1)",                    # a union: by position
    "M | distinct K, A, B, S, When | project K",      # DISTINCT makes rows of all its columns
    "M | extend r = pack_all() | project K, r",       # the row as a value
    "M | project K, A | union (M | project K, A = B)",
])
def test_readers_that_read_every_column_keep_them(ws, monkeypatch, use):
    text = DATA + "let M = materialize(T | summarize arg_max(When, *) by K); " + use
    whole, pruned = both(ws, monkeypatch, text)
    if use in ("M", "M | extend r = pack_all() | project K, r"):
        name = re.search(r'"(_m\d+)" AS (?:MATERIALIZED )?\(', pruned).group(1)
        assert '"B"' in cte(pruned, name)


@pytest.mark.parametrize("text", [
    DATA + "T | summarize arg_max(A, S), arg_min(B, When) by K | project K, S",
    DATA + "let L = T | extend C = A * B; L | summarize sum(C) by K | join kind=leftouter (L | project K, S) on K",
    DATA + "T | as X | join (X | project K, Q = A) on K | project K, Q",
    DATA + "T | mv-apply v = pack_array(A, B) to typeof(long) on (summarize m = max(v)) | project K, m",
    "datatable(K:string, S:string, A:long)['p', 'x', 1, 'q', 'y', 2] | extend b = bag_pack('v', S, 'w', A) "
    "| evaluate bag_unpack(b) | project K, v",
    DATA + "T | top-nested 2 of K by sum(A), top-nested 1 of S by max(B) | project K, S",
    DATA + "T | make-series n = sum(A) default = 0 on When from datetime(2024-01-01) to datetime(2024-01-04) step 1d by K | project K, n",
    DATA + "T | summarize (W, X) = arg_max(When, S) by K | project K, X",
])
def test_answers_do_not_change(ws, monkeypatch, text):
    both(ws, monkeypatch, text)


def _blocks(path: pathlib.Path) -> list[str]:
    return [b for b in re.split(r"^// ==== .*$", path.read_text(), flags=re.M) if b.strip()]


def test_every_golden_query_answers_the_same_pruned(ws, monkeypatch):
    """The differential check over the golden files: each one that runs, pruned and whole."""
    ran = 0
    for path in sorted(GOLDEN.glob("*/*.kql")):
        text = path.read_text()
        if "// error:" in text:
            continue
        try:
            monkeypatch.setattr(generator, "PRUNE", False)
            whole = ws.query(text, now=NOW)
        except netatlas.NetatlasError:
            continue
        monkeypatch.setattr(generator, "PRUNE", True)
        ws.compile_cache.clear()
        pruned = ws.query(text, now=NOW)
        ws.compile_cache.clear()
        assert pruned.columns == whole.columns, path
        assert sorted(map(repr, pruned.rows)) == sorted(map(repr, whole.rows)), path
        ran += 1
    assert ran > 400


@pytest.mark.parametrize("text,rows", [
    ("let m = datatable(x:string)['a', 'b']; datatable(y:string)['a', 'c', 'B'] | where y in (m)", [["a"]]),
    ("let m = datatable(x:string)['a', 'b']; datatable(y:string)['a', 'c', 'B'] | where y !in (m)", [["c"], ["B"]]),
    ("let m = datatable(x:string)['a', 'b']; datatable(y:string)['a', 'c', 'B'] | where y in~ (m)", [["a"], ["B"]]),
    ("let m = datatable(x:string)[]; datatable(y:string)['a'] | where y !in (m)", [["a"]]),
    ("let m = datatable(x:int)[1, 3]; datatable(y:long)[1, 2, 3] | where y in (m) | where y in (m)", [[1], [3]]),
    ("let m = datatable(x:long)[1, long(null)]; datatable(y:long)[1, 2] | where y !in (m)", []),
    ("let m = datatable(x:dynamic)[dynamic(1)]; datatable(y:long)[1, 2] | where y in (m)", [[1]]),
])
def test_in_a_datatable_lists_its_values(ws, text, rows):
    """`x in (T)` of a datatable is `x IN (literals)` (the store filters its scan by them), with the
    answers of the subquery it replaces; the datatable's CTE, read by nothing else, is gone."""
    res = ws.query(text, now=NOW)
    assert sorted(map(repr, res.rows)) == sorted(map(repr, rows))
    if "dynamic" not in text:
        assert "MATERIALIZED" not in res.sql and "VALUES" not in res.sql.split("WHERE", 1)[-1], res.sql


@pytest.mark.parametrize("text", [
    DATA + "T | distinct * | project K",
    DATA + "T | extend Z = A + 1 | distinct * | project K, Z",
    DATA + "T | join kind=leftouter (T | extend J = strcat(K, 'x')) on K | project K, J, S1",
    DATA + "T | extend Z = A * 2 | summarize count() by K, Z | project K",
    DATA + "T | extend Z = A * 2 | project-away B | where Z > 1 | project K",
])
def test_a_star_reads_only_what_its_readers_want(ws, monkeypatch, text):
    """`SELECT *, x AS y FROM src`: its source gives what is wanted of it and not made by x; DISTINCT
    and GROUP BY keep every column the star gives."""
    both(ws, monkeypatch, text)


def test_a_let_read_once_is_left_to_the_store(ws):
    """materialize() shares a let's rows between its uses; a let the SQL reads once is not
    MATERIALIZED, so the store plans it with its reader (generator._inline_single_uses)."""
    once = ws.compile(DATA + "let M = materialize(T | where A > 1); M | summarize n = count() by K", now=NOW).sql
    assert re.search(r'"_m\d+" AS \(', once) and "MATERIALIZED" not in once, once
    twice = DATA + "let M = materialize(T | where A > 1); M | where K == 'p' | union (M | where K != 'p') | count"
    assert re.search(r'"_m\d+" AS MATERIALIZED \(', ws.compile(twice, now=NOW).sql)
    assert ws.query(twice, now=NOW).rows == ws.query(DATA + "T | where A > 1 | count", now=NOW).rows
