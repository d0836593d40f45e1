"""Hostile and faulty ingestion (issue 11, items 3, 4, 15, 17), against the real server on loopback.

- 3  a gzip bomb (without Content-Encoding, or gzip inside gzip) is inflated a chunk at a time up to
     max_body_bytes (413 naming the limit) and one layer only (400);
- 4  a datetime outside its window (year 10000, more than a day ahead, older than the retention) is
     refused naming record and field; rows already stored so do not break a query or view, and the
     next retention pass removes them;
- 15 an integer column refuses 3.5 and true (instead of storing 4 and 1), naming record and field;
- 17 Azure's Data Collector limits: 30 MB a post (413), 32 KB a string field (cut, counted), 500
     fields a record (400).
"""
from __future__ import annotations

import gzip
import json
from datetime import timedelta

import pytest

import netatlas
from netatlas import webmap
from netatlas.ingest import MAX_FIELD_BYTES, MAX_FIELDS, MAX_POST_BYTES
from test_server import Server, assert_error_shape, now, records, request, unique

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A server with the default settings (max_body_bytes: Azure's 30 MB)."""
    s = Server(tmp_path_factory.mktemp("hardening") / "data", "--retention-interval", "100000").start()
    yield s
    s.kill()


@pytest.fixture
def client(server):
    return server.client()


def whitespace_array(size: int) -> bytes:
    """A valid JSON body of ``size`` bytes (an empty array padded with spaces): it compresses ~1000:1."""
    return b"[" + b" " * (size - 2) + b"]"


# ---------------------------------------------------------------- 3. gzip bomb

def test_a_gzip_bomb_sent_without_content_encoding_is_413(client):
    bomb = gzip.compress(whitespace_array(MAX_POST_BYTES * 4), 9)
    assert len(bomb) < MiB
    err = assert_error_shape(client.ingest("VMConnection", body=bomb), 413, "INGEST_TOO_LARGE")
    assert err["limit"] == MAX_POST_BYTES and str(MAX_POST_BYTES) in err["message"]


def test_a_body_gzipped_twice_is_refused(client):
    computer = unique()
    inner = gzip.compress(json.dumps(records(computer, 2)).encode())
    # declared gzip: the server inflates one layer, and finds gzip again
    assert_error_shape(client.ingest("VMConnection", body=inner, gzipped=True), 400, "NESTED_GZIP")
    # undeclared: ingest.decode sniffs the magic, inflates one layer, and finds gzip again
    assert_error_shape(client.ingest("VMConnection", body=gzip.compress(inner)), 400, "INGEST_NESTED_GZIP")
    # a bomb inside gzip: refused after the first (small) layer, never inflated
    bomb = gzip.compress(whitespace_array(MAX_POST_BYTES * 4), 9)
    assert_error_shape(client.ingest("VMConnection", body=bomb, gzipped=True), 400, "NESTED_GZIP")
    assert client.count("VMConnection", computer) == 0


def test_one_layer_of_gzip_without_content_encoding_is_still_stored(client):
    computer = unique()
    r = client.ingest("VMConnection", body=gzip.compress(json.dumps(records(computer, 3)).encode()))
    assert r.status == 200 and r.body["records"] == 3, r.body
    assert client.count("VMConnection", computer) == 3


# ---------------------------------------------------------------- 4. poison timestamps

@pytest.mark.parametrize("field, value", [
    ("TimeGenerated", "10000-01-01T00:00:00Z"),
    ("TimeGenerated", "future"),
    ("TimeGenerated", "expired"),
])
def test_a_datetime_outside_its_window_is_refused_naming_record_and_field(client, field, value):
    value = {"future": now(timedelta(days=2)), "expired": now(-timedelta(days=31))}.get(value, value)
    computer = unique()
    batch = records(computer, 3)
    batch[2][field] = value
    err = assert_error_shape(client.ingest("VMConnection", batch), 400, "INGEST_DATETIME_RANGE")
    assert (err["record"], err["field"]) == (2, field), err
    assert "record 2" in err["message"] and field in err["message"]
    assert client.count("VMConnection", computer) == 0


def test_every_datetime_column_is_checked(client):
    computer = unique()
    batch = [{"TimeGenerated": now(), "Computer": computer, "BootTime": now(-timedelta(days=400))},
             {"TimeGenerated": now(), "Computer": computer, "BootTime": "10000-01-01T00:00:00Z"}]
    err = assert_error_shape(client.ingest("VMComputer", batch), 400, "INGEST_DATETIME_RANGE")
    assert (err["record"], err["field"]) == (1, "BootTime"), err
    # a boot long ago (older than the retention) is a fact, not a bad value
    assert client.ingest("VMComputer", batch[:1]).status == 200


def test_a_datetime_within_the_window_is_stored(client):
    computer = unique()
    batch = records(computer, 2)
    batch[0]["TimeGenerated"] = now(timedelta(hours=23))
    batch[1]["TimeGenerated"] = now(-timedelta(days=29))
    r = client.ingest("VMConnection", batch)
    assert r.status == 200 and r.body["records"] == 2, r.body


POISON = "TIMESTAMP '10000-01-01 00:00:00'"


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory):
    """A workspace holding rows dated in year 10000, written to its DuckDB file directly (as a
    workspace from before the ingestion check may hold them), then served."""
    data = tmp_path_factory.mktemp("poisoned") / "data"
    ws = netatlas.connect(data)
    ws.ingest("VMConnection", [{"TimeGenerated": now(), "Computer": "good", "Machine": "m-good",
                                "Direction": "outbound", "RemoteIp": "10.0.0.2", "BytesSent": 1}])
    for table in ("VMConnection", "VMComputer", "VMProcess", "VMBoundPort"):
        ws.connection.execute(f'INSERT INTO "{table}" (TimeGenerated, Computer, Machine, _BilledSize) '
                              f"VALUES ({POISON}, 'poison', 'm-poison', 10)")
    ws.connection.execute(f"INSERT INTO _netatlas_usage VALUES ({POISON}, 'VMConnection', 'VMInsights', 10)")
    # dated now, so retention keeps it: its BootTime (year 10000) stays while the server answers
    ws.connection.execute(f'INSERT INTO "VMComputer" (TimeGenerated, Computer, Machine, BootTime, _BilledSize) '
                          f"VALUES (now()::TIMESTAMP, 'boot-poison', 'm-boot', {POISON}, 10)")
    ws.close()
    s = Server(data, "--retention-interval", "100000").start()
    yield s
    s.kill()


def test_stored_poison_rows_break_no_query_or_view_and_retention_removes_them(poisoned):
    c = poisoned.client()
    # the server's first retention pass (at start) repairs the workspace; before the fix the rows
    # stayed and every one of these answered 500 (the answers with the rows still there:
    # test_a_poisoned_workspace_answers_before_its_repair)
    queries = ["VMConnection | order by TimeGenerated desc | take 5",
               "VMConnection | summarize arg_max(TimeGenerated, *) by Computer",
               "VMConnection | summarize max(TimeGenerated)", "Usage | order by TimeGenerated desc",
               "union VMComputer, VMProcess, VMBoundPort | project TimeGenerated, Computer"]
    for q in queries:
        r = c.query(q)
        assert r.status == 200, (q, r.body)
    for path in ("/api/machines", "/api/usage", "/api/map?group=all"):
        r = c.call("GET", path)
        assert r.status == 200, (path, r.body)
    r = c.query("union VMConnection, VMComputer, VMProcess, VMBoundPort | where Computer == 'poison' | count")
    assert r.body["tables"][0]["rows"] == [[0]]      # removed by the retention pass at start
    assert c.query("Usage | where isnull(TimeGenerated) | count").body["tables"][0]["rows"] == [[0]]
    assert c.query("VMConnection | where Computer == 'good' | count").body["tables"][0]["rows"] == [[1]]


def test_a_stored_datetime_beyond_year_9999_answers_null_through_the_server(poisoned):
    """A datetime column retention does not look at (BootTime) holds year 10000: queries over it and
    the machine views answer (the value as null, as Kusto has no such datetime), never 500."""
    c = poisoned.client()
    for q in ['VMComputer | where Computer == "boot-poison" | project BootTime',
              "VMComputer | order by BootTime desc | take 3 | project Computer, BootTime",
              "VMComputer | summarize arg_max(BootTime, *)", "VMComputer | summarize max(BootTime)"]:
        r = c.query(q)
        assert r.status == 200, (q, r.body)
    rows = c.query('VMComputer | where Computer == "boot-poison" | project BootTime').body["tables"][0]["rows"]
    assert rows == [[None]]
    r = c.call("GET", "/api/machines")
    assert r.status == 200 and "boot-poison" in json.dumps(r.body), r.body


def test_retention_removes_rows_dated_beyond_tomorrow(tmp_path):
    ws = netatlas.connect(tmp_path / "data")
    try:
        ws.ingest("VMConnection", records("good", 1))
        ws.connection.execute(f"INSERT INTO \"VMConnection\" (TimeGenerated, Computer) VALUES ({POISON}, 'poison')")
        ws.connection.execute("INSERT INTO \"VMConnection\" (TimeGenerated, Computer) "
                              "VALUES (now()::TIMESTAMP + INTERVAL 3 DAY, 'poison')")
        ws.connection.execute(f"INSERT INTO _netatlas_usage VALUES ({POISON}, 'VMConnection', 'VMInsights', 10)")
        assert ws.apply_retention() == {"VMConnection": 2, "Usage": 1}
        assert ws.query("VMConnection | summarize by Computer").rows == [["good"]]
    finally:
        ws.close()


def test_a_poisoned_workspace_answers_before_its_repair(tmp_path):
    """Without a retention pass (the rows arrived after it), queries still answer: null datetimes."""
    ws = netatlas.connect(tmp_path / "data")
    try:
        ws.connection.execute(f"INSERT INTO \"VMConnection\" (TimeGenerated, Computer) VALUES ({POISON}, 'poison')")
        ws.connection.execute(f"INSERT INTO \"VMComputer\" (TimeGenerated, Computer, Machine, _BilledSize) "
                              f"VALUES ({POISON}, 'poison', 'm-poison', 10)")
        ws.connection.execute(f"INSERT INTO _netatlas_usage VALUES ({POISON}, 'VMConnection', 'VMInsights', 10)")
        assert ws.query("VMConnection | order by TimeGenerated desc | project TimeGenerated, Computer").rows == \
            [[None, "poison"]]
        assert ws.query("VMConnection | summarize arg_max(TimeGenerated, Computer)").rows == [[None, "poison"]]
        assert webmap.usage(ws, 7)["days"] == []          # GET /api/usage
        assert webmap.find_machines(ws)["machines"] == [{"id": "m-poison", "computer": "poison", "os": "",
                                                        "ips": [], "tags": {}}]   # GET /api/machines
    finally:
        ws.close()


# ---------------------------------------------------------------- 15. silent coercion

@pytest.mark.parametrize("table, field, value", [
    ("VMConnection", "BytesSent", 3.5),        # long
    ("VMConnection", "BytesSent", True),
    ("VMConnection", "DestinationPort", 80.5),  # int
    ("VMConnection", "DestinationPort", False),
])
def test_an_integer_column_refuses_fractions_and_booleans(client, table, field, value):
    computer = unique()
    batch = records(computer, 3)
    batch[1][field] = value
    err = assert_error_shape(client.ingest(table, batch), 400, "INGEST_TYPE")
    assert (err["record"], err["field"]) == (1, field), err
    assert client.count(table, computer) == 0


def test_an_integer_column_still_takes_whole_numbers(client):
    computer = unique()
    batch = records(computer, 2)
    batch[0].update(BytesSent=2 ** 40, DestinationPort=443)
    batch[1].update(BytesSent=7.0, DestinationPort=None)
    assert client.ingest("VMConnection", batch).status == 200
    r = client.query(f'VMConnection | where Computer == "{computer}" | order by BytesSent asc '
                     f'| project BytesSent, DestinationPort')
    assert r.body["tables"][0]["rows"] == [[7, None], [2 ** 40, 443]]


# ---------------------------------------------------------------- 17. Azure's limits

def test_a_post_over_30_mb_is_413(client):
    body = whitespace_array(MAX_POST_BYTES + 1)
    assert MAX_POST_BYTES == 30 * MiB
    err = assert_error_shape(client.ingest("VMConnection", body=body), 413, "BODY_TOO_LARGE")
    assert err["limit"] == MAX_POST_BYTES
    # and one just under it is taken
    r = client.ingest("VMConnection", body=whitespace_array(MAX_POST_BYTES))
    assert r.status == 200 and r.body["records"] == 0, r.body


def metric(server, name: str, table: str) -> float:
    text = request(server.port, "GET", "/metrics").body
    for line in text.splitlines():
        if line.startswith(f'{name}{{table="{table}"}}'):
            return float(line.split()[-1])
    return 0.0


def test_a_string_over_32_kb_is_truncated_and_counted(server, client):
    computer = unique()
    before = metric(server, "netatlas_fields_truncated_total", "VMConnection")
    batch = records(computer, 3)
    batch[0]["ProcessName"] = "é" * 20_000                    # 40,000 bytes: cut at 32,768 (16,384 é)
    batch[1]["ProcessName"] = "a" * (MAX_FIELD_BYTES + 1)     # one byte over
    batch[2]["ProcessName"] = "b" * MAX_FIELD_BYTES           # at the limit: kept whole
    r = client.ingest("VMConnection", batch, gzipped=True)
    assert r.status == 200 and r.body["truncated"] == 2, r.body
    q = client.query(f'VMConnection | where Computer == "{computer}" | project n = strlen(ProcessName) | order by n asc')
    assert q.body["tables"][0]["rows"] == [[MAX_FIELD_BYTES // 2], [MAX_FIELD_BYTES], [MAX_FIELD_BYTES]]
    assert metric(server, "netatlas_fields_truncated_total", "VMConnection") == before + 2


def test_a_record_of_more_than_500_fields_is_refused(client):
    record = {"TimeGenerated": now(), **{f"f{i}": i for i in range(MAX_FIELDS)}}
    err = assert_error_shape(client.ingest("VMConnection", [records(unique(), 1)[0], record]), 400,
                             "INGEST_TOO_MANY_FIELDS")
    assert err["record"] == 1 and "500" in err["message"]
