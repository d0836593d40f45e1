"""User text never reaches SQL as SQL; every query is bounded in time and rows."""
from __future__ import annotations

import time

import pytest

import netatlas
from netatlas.errors import QueryLimitError

EVIL = [
    "x'; DROP TABLE \"VMConnection\"; --",
    'x"; DROP TABLE "VMConnection"; --',
    "'); DELETE FROM \"VMConnection\"; SELECT ('",
    "\\'; ATTACH ':memory:' AS e; --",
    "$$; COPY \"VMConnection\" TO '/tmp/netatlas_pwned.csv'; $$",
    "a\nb\r\n'\"`;--/*",
]


@pytest.fixture
def ws():
    w = netatlas.connect()
    w.ingest("VMConnection", [{"TimeGenerated": "2024-01-01T00:00:00Z", "Computer": "web01", "BytesSent": 5}])
    yield w
    w.close()


def intact(ws):
    assert ws.query("VMConnection | count").rows == [[1]]
    assert ws.query("VMConnection | project Computer").rows == [["web01"]]
    names = [r[0] for r in ws.connection.execute("select table_name from information_schema.tables").fetchall()]
    assert "VMConnection" in names and not any("pwned" in n for n in names)


def kql_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


# every place user text can stand: (template, how the evil text is spliced in, what the result holds)
POSITIONS = [
    ("string literal", lambda e: f"print v = {kql_string(e)}", lambda e: e),
    ("verbatim literal", lambda e: "print v = @'" + e.replace("'", "''").replace("\n", " ").replace("\r", " ") + "'",
     lambda e: e.replace("\n", " ").replace("\r", " ")),
    ("where literal", lambda e: f"VMConnection | where Computer != {kql_string(e)} | project v = Computer", lambda e: "web01"),
    ("contains literal", lambda e: f"VMConnection | where Computer !contains {kql_string(e)} | project v = Computer", lambda e: "web01"),
    ("has literal", lambda e: f"VMConnection | where not(Computer has {kql_string(e)}) | project v = Computer", lambda e: "web01"),
    ("in list", lambda e: f"VMConnection | where Computer !in ({kql_string(e)}) | project v = Computer", lambda e: "web01"),
    ("regex", lambda e: f"VMConnection | where not(Computer matches regex {kql_string(e.replace(chr(92), '').replace('(', '').replace(')', '').replace('*', '').replace('[', ''))}) | project v = Computer",
     lambda e: "web01"),
    ("column name", lambda e: f"print [{kql_string(e)}] = 1 | project-rename v = [{kql_string(e)}]", lambda e: 1),
    ("extend name", lambda e: f"VMConnection | extend [{kql_string(e)}] = Computer | project v = [{kql_string(e)}]", lambda e: "web01"),
    ("datatable column", lambda e: f"datatable([{kql_string(e)}]: string)[{kql_string(e)}] | project v = [{kql_string(e)}]", lambda e: e),
    ("dynamic key", lambda e: f"print d = dynamic({{}}) | extend v = tostring(d[{kql_string(e)}])", lambda e: ""),
    ("dynamic literal", lambda e: "print v = tostring(dynamic({\"k\": " + kql_string(e) + "}).k)", lambda e: e),
    ("parse literal", lambda e: f"print s = {kql_string(e + 'X1')} | parse s with {kql_string(e)} 'X' v:long", lambda e: 1),
    ("strcat argument", lambda e: f"print v = strcat({kql_string(e)}, '')", lambda e: e),
    ("let name", lambda e: f"let [{kql_string(e)}] = 7; print v = [{kql_string(e)}]", lambda e: 7),
    ("search term", lambda e: f"VMConnection | search {kql_string(e)} | count | project v = Count", lambda e: 0),
]


@pytest.mark.parametrize("evil", EVIL)
@pytest.mark.parametrize("name,make,want", POSITIONS, ids=[p[0] for p in POSITIONS])
def test_no_injection(ws, name, make, want, evil):
    res = ws.query(make(evil))
    assert res.columns[-1] == "v"
    assert res.rows[0][-1] == want(evil), f"{name}: {res.rows} from {res.sql}"
    intact(ws)


@pytest.mark.parametrize("evil", EVIL)
def test_no_injection_through_query_parameters(ws, evil):
    res = ws.query("declare query_parameters(p:string); print v = p", params={"p": evil})
    assert res.rows == [[evil]]
    intact(ws)


@pytest.mark.parametrize("evil", EVIL)
def test_unknown_table_with_evil_name_is_an_error(ws, evil):
    with pytest.raises(netatlas.KqlError):
        ws.query(f"[{kql_string(evil)}] | count")
    intact(ws)


def test_row_cap_flags_truncation(ws):
    res = ws.query("range x from 1 to 20 step 1", max_rows=10)
    assert len(res.rows) == 10 and res.truncated
    res = ws.query("range x from 1 to 10 step 1", max_rows=10)
    assert len(res.rows) == 10 and not res.truncated


def test_default_row_cap_is_kustos(ws):
    res = ws.query("range x from 1 to 500001 step 1")
    assert len(res.rows) == 500_000 and res.truncated


def test_time_limit_interrupts_a_long_query(ws):
    t0 = time.monotonic()
    with pytest.raises(QueryLimitError) as info:
        ws.query("range x from 1 to 100000000000 step 1 | summarize dcount(x % 1000000007)", timeout=0.5)
    assert time.monotonic() - t0 < 10
    assert "time limit" in str(info.value)
    intact(ws)   # the workspace still answers afterwards
