"""The hostile-input probe (bench/probe.py) against a real server: every input of its five classes
(the slow ones, covered by their own tests, left to a full run) is handled, and the integrity
checks after the run hold."""
from __future__ import annotations

import io
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import probe  # noqa: E402


def test_every_hostile_input_is_handled():
    out = io.StringIO()
    code = probe.run(quick=True, out=out)
    text = out.getvalue()
    print(text)
    assert code == 0, text
    rows = [line.split() for line in text.splitlines() if line.startswith("all ")]
    assert rows and int(rows[0][1]) == int(rows[0][2]) >= 140, text
