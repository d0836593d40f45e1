"""`netatlas import`: exports of an Azure Log Analytics workspace (the portal's CSV, the query
API's JSON, az CLI's array of objects) into a workspace directory and through a live server."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import netatlas
from netatlas.cli import main

from test_server import ROOT, Server

TENANT = "3f1c9c3e-7a4e-4c55-9a0e-0b8f0b6f6c11"
RID = "/subscriptions/0000/resourcegroups/rg/providers/microsoft.compute/virtualmachines/web-01"
DAY = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)


def portal(when: datetime) -> str:
    """The portal's display format: 5/1/2024, 10:00:00.000 AM."""
    return f"{when.month}/{when.day}/{when.year}, {when.strftime('%I').lstrip('0') or '12'}:" \
           f"{when.strftime('%M:%S')}.{when.microsecond // 1000:03d} {when.strftime('%p')}"


def iso(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


# "Export to CSV (all columns)" of `VMConnection | take 3`: TenantId first, datetimes with the
# zone in the header, Azure's system columns, empty cells for empty values
def vmconnection_csv(day: datetime = DAY) -> str:
    header = ("TenantId,TimeGenerated [UTC],Computer,ProcessName,SourceIp,DestinationIp,DestinationPort,Protocol,"
              "RemoteIp,Direction,ConnectionId,LinksEstablished,BytesSent,BytesReceived,RemoteCountry,"
              "RemoteLatitude,RemoteLongitude,MaliciousIp,Machine,Process,SourceSystem,Type,_ResourceId,"
              "_ItemId")
    rows = [
        f"{TENANT},\"{portal(day + timedelta(hours=10))}\",web-01,nginx,10.0.0.4,10.0.0.9,5432,tcp,10.0.0.9,"
        f"outbound,\"10.0.0.4:51000,10.0.0.9:5432,tcp\",2,1024,2048,,,,,m-1a2b,p-3c4d,Insights,VMConnection,{RID},i1",
        f"{TENANT},\"{portal(day + timedelta(hours=22, minutes=5, seconds=7, milliseconds=250))}\",web-01,nginx,"
        f"203.0.113.7,10.0.0.4,443,tcp,203.0.113.7,inbound,,1,99,7,United States,37.751,-97.822,,m-1a2b,p-3c4d,"
        f"Insights,VMConnection,{RID},i2",
        f"{TENANT},\"{portal(day)}\",db-01,postgres,10.0.0.4,10.0.0.9,5432,tcp,10.0.0.4,inbound,,0,0,0,,,,,"
        f"m-5e6f,p-7a8b,Insights,VMConnection,,i3",
    ]
    return "\ufeff" + "\r\n".join([header] + rows) + "\r\n"


def query_api_json(day: datetime = DAY) -> str:
    """The Log Analytics query API's answer to `VMComputer | union VMProcess` (dynamic values as
    JSON text, as that API returns them)."""
    cols = [("TenantId", "string"), ("TimeGenerated", "datetime"), ("Computer", "string"), ("Machine", "string"),
            ("Ipv4Addresses", "dynamic"), ("Cpus", "int"), ("PhysicalMemoryMB", "long"), ("ExecutableName", "string"),
            ("Services", "dynamic"), ("FirstPid", "int"), ("Type", "string"), ("_ResourceId", "string")]
    rows = [[TENANT, iso(day + timedelta(hours=1)), "web-01", "m-1a2b", '["10.0.0.4","10.0.1.4"]', 4, 8192, "",
             None, None, "VMComputer", RID],
            [TENANT, iso(day + timedelta(hours=2)), "web-01", "m-1a2b", None, None, None, "nginx",
             '[{"ServiceName":"nginx","DisplayName":"A web server"}]', 812, "VMProcess", RID]]
    return json.dumps({"tables": [{"name": "PrimaryResult", "columns": [{"name": n, "type": t} for n, t in cols],
                                   "rows": rows}]})


def az_objects(day: datetime = DAY) -> str:
    """`az monitor log-analytics query` output: a list of objects, every value a string."""
    return json.dumps([
        {"TenantId": TENANT, "TimeGenerated": iso(day + timedelta(hours=3)), "Computer": "web-01", "Machine": "m-1a2b",
         "Process": "p-3c4d", "Ip": "0.0.0.0", "Port": "443", "Protocol": "tcp", "IsWildcardBind": "True",
         "BytesSent": "100", "Type": "VMBoundPort", "TableName": "PrimaryResult"},
        {"TenantId": TENANT, "TimeGenerated": iso(day + timedelta(hours=3)), "Computer": "db-01", "Machine": "m-5e6f",
         "Process": "p-7a8b", "Ip": "10.0.0.9", "Port": "5432", "Protocol": "tcp", "IsWildcardBind": "False",
         "BytesSent": "", "Type": "VMBoundPort", "TableName": "PrimaryResult"},
    ], indent=2)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("exports")
    (d / "VMConnection.csv").write_text(vmconnection_csv(), encoding="utf-8", newline="")
    (d / "query-result.json").write_text(query_api_json())
    (d / "ports.json").write_text(az_objects())
    # no Type column: the table comes from the file name
    (d / "VMBoundPort.csv").write_text(f"TimeGenerated,Computer,Port,Ip\n{iso(DAY)},edge-01,22,0.0.0.0\n")
    return d


def test_the_portal_csv_is_imported_with_its_values(files, tmp_path, capsys):
    data = tmp_path / "ws"
    assert main(["import", "--data", str(data), str(files / "VMConnection.csv")]) == 0
    out = capsys.readouterr()
    assert "VMConnection: 3 rows read, 3 stored in 1 batches" in out.out
    assert "TenantId (3 values), _ItemId (3 values)" in out.out
    assert out.err == ""
    with netatlas.connect(data) as ws:
        r = ws.query("VMConnection | order by TimeGenerated asc | project TimeGenerated, Computer, Direction, "
                     "DestinationPort, BytesSent, RemoteCountry, RemoteLatitude, ConnectionId, _ResourceId, Type")
        assert [row[0] for row in r.rows] == [DAY, DAY + timedelta(hours=10),
                                              DAY + timedelta(hours=22, minutes=5, seconds=7, milliseconds=250)]
        assert r.rows[1][1:] == ["web-01", "outbound", 5432, 1024, "", None, "10.0.0.4:51000,10.0.0.9:5432,tcp",
                                 RID, "VMConnection"]
        assert r.rows[2][1:7] == ["web-01", "inbound", 443, 99, "United States", 37.751]
        # a row without _ResourceId gets the workspace's own, as any ingested row does
        assert r.rows[0][8].endswith("/machines/db-01")
    # again: the same batch ids, nothing stored twice
    assert main(["import", "--data", str(data), str(files / "VMConnection.csv")]) == 0
    assert "0 stored in 1 batches, 1 of 1 batches imported before" in capsys.readouterr().out
    with netatlas.connect(data) as ws:
        assert ws.query("VMConnection | count").rows == [[3]]


def test_the_query_api_json_is_routed_by_type(files, tmp_path, capsys):
    data = tmp_path / "ws"
    assert main(["import", "--data", str(data), "--format-output", "json", str(files / "query-result.json")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["format"] == "query-api"
    assert {t: s["stored"] for t, s in report["tables"].items()} == {"VMComputer": 1, "VMProcess": 1}
    with netatlas.connect(data) as ws:
        assert ws.query("VMComputer | project Ipv4Addresses, Cpus, PhysicalMemoryMB").rows == \
            [[["10.0.0.4", "10.0.1.4"], 4, 8192]]
        assert ws.query("VMProcess | project ExecutableName, FirstPid, tostring(Services[0].ServiceName)").rows == \
            [["nginx", 812, "nginx"]]


def test_az_cli_objects_and_a_typeless_csv_named_for_its_table(files, tmp_path, capsys):
    data = tmp_path / "ws"
    assert main(["import", "--data", str(data), str(files / "ports.json")]) == 0
    assert "TableName (2 values)" in capsys.readouterr().out
    assert main(["import", "--data", str(data), str(files / "VMBoundPort.csv")]) == 0
    with netatlas.connect(data) as ws:
        r = ws.query("VMBoundPort | order by Port asc | project Computer, Port, IsWildcardBind, BytesSent")
        assert r.rows == [["edge-01", 22, None, None], ["web-01", 443, True, 100], ["db-01", 5432, False, None]]


def test_an_unknown_column_is_refused_naming_the_row_and_nothing_is_stored(tmp_path, capsys):
    f = tmp_path / "VMConnection.csv"
    f.write_text(f"TimeGenerated,Computer,BytesSnt\n{iso(DAY)},a,1\n{iso(DAY)},b,2\n")
    data = tmp_path / "ws"
    assert main(["import", "--data", str(data), str(f)]) == 2
    err = capsys.readouterr().err
    assert f"{f} row 1: column 'BytesSnt' is not a column of VMConnection (did you mean 'BytesSent'?)" in err
    assert "Traceback" not in err
    with netatlas.connect(data) as ws:
        assert ws.query("VMConnection | count").rows == [[0]]


@pytest.mark.parametrize("content, name, says", [
    ("TimeGenerated,Computer,BytesSent\n{t},a,1\n{t},b,lots\n", "VMConnection.csv",
     "row 2, field BytesSent (long): expected an integer, got \"lots\""),
    ("TimeGenerated,Computer\nyesterday,a\n", "VMConnection.csv", "row 1, field TimeGenerated (datetime)"),
    ("TimeGenerated [Local Time],Computer\n{t},a\n", "VMConnection.csv", "holds times in Local Time"),
    ("TimeGenerated,Computer\n{t},a\n", "export.csv", "'export' (from the file name) is not a table"),
    ("TimeGenerated,Computer,Type\n{t},a,SecurityEvent\n", "x.csv", "'SecurityEvent' (from its Type column)"),
    ('{{"value": 1}}', "x.json", "not the query API's answer"),
    ("TimeGenerated,Computer\n{t},a,extra\n", "VMConnection.csv", "row 1 (line 2): 3 values for 2 columns"),
])
def test_bad_files_are_refused_with_where_and_why(tmp_path, capsys, content, name, says):
    f = tmp_path / name
    f.write_text(content.format(t=iso(DAY)))
    assert main(["import", "--data", str(tmp_path / "ws"), str(f)]) == 2
    err = capsys.readouterr().err
    assert says in err, err
    assert "Traceback" not in err


def test_rows_older_than_retention_are_imported_with_a_warning_or_kept_with_retention(tmp_path, capsys):
    f = tmp_path / "VMConnection.csv"
    f.write_text("TimeGenerated [UTC],Computer\n\"5/1/2024, 10:00:00.000 AM\",old-01\n"
                 f"\"{portal(DAY)}\",new-01\n")
    data = tmp_path / "ws"
    assert main(["import", "--data", str(data), str(f)]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 VMConnection rows are older than the table's retention (30 days)" in err
    assert "--retention DAYS" in err
    with netatlas.connect(data) as ws:
        assert ws.query("VMConnection | where Computer == 'old-01' | project TimeGenerated").rows == \
            [[datetime(2024, 5, 1, 10, tzinfo=timezone.utc)]]
        ws.apply_retention()
        assert ws.query("VMConnection | count").rows == [[1]]
    data2 = tmp_path / "ws2"
    assert main(["import", "--data", str(data2), "--retention", "4000", str(f)]) == 0
    assert capsys.readouterr().err == ""
    with netatlas.connect(data2) as ws:
        assert ws.retention()["VMConnection"] == 4000
        ws.apply_retention()
        assert ws.query("VMConnection | count").rows == [[2]]


# ---------------------------------------------------------------- through a live server

@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("import") / "data").start()
    yield s
    s.kill()


def cli(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    for name in ("NETATLAS_QUERY_KEY", "NETATLAS_INGEST_KEY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "netatlas", *argv], capture_output=True, text=True, env=env,
                          timeout=300)


def test_import_through_a_live_server(served, files, tmp_path):
    c = served.client()
    url = f"http://127.0.0.1:{served.port}"
    for name in ("VMConnection.csv", "query-result.json", "ports.json"):
        out = cli("import", "--data", str(tmp_path / "unused"), "--server", url, "--key", c.ingest_key.secret,
                  str(files / name))
        assert out.returncode == 0, out.stderr
    r = c.query("union VMConnection, VMComputer, VMProcess, VMBoundPort | summarize count() by Type | order by Type asc")
    assert r.status == 200, r.body
    assert r.body["tables"][0]["rows"] == [["VMBoundPort", 2], ["VMComputer", 1], ["VMConnection", 3],
                                           ["VMProcess", 1]]
    out = cli("import", "--server", url, "--key", c.ingest_key.secret, str(files / "VMConnection.csv"))
    assert out.returncode == 0 and "1 of 1 batches imported before" in out.stdout
    assert c.count("VMConnection", "web-01") == 2


def test_through_a_server_a_bad_row_and_a_bad_key_are_named(served, tmp_path):
    c = served.client()
    url = f"http://127.0.0.1:{served.port}"
    f = tmp_path / "VMProcess.csv"
    f.write_text(f"TimeGenerated,Computer,FirstPid\n{iso(DAY)},p1,1\n{iso(DAY)},p2,1.5\n")
    out = cli("import", "--server", url, "--key", c.ingest_key.secret, str(f))
    assert out.returncode == 2
    assert f"{f} row 2, field FirstPid (int): expected a 32-bit integer" in out.stderr, out.stderr
    out = cli("import", "--server", url, "--key", c.query_key.secret, str(f))
    # a query secret is no signing key (the server keeps only its hash): the signature matches no key
    assert out.returncode == 1 and "403 AUTH_BAD_SIGNATURE" in out.stderr and "Traceback" not in out.stderr


def test_through_a_server_with_retention_and_the_keys_of_its_directory(served, tmp_path):
    """With server.json in DIR, the import finds the server, DIR/workspace.json's ingest key and the
    server's local token; with --retention the token raises the table's retention before the rows arrive."""
    f = tmp_path / "ServiceMapComputer_CL.csv"
    f.write_text("TimeGenerated [UTC],Computer\n\"5/1/2024, 10:00:00.000 AM\",old-smc\n")
    info = served.data / "server.json"
    original = info.read_text()
    info.write_text(json.dumps({"url": f"http://127.0.0.1:{served.port}", "pid": served.proc.pid,
                                "token": json.loads(original)["token"]}))
    try:
        out = cli("import", "--data", str(served.data), str(f))
        # a server refuses a TimeGenerated older than the table's retention (issue 11, item 4)
        assert out.returncode == 2, out.stderr
        assert "row 1, field TimeGenerated" in out.stderr and "older than the table's retention" in out.stderr
        out = cli("import", "--data", str(served.data), "--retention", "1000", str(f))
        assert out.returncode == 0 and out.stderr == "", out.stderr
    finally:
        info.write_text(original)
    r = served.client().call("GET", "/api/retention")
    assert r.body["tables"]["ServiceMapComputer_CL"] == 1000


def test_batches_over_the_servers_body_limit_are_split(tmp_path):
    s = Server(tmp_path / "small", "--max-body-bytes", "8192").start()
    try:
        c = s.client()
        f = tmp_path / "VMConnection.csv"
        f.write_text("TimeGenerated,Computer,ProcessName,BytesSent\n" +
                     "".join(f"{iso(DAY)},split-01,{'p' * 40}-{i},{i}\n" for i in range(300)))
        args = ("import", "--server", f"http://127.0.0.1:{s.port}", "--key", c.ingest_key.secret,
                "--format-output", "json", str(f))
        out = cli(*args)
        assert out.returncode == 0, out.stderr
        stats = json.loads(out.stdout)["tables"]["VMConnection"]
        assert stats["stored"] == 300 and stats["batches"] > 2
        assert c.count("VMConnection", "split-01") == 300
        again = json.loads(cli(*args).stdout)["tables"]["VMConnection"]
        assert again["stored"] == 0 and again["duplicate_batches"] == again["batches"] == stats["batches"]
        assert c.count("VMConnection", "split-01") == 300
    finally:
        s.kill()
