"""A workspace whose tables live in ClickHouse (``--store chdb``): ingestion through the outbox
(store/outbox.py), the choice of store kept with the workspace, and what waits in the outbox when
the store refuses or the process stops.

Every test opens real workspaces in temporary directories: DuckDB beside chdb (ClickHouse's
engine in-process), the same batches into both, the same answers expected.
"""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas import threatintel as ti
from netatlas.store import StoreError
from netatlas.workspace import Workspace

pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed: pip install -e '.[clickhouse]'")

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)


def records(n: int, offset: int = 0, remote: str = "8.8.8.8") -> list[dict]:
    return [{"TimeGenerated": (NOW - timedelta(minutes=(i % 90) + 1)).isoformat(), "Computer": f"web-{i % 3}",
             "Machine": f"m-{i % 3}", "ProcessName": "nginx", "Direction": "outbound", "RemoteIp": remote,
             "DestinationPort": 443, "BytesSent": offset + i, "BytesReceived": 7, "LinksEstablished": 1,
             "Protocol": "tcp"} for i in range(n)]


def rows(ws, kql: str) -> list:
    return ws.query(kql).rows


CONNECTIONS = "VMConnection | order by BytesSent asc"      # every column: enriched ones, _BilledSize, ...
USAGE = "Usage | summarize mb = sum(Quantity) by DataType, bin(TimeGenerated, 1h) | order by TimeGenerated asc"


@pytest.fixture
def chdb_ws(tmp_path):
    ws = Workspace(tmp_path / "ch", store="chdb")
    yield ws
    ws.close()


def test_a_chdb_workspace_stores_and_answers_what_a_duckdb_one_does(tmp_path, chdb_ws):
    """The same batches (JSON over the group committer, records, a frame), enriched the same
    (geolocation, threat intelligence, Azure's columns), billed the same in Usage."""
    duck = Workspace(tmp_path / "duck")
    try:
        stix = ti.parse(json.dumps({"type": "bundle", "objects": [
            {"type": "indicator", "id": "indicator--1", "pattern": "[ipv4-addr:value = '198.18.0.1']",
             "valid_from": "2026-01-01T00:00:00Z", "labels": ["malicious-activity"]}]}), "stix", source="stix")[0]
        for ws in (duck, chdb_ws):
            ws.import_indicators(stix, "stix")
            assert ws.ingest_json("VMConnection", json.dumps(records(40)).encode(), batch_id="b-1").records == 40
            assert ws.ingest("VMConnection", records(5, 1000, "198.18.0.1"), batch_id="b-2").records == 5
            assert ws.ingest_json("VMConnection", json.dumps(records(40)).encode(), batch_id="b-1").duplicate
        assert chdb_ws.store_name == "chdb" and duck.store_name == "duckdb"
        got, want = chdb_ws.query(CONNECTIONS), duck.query(CONNECTIONS)
        assert len(got.rows) == 45 and got.columns == want.columns and got.rows == want.rows
        by = {r[got.columns.index("BytesSent")]: dict(zip(got.columns, r)) for r in got.rows}
        assert by[1000]["MaliciousIp"] == "198.18.0.1" and by[0]["RemoteCountry"]    # enriched
        assert rows(chdb_ws, USAGE) == rows(duck, USAGE)
        assert rows(chdb_ws, "ThreatIntelligenceIndicator | count") == [[1]]
        # nothing of it in the DuckDB database's own tables: it went to ClickHouse
        assert chdb_ws.connection.execute('SELECT count(*) FROM "VMConnection"').fetchone() == (0,)
        assert chdb_ws.remote.store.count("VMConnection") == 45
        assert chdb_ws.outbox.waiting(chdb_ws.connection) == 0
    finally:
        duck.close()


def test_the_store_is_kept_with_the_workspace(tmp_path):
    data = tmp_path / "ws"
    with Workspace(data, store="chdb") as ws:
        ws.ingest("VMConnection", records(3))
    with Workspace(data) as ws:                         # no --store: the one it was created with
        assert ws.store_name == "chdb" and rows(ws, "VMConnection | count") == [[3]]
    with pytest.raises(StoreError, match=r"keeps its tables in chdb:.*not duckdb"):
        Workspace(data, store="duckdb")
    with Workspace(tmp_path / "duck") as ws:            # a DuckDB workspace holding rows stays DuckDB
        ws.ingest("VMConnection", records(1))
    with pytest.raises(StoreError, match=r"keeps its tables in duckdb, not chdb:"):
        Workspace(tmp_path / "duck", store="chdb")
    with Workspace(tmp_path / "empty"):                 # ... an empty one may move
        pass
    with Workspace(tmp_path / "empty", store="chdb") as ws:
        assert ws.store_name == "chdb"


def test_a_refused_forward_waits_in_the_outbox_and_goes_with_the_next_batch(chdb_ws):
    """The store refuses (here its table is gone): the batch is acknowledged all the same, its rows
    durable in the outbox; the next batch once the store is back takes them along."""
    chdb_ws.remote.store.execute('DROP TABLE "VMConnection"')
    report = chdb_ws.ingest_json("VMConnection", json.dumps(records(10)).encode(), batch_id="a")
    assert report.records == 10 and not report.duplicate
    # its 10 rows wait, and the Usage bytes of the hours they fall in (one or two rows)
    assert chdb_ws.outbox.waiting(chdb_ws.connection) in (11, 12) and chdb_ws.outbox.behind
    chdb_ws.remote.store.create_tables(chdb_ws.catalogue, chdb_ws.retention())
    chdb_ws.ingest_json("VMConnection", json.dumps(records(5, 100)).encode(), batch_id="b")
    assert rows(chdb_ws, "VMConnection | count") == [[15]]
    assert chdb_ws.outbox.waiting(chdb_ws.connection) == 0


def test_what_a_stopped_process_left_in_the_outbox_is_forwarded_at_the_next_open_once(tmp_path):
    """A process stopped after its commit (rows in the outbox) and one stopped after the append but
    before taking the rows out of the outbox (the store has them): the next open forwards the
    first and stores the second once (the group id is the store's deduplication token)."""
    data = tmp_path / "ws"
    ws = Workspace(data, store="chdb")
    ws.remote.store.execute('DROP TABLE "VMConnection"')
    ws.ingest("VMConnection", records(10), batch_id="one")
    ws.ingest("VMConnection", records(4, 50), batch_id="two")
    ws.remote.store.create_tables(ws.catalogue, ws.retention())
    con = ws.connection
    groups = [g for (g,) in con.execute('SELECT DISTINCT "__group" FROM "_outbox_VMConnection" ORDER BY 1').fetchall()]
    assert len(groups) == 2
    staged = con.sql('SELECT * EXCLUDE ("__group") FROM "_outbox_VMConnection" WHERE "__group" = ?',
                     params=[groups[0]]).to_arrow_table()
    ws.remote.store.append("VMConnection", staged, batch_id=groups[0])     # appended, not yet taken out
    ws.close()
    with Workspace(data) as again:
        assert again.outbox.waiting(again.connection) == 0
        assert rows(again, "VMConnection | count") == [[14]]
        assert rows(again, "VMConnection | summarize dcount(BytesSent)") == [[14]]
        assert again.ingest("VMConnection", records(10), batch_id="one").duplicate     # its id still known


def test_batches_from_many_threads_are_all_stored_once(chdb_ws):
    """Batches posted side by side (the group committer's path, each group forwarded before its
    batches are answered): every record arrives once, none waits in the outbox."""
    import threading
    def post(i):
        chdb_ws.ingest_json("VMConnection", json.dumps(records(25, 1000 * i)).encode(), batch_id=f"t{i}")
    threads = [threading.Thread(target=post, args=(i,)) for i in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert rows(chdb_ws, "VMConnection | count") == [[600]]
    assert rows(chdb_ws, "VMConnection | summarize dcount(BytesSent)") == [[600]]
    assert chdb_ws.outbox.waiting(chdb_ws.connection) == 0


def test_retention_is_the_stores_ttl(chdb_ws):
    chdb_ws.set_retention("VMConnection", 7)
    chdb_ws.set_retention("Usage", 90)
    ddl = dict(chdb_ws.remote.store.fetch(
        f"SELECT name, create_table_query FROM system.tables WHERE database = '{chdb_ws.remote.store.database}'"))
    assert "toDateTime(TimeGenerated) + toIntervalDay(7)" in ddl["VMConnection"]
    assert "toDateTime(hour) + toIntervalDay(90)" in ddl["_netatlas_usage"]
    assert chdb_ws.retention()["VMConnection"] == chdb_ws.remote.retention()["VMConnection"] == 7


def test_the_demo_s_records_are_deleted_from_the_store(chdb_ws):
    from netatlas.demo.remove import delete_records

    class Marker:
        machine_ids, computers = ["m-1"], ["web-1"]
    chdb_ws.ingest("VMConnection", records(9))
    assert delete_records(chdb_ws, Marker()) == {"VMConnection": 3}
    assert rows(chdb_ws, "VMConnection | summarize count() by Machine | order by Machine asc") == [["m-0", 3], ["m-2", 3]]


def test_the_demo_s_bytes_leave_usage_in_both_stores_alike(tmp_path):
    """Deleting machines' records (``netatlas demo remove``) takes the bytes they were billed out of
    Usage, on ClickHouse as on DuckDB: by _BilledSize, and for the ServiceMap tables (which have
    none) by the size ingestion gave them; Usage is then the same in both."""
    import netatlas.demo
    from netatlas.demo.remove import delete_records
    end = datetime.now(timezone.utc).replace(second=0, microsecond=0) - timedelta(hours=1)
    usage = "Usage | summarize b = round(sum(Quantity) * 1000000) by DataType | order by DataType asc"
    with Workspace(tmp_path / "duck") as duck, Workspace(tmp_path / "ch", store="chdb") as ch:
        for ws in (duck, ch):
            netatlas.demo.generate(ws, machines=netatlas.demo.MIN_MACHINES, days=1, end=end)
        before = rows(duck, usage)
        assert rows(ch, usage) == before
        picked = rows(duck, "VMComputer | summarize by Machine, Computer | order by Machine asc | take 3")

        class Marker:
            machine_ids, computers = [m for m, _ in picked], [c for _, c in picked]
        gone = delete_records(duck, Marker())
        assert delete_records(ch, Marker()) == gone and {"VMConnection", "ServiceMapComputer_CL"} <= set(gone)
        after = rows(duck, usage)
        assert rows(ch, usage) == after
        lost = {t for (t, b0), (_, b1) in zip(before, after) if b1 < b0}
        assert set(gone) <= lost


def test_chdb_needs_a_directory():
    with pytest.raises(StoreError, match="chdb needs a directory"):
        netatlas.connect(None, store="chdb")
