"""VMConnection's hourly rollup (netatlas/rollup.py): always what VMConnection's rows give, through
every path that writes or deletes them, and the map read through it is the map read from the rows.

The rollup is checked against the rows themselves: its rows merged per hour and key equal the
rows' sums per hour and key computed afresh (``assert_exact``)."""
from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
import netatlas.demo
from netatlas import migrate, rollup, webmap
from netatlas import threatintel as ti
from netatlas.demo import remove as demo_remove
from netatlas.errors import KqlError

END = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)


def _rows(con, sql: str) -> list[tuple]:
    return sorted(con.execute(sql).fetchall(), key=repr)


def assert_exact(ws) -> int:
    """The rollup merged per hour and key equals VMConnection's rows summed per hour and key;
    returns the hours and keys."""
    con = ws._new_cursor()
    try:
        have = _rows(con, rollup._merged("true"))
        want = _rows(con, rollup._rolled(rollup.SOURCE))
    finally:
        con.close()
    assert len(have) == len(want)
    assert have == want
    return len(want)


def rollup_rows(ws) -> int:
    return ws.connection.execute(f"SELECT count(*) FROM {rollup.TABLE}").fetchone()[0]


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A 20-machine demo of two days, loaded once (frames: ingest_frame) and copied per test."""
    path = tmp_path_factory.mktemp("rollup-demo")
    ws = netatlas.connect(path)
    try:
        netatlas.demo.generate(ws, machines=20, days=2, seed=1, end=END)
        for table in ws.catalogue.names():
            ws.set_retention(table, 4000)
    finally:
        ws.close()
    return path


@pytest.fixture
def demo(demo_dir, tmp_path):
    import shutil
    target = tmp_path / "ws"
    shutil.copytree(demo_dir, target)
    ws = netatlas.connect(target)
    yield ws
    ws.close()


def record(t: datetime, machine: str = "m-1", process: str = "p-1", remote: str = "10.9.0.2", port: int = 443,
           **measures) -> dict:
    return {"TimeGenerated": t.isoformat().replace("+00:00", "Z"), "Computer": f"{machine}.lab", "Machine": machine,
            "Process": process, "ProcessName": "curl", "Direction": "outbound", "SourceIp": "10.9.0.1",
            "DestinationIp": remote, "RemoteIp": remote, "DestinationPort": port, "Protocol": "tcp",
            "LinksEstablished": 1, "LinksFailed": 0, "LinksLive": 1, "LinksTerminated": 0, "BytesSent": 100,
            "BytesReceived": 200, "Responses": 2, "ResponseTimeSum": 30, "ResponseTimeMin": 10,
            "ResponseTimeMax": 20, **measures}


# ---- kept at ingestion ------------------------------------------------------------------------

def test_the_demo_load_keeps_the_rollup_exact_and_smaller(demo):
    keys = assert_exact(demo)
    rows = demo.connection.execute("SELECT count(*) FROM VMConnection").fetchone()[0]
    assert 0 < keys < rows / 2, (keys, rows)


@pytest.mark.parametrize("arrow", [True, False], ids=["pyarrow", "without pyarrow"])
def test_each_ingestion_path_adds_its_batch(tmp_path, monkeypatch, arrow):
    """Records (ingest), the group committer (ingest_json); frames (ingest_frame) load the demo
    above. pyarrow is optional (the clickhouse extra): without it DuckDB sums the numpy columns."""
    monkeypatch.setattr(rollup, "HAVE_ARROW", arrow)
    t = datetime(2024, 5, 1, 10, 20, tzinfo=timezone.utc)
    with netatlas.connect(tmp_path / "ws") as ws:
        ws.set_retention("VMConnection", 4000)
        ws.ingest("VMConnection", [record(t), record(t + timedelta(minutes=1), BytesSent=5, LinksFailed=None, LinksLive=None),
                                   record(t + timedelta(hours=1), remote="10.9.0.3")])
        ws.ingest_json("VMConnection", json.dumps([record(t + timedelta(minutes=5), LinksFailed=1),
                                                   record(t + timedelta(minutes=6), process="p-2")]))
        assert assert_exact(ws) == 3            # (10:00, p-1), (10:00, p-2), (11:00, p-1 to .3)
        assert rollup_rows(ws) == 4             # one row per batch, hour and key until compacted
        row = ws.connection.execute(
            f"SELECT sum(Links), sum(Failed), sum(Sent), sum(Records) FROM {rollup.TABLE} WHERE Process = 'p-1' "
            f"AND RemoteIp = '10.9.0.2'").fetchone()
        assert row == (3, 1, 100 + 5 + 100, 3)


def test_a_malicious_remote_is_counted_as_ingestion_flagged_it(tmp_path):
    t = datetime(2024, 5, 1, 10, 20, tzinfo=timezone.utc)
    with netatlas.connect(tmp_path / "ws") as ws:
        ws.set_retention("VMConnection", 4000)
        ws.import_indicators(ti.parse("203.0.113.66\n", "list", source="t")[0], "t")
        ws.ingest("VMConnection", [record(t, remote="203.0.113.66"), record(t, remote="203.0.113.67")])
        assert ws.connection.execute(f"SELECT sum(Malicious) FROM {rollup.TABLE}").fetchone()[0] == 1
        assert_exact(ws)


def test_a_sum_past_a_long_is_kept_as_null_and_the_batch_is_stored(tmp_path):
    """A hostile batch whose bytes overflow a long in one hour is not refused for the rollup's sake."""
    t = datetime(2024, 5, 1, 10, 20, tzinfo=timezone.utc)
    huge = 2 ** 63 - 1
    with netatlas.connect(tmp_path / "ws") as ws:
        ws.set_retention("VMConnection", 4000)
        report = ws.ingest("VMConnection", [record(t, BytesSent=huge), record(t + timedelta(minutes=1), BytesSent=huge)])
        assert report.records == 2
        sent, links = ws.connection.execute(f"SELECT Sent, Links FROM {rollup.TABLE}").fetchone()
        assert sent is None and links == 2


def test_a_batch_summed_in_arrow_is_what_the_sql_gives():
    """``rollup.summed`` (Arrow, at ingestion) and ``_rolled`` (DuckDB SQL: rebuilds, migration)
    agree: nulls in a sum, the latest record's LinksLive null, malicious rows, names and an
    empty country; across two hours."""
    import pyarrow as pa
    from netatlas.store.duckdb import scratch
    t = datetime(2024, 5, 1, 10, 58)
    rows = [dict(TimeGenerated=t + timedelta(minutes=i), Machine="m-1", Computer="a.lab", Process=f"p-{i % 2}",
                 ProcessName="curl", Direction="outbound", RemoteIp="10.0.0.9", DestinationPort=443,
                 LinksEstablished=i, LinksFailed=None if i < 3 else 1, BytesSent=10 * i, BytesReceived=7,
                 Responses=i % 3, ResponseTimeSum=5, MaliciousIp="10.0.0.9" if i == 4 else "",
                 LinksLive=None if i == 5 else i, RemoteDnsQuestions=f"h{i}.lab", RemoteCountry="" if i % 2 else "NL")
            for i in range(6)]
    batch = pa.Table.from_pylist(rows).cast(pa.schema(
        [(c, {"int": pa.int32(), "long": pa.int64(), "datetime": pa.timestamp("us"), "string": pa.string()}[typ])
         for c, typ in ((c, rollup_type(c)) for c in rows[0])]))
    con = scratch()
    con.register("batch", batch)
    want = sorted(con.execute(rollup._rolled("batch")).fetchall(), key=repr)
    con.register("partial", rollup.summed(batch))
    have = sorted(con.execute("SELECT * FROM partial").fetchall(), key=repr)
    assert have == want and len(want) == 4
    assert any(r[-3] is None for r in have)             # p-1's latest record (10:03) had no LinksLive


def rollup_type(column: str) -> str:
    from netatlas.catalogue import Catalogue
    return Catalogue.load().get("VMConnection").column_types[column]


def test_the_rollup_is_not_a_table_users_can_query(demo):
    with pytest.raises(KqlError) as e:
        demo.query(f"{rollup.TABLE} | count")
    assert e.value.code == "KQL_UNKNOWN_TABLE"
    assert rollup.TABLE not in demo.catalogue.names()


# ---- compaction, deletion, migration ------------------------------------------------------------

def test_compaction_merges_closed_hours_into_one_row_per_key(tmp_path):
    t = datetime(2024, 5, 1, 10, 0, tzinfo=timezone.utc)
    with netatlas.connect(tmp_path / "ws") as ws:
        ws.set_retention("VMConnection", 4000)
        for minute in range(0, 120, 2):          # a batch a minute, as agents send them
            ws.ingest("VMConnection", [record(t + timedelta(minutes=minute), LinksLive=minute),
                                       record(t + timedelta(minutes=minute), process="p-2")])
        assert rollup_rows(ws) == 120
        # 11:xx is not closed at 11:59
        assert ws.compact_rollup(now=t + timedelta(minutes=119)) == 1
        assert rollup_rows(ws) == 2 + 60
        assert ws.compact_rollup(now=t + timedelta(hours=2)) == 1
        assert rollup_rows(ws) == 4
        assert ws.compact_rollup(now=t + timedelta(hours=2)) == 0       # nothing pending
        assert assert_exact(ws) == 4
        live = ws.connection.execute(f"SELECT LinksLive FROM {rollup.TABLE} WHERE Process = 'p-1' ORDER BY "
                                     f"TimeGenerated").fetchall()
        assert live == [(58,), (118,)]           # the latest record's of each hour
        # a late batch into a compacted hour: added, pending again, merged again
        ws.ingest("VMConnection", [record(t + timedelta(minutes=30, seconds=30), BytesSent=1)])
        assert rollup_rows(ws) == 5
        assert ws.compact_rollup(now=t + timedelta(hours=3)) == 1
        assert rollup_rows(ws) == 4 and assert_exact(ws) == 4


def test_compaction_beside_ingestion_loses_and_doubles_nothing(tmp_path):
    """Batches into the hours being merged, committed while compaction runs on its own cursor:
    the rows a merge did not see stay, none is counted twice."""
    t = datetime(2024, 5, 1, 0, 0, tzinfo=timezone.utc)
    with netatlas.connect(tmp_path / "ws") as ws:
        ws.set_retention("VMConnection", 4000)
        stop = threading.Event()
        errors = []

        def ingest():
            i = 0
            try:
                while not stop.is_set() and i < 400:
                    hour = i % 6
                    ws.ingest_json("VMConnection", json.dumps(
                        [record(t + timedelta(hours=hour, minutes=i % 60, seconds=i % 7), process=f"p-{i % 5}",
                                BytesSent=i) for _ in range(3)]))
                    i += 1
            except Exception as e:              # pragma: no cover - reported below
                errors.append(e)

        thread = threading.Thread(target=ingest)
        thread.start()
        merged = 0
        while thread.is_alive():
            merged += ws.compact_rollup(now=t + timedelta(hours=7))
        stop.set()
        thread.join()
        assert not errors
        assert merged > 0
        merged += ws.compact_rollup(now=t + timedelta(hours=7))
        assert assert_exact(ws) == 6 * 5
        assert rollup_rows(ws) == 6 * 5


def test_retention_rebuilds_the_hours_it_cut(demo):
    first, = demo.connection.execute("SELECT min(TimeGenerated) FROM VMConnection").fetchone()
    cutoff = first.replace(minute=0, second=0) + timedelta(hours=5, minutes=25)      # mid-hour
    demo.set_retention("VMConnection", 1)
    deleted = demo.apply_retention(now=cutoff + timedelta(days=1))
    assert deleted["VMConnection"] > 0
    assert demo.connection.execute("SELECT min(TimeGenerated) FROM VMConnection").fetchone()[0] >= cutoff
    assert demo.connection.execute(f"SELECT min(TimeGenerated) FROM {rollup.TABLE}").fetchone()[0] == \
        cutoff.replace(minute=0)
    assert_exact(demo)


def test_demo_remove_rebuilds_the_hours_of_the_rows_it_removed(demo):
    machines = [r[0] for r in demo.connection.execute(
        "SELECT DISTINCT Machine FROM VMConnection ORDER BY Machine LIMIT 3").fetchall()]

    class Marker:                               # the demo's marker names the machines to remove
        machine_ids = machines
        computers = []
    since = (END - timedelta(hours=7, minutes=40)).replace(tzinfo=None)
    deleted = demo_remove.delete_records(demo, Marker, since)
    assert deleted["VMConnection"] > 0
    assert not demo.connection.execute(f"SELECT 1 FROM {rollup.TABLE} WHERE Machine IN "
                                       f"(SELECT unnest(?::VARCHAR[])) AND Last >= ?", [machines, since]).fetchone()
    assert_exact(demo)


def test_a_workspace_from_before_the_rollup_builds_it_when_it_opens(demo_dir, tmp_path):
    import shutil
    target = tmp_path / "old"
    shutil.copytree(demo_dir, target)
    ws = netatlas.connect(target)
    try:                                        # as a schema version 2 workspace left it
        for sql in (f"DROP TABLE {rollup.TABLE}", f"DROP TABLE {rollup.PENDING}",
                    f"UPDATE {migrate.META} SET value = '2' WHERE key = 'schema_version'"):
            ws.connection.execute(sql)
    finally:
        ws.close()
    with netatlas.connect(target) as ws:
        assert ws.upgrade.found == 2 and any(step.startswith("2 -> 3") for step in ws.upgrade.steps)
        assert assert_exact(ws) > 0


# ---- the map through the rollup ----------------------------------------------------------------

SPANS = {
    "unaligned day": (END - timedelta(hours=23, minutes=47), END - timedelta(minutes=13)),
    "whole hours": (END - timedelta(hours=24), END),
    "within one hour": (END - timedelta(hours=3, minutes=50), END - timedelta(hours=3, minutes=10)),
    "across one hour's end": (END - timedelta(hours=3, minutes=50), END - timedelta(hours=2, minutes=10)),
}


def _maps(ws, selection, span, options=webmap.Options()):
    raw = webmap.build_map(ws, selection, span, options, src=webmap.Source(ws, rolled=False))
    src = webmap.Source(ws)
    assert src.rolled is not None
    return raw, webmap.build_map(ws, selection, span, options, src=src)


@pytest.mark.parametrize("span", list(SPANS), ids=list(SPANS))
def test_the_map_through_the_rollup_is_the_map_from_the_rows(demo, span):
    span = webmap.Span(*SPANS[span])
    raw, rolled = _maps(demo, webmap.Selection("all"), span)
    assert raw["edges"] and raw == rolled


def test_a_machine_and_an_exclusion_through_the_rollup(demo):
    span = webmap.Span(*SPANS["unaligned day"])
    machine = demo.connection.execute("SELECT Computer FROM VMComputer ORDER BY Computer LIMIT 1").fetchone()[0]
    raw, rolled = _maps(demo, webmap.Selection.parse(machine, None), span,
                        webmap.Options(exclude=("sshd", "nginx")))
    assert raw["edges"] and raw == rolled


def test_the_map_follows_the_rows_after_a_late_batch_and_compaction(demo):
    span = webmap.Span(*SPANS["unaligned day"])
    t = END - timedelta(hours=20, minutes=1)
    before = _maps(demo, webmap.Selection("all"), span)[1]
    demo.ingest("VMConnection", [record(t, machine="m-late", process="p-late", remote="198.51.100.7",
                                        LinksFailed=3)])
    assert demo.compact_rollup(now=END) >= 1
    raw, rolled = _maps(demo, webmap.Selection("all"), span)
    assert raw == rolled != before


def test_the_rolled_map_reads_the_rollup_for_whole_hours_only(demo):
    """The rollup's rows of the range's whole hours are what the map sums there (a change to one
    shows), and the partial hours at the range's ends are read from the records."""
    span = webmap.Span(*SPANS["unaligned day"])
    raw, _ = _maps(demo, webmap.Selection("all"), span)
    inside = (END - timedelta(hours=12)).replace(tzinfo=None)
    outside = (END - timedelta(minutes=5)).replace(tzinfo=None).replace(minute=0)   # the last, partial hour
    demo.connection.execute(f"UPDATE {rollup.TABLE} SET Sent = Sent + 1000000 WHERE TimeGenerated = ?", [outside])
    assert _maps(demo, webmap.Selection("all"), span)[1] == raw
    demo.connection.execute(f"UPDATE {rollup.TABLE} SET Sent = Sent + 1000000 WHERE TimeGenerated = ?", [inside])
    assert _maps(demo, webmap.Selection("all"), span)[1] != raw


def test_the_server_compacts_the_closed_hours_at_start(tmp_path):
    """A real server (``workspace serve``) runs the compaction pass at start: the closed hours
    agents' minute batches left pending are merged, counted in /metrics, and still exact."""
    import time
    from test_commit import metric
    from test_server import Server
    data = tmp_path / "data"
    t = (datetime.now(timezone.utc) - timedelta(hours=5)).replace(minute=0, second=0, microsecond=0)
    with netatlas.connect(data) as ws:
        for minute in range(0, 120, 3):         # two closed hours of minute batches
            ws.ingest("VMConnection", [record(t + timedelta(minutes=minute)),
                                       record(t + timedelta(minutes=minute), process="p-2")])
        assert rollup_rows(ws) == 80
    server = Server(data).start()
    try:
        deadline = time.monotonic() + 60
        while metric(server.port, "netatlas_rollup_hours_merged_total") < 2:
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.2)
        assert metric(server.port, 'netatlas_rollup_runs_total{outcome="ok"}') >= 1
    finally:
        server.kill()
    with netatlas.connect(data) as ws:
        assert rollup_rows(ws) == 4 and assert_exact(ws) == 4
        assert not ws.connection.execute(f"SELECT 1 FROM {rollup.PENDING}").fetchone()
