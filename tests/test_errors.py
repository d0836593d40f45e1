"""Error texts are part of the interface: each case's full message is snapshot-tested.

tests/errors/cases.txt holds the queries (separated by lines of ====); tests/errors/expected.txt
the messages netatlas prints for them (rewritten by pytest --update-golden, reviewed like code).
"""
from __future__ import annotations

import pathlib

import pytest

import netatlas

HERE = pathlib.Path(__file__).parent / "errors"
SEP = "\n====\n"


def cases() -> list[str]:
    return [c.strip("\n") for c in (HERE / "cases.txt").read_text().split(SEP) if c.strip()]


def render(ws, q: str) -> str:
    try:
        ws.query(q)
    except netatlas.KqlError as e:
        return str(e)
    return "(no error)"


def test_error_messages(update_golden):
    ws = netatlas.connect()
    got = SEP.join(f"{q}\n----\n{render(ws, q)}" for q in cases()) + "\n"
    snap = HERE / "expected.txt"
    if update_golden or not snap.exists():
        snap.write_text(got)
    assert got == snap.read_text()


@pytest.mark.parametrize("q", cases())
def test_every_error_points_into_the_text(q):
    ws = netatlas.connect()
    with pytest.raises(netatlas.KqlError) as info:
        ws.query(q)
    e = info.value
    text = str(e)
    assert e.line is not None and e.column is not None, text
    assert "^" in text and "Traceback" not in text
    assert e.code.startswith("KQL_")
    assert text.splitlines()[1].strip() in q   # the quoted line is from the query


@pytest.mark.parametrize("q,hint", [
    ("VMConection | take 1", "did you mean 'VMConnection'?"),
    ("VMConnection | where Computr == 'x'", "did you mean 'Computer'?"),
    ("VMConnection | summarize cnt() by Computer", "did you mean 'count'?"),
    ("VMConnection | projet Computer", "did you mean 'project'?"),
    ("VMConnection | where computer == 'x'", "did you mean 'Computer'? (names are case-sensitive)"),
    ("VMConnection | extend x = tolowr(Computer)", "did you mean 'tolower'?"),
    ("VMConnection | join kind=lefouter (VMComputer) on Computer", "did you mean 'leftouter'?"),
])
def test_did_you_mean(q, hint):
    ws = netatlas.connect()
    with pytest.raises(netatlas.KqlError) as info:
        ws.query(q)
    assert info.value.hint == hint, str(info.value)


def test_error_json_shape():
    ws = netatlas.connect()
    with pytest.raises(netatlas.KqlError) as info:
        ws.query("VMConnection\n| where Computr == 'x'")
    j = info.value.to_json()
    assert j["code"] == "KQL_UNKNOWN_COLUMN"
    assert (j["line"], j["column"]) == (2, 9)
    assert j["hint"] == "did you mean 'Computer'?"
    assert "^^^^^^^" in j["display"]
