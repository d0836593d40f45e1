"""The public Python API: connect, ingest, query, Result."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas import IngestError, KqlError, NetatlasError, Result, Workspace

T0 = "2024-01-01T10:00:00Z"


def conn(i: int, **extra) -> dict:
    return {"TimeGenerated": T0, "Computer": f"web-{i}", "BytesSent": 100 * i, "DestinationPort": 443, **extra}


def count(ws: Workspace, table: str = "VMConnection") -> int:
    return ws.query(f"{table} | count").rows[0][0]


# ---------------------------------------------------------------- workspaces

def test_public_names():
    for name in ("connect", "Workspace", "Result", "NetatlasError", "KqlError", "IngestError", "__version__"):
        assert hasattr(netatlas, name)
    assert issubclass(KqlError, NetatlasError) and issubclass(IngestError, NetatlasError)


def test_in_memory_workspace_has_every_table_empty():
    ws = netatlas.connect()
    assert isinstance(ws, Workspace)
    for table in ws.catalogue.names():
        assert count(ws, table) == 0
    ws.close()


def test_in_memory_workspaces_are_separate():
    a, b = netatlas.connect(), netatlas.connect()
    a.ingest("VMConnection", [conn(1)])
    assert (count(a), count(b)) == (1, 0)
    a.close(), b.close()


def test_directory_workspace_persists_after_close(tmp_path):
    data = tmp_path / "data"
    ws = netatlas.connect(data)
    assert (data / "netatlas.duckdb").is_file()
    assert ws.ingest("VMConnection", [conn(1), conn(2)]).records == 2
    ws.close()
    with netatlas.connect(str(data)) as ws:   # str or Path
        res = ws.query("VMConnection | order by Computer asc | project Computer, BytesSent")
        assert res.rows == [["web-1", 100], ["web-2", 200]]
        ws.ingest("VMConnection", [conn(3)])
    with netatlas.connect(data) as ws:
        assert count(ws) == 3


# ---------------------------------------------------------------- ingest validation

def test_ingest_fills_missing_columns_with_nulls_and_empty_strings():
    with netatlas.connect() as ws:
        ws.ingest("VMConnection", [{"TimeGenerated": T0}])
        res = ws.query("VMConnection | project Computer, BytesSent, TimeGenerated")
        assert res.rows == [["", None, datetime(2024, 1, 1, 10, tzinfo=timezone.utc)]]


def test_unknown_column_names_record_and_field():
    with netatlas.connect() as ws:
        with pytest.raises(IngestError) as ei:
            ws.ingest("VMConnection", [conn(0), conn(1, Computr="x")])
        e = ei.value
        assert (e.code, e.record, e.field) == ("INGEST_UNKNOWN_COLUMN", 1, "Computr")
        assert "record 1" in str(e) and "'Computr'" in str(e) and "Computer" in str(e)   # with a hint


def test_wrong_type_names_record_and_field():
    with netatlas.connect() as ws:
        with pytest.raises(IngestError) as ei:
            ws.ingest("VMConnection", [conn(0), conn(1), conn(2, BytesSent="lots")])
        e = ei.value
        assert (e.code, e.record, e.field) == ("INGEST_TYPE", 2, "BytesSent")
        assert "record 2" in str(e) and "BytesSent" in str(e)


@pytest.mark.parametrize("record", [{"Computer": "web-1"}, {"TimeGenerated": None, "Computer": "web-1"}])
def test_missing_time_generated_is_rejected(record):
    with netatlas.connect() as ws:
        with pytest.raises(IngestError) as ei:
            ws.ingest("VMConnection", [record])
        assert (ei.value.code, ei.value.record, ei.value.field) == ("INGEST_MISSING_FIELD", 0, "TimeGenerated")


def test_unknown_table_is_rejected():
    with netatlas.connect() as ws:
        with pytest.raises(IngestError) as ei:
            ws.ingest("VMConection", [conn(0)])
        assert ei.value.code == "INGEST_UNKNOWN_TABLE" and "VMConnection" in str(ei.value)


@pytest.mark.parametrize("bad", [
    {"Computr": "x"},                          # unknown column
    {"BytesSent": "lots"},                     # wrong type
    {"TimeGenerated": None},                   # missing TimeGenerated
    {"TimeGenerated": "not a date"},           # unparseable datetime
])
def test_a_rejected_batch_stores_nothing(tmp_path, bad):
    with netatlas.connect(tmp_path) as ws:
        ws.ingest("VMConnection", [conn(0)])
        with pytest.raises(IngestError):
            ws.ingest("VMConnection", [conn(1), conn(2), conn(3, **bad)])
        assert count(ws) == 1
    with netatlas.connect(tmp_path) as ws:
        assert count(ws) == 1


# ---------------------------------------------------------------- results

def test_result_value_types():
    with netatlas.connect() as ws:
        res = ws.query(
            'print s="x", l=long(7), i=int(3), r=2.5, b=true, d=datetime(2024-01-01 10:00:00.5), '
            't=time(1.02:03:04), dd=dynamic({"k":[1,"a"]}), dl=dynamic([1,2]), '
            'g=guid(74be27de-1e4e-49d9-b579-fe0b331d3642), n=long(null), es=""')
    assert isinstance(res, Result)
    assert res.columns == ["s", "l", "i", "r", "b", "d", "t", "dd", "dl", "g", "n", "es"]
    assert res.types == ["string", "long", "int", "real", "bool", "datetime", "timespan", "dynamic",
                         "dynamic", "guid", "long", "string"]
    [row] = res.rows
    s, l, i, r, b, d, t, dd, dl, g, n, es = row
    assert type(s) is str and s == "x"
    assert type(l) is int and l == 7 and type(i) is int and i == 3
    assert type(r) is float and r == 2.5
    assert type(b) is bool and b is True
    assert isinstance(d, datetime) and d.utcoffset() == timedelta(0)
    assert d == datetime(2024, 1, 1, 10, 0, 0, 500000, tzinfo=timezone.utc)
    assert t == timedelta(days=1, hours=2, minutes=3, seconds=4)
    assert dd == {"k": [1, "a"]} and dl == [1, 2]
    assert g == uuid.UUID("74be27de-1e4e-49d9-b579-fe0b331d3642")
    assert n is None and es == ""


def test_result_from_datatable_rows_and_json():
    with netatlas.connect() as ws:
        res = ws.query("datatable(Name:string, N:long, At:datetime, D:timespan)"
                       "['a', 1, datetime(2024-01-02), 1h, 'b', long(null), datetime(null), 90s]"
                       " | order by Name asc")
    assert res.rows == [["a", 1, datetime(2024, 1, 2, tzinfo=timezone.utc), timedelta(hours=1)],
                        ["b", None, None, timedelta(seconds=90)]]
    assert res.json_rows() == [["a", 1, "2024-01-02T00:00:00Z", "01:00:00"], ["b", None, None, "00:01:30"]]
    doc = res.to_json()
    assert doc["tables"][0]["columns"][0] == {"name": "Name", "type": "string"}
    assert doc["statistics"]["rows"] == 2 and doc["render"] is None
    assert res.render is None and res.truncated is False


def test_render_timechart():
    with netatlas.connect() as ws:
        res = ws.query("range x from 1 to 3 step 1 | extend y = x * 2 | render timechart")
        assert res.render["visualization"] == "timechart"
        assert res.rows == [[1, 2], [2, 4], [3, 6]]
        titled = ws.query('range x from 1 to 3 step 1 | render timechart with (title="Bytes")')
        assert titled.render == {"visualization": "timechart", "title": "Bytes"}


def test_query_over_ingested_data():
    with netatlas.connect() as ws:
        ws.ingest("VMConnection", [conn(1), conn(2), conn(2)])
        res = ws.query("VMConnection | summarize Sent = sum(BytesSent) by Computer | order by Computer asc")
        assert (res.columns, res.types) == (["Computer", "Sent"], ["string", "long"])
        assert res.rows == [["web-1", 100], ["web-2", 400]]


def test_params():
    with netatlas.connect() as ws:
        res = ws.query("declare query_parameters(n:long); print v = n + 1", params={"n": 41})
        assert res.rows == [[42]]


def test_max_rows_truncates():
    with netatlas.connect() as ws:
        res = ws.query("range x from 1 to 10 step 1", max_rows=3)
        assert res.truncated is True and res.rows == [[1], [2], [3]]


def test_kql_error_has_code_and_caret():
    with netatlas.connect() as ws:
        with pytest.raises(KqlError) as ei:
            ws.query("VMConnection\n| where Computr == 'a'")
    e = ei.value
    assert e.code == "KQL_UNKNOWN_COLUMN" and (e.line, e.column) == (2, 9)
    assert str(e).splitlines()[1:] == ["  | where Computr == 'a'", "          ^^^^^^^",
                                       "hint: did you mean 'Computer'?"]
