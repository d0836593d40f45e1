"""The fast SQL printer (netatlas/kql/dialects/duckdb/printer.py) prints exactly what sqlglot prints.

For every golden case and seed query: plan it, build the final tree as generator.generate does,
and compare the printer's text with sqlglot's ``prepare(tree).sql(dialect="duckdb")`` for the same
tree; none of them may need the printer's sqlglot fallback. Hand-written SQL parsed by sqlglot
(shapes the planner does not build, comments, unknown node kinds) must come out identical too,
through the fallback where the table does not know a node.
"""
from __future__ import annotations

import pathlib
import re
from collections import Counter
from datetime import datetime, timezone

import pytest
import sqlglot
from sqlglot import exp

import netatlas
from conftest import PACKAGE
from netatlas.kql import parse, tokenize
from netatlas.kql.dialects.duckdb import printer
from netatlas.kql.dialects import DIALECTS
from netatlas.kql.generator import build, generate, prepare, render
from netatlas.kql.planner import Planner

GOLDEN = pathlib.Path(__file__).parent / "golden"
NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)


def corpus() -> list[tuple[str, str]]:
    # golden error cases (// error: ...) plan to no SQL: they are the error tests' business
    cases = [(f"golden/{p.parent.name}/{p.stem}", p.read_text()) for p in sorted(GOLDEN.glob("*/*.kql"))
             if "// error:" not in p.read_text()]
    parts = re.split(r"^// ==== (.+)$", (PACKAGE / "seed-queries.kql").read_text(), flags=re.M)
    cases += [(f"seed/{parts[i].strip()}", parts[i + 1]) for i in range(1, len(parts), 2)]
    return cases


CORPUS = corpus()


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def plan_of(ws, text: str):
    return Planner(ws.catalogue, now=NOW, executor=ws._run_helper).plan(parse(text, tokenize(text)))


def sqlglot_text(tree: exp.Expression) -> str:
    return prepare(tree.copy()).sql(dialect="duckdb")


def fast_text(tree: exp.Expression) -> tuple[str, Counter]:
    before = Counter(printer.FALLBACKS)
    text = printer.to_sql(tree)
    return text, printer.FALLBACKS - before


def test_corpus_is_there():
    assert len(CORPUS) > 300


@pytest.mark.parametrize("text", [t for _, t in CORPUS], ids=[n for n, _ in CORPUS])
def test_corpus_prints_as_sqlglot_does(ws, text):
    plan = plan_of(ws, text)
    for max_rows in (None, 500_001):
        tree = DIALECTS["duckdb"].rewrite(build(plan, max_rows=max_rows))
        before = repr(tree)
        fast, fallbacks = fast_text(tree)
        assert repr(tree) == before, "the printer must not change the tree"
        assert fast == sqlglot_text(tree)
        assert not fallbacks, f"the corpus needs the sqlglot fallback for {dict(fallbacks)}: add them to printer._H"


def test_generate_and_render_pick_the_printer(ws):
    text = 'datatable(a: long, b: string) [1, "x", 2, "it\'s"] | where a > 1 or b == "y" | extend c = -a * (a + 1) | order by a asc'
    plan = plan_of(ws, text)
    fast = generate(plan)  # first: sqlglot's path parenthesizes the plan's tree in place
    assert fast == generate(plan, printer="fast") == generate(plan, printer="sqlglot")
    assert "NULLS FIRST" in fast and "'it''s'" in fast
    assert "\n" in generate(plan, pretty=True)  # pretty text: sqlglot's generator
    tree = build(plan)
    assert render(tree) == render(tree, printer="sqlglot") == fast
    with pytest.raises(ValueError):
        generate(plan, printer="nope")


# Hand-written DuckDB SQL: other shapes of the same node kinds, and kinds the table lacks.
PARSED = [
    "SELECT a, b AS c FROM t WHERE a = 1 AND (b > 2 OR c < 3)",
    "SELECT a + b * c - d / e, (a + b) * c, a - (b - c), -a, - -1, -(-a), NOT NOT a FROM t",
    "SELECT * FROM t1 AS x LEFT JOIN t2 AS y ON x.a = y.a INNER JOIN t3 ON t3.a = x.a FULL OUTER JOIN t4 ON TRUE",
    "SELECT * FROM t1 RIGHT JOIN t2 ON 1 = 1 CROSS JOIN t3",
    "SELECT * FROM t1, t2",
    "SELECT * FROM t1 JOIN t2 USING (a)",
    "SELECT * FROM t1 SEMI JOIN t2 ON t1.a = t2.a",
    "SELECT DISTINCT a FROM t ORDER BY a DESC NULLS FIRST, b ASC NULLS LAST, c, d DESC, e NULLS FIRST LIMIT 10",
    "SELECT COUNT(*), COUNT(DISTINCT a), COUNT(DISTINCT a, b), SUM(a) FILTER (WHERE b > 0) FROM t GROUP BY c HAVING COUNT(*) > 1",
    "SELECT ROW_NUMBER() OVER (PARTITION BY a ORDER BY b ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS rn FROM t QUALIFY rn = 1",
    "SELECT SUM(x) OVER (), SUM(x) OVER (ORDER BY y RANGE BETWEEN 1 PRECEDING AND 1 FOLLOWING), LAG(x, 1) OVER (PARTITION BY a, b) FROM t",
    "WITH c AS MATERIALIZED (SELECT 1), d AS NOT MATERIALIZED (SELECT 2), e AS (SELECT 3) SELECT * FROM c, d, e",
    "WITH RECURSIVE r AS (SELECT 1 AS n UNION ALL SELECT n + 1 FROM r WHERE n < 3) SELECT * FROM r",
    "SELECT CASE WHEN a THEN 1 ELSE 2 END, CASE a WHEN 1 THEN 'x' WHEN 2 THEN 'y' END, IF(a, 1, 2), IF(a > 1, 'p', NULL) FROM t",
    "SELECT a IN (1, 2), a NOT IN (1), a IN (SELECT b FROM u), a BETWEEN 1 AND 2, a + 1 BETWEEN b - 1 AND c * 2 FROM t",
    "SELECT a IS NULL, a IS NOT NULL, a LIKE 'x%', NOT a LIKE 'x%', a NOT LIKE 'y', a ILIKE 'z' FROM t",
    "SELECT 'it''s', 'back\\slash', 'new\nline', 'tab\there', 'ünï', '', 1.5, 1e10, -1 FROM t",
    "SELECT 1 // 2, 5 % 3, a % b * c, a * (b % c), a || b || c, a IS DISTINCT FROM b, a IS NOT DISTINCT FROM b FROM t",
    "SELECT CAST(a AS DECIMAL(38, 18)), TRY_CAST(a AS BIGINT), a::VARCHAR, CAST(a + 1 AS INT), CAST(a AS TIMESTAMP) FROM t",
    "SELECT CAST(a AS JSON), CAST(a AS UUID), CAST(a AS DOUBLE), CAST(a AS TEXT), CAST(a AS VARCHAR(10)), CAST(a AS INT[]) FROM t",
    "SELECT CAST(a AS STRUCT(x INT)), CAST(CAST(a AS INT) AS TEXT), CAST(-a AS INT), CAST(NOT a AS INT), TRY_CAST(a || b AS INT) FROM t",
    "SELECT INTERVAL 1 DAY, INTERVAL '2' HOUR, INTERVAL (a) MINUTE, INTERVAL '1.5 DAY', NOW() - INTERVAL 3 SECOND FROM t",
    "SELECT LIST_TRANSFORM(x, lambda y: y + 1), LIST_FILTER(x, lambda y: y > 1 AND y < 3), {'a': 1, 'b': a + 1}, {'x': {'y': 2}} FROM t",
    "SELECT {}, STRUCT_PACK(a := 1) FROM t",
    "SELECT * FROM (VALUES (1, 'a'), (2, 'b')) AS v(x, y)",
    "SELECT * FROM (VALUES (1)) AS v",
    "VALUES (1, 2)",
    "SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3",
    "SELECT 1 UNION SELECT 2",
    "SELECT 1 UNION ALL SELECT 2 ORDER BY 1 LIMIT 1",
    "SELECT * FROM (SELECT 1 UNION ALL SELECT 2) AS u",
    "(SELECT 1 UNION SELECT 2) UNION SELECT 3",
    "SELECT 1 UNION ALL (SELECT 2 UNION ALL SELECT 3)",
    "(SELECT 1 LIMIT 1) UNION ALL SELECT 2",
    "SELECT 1 INTERSECT SELECT 2",
    "SELECT 1 EXCEPT SELECT 2",
    "SELECT EXISTS(SELECT 1), NOT EXISTS(SELECT 1 FROM t WHERE t.a = u.a) FROM u",
    "SELECT * FROM generate_series(1, 10) AS g, range(5) AS r(i)",
    "SELECT LIST(a ORDER BY b), STRING_AGG(a, ',' ORDER BY b DESC) FROM t",
    "SELECT a[1], a.b.c, UNNEST(x), x -> '$.a', x ->> 'b' FROM t",
    'SELECT "select", "a""b", "from", "1a", a1, _x, "Mixed", Mixed, "order" FROM "from" AS "where"',
    "SELECT a & b, a | b, a << 1, a >> 2, ~a, ~(-a), xor(a, b), a & b | c FROM t",
    "SELECT COALESCE(a, b, c), IFNULL(a, b), LOWER(a), UPPER(b), LOWER(CAST(a AS INT)), MIN(a), MAX(b), AVG(c), SUM(d) FROM t",
    "SELECT ARG_MAX(a, b), MAX_BY(a, b), LENGTH(a), ABS(a), ROUND(a, 2), FLOOR(a), POW(a, 2), SQRT(a), LN(a), LOG(10, a) FROM t",
    "SELECT a FROM t WHERE NOT (a AND b) AND NOT c OR d",
    "SELECT a FROM t LIMIT 5 OFFSET 3",
    "SELECT a /* c */ FROM t -- trailing",
    "SELECT TRUE, FALSE, NULL, NULL IS NULL FROM t",
    "SELECT a FROM t WHERE a = ANY (SELECT 1)",
    "SELECT a FROM t WHERE a LIKE ANY ('x', 'y')",
    "SELECT DATE_TRUNC('day', ts), EXTRACT(year FROM ts), STRFTIME(ts, '%Y'), EPOCH_US(ts) FROM t",
    "SELECT REGEXP_MATCHES(a, 'x'), REGEXP_EXTRACT(a, 'x', 1), STARTS_WITH(a, 'b'), CONTAINS(a, 'c'), CONCAT_WS(',', a, b) FROM t",
    "SELECT JSON_EXTRACT(a, '$.x'), TO_JSON(a), JSON_OBJECT('a', 1), LIST_VALUE(1, 2), LEN(a), LIST_CONTAINS(a, 1) FROM t",
    "SELECT a FROM t GROUP BY ALL",
    "SELECT a FROM t GROUP BY ROLLUP (a)",
    "SELECT a, COUNT(*) FROM t GROUP BY a ORDER BY 2 DESC",
    "SELECT * EXCLUDE (a) FROM t",
    "SELECT t.* FROM t",
    "SELECT a FROM t AS x(a)",
    "SELECT * FROM t USING SAMPLE 10",
    "SELECT 1 FROM t WINDOW w AS (PARTITION BY a)",
    "SELECT -(1 + 2), -(a), -1 * -2, 1 - -2, a - - b FROM t",
    "SELECT (a = b) = c, a = (b = c), (a AND b) AND c, a AND (b AND c), (a OR b) AND (c OR d) FROM t",
    "SELECT a BETWEEN (b AND c) AND d, (a BETWEEN b AND c) = TRUE, NOT a BETWEEN 1 AND 2 FROM t",
    "SELECT a IN (b + 1, c * 2), (a IN (1)) IS NULL, (a IS NULL) IS NOT TRUE FROM t",
    "SELECT CORR(a, b), CORR(a, b) OVER () FROM t",
    "SELECT COUNT_IF(a), ANY_VALUE(a), APPROX_COUNT_DISTINCT(a), STDDEV(a), QUANTILE_CONT(a, 0.5), MEDIAN(a), BOOL_AND(a) FROM t",
]


@pytest.mark.parametrize("sql", PARSED)
def test_parsed_sql_prints_as_sqlglot_does(sql):
    tree = sqlglot.parse_one(sql, read="duckdb")
    assert printer.to_sql(tree) == sqlglot_text(tree)


def test_unknown_nodes_fall_back_to_sqlglot():
    tree = exp.Select(expressions=[exp.Bracket(this=exp.column("a"), expressions=[exp.Literal.number(1)])])
    before = printer.FALLBACKS["Bracket"]
    assert printer.to_sql(tree) == sqlglot_text(tree)
    assert printer.FALLBACKS["Bracket"] == before + 1


def test_fallback_subtree_gets_parentheses_inside():
    # sqlglot prints the fallback subtree, after prepare's parentheses, inside a known parent
    inner = exp.Bracket(this=exp.Add(this=exp.column("a"), expression=exp.Sub(this=exp.column("b"), expression=exp.column("c"))),
                        expressions=[exp.Literal.number(1)])
    tree = exp.Select(expressions=[exp.Mul(this=inner, expression=exp.Add(this=exp.column("d"), expression=exp.column("e")))])
    assert printer.to_sql(tree) == sqlglot_text(tree)


@pytest.mark.parametrize("value", ["", "'", "''", "a'b", "\\", "\\'", "line\nbreak", "tab\t", "é ü 漢", "\x00", "*/ /*", "$$"])
def test_string_literals_escape_as_sqlglot_does(value):
    tree = exp.Select(expressions=[exp.Literal.string(value)])
    assert printer.to_sql(tree) == sqlglot_text(tree)


@pytest.mark.parametrize("name", ["a", "A", "select", "SELECT", "1x", "_q1", 'a"b', "", "with space", "ünï", "order"])
@pytest.mark.parametrize("quoted", [True, False])
def test_identifiers_quote_as_sqlglot_does(name, quoted):
    tree = exp.Select(expressions=[exp.Column(this=exp.Identifier(this=name, quoted=quoted),
                                              table=exp.Identifier(this=name, quoted=quoted))])
    assert printer.to_sql(tree) == sqlglot_text(tree)


def test_shared_nodes_print_in_both_places():
    shared = exp.Add(this=exp.column("a"), expression=exp.Literal.number(1))
    tree = exp.Select(expressions=[exp.Mul(this=shared, expression=shared), shared])
    assert printer.to_sql(tree) == sqlglot_text(tree) == "SELECT (a + 1) * (a + 1), a + 1"
