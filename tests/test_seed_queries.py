"""Every query of netatlas/seed-queries.kql (the seed's queries, shipped with the package) against the fixture workspace, with hand-checked answers.

The answers in tests/seed/expected/ were computed by tests/seed/compute_expected.py in plain
Python, independently of netatlas.
"""
from __future__ import annotations

import json
import pathlib
import re

import pytest

from compare import assert_matches, close, result_json
from conftest import PACKAGE
from seed.fixture import NOW, build_workspace

SEED = PACKAGE / "seed-queries.kql"
EXPECTED = pathlib.Path(__file__).parent / "seed" / "expected"


def blocks() -> list[tuple[str, str]]:
    text = SEED.read_text()
    parts = re.split(r"^// ==== (.+)$", text, flags=re.M)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts), 2)]


def slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]", "_", title.lower())


BLOCKS = blocks()


@pytest.fixture(scope="module")
def ws():
    w = build_workspace()
    yield w
    w.close()


def test_seed_file_present():
    assert len(BLOCKS) >= 29


@pytest.mark.parametrize("title,query", BLOCKS, ids=[slug(t)[:60] for t, _ in BLOCKS])
def test_seed_query(title, query, ws):
    expected = json.loads((EXPECTED / f"{slug(title)}.expected.json").read_text())
    if "pending" in expected:
        # autocluster: Kusto does not publish its algorithm, so there is no answer to copy; check
        # instead that every segment's Count is the number of input rows matching its pattern.
        check_segments(ws, query, ws.query(query, now=NOW))
        return
    res = ws.query(query, now=NOW)
    if expected.get("ordered"):
        # Kusto leaves the order of rows with equal sort keys open: compare the rows as a set,
        # and the sort-key columns in order.
        assert_matches(res, expected, ordered=False, where=title)
        got = result_json(res)
        names = [c for c, _ in expected["columns"]]
        for key, _direction in expected.get("order_by", []):
            i = names.index(key)
            assert close([r[i] for r in got["rows"]], [r[i] for r in expected["rows"]]), \
                f"{title}: rows are not in the expected order of {key}"
    else:
        assert_matches(res, expected, ordered=False, where=title)
    if "render" in expected:
        assert res.render is not None
        for k, v in expected["render"].items():
            assert res.render.get(k) == v, f"{title}: render {k}={res.render.get(k)!r}, expected {v!r}"


def check_segments(ws, query: str, res) -> None:
    assert res.columns[:3] == ["SegmentId", "Count", "Percent"] and res.rows
    source = query[: query.index("| evaluate autocluster")]
    total = ws.query(source + "| count", now=NOW).rows[0][0]
    dims = res.columns[3:]
    for seg in res.to_dicts():
        # a free column shows its type's wildcard: "" for strings, null for the others
        conds = [f"tostring({d}) == {json.dumps(seg[d])}" if isinstance(seg[d], str) else f"{d} == {json.dumps(seg[d])}"
                 for d in dims if seg[d] not in ("", None)]
        assert conds, seg
        n = ws.query(source + "| where " + " and ".join(conds) + " | count", now=NOW).rows[0][0]
        assert seg["Count"] == n and abs(seg["Percent"] - 100.0 * n / total) < 1e-9, seg


# ---- the same queries on ClickHouse (chdb), over a copy of the fixture workspace ---------------------

@pytest.fixture(scope="module")
def clickhouse(ws):
    try:
        from netatlas.store.chdb import ChdbStore
    except ImportError as e:                 # scripts/test.sh installs it (the [clickhouse] extra)
        pytest.skip(f"chdb is not installed ({e}): pip install -e '.[clickhouse]'")
    from netatlas.store import copy_tables
    from netatlas.workspace import StoreWorkspace
    # the fixture's data is from 2024: a retention long enough that ClickHouse's TTL keeps it
    ch = StoreWorkspace(ChdbStore(None), ws.catalogue, {t: 4383 for t in ws.catalogue.names()})
    copied = copy_tables(ws, ch.store)
    assert copied["VMConnection"] == ws.query("VMConnection | count").rows[0][0] > 0
    yield ch
    ch.close()


@pytest.mark.parametrize("title,query", BLOCKS, ids=[slug(t)[:60] for t, _ in BLOCKS])
def test_seed_query_on_clickhouse_matches_duckdb(title, query, ws, clickhouse):
    """Every seed query gives the same rows, columns and render on ClickHouse as on DuckDB (whose
    answers the test above checks against hand-computed ones)."""
    want = ws.query(query, now=NOW)
    got = clickhouse.query(query, now=NOW)
    expected = result_json(want)
    if "evaluate autocluster" in query:
        check_segments(ws, query, got)
        return
    assert_matches(got, expected, ordered=False, where=f"{title} on clickhouse")
    assert got.render == want.render
