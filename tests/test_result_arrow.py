"""Large answers read as Arrow (Workspace._fetch_arrow, values.ArrowAnswer) hold the same values as
the row path, with the same cuts; Result.json_rows a column at a time equals to_json_value per value."""
import math

import pytest

import netatlas
from netatlas import workspace as W
from netatlas.kql.values import to_json_value

MIXED = ("range x from 1 to 6000 step 1 | extend s = iff(x % 7 == 0, '', strcat('é', x)), "
         "n = iff(x % 5 == 0, long(null), x), d = iff(x % 3 == 0, datetime(null), datetime(2024-01-01) + x * 1s), "
         "r = iff(x % 11 == 0, real(nan), x * 1.5), inf = iff(x % 13 == 0, 1.0 / 0, -1.0 / 0), b = x % 2 == 0, "
         "ts = x * 1ms, dy = iff(x % 4 == 0, dynamic(null), pack('k', x)), i = toint(x)")
EDGES = ("range x from 1 to 5000 step 1 | extend late = datetime(9999-12-31) + x * 1d, "
         "early = datetime(0001-01-01) - x * 1d, bad = todatetime(iff(x % 2 == 0, 'x', '2024-01-01'))")
GROWING = ("range x from 1 to 9000 step 1 | extend s = strrep('x', iff(x > 2100, 300, 1)), "
           "dy = iff(x > 5000, dynamic({'a': 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb'}), dynamic(null))")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    w = netatlas.connect(tmp_path_factory.mktemp("arrow") / "ws")
    yield w
    w.close()


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return a == b and getattr(a, "tzinfo", None) == getattr(b, "tzinfo", None)


def _both(ws, monkeypatch, text, **limits):
    calls = []
    real_arrow = W.Workspace._fetch_arrow
    monkeypatch.setattr(W.Workspace, "_fetch_arrow",
                        staticmethod(lambda *a: calls.append(1) or real_arrow(*a)))
    arrow = ws.query(text, **limits)
    real_fetch = W.Workspace._fetch
    monkeypatch.setattr(W.Workspace, "_fetch", lambda self, *a, **k: real_fetch(self, *a, **dict(k, arrow=False)))
    rows = ws.query(text, **limits)
    monkeypatch.undo()
    return arrow, rows, bool(calls)


@pytest.mark.parametrize("text", [MIXED, EDGES, GROWING])
@pytest.mark.parametrize("limits", [{}, {"max_rows": 2048}, {"max_rows": 2049}, {"max_rows": 4000},
                                    {"max_rows": 9000, "max_result_bytes": 500_000},
                                    {"max_rows": 9000, "max_result_bytes": 1_000_000},
                                    {"max_rows": 2048, "max_result_bytes": 250_000}])
def test_an_arrow_answer_holds_what_the_rows_hold(ws, monkeypatch, text, limits):
    arrow, rows, used = _both(ws, monkeypatch, text, **limits)
    assert (arrow.columns, arrow.types, arrow.truncated_by) == (rows.columns, rows.types, rows.truncated_by)
    assert len(arrow.rows) == len(rows.rows)
    for a, b in zip(arrow.rows, rows.rows):
        assert type(a) is list and all(_same(x, y) for x, y in zip(a, b)), (a, b)
    assert arrow.to_json()["tables"] == rows.to_json()["tables"]
    if text == GROWING and limits.get("max_result_bytes") and limits.get("max_rows") == 9000:
        assert used and arrow.truncated_by == "max_result_bytes"   # cut inside an Arrow batch


def test_the_arrow_path_is_taken_for_large_plain_answers(ws, monkeypatch):
    arrow, rows, used = _both(ws, monkeypatch, MIXED)
    assert used and len(arrow.rows) == 6000


def test_json_rows_a_column_at_a_time_equal_the_values_one_by_one(ws):
    res = ws.query(MIXED + ", g = toguid('0b0fd8a4-5a3c-4e43-9f6e-0e0f7d0b0a11'), dec = todecimal(x) / 7")
    assert res.json_rows() == [[to_json_value(v, t) for v, t in zip(r, res.types)] for r in res.rows]
    plain = ws.query("range x from 1 to 3000 step 1 | extend s = tostring(x), r = x * 0.5")
    assert plain.to_json()["tables"][0]["rows"] == [[to_json_value(v, t) for v, t in zip(r, plain.types)]
                                                    for r in plain.rows]
