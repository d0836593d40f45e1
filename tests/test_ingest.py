"""The ingest stages against a real DuckDB workspace: validation, enrichment, Usage, batch ids, retention."""
from __future__ import annotations

import gzip
import json
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas.errors import IngestError

T0 = datetime(2024, 3, 1, 10, 15, tzinfo=timezone.utc)


def conn(i, **kw):
    r = {"TimeGenerated": (T0 + timedelta(minutes=i)).isoformat().replace("+00:00", "Z"), "Computer": f"Web-{i % 3}",
         "Machine": f"m-{i}", "Direction": "outbound" if i % 2 else "inbound", "SourceIp": f"10.0.0.{i}",
         "DestinationIp": f"10.0.1.{i}", "DestinationPort": 443, "BytesSent": 100 * i, "LinksEstablished": 1}
    r.update(kw)
    return r


@pytest.fixture
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def count(ws, table="VMConnection"):
    return ws.query(f"{table} | count").rows[0][0]


def test_enrichment_fills_azure_columns(ws):
    ws.ingest("VMConnection", [conn(1), conn(2)])
    rows = ws.query("VMConnection | order by TimeGenerated asc | project Direction, SourceIp, DestinationIp, RemoteIp, "
                    "Type, SourceSystem, _IsBillable, _ResourceId").rows
    assert rows[0] == ["outbound", "10.0.0.1", "10.0.1.1", "10.0.1.1", "VMConnection", "Insights", "True",
                       "/netatlas/workspaces/local/machines/web-1"]
    assert rows[1][:4] == ["inbound", "10.0.0.2", "10.0.1.2", "10.0.0.2"]
    ws.ingest("ServiceMapComputer_CL", [{"TimeGenerated": "2024-03-01T10:00:00Z", "Computer": "a"}])
    assert ws.query("ServiceMapComputer_CL | project SourceSystem, Type").rows == [["OpsManager", "ServiceMapComputer_CL"]]


def test_billed_size_is_the_record_as_ingested_and_usage_adds_up(ws):
    batch = [conn(i) for i in range(50)] + [conn(i, TimeGenerated="2024-03-01T11:59:59Z") for i in range(7)]
    report = ws.ingest("VMConnection", batch)
    each = [len(json.dumps(r, separators=(",", ":")).encode()) for r in batch]
    billed = sorted(r[0] for r in ws.query("VMConnection | project _BilledSize").rows)
    assert billed == sorted(float(b) for b in each)
    assert report.bytes == sum(each)
    usage = ws.query("Usage | order by StartTime asc | project StartTime, EndTime, DataType, Quantity, QuantityUnit, "
                     "IsBillable, Solution").rows
    assert [u[0].hour for u in usage] == [10, 11]
    assert all(u[1] - u[0] == timedelta(hours=1) for u in usage)
    assert sum(u[3] for u in usage) * 1_000_000 == pytest.approx(sum(each))
    assert usage[0][2:3] + usage[0][4:] == ["VMConnection", "MBytes", True, "VMInsights"]
    # a second batch in the same hour grows the same Usage record
    ws.ingest("VMConnection", [conn(3)])
    usage2 = ws.query("Usage | where StartTime == datetime(2024-03-01 10:00) | project Quantity").rows
    assert len(usage2) == 1
    assert usage2[0][0] * 1e6 == pytest.approx(sum(b for b, r in zip(each, batch) if "T10:" in r["TimeGenerated"])
                                               + len(json.dumps(conn(3), separators=(",", ":"))))


def test_a_rejected_batch_stores_nothing(ws):
    ws.ingest("VMConnection", [conn(0)])
    usage_before = ws.query("Usage | summarize sum(Quantity)").rows
    for bad, code, record, field in [
        ([conn(1), conn(2, Computr="x")], "INGEST_UNKNOWN_COLUMN", 1, "Computr"),
        ([conn(1), conn(2), conn(3, BytesSent="lots")], "INGEST_TYPE", 2, "BytesSent"),
        ([conn(1), {"Computer": "x"}], "INGEST_MISSING_FIELD", 1, "TimeGenerated"),
        ([conn(1), conn(2, TimeGenerated="not a time")], "INGEST_TYPE", 1, "TimeGenerated"),
        ([conn(1), conn(2, DestinationPort=2**40)], "INGEST_TYPE", 1, "DestinationPort"),
        ([conn(1), "text"], "INGEST_SHAPE", 1, None),
    ]:
        with pytest.raises(IngestError) as info:
            ws.ingest("VMConnection", bad)
        e = info.value
        assert (e.code, e.record, e.field) == (code, record, field), str(e)
        assert f"record {record}" in str(e)
        assert count(ws) == 1
        assert ws.query("Usage | summarize sum(Quantity)").rows == usage_before


def test_duplicate_batch_is_stored_once(ws):
    first = ws.ingest("VMConnection", [conn(1), conn(2)], batch_id="agent-1/000042")
    again = ws.ingest("VMConnection", [conn(1), conn(2)], batch_id="agent-1/000042")
    assert (first.records, first.duplicate) == (2, False)
    assert (again.records, again.duplicate) == (0, True)
    assert count(ws) == 2
    ws.ingest("VMConnection", [conn(3)], batch_id="agent-1/000043")
    assert count(ws) == 3


def test_json_body_and_gzip(ws):
    body = json.dumps([conn(1), conn(2)]).encode()
    assert ws.ingest_json("VMConnection", body).records == 2
    assert ws.ingest_json("VMConnection", gzip.compress(body), content_encoding="gzip").records == 2
    with pytest.raises(IngestError) as info:
        ws.ingest_json("VMConnection", b'{"not": "an array"')
    assert info.value.code == "INGEST_BAD_BODY"
    with pytest.raises(IngestError):
        ws.ingest_json("VMConection", body)
    assert count(ws) == 4


def test_value_types_round_trip(ws):
    ws.ingest("VMComputer", [{"TimeGenerated": "2024-03-01T10:00:00+02:00", "Computer": "a", "Cpus": 4,
                              "Ipv4Addresses": ["10.0.0.1", "10.0.0.2"], "BootTime": datetime(2024, 2, 1, tzinfo=timezone.utc),
                              "PhysicalMemoryMB": 16384}])
    row = ws.query("VMComputer | project TimeGenerated, Cpus, Ipv4Addresses, BootTime, PhysicalMemoryMB").rows[0]
    assert row == [datetime(2024, 3, 1, 8, 0, tzinfo=timezone.utc), 4, ["10.0.0.1", "10.0.0.2"],
                   datetime(2024, 2, 1, tzinfo=timezone.utc), 16384]


def test_retention_removes_old_rows_per_table(ws):
    now = datetime(2024, 3, 10, tzinfo=timezone.utc)
    ws.ingest("VMConnection", [conn(1, TimeGenerated="2024-03-01T00:00:00Z"), conn(2, TimeGenerated="2024-03-09T12:00:00Z")])
    ws.ingest("VMProcess", [{"TimeGenerated": "2024-03-01T00:00:00Z"}])
    assert ws.retention()["VMConnection"] == 30
    ws.set_retention("VMConnection", 2)
    assert ws.retention()["VMConnection"] == 2
    assert ws.apply_retention(now) == {"VMConnection": 1}
    assert count(ws) == 1 and count(ws, "VMProcess") == 1
    with pytest.raises(IngestError):
        ws.set_retention("VMConnection", 0)


def test_timespan_bounds_every_table(ws):
    ws.ingest("VMConnection", [conn(i) for i in range(10)])
    start, end = T0 + timedelta(minutes=2), T0 + timedelta(minutes=5)
    assert ws.query("VMConnection | count", timespan=(start, end)).rows == [[3]]
    assert ws.query("union VMConnection, VMProcess | count", timespan=(start, end)).rows == [[3]]


def test_directory_workspace_held_by_another_process_is_a_clear_error(tmp_path):
    import subprocess
    import sys
    code = ("import netatlas, sys, time; ws = netatlas.connect(sys.argv[1]); print('ready', flush=True); "
            "time.sleep(30)")
    p = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert p.stdout.readline().strip() == "ready"
        with pytest.raises(netatlas.NetatlasError) as info:
            netatlas.connect(tmp_path)
        assert info.value.code == "WORKSPACE_BUSY" and "held by another process" in str(info.value)
    finally:
        p.kill()
        p.wait()
