"""Comparing a Result with a hand-checked expectation in the golden JSON format."""
from __future__ import annotations

import json
import math



def canonical(v):
    """A JSON value in a form where equal values compare equal (dynamic text vs parsed)."""
    if isinstance(v, float):
        return round(v, 9) if math.isfinite(v) else str(v)
    if isinstance(v, list):
        return [canonical(x) for x in v]
    if isinstance(v, dict):
        return {k: canonical(x) for k, x in sorted(v.items())}
    return v


def close(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        if a == b:
            return True
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    return a == b


def result_json(res) -> dict:
    return {"columns": [[c, t] for c, t in zip(res.columns, res.types)], "rows": res.json_rows()}


def sort_key(row):
    return json.dumps(canonical(row), sort_keys=True, default=str)


def assert_matches(res, expected: dict, ordered: bool, where: str = "") -> None:
    got = result_json(res)
    exp_cols = [list(c) for c in expected["columns"]]
    assert got["columns"] == exp_cols, f"{where}: columns differ\n got: {got['columns']}\nwant: {exp_cols}"
    rows, want = got["rows"], [list(r) for r in expected["rows"]]
    if not ordered:
        rows, want = sorted(rows, key=sort_key), sorted(want, key=sort_key)
    assert len(rows) == len(want), f"{where}: {len(rows)} rows, expected {len(want)}\n got: {rows[:20]}\nwant: {want[:20]}"
    for i, (r, w) in enumerate(zip(rows, want)):
        assert close(r, w), f"{where}: row {i} differs\n got: {r}\nwant: {w}"
