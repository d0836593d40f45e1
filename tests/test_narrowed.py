"""planner._narrowed: a projection of plain columns folded into the SELECT below it, so DuckDB plans
one nesting level less; where a name the lower SELECT's clauses or items read would be lost, it
does not fold."""
from __future__ import annotations

import pytest
import sqlglot
from sqlglot import exp

import netatlas
from netatlas.kql.planner import _narrowed


def sel(sql: str) -> exp.Select:
    return sqlglot.parse_one(sql, read="duckdb")


def cols(*names: str) -> list[exp.Column]:
    return [exp.Column(this=exp.Identifier(this=n, quoted=True)) for n in names]


@pytest.mark.parametrize("inner,picked,want", [
    ("SELECT *, A * 2 AS b FROM t WHERE K = 'p'", ("b", "K"), 'SELECT A * 2 AS b, "K" FROM t WHERE K = \'p\''),
    ("SELECT K, A, B FROM t WHERE A > 1", ("B", "K"), 'SELECT "B", "K" FROM t WHERE A > 1'),
    ("SELECT K, COUNT(*) AS n FROM t GROUP BY K", ("n",), "SELECT COUNT(*) AS n FROM t GROUP BY K"),
    ("SELECT K, CASE WHEN A > 0 THEN A ELSE 0 END AS A FROM t", ("A",), "SELECT CASE WHEN A > 0 THEN A ELSE 0 END AS A FROM t"),
])
def test_folds(inner, picked, want):
    out = _narrowed(sel(inner), cols(*picked))
    assert out is not None and out.sql(dialect="duckdb").replace('"', "") == want.replace('"', "")


@pytest.mark.parametrize("inner,picked", [
    ("SELECT K, COUNT(*) AS n FROM t GROUP BY K ORDER BY n", ("K",)),          # ORDER BY reads n
    ("SELECT *, A + 1 AS b FROM t WHERE b > 2", ("K",)),                       # WHERE reads b
    ("SELECT A + 1 AS b, b * 2 AS c FROM t", ("c",)),                          # c reads the item b
    ("SELECT *, x AS y FROM a JOIN b ON a.k = b.k", ("y", "k")),               # * of a join: two sides
    ("SELECT DISTINCT K, A + 1 AS b FROM t", ("b",)),                          # DISTINCT makes the rows
    ("SELECT K, A FROM t", ("Z",)),                                            # no such item, no *
    ("SELECT * FROM t", ("K",)),                                               # wrap reads through it
    ("SELECT K, S, COUNT(*) AS n FROM t GROUP BY ALL", ("K", "n")),            # GROUP BY ALL: by the items
    ("SELECT K, A + 1 AS b FROM t ORDER BY 2", ("b",)),                        # an ordinal: by place
])
def test_does_not_fold(inner, picked):
    assert _narrowed(sel(inner), cols(*picked)) is None


def test_a_project_after_an_extend_is_one_select():
    ws = netatlas.connect()
    try:
        q = ("datatable(K:string, A:long)['p', 1, 'q', 2, 'p', 3] | where K == 'p' | extend b = A * 2 "
             "| project b, K")
        sql = ws.compile(q).sql
        # the result's, the one the project folded into (the extend's, with its WHERE) and the datatable's
        assert sql.count("SELECT") == 3 and "SELECT *" not in sql, sql
        assert sorted(ws.query(q).rows) == [[2, "p"], [6, "p"]]
    finally:
        ws.close()
