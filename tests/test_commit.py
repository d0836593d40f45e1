"""Group commit, concurrent retries and storage failures, against the real server on loopback.

- batches posted at once are stored in shared transactions (groups), each answered only after
  its commit; a bad batch in a group is refused alone (its neighbours are stored);
- the grouped (frame) path stores the same rows and Usage as ``Workspace.ingest`` (JSON path);
- retries of one batch id posted at the same moment all answer 200, stored once;
- a full disk: below ``min_free_bytes`` ingestion answers 507 STORAGE_FULL (Retry-After),
  /healthz says why, a metric counts it; with no reserve DuckDB's own failure answers
  503 STORAGE_UNAVAILABLE (Retry-After), logged with its cause; once space is freed ingestion
  works again and every acknowledged batch is stored exactly once (a real 48 MB tmpfs);
- in-flight batch files live in DIR/inflight and leftovers are removed at start.
"""
from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import threading
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import pytest

import netatlas
from netatlas import ingest as ingest_stage

from conftest import mount_tmpfs
from test_server import Server, now, request, unique


def post_at_once(client, bodies: list[tuple[str, list, str | None]]) -> list:
    """POST (table, records, batch id) all at the same moment, one thread each; the replies in order."""
    replies = [None] * len(bodies)
    barrier = threading.Barrier(len(bodies))

    def send(i, table, recs, batch_id):
        body = gzip.compress(json.dumps(recs).encode())
        barrier.wait()
        replies[i] = _post(client, table, body, batch_id)

    threads = [threading.Thread(target=send, args=(i, *b)) for i, b in enumerate(bodies)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return replies


def _post(client, table, gz_body, batch_id):
    from netatlas import auth
    path = f"/api/ingest/{table}"
    h = auth.signed_headers(client.identity.workspace_id, client.ingest_key.secret, gz_body, path, gzipped=True,
                            batch_id=batch_id)
    return request(client.port, "POST", path, gz_body, h)


def connections(computer: str, n: int, start: int = 0) -> list[dict]:
    t = now(-timedelta(minutes=2))
    return [{"TimeGenerated": t, "Computer": computer, "Direction": "outbound", "SourceIp": "10.0.0.1",
             "DestinationIp": "8.8.8.8" if i % 2 else "10.0.0.9", "DestinationPort": 443, "BytesSent": start + i,
             "ProcessName": "nginx"} for i in range(n)]


def metric(port: int, name: str) -> float:
    text = request(port, "GET", "/metrics").body
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("commit") / "data"
    s = Server(data).start()
    yield s
    s.kill()


@pytest.fixture
def client(server):
    return server.client()


# ---------------------------------------------------------------- item 16: one batch id at once

def test_retries_of_one_batch_id_at_the_same_moment_all_answer_success_stored_once(client):
    for _round in range(3):
        computer = unique()
        batch_id = f"retry-{uuid.uuid4().hex}"
        recs = connections(computer, 50)
        replies = post_at_once(client, [("VMConnection", recs, batch_id)] * 12)
        assert [r.status for r in replies] == [200] * 12, [(r.status, r.body) for r in replies]
        assert sum(1 for r in replies if not r.body["duplicate"]) == 1, [r.body for r in replies]
        assert all(r.body["batch_id"] == batch_id for r in replies)
        assert client.count("VMConnection", computer) == 50


# ---------------------------------------------------------------- item 18: group commit

def test_batches_sent_at_once_share_commits(server, client):
    groups_before = metric(server.port, "netatlas_commit_groups_total")
    batches_before = metric(server.port, "netatlas_commit_batches_total")
    computers = [unique() for _ in range(16)]
    replies = post_at_once(client, [("VMConnection", connections(c, 40), f"grp-{uuid.uuid4().hex}")
                                    for c in computers])
    assert [r.status for r in replies] == [200] * 16, [r.body for r in replies]
    assert all(r.body["records"] == 40 and r.body["bytes"] > 40 * 100 for r in replies)
    for c in computers:
        assert client.count("VMConnection", c) == 40
    groups = metric(server.port, "netatlas_commit_groups_total") - groups_before
    batches = metric(server.port, "netatlas_commit_batches_total") - batches_before
    assert batches == 16 and groups < batches, (groups, batches)    # shared transactions


def test_a_bad_batch_among_others_sent_at_once_is_refused_alone(server, client):
    computers = [unique() for _ in range(16)]
    bodies = [("VMConnection", connections(c, 40), f"grp-{uuid.uuid4().hex}") for c in computers]
    bad = connections(computers[5], 3)
    bad[2]["TimeGenerated"] = "not a date"           # refused only when DuckDB casts it
    bodies[5] = ("VMConnection", bad, bodies[5][2])
    bad2 = connections(computers[9], 3)
    bad2[1]["BytesSent"] = "lots"                    # refused while the frame is built
    bodies[9] = ("VMConnection", bad2, bodies[9][2])
    replies = post_at_once(client, bodies)
    for i, r in enumerate(replies):
        if i == 5:
            assert r.status == 400 and r.body["error"]["record"] == 2, r.body
            assert r.body["error"]["field"] == "TimeGenerated", r.body
        elif i == 9:
            assert r.status == 400 and r.body["error"]["record"] == 1, r.body
            assert r.body["error"]["field"] == "BytesSent", r.body
        else:
            assert r.status == 200 and r.body["records"] == 40, (i, r.body)
    for i, c in enumerate(computers):
        assert client.count("VMConnection", c) == (0 if i in (5, 9) else 40)


RECORDS = [
    {"TimeGenerated": "2026-01-02T03:04:05Z", "Computer": "héllo-wörld", "Direction": "outbound",
     "SourceIp": "10.0.0.1", "DestinationIp": "8.8.8.8", "DestinationPort": 443, "BytesSent": -12345,
     "BytesReceived": 0, "LinksLive": 3, "ProcessName": "n\"ginx\\", "RemoteLatitude": 1.5},
    {"TimeGenerated": "2026-01-02T04:04:05.123456Z", "Computer": "b", "Direction": "inbound",
     "SourceIp": "1.1.1.1", "DestinationIp": "10.0.0.2", "BytesSent": 10 ** 15, "ResponseTimeMax": 7,
     "Protocol": None, "RemoteLongitude": 0.1, "AgentId": "", "LinksFailed": 0},
    {"TimeGenerated": "2026-01-02T04:59:59.5Z", "Computer": "c" * 300, "Direction": "outbound",
     "DestinationIp": "93.184.216.34", "BytesSent": 1, "RemoteCountry": "Nowhere", "RemoteLatitude": 1e-7},
]


def test_the_grouped_path_stores_the_same_rows_and_usage_as_the_json_path(tmp_path, client):
    """An HTTP batch (grouped, frame path) and Workspace.ingest (JSON path) of the same records."""
    tag = unique()
    recs = [dict(r, Computer=r["Computer"] + tag) for r in RECORDS]
    for r in recs:
        r["TimeGenerated"] = r["TimeGenerated"].replace("2026-01-02", now(-timedelta(days=1))[:10])
    for table, rows in (("VMConnection", recs),
                        ("VMComputer", [{"TimeGenerated": recs[0]["TimeGenerated"], "Computer": tag,
                                         "Ipv4Addresses": ["10.0.0.1", "ü"], "Cpus": 4, "DependencyAgentVersion": 9},
                                        {"TimeGenerated": recs[1]["TimeGenerated"], "Computer": tag + "-2",
                                         "Ipv4Addresses": None, "Ipv6Addresses": [], "Cpus": None}]),
                        ("VMProcess", [{"TimeGenerated": recs[1]["TimeGenerated"], "Computer": tag,
                                        "CommandLine": "a b", "Group": {"x": [1, 2.5, None]}}])):
        r = _post(client, table, gzip.compress(json.dumps(rows).encode()), None)
        assert r.status == 200, r.body
        ws = netatlas.connect(tmp_path / table, geoip=None)
        try:
            rep = ws.ingest(table, rows)
            assert rep.bytes == r.body["bytes"], (table, rep.bytes, r.body)
            cols = [c for c, _ in ws.catalogue.get(table).columns if c not in ("TenantId",)]
            key = "Computer"
            order = " | order by BytesSent asc" if table == "VMConnection" else " | order by Computer asc"
            local = ws.query(f"{table} | project {', '.join(cols)}{order}").rows
        finally:
            ws.close()
        flt = " or ".join(f'{key} == "{x["Computer"]}"' for x in rows)
        served = client.query(f"{table} | where {flt} | project {', '.join(cols)}{order}")
        assert served.status == 200, served.body
        mine = json.loads(json.dumps(local, default=lambda v: v.isoformat().replace("+00:00", "Z")
                                     if hasattr(v, "isoformat") else str(v)))
        theirs = served.body["tables"][0]["rows"]
        assert len(mine) == len(theirs) == len(rows)
        for a, b in zip(mine, theirs):
            for c, x, y in zip(cols, a, b):
                if c in ("_ResourceId",):
                    continue                       # names the workspace's id
                if isinstance(x, str) and isinstance(y, str) and c == "TimeGenerated":
                    assert datetime.fromisoformat(x.replace("Z", "+00:00")) == \
                        datetime.fromisoformat(y.replace("Z", "+00:00")), (table, c)
                elif isinstance(x, (dict, list)) or isinstance(y, (dict, list)):
                    assert (json.loads(x) if isinstance(x, str) else x) == (json.loads(y) if isinstance(y, str) else y)
                else:
                    assert x == y, (table, c, x, y)


# ---------------------------------------------------------------- item 12: in-flight files

def test_in_flight_batch_files_live_in_the_data_directory_and_leftovers_go_at_start(tmp_path):
    data = tmp_path / "data"
    ws = netatlas.connect(data, geoip=False)
    ws.close()
    left = data / "inflight" / "netatlas-batch-leftover.json"
    assert left.parent.is_dir()
    left.write_text("[]")
    seen = []
    real = ingest_stage.serialize

    def spy(*a, **k):
        path = real(*a, **k)
        seen.append(path)
        return path

    ingest_stage.serialize = spy
    try:
        ws = netatlas.connect(data, geoip=False)
        assert not left.exists()                   # cleaned up at start
        ws.ingest("VMConnection", connections("x", 3))
        ws.close()
    finally:
        ingest_stage.serialize = real
    assert seen and all(Path(p).parent == data / "inflight" for p in seen), seen
    assert list((data / "inflight").iterdir()) == []


# ---------------------------------------------------------------- item 1: a full disk

MiB = 1024 * 1024


@pytest.fixture
def tmpfs(tmp_path):
    with mount_tmpfs(tmp_path / "small", "48m") as mnt:
        yield mnt


def _fill(client, sent: dict, tag: str, limit: int = 400) -> object:
    """Post 1-MB-ish batches until one is refused; every acknowledged batch id -> its computer."""
    for i in range(limit):
        computer = f"{tag}-{i}"
        recs = [dict(r, ProcessName=uuid.uuid4().hex * 60) for r in connections(computer, 100)]
        batch_id = f"{tag}-{i}"
        r = _post(client, "VMConnection", gzip.compress(json.dumps(recs).encode(), 1), batch_id)
        if r.status != 200:
            return r
        sent[batch_id] = computer
    raise AssertionError(f"{limit} batches stored on a 48 MB disk")


def test_a_full_disk_answers_507_then_503_and_nothing_acknowledged_is_lost(tmpfs):
    data = tmpfs / "data"
    ballast = tmpfs / "ballast"
    sent: dict[str, str] = {}

    # 1. a reserve of 12 MiB: refused with 507 before DuckDB fails
    s = Server(data, "--min-free-bytes", str(12 * MiB)).start()
    try:
        c = s.client()
        free = shutil.disk_usage(tmpfs).free
        ballast.write_bytes(b"\0" * max(0, free - 20 * MiB))
        r = _fill(c, sent, "reserve")
        assert r.status == 507, r.body
        assert r.body["error"]["code"] == "STORAGE_FULL" and int(r.headers["retry-after"]) > 0, r.body
        assert "min_free_bytes" in r.body["error"]["message"]
        h = request(s.port, "GET", "/healthz")
        assert h.status == 200 and h.body["status"] == "storage_full", h.body
        assert "free" in h.body["reason"] and h.body["storage"]["min_free_bytes"] == 12 * MiB, h.body
        assert metric(s.port, "netatlas_storage_full_total") >= 1
    finally:
        s.terminate()

    # 2. no reserve: DuckDB's own failure, 503 with Retry-After, logged with its cause
    s = Server(data, "--min-free-bytes", "0").start()
    try:
        c = s.client()
        r = _fill(c, sent, "noreserve")
        assert r.status == 503, r.body
        assert r.body["error"]["code"] == "STORAGE_UNAVAILABLE" and int(r.headers["retry-after"]) > 0, r.body
        log = s.log.read_text()
        assert "No space left on device" in log and "STORAGE_UNAVAILABLE" in log, log[-3000:]
        assert metric(s.port, "netatlas_storage_errors_total") >= 1
        # 3. space freed: ingestion works again, everything acknowledged is there exactly once
        ballast.unlink()
        r = _post(c, "VMConnection", gzip.compress(json.dumps(connections("after-free", 5)).encode()), "after-free")
        assert r.status == 200 and not r.body["duplicate"], r.body
        sent["after-free"] = "after-free"
        got = c.query("VMConnection | summarize n = count() by Computer").body["tables"][0]["rows"]
        counts = dict(got)
        for batch_id, computer in sent.items():
            assert counts.get(computer) == (5 if computer == "after-free" else 100), (batch_id, counts.get(computer))
        assert len(sent) > 2
    finally:
        s.kill()
    assert not list((data / "inflight").glob("*")) if (data / "inflight").exists() else True


def test_a_held_workspace_keeps_its_in_flight_files(server):
    """Opening a directory another process serves fails, and removes none of its batch files."""
    mine = server.data / "inflight" / "netatlas-batch-in-use.json"
    mine.write_text("[]")
    try:
        with pytest.raises(netatlas.workspace.WorkspaceBusyError):
            netatlas.connect(server.data, geoip=False)
        assert mine.exists()
    finally:
        mine.unlink()


@pytest.mark.parametrize("table_name", ["VMConnection", "VMBoundPort", "VMComputer"])
def test_columns_and_billed_sizes_match_to_frame_and_the_sql_expression(table_name):
    """commit.columns builds to_frame's arrays, and its numpy sizes plus sql_sizes equal
    ingest.record_size_sql over the same values as the JSON path reads them, value for value."""
    import numpy as np
    from netatlas import commit
    from netatlas.catalogue import Catalogue
    table = Catalogue.load().get(table_name)
    values = {"VARCHAR": ["", "a", "héllo wörld ✓", "x" * 500, None, "q\"\\"],
              "BIGINT": [0, -1, 9, 10, 99, 10 ** 15, -(10 ** 18), 2 ** 63 - 1, None],
              "INTEGER": [0, 7, -123456, 2 ** 31 - 1, None], "DOUBLE": [0.1, 1.0, -2.5e-7, 3, 1e21, None],
              "BOOLEAN": [True, False, None], "TIMESTAMPTZ": ["2026-01-02T03:04:05Z", "2026-01-02T03:04:05.5Z",
                                                            "2026-01-02T03:04:05.123456+02:00"],
              "JSON": [{"a": [1, 2.5, None]}, ["x"], None, 3], "UUID": ["0b3c6e4f-0000-4000-8000-000000000001"]}
    recs = []
    for i in range(40):
        r = {}
        for k, (c, t) in enumerate(table.columns):
            read = ingest_stage.READ_AS[t]
            if c == "TimeGenerated":
                r[c] = values["TIMESTAMPTZ"][i % 3]
            elif (i + k) % 3 and read in values:
                r[c] = values[read][(i * 7 + k) % len(values[read])]
        recs.append(r)
    expected = ingest_stage.to_frame(table, recs)
    frame, sizes = commit.columns(table, recs)
    assert list(frame) == list(expected)
    for c in expected:
        assert type(frame[c]) is type(expected[c]) and frame[c].dtype == expected[c].dtype, c
        assert frame[c].tolist() == expected[c].tolist(), c
    ws = netatlas.connect(geoip=False)
    try:
        con = ws.connection
        con.register("f", frame)
        # the reference: the JSON path's reading, where a JSON null is absent (the frame holds 'null')
        types = table.column_types
        ref = {c: (np.array([None if v == "null" else v for v in col], dtype=object)
                   if ingest_stage.READ_AS[types[c]] == "JSON" else col) for c, col in frame.items()}
        con.register("ref", ref)
        want = con.execute(f"SELECT {ingest_stage.record_size_sql(table)} FROM "
                           f"{ingest_stage.frame_source(table, 'ref', ref)}").fetchnumpy()
        _hours, rest = commit.sql_sizes(con, table, "f", frame)
        got = np.maximum(2, sizes + rest)
        assert got.tolist() == list(want.values())[0].tolist()
    finally:
        ws.close()


def test_the_agent_batch_benchmark_runs():
    """bench/ingest.py's agent-sized batches, small: every row stored, enriched, agents held printed."""
    import sys
    root = Path(__file__).resolve().parent.parent
    r = subprocess.run([sys.executable, str(root / "bench" / "ingest.py"), "--batches", "0", "--agent-batches", "30"],
                       capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "records/s" in r.stdout and "one-minute agents one workspace holds" in r.stdout, r.stdout
    assert "batches per commit" in r.stdout, r.stdout
