"""Golden files: every tests/golden/<family>/<name>.kql against its hand-checked result and SQL snapshot."""
from __future__ import annotations

import json
import pathlib
from datetime import datetime, timezone

import pytest

import netatlas
from netatlas.catalogue import Catalogue
from netatlas.errors import KqlError
from compare import assert_matches

GOLDEN = pathlib.Path(__file__).parent / "golden"
CASES = sorted(GOLDEN.glob("*/*.kql"))
NOW = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def directives(text: str) -> dict:
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line.startswith("//"):
            break
        body = line[2:].strip()
        if body == "ordered":
            out["ordered"] = True
        elif body.startswith("error:"):
            out["error"] = body.split(":", 1)[1].strip()
        elif body.startswith("not on "):          # "// not on clickhouse: <reason>"
            store, _, reason = body[len("not on "):].partition(":")
            out.setdefault("not_on", {})[store.strip()] = reason.strip()
    return out


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden(path: pathlib.Path, ws, update_golden):
    text = path.read_text()
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    d = directives(text)
    if "error" in expected or "error" in d:
        with pytest.raises(KqlError) as info:
            ws.query(text, now=NOW)
        err = info.value
        assert err.code == expected["error"], f"code {err.code}, expected {expected['error']}: {err}"
        if "message_contains" in expected:
            assert expected["message_contains"].lower() in str(err).lower(), str(err)
        if "line" in expected:
            assert (err.line, err.column) == (expected["line"], expected["column"]), str(err)
        assert "^" in str(err), "the error must show a caret under the offending text"
        return
    res = ws.query(text, now=NOW)
    assert_tables(res, expected, d.get("ordered", False), where=str(path.relative_to(GOLDEN)))
    snap = path.with_suffix(".duckdb.sql")
    compiled = ws.compile(text, now=NOW)
    sql = ";\n".join([compiled.sql, *(p.sql for p in compiled.more)])    # every result's SQL
    if update_golden or not snap.exists():
        snap.write_text(sql + "\n")
    else:
        assert snap.read_text().strip() == sql.strip(), "generated SQL changed; review and run pytest --update-golden"


# ---- the same files on ClickHouse (chdb, ClickHouse's engine embedded) -----------------------------
# Every case runs on both stores and must give the same rows; a file may opt out of one store only
# with its reason ("// not on clickhouse: why"); the opt-outs are counted and printed at the end.
OPTED_OUT: dict[str, str] = {}


@pytest.fixture(scope="module")
def clickhouse():
    try:
        from netatlas.store.chdb import ChdbStore
    except ImportError as e:                 # scripts/test.sh installs it (the [clickhouse] extra)
        pytest.skip(f"chdb is not installed ({e}): pip install -e '.[clickhouse]'")
    from netatlas.workspace import StoreWorkspace
    ws = StoreWorkspace(ChdbStore(None), Catalogue.load())
    yield ws
    ws.close()


@pytest.fixture(scope="module", autouse=True)
def report_opt_outs(request):
    yield
    print(f"\ngolden files not run on clickhouse: {len(OPTED_OUT)} of {len(CASES)}")
    if OPTED_OUT:
        lines = [f"  {case}: {reason}" for case, reason in sorted(OPTED_OUT.items())]
        print("\n".join(lines))


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.stem}" for p in CASES])
def test_golden_clickhouse(path: pathlib.Path, clickhouse):
    text = path.read_text()
    expected = json.loads(path.with_suffix(".expected.json").read_text())
    d = directives(text)
    case = f"{path.parent.name}/{path.stem}"
    reason = d.get("not_on", {}).get("clickhouse")
    if reason is not None:
        assert reason, f"{case}: an opt-out needs its reason"
        OPTED_OUT[case] = reason
        return
    if "error" in expected or "error" in d:
        with pytest.raises(KqlError) as info:
            clickhouse.query(text, now=NOW)
        assert info.value.code == expected["error"], str(info.value)
        return
    res = clickhouse.query(text, now=NOW)
    assert_tables(res, expected, d.get("ordered", False), where=f"{case} on clickhouse")


def assert_tables(res, expected: dict, ordered: bool, where: str) -> None:
    """The result against its expected.json: one table (columns, rows), or a query of several
    results: {"tables": [{"columns", "rows"}, ...]}, every table in order."""
    want = expected["tables"] if "tables" in expected else [expected]
    got = res.tables()
    assert len(got) == len(want), f"{where}: {len(got)} result tables, expected {len(want)}"
    for i, (r, w) in enumerate(zip(got, want)):
        assert_matches(r, w, ordered, where=where if len(want) == 1 else f"{where}, table {i}")
