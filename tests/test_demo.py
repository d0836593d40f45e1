"""The simulated datacenter (`netatlas demo`): determinism, consistency between tables, the seed
queries on it, and the command.

Scale: the tests use 24 machines x 2 days (about 140,000 records: under a second to generate, a few to ingest).
"Sessions per machine and process" keeps its `count_ > 100000` threshold: its full outer join
pairs every VMConnection record with each of the machine's hourly VMComputer records (49 in two
days, 169 in a week), so busy processes pass the threshold here and, with a margin of about 3.5x
more, at full scale (200 machines x 7 days).
"""
from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from conftest import PACKAGE, ROOT
from netatlas.catalogue import Catalogue
from netatlas.demo import MIN_MACHINES, SUSPICIOUS_IPS, generate
from netatlas.demo.pipeline import NullWorkspace, TABLES, silent_agent

END = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
MACHINES, DAYS = 24, 2
SEED = PACKAGE / "seed-queries.kql"
GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def demo():
    ws = netatlas.connect()
    counts = generate(ws, machines=MACHINES, days=DAYS, seed=1, end=END)
    yield ws, counts
    ws.close()


def rows(ws, q: str) -> list:
    return ws.query(q, now=END).rows


# --------------------------------------------------------------------------- determinism

def fingerprint(ws) -> dict:
    """count() and a sum of row hashes per table, over every column the demo writes."""
    out = {}
    cat = Catalogue.load()
    for table in TABLES:
        cols = [c for c, _ in cat.get(table).columns if not c.startswith("_Billed")]
        row = " , '|', ".join(f"tostring({c})" for c in cols)
        out[table] = tuple(rows(ws, f"{table} | summarize count(), sum(hash(strcat({row})) % 1000000007)")[0])
    return out


class Recorder(NullWorkspace):
    def __init__(self):
        super().__init__()
        self.records = []

    def ingest(self, table, records):
        self.records.append((table, records))
        return super().ingest(table, records)


def test_same_seed_same_workspace():
    small = dict(machines=MIN_MACHINES, days=1, end=END)
    a, b = netatlas.connect(), netatlas.connect()
    try:
        ca, cb = generate(a, seed=7, **small), generate(b, seed=7, **small)
        assert ca == cb and all(ca[t] > 0 for t in TABLES)
        assert fingerprint(a) == fingerprint(b)
    finally:
        a.close()
        b.close()


def test_another_seed_another_datacenter():
    small = dict(machines=MIN_MACHINES, days=1, end=END)
    r1, r2, r3 = Recorder(), Recorder(), Recorder()
    generate(r1, seed=3, **small)
    generate(r2, seed=3, **small)
    generate(r3, seed=4, **small)
    assert r1.records == r2.records
    assert r1.records != r3.records


def test_counts_are_what_the_tables_hold(demo):
    ws, counts = demo
    for table in TABLES:
        assert rows(ws, f"{table} | count")[0][0] == counts[table] > 0, table
    assert rows(ws, "Usage | where DataType == 'VMConnection' | count")[0][0] > 0


def test_too_few_machines():
    with pytest.raises(ValueError, match=f"at least {MIN_MACHINES} machines"):
        generate(NullWorkspace(), machines=MIN_MACHINES - 1, days=1, end=END)


# --------------------------------------------------------------------------- consistency

def test_connections_name_known_processes(demo):
    ws, _ = demo
    processes = {tuple(r) for r in rows(ws, "VMProcess | distinct Machine, Process")}
    inventory = {tuple(r) for r in rows(ws, "ServiceMapProcess_CL | distinct MachineResourceName_s, ResourceName_s")}
    assert processes == inventory
    for table in ("VMConnection", "VMBoundPort"):
        used = {tuple(r) for r in rows(ws, f"{table} | distinct Machine, Process")}
        assert used <= processes, (table, sorted(used - processes)[:5])
    names = {tuple(r) for r in rows(ws, "VMProcess | distinct Machine, Process, ExecutableName")}
    used = {tuple(r) for r in rows(ws, "VMConnection | distinct Machine, Process, ProcessName")}
    assert used <= names


def test_inbound_connections_reach_bound_ports(demo):
    ws, _ = demo
    inbound = {tuple(r) for r in rows(ws, "VMConnection | where Direction == 'inbound' "
                                          "| distinct Machine, Process, DestinationIp, DestinationPort")}
    bound = {tuple(r) for r in rows(ws, "VMBoundPort | distinct Machine, Process, Ip, Port")}
    assert inbound and inbound <= bound, sorted(inbound - bound)[:5]
    assert {(m, p) for m, _pr, _ip, p in inbound} <= {(m, p) for m, _pr, _ip, p in bound}


def test_bound_port_minutes_sum_inbound_records(demo):
    ws, _ = demo
    q = ("VMConnection | where Direction == 'inbound' "
         "| summarize s = sum(BytesSent), e = sum(LinksEstablished) by Machine, Process, DestinationIp, DestinationPort, TimeGenerated "
         "| summarize s = sum(s), e = sum(e)")
    p = ("VMBoundPort | where Ip != '0.0.0.0' and not(IsWildcardBind == false and LinksEstablished == 0 and BytesSent == 0) "
         "| summarize s = sum(BytesSent), e = sum(LinksEstablished)")
    assert rows(ws, q) == rows(ws, p)


def test_wildcard_binds(demo):
    ws, _ = demo
    # wildcard binds: 0.0.0.0 records are idle; traffic is reported per address with IsWildcardBind true
    assert rows(ws, "VMBoundPort | where Ip == '0.0.0.0' | summarize max(BytesSent + BytesReceived), "
                    "countif(not(IsWildcardBind))") == [[0, 0]]
    assert rows(ws, "VMBoundPort | where ProcessName == 'postgres' | distinct IsWildcardBind") == [[False]]
    assert rows(ws, "VMBoundPort | where ProcessName == 'nginx' and Ip != '0.0.0.0' and BytesSent > 0 "
                    "| distinct IsWildcardBind") == [[True]]


def test_identifiers(demo):
    ws, _ = demo
    for table, col, pattern in (
            ("VMConnection", "Machine", f"m-{GUID}"), ("VMConnection", "Process", "p-[0-9a-f]{12}"),
            ("VMBoundPort", "Machine", f"m-{GUID}"), ("VMBoundPort", "Process", "p-[0-9a-f]{12}"),
            ("VMComputer", "Machine", f"m-{GUID}"), ("VMProcess", "Process", "p-[0-9a-f]{12}"),
            ("ServiceMapComputer_CL", "ResourceName_s", f"m-{GUID}"),
            ("ServiceMapProcess_CL", "MachineResourceName_s", f"m-{GUID}"),
            ("ServiceMapProcess_CL", "ResourceName_s", "p-[0-9a-f]{12}")):
        values = [r[0] for r in rows(ws, f"{table} | distinct {col}")]
        assert values and all(re.fullmatch(pattern, v) for v in values), (table, col, values[:3])
    agents = rows(ws, "VMComputer | distinct Machine, AgentId")
    assert all(m == "m-" + a for m, a in agents)
    assert len({m for m, _ in agents}) == MACHINES


def test_remote_ip_follows_direction(demo):
    ws, _ = demo
    assert rows(ws, "VMConnection | summarize countif(Direction == 'inbound' and RemoteIp != SourceIp), "
                    "countif(Direction == 'outbound' and RemoteIp != DestinationIp), "
                    "countif(Direction !in ('inbound', 'outbound'))") == [[0, 0, 0]]


def test_inventory_is_hourly_with_a_record_at_start(demo):
    ws, _ = demo
    start = END - timedelta(days=DAYS)
    for table, key in (("ServiceMapComputer_CL", "ResourceId"), ("VMComputer", "Machine")):
        per = rows(ws, f"{table} | summarize n = count(), first = min(TimeGenerated), "
                       f"hours = dcount(bin(TimeGenerated, 1h)) by {key}")
        assert len(per) == MACHINES
        # (the silent agent's machine, pipeline.silent_agent, misses the hour in which it stopped)
        assert all(n >= DAYS * 24 and first < start + timedelta(minutes=1) and hours >= DAYS * 24 - 1
                   for _k, n, first, hours in per), per[:3]
        assert sum(1 for _k, n, first, hours in per if hours < DAYS * 24) <= 1
    per = rows(ws, "VMProcess | where ExecutableName !in ('apt', 'yum', 'kdevtmpfsi') "
                   "| summarize n = count() by Machine, Process | summarize min(n)")
    assert per[0][0] >= DAYS * 24


def test_process_records_agree_between_tables(demo):
    ws, _ = demo
    a = rows(ws, "VMProcess | summarize count(), dcount(CommandLine), min(StartTime), max(FirstPid)")
    b = rows(ws, "ServiceMapProcess_CL | summarize count(), dcount(CommandLine_s), min(StartTime_t), "
                 "max(tolong(FirstPid_d))")
    assert a == b


def test_daily_cycle(demo):
    ws, _ = demo
    by_hour = dict(rows(ws, "VMConnection | where Direction == 'inbound' and DestinationPort == 443 "
                            "| summarize count() by hourofday(TimeGenerated)"))
    assert sum(by_hour[h] for h in (13, 14, 15)) > 1.8 * sum(by_hour[h] for h in (3, 4, 5))


def test_the_failing_service(demo):
    ws, _ = demo
    last_day = END - timedelta(days=1)
    q = ("VMConnection | where RemoteDnsQuestions == '[\"api.stripe.com\"]' "
         "| summarize records = count(), established = sum(LinksEstablished), failed = sum(LinksFailed), "
         "ok_minutes = countif(LinksEstablished > 0) by after = TimeGenerated >= datetime({t}) "
         "| order by after asc").format(t=last_day.strftime("%Y-%m-%dT%H:%M:%SZ"))
    (b_after, b_rec, b_est, b_failed, b_ok), (a_after, a_rec, a_est, a_failed, a_ok) = rows(ws, q)
    assert (b_after, a_after) == (False, True)
    assert b_est > 0 and b_ok > 0.9 * b_rec and b_failed < 0.05 * b_rec
    assert a_est == 0 and a_ok == 0 and a_failed >= a_rec > 0
    # the docs' acme-demo is one of the callers: failures in its last 24 hours
    assert rows(ws, "VMConnection | where TimeGenerated >= ago(24h) and Computer == 'acme-demo' "
                    "| summarize sum(LinksFailed)")[0][0] > 0


def test_internet_endpoints(demo):
    ws, _ = demo
    out = rows(ws, "VMConnection | where Direction == 'outbound' and RemoteCountry != '' "
                   "| summarize dns = countif(RemoteDnsQuestions startswith '[\"'), n = count(), "
                   "geo = countif(isnotnull(RemoteLatitude) and isnotnull(RemoteLongitude))")
    dns, n, geo = out[0]
    assert n > 0 and geo == n and dns >= 0.95 * n
    countries = {r[0] for r in rows(ws, "VMConnection | where Direction == 'inbound' and DestinationPort == 443 "
                                       "| distinct RemoteCountry")}
    assert {"United States", "United Kingdom", "Germany"} <= countries and "" not in countries
    seen = {r[0] for r in rows(ws, "VMConnection | distinct RemoteIp")}
    assert set(SUSPICIOUS_IPS) <= seen
    # the demo's feed (netatlas/demo/threatintel.stix.json) flags exactly the suspicious traffic, at ingestion
    flagged = rows(ws, "VMConnection | where MaliciousIp != '' | summarize n = count() by MaliciousIp, "
                       "IndicatorThreatType, TLPLevel, IsActive, RemoteIp | order by MaliciousIp asc")
    assert [r[:4] for r in flagged] == [["185.220.101.47", "Darknet", "White", "True"],
                                        ["218.92.0.107", "Malware", "Green", "True"],     # by its /24 range
                                        ["45.155.205.233", "Botnet", "Amber", "True"]]
    assert all(r[0] == r[4] and r[5] > 0 for r in flagged)
    assert rows(ws, "VMConnection | where MaliciousIp == '' and RemoteIp in ('185.220.101.47', '218.92.0.107', "
                    "'45.155.205.233') | count") == [[0]]


def test_loopback_is_reported_both_ways(demo):
    ws, _ = demo
    got = rows(ws, "VMConnection | where SourceIp == '127.0.0.1' | summarize count() by Direction, ProcessName "
                   "| order by Direction asc, ProcessName asc")
    assert [r[:2] for r in got] == [["inbound", "java"], ["inbound", "sqlservr.exe"],
                                    ["outbound", "SQLAGENT.EXE"], ["outbound", "curl"]]


def test_docs_sample_machines(demo):
    ws, _ = demo
    got = dict(rows(ws, "ServiceMapComputer_CL | distinct ResourceName_s, ComputerName_s"))
    assert got["m-4b9c93f9-bc37-46df-b43c-899ba829e07b"] == "acme-demo"
    assert got["m-82412a7a-6a32-45a9-a8d6-538354224a25"] == "admdemo-appsvr"
    sql = rows(ws, "ServiceMapProcess_CL | where MachineResourceName_s == 'm-559dbcd8-3130-454d-8d1d-f624e57961bc' "
                   "| distinct ExecutableName_s")
    assert ["sqlservr.exe"] in sql
    assert rows(ws, "ServiceMapComputer_CL | where Ipv4Addresses_s == '[\"10.229.243.232\"]' "
                    "| distinct OperatingSystemFullName_s, AzureLocation_s") == [["CentOS Linux 7 (Core)", ""]]


# --------------------------------------------------------------------------- the seed queries

def blocks() -> list[tuple[str, str]]:
    parts = re.split(r"^// ==== (.+)$", SEED.read_text(), flags=re.M)
    return [(parts[i].strip(), parts[i + 1]) for i in range(1, len(parts), 2)
            if "evaluate autocluster" not in parts[i + 1]]


@pytest.mark.parametrize("title,query", blocks(), ids=[re.sub(r"[^a-z0-9]+", "_", t.lower())[:50] for t, _ in blocks()])
def test_seed_query_finds_something(title, query, demo):
    ws, _ = demo
    res = ws.query(query, now=END)
    assert res.rows, f"{title}: no rows"


def test_seed_queries_present():
    assert len(blocks()) >= 28


# --------------------------------------------------------------------------- the command

def _netatlas(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "netatlas", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def test_command(tmp_path):
    data = str(tmp_path / "ws")
    p = _netatlas("demo", "--data", data, "--machines", str(MIN_MACHINES), "--days", "1", "--seed", "5",
                  "--end", "2024-05-02T12:00:00Z")
    assert p.returncode == 0, p.stderr
    assert re.search(r"^VMConnection\s+[\d,]+$", p.stdout, re.M), p.stdout
    # progress lines only when generating takes a while; the closing line always
    assert "generated in" in p.stdout and re.search(r"generated: 24 h, [\d,]+ records in", p.stderr), p.stderr
    q = _netatlas("query", "--data", data, "--format", "csv", "ServiceMapComputer_CL | summarize dcount(ResourceId)")
    assert q.returncode == 0, q.stderr
    assert q.stdout.splitlines()[1] == str(MIN_MACHINES)
    again = _netatlas("demo", "--data", data, "--machines", str(MIN_MACHINES), "--days", "1", "--quiet")
    assert again.returncode == 2 and "already holds" in again.stderr
    few = _netatlas("demo", "--data", data, "--machines", "3")
    assert few.returncode == 2 and f"at least {MIN_MACHINES}" in few.stderr


# --------------------------------------------------------------------------- the bulk path: frames

def _all_rows(ws, table: str) -> list:
    return ws.connection.execute(f'SELECT * FROM "{table}" ORDER BY ALL').fetchall()


class RecordsOnly:
    """A workspace seen through ``ingest`` alone: the demo writes records (dicts), not frames."""

    def __init__(self, ws):
        self.ws = ws

    def ingest(self, table, records):
        return self.ws.ingest(table, records)

    def import_indicators(self, indicators, source):
        return self.ws.import_indicators(indicators, source)


def test_frames_store_the_same_rows_and_usage_as_records():
    """The demo's bulk path (Workspace.ingest_frame, columns) stores exactly what ingesting the same
    records as dicts stores: every column of every row of every table (enrichment, _BilledSize,
    _ResourceId, the malicious-IP columns included), and the same Usage bytes per hour."""
    small = dict(machines=MIN_MACHINES, days=1, seed=2, end=END)
    a, b = netatlas.connect(), netatlas.connect()
    try:
        ca = generate(RecordsOnly(a), **small)
        cb = generate(b, **small)
        assert ca == cb and all(ca[t] > 0 for t in TABLES)
        for table in TABLES:
            ra, rb = _all_rows(a, table), _all_rows(b, table)
            assert len(ra) == ca[table] and ra == rb, table
        # per hour and table (the rows are per batch: the records path cuts batches of BATCH records)
        usage = "SELECT hour, DataType, Solution, sum(bytes) FROM _netatlas_usage GROUP BY ALL ORDER BY ALL"
        assert a.connection.execute(usage).fetchall() == b.connection.execute(usage).fetchall()
        assert rows(b, "VMConnection | where MaliciousIp != '' | count")[0][0] > 0
    finally:
        a.close()
        b.close()


def test_frame_ingest_refuses_what_records_would():
    import numpy as np
    from netatlas.errors import IngestError
    ws = netatlas.connect()
    try:
        t = np.array(["2024-05-02T10:00:00"], dtype="datetime64[s]")
        with pytest.raises(IngestError, match="unknown column 'Computr'; did you mean 'Computer'") as e:
            ws.ingest_frame("VMConnection", {"TimeGenerated": t, "Computr": np.array(["a"], dtype=object)})
        assert e.value.field == "Computr"
        with pytest.raises(IngestError, match="record 1: missing TimeGenerated"):
            ws.ingest_frame("VMConnection", {"TimeGenerated": np.array(["2024-05-02T10:00:00Z", None], dtype=object),
                                             "Computer": np.array(["a", "b"], dtype=object)})
        with pytest.raises(IngestError, match="record 1, field BytesSent") as e:
            ws.ingest_frame("VMConnection", {"TimeGenerated": np.repeat(t, 2),
                                             "BytesSent": np.array([1, "lots"], dtype=object)})
        assert (e.value.record, e.value.field) == (1, "BytesSent")
        with pytest.raises(IngestError, match="different lengths"):
            ws.ingest_frame("VMConnection", {"TimeGenerated": t, "Computer": np.array(["a", "b"], dtype=object)})
        assert rows(ws, "VMConnection | count") == [[0]]
        report = ws.ingest_frame("VMConnection", {"TimeGenerated": t, "Computer": np.array(["a"], dtype=object)},
                                 batch_id="b-1")
        again = ws.ingest_frame("VMConnection", {"TimeGenerated": t, "Computer": np.array(["a"], dtype=object)},
                                batch_id="b-1")
        assert (report.records, again.duplicate) == (1, True) and rows(ws, "VMConnection | count") == [[1]]
    finally:
        ws.close()


# --------------------------------------------------------------------------- live: past the window

def test_live_minutes_go_on_the_payment_api_keeps_failing_and_new_dependencies_appear():
    """Minutes past the window: the same machines and processes, the payment API still failing, and
    now and then (from the seed and the hour) a dependency that did not exist, which the map shows as new."""
    import json
    from netatlas.demo import environment
    from netatlas.demo.live import Marker, simulation
    marker = Marker(machines=MACHINES, days=1, seed=1, end="2024-05-02T12:00:00Z", through="2024-05-02T12:00:00Z")
    lo, hi = 1440, 1440 + 2 * 1440       # the two days after the window
    sim = simulation(marker, hi)
    again = simulation(marker, hi)
    new = [f for f in sim.env.flows if f.novel >= 0]
    assert new and [(f.src, f.dst, f.port, f.from_minute) for f in new] == \
        [(f.src, f.dst, f.port, f.from_minute) for f in again.env.flows if f.novel >= 0]
    assert all(lo <= f.from_minute < hi for f in new)
    ws = netatlas.connect()
    try:
        sim.fill(ws, lo, hi)
        start = END
        window = rows(ws, "VMConnection | summarize min(TimeGenerated), max(TimeGenerated)")[0]
        assert window[0] >= start and window[1] < start + timedelta(days=2)
        machines = {r[0] for r in rows(ws, "VMComputer | distinct Machine")}
        # hourly inventory goes on: every machine reports in each hour, but the one whose agent
        # stopped before the window's end (pipeline.silent_agent), which stays silent
        assert len(machines) == MACHINES - 1
        assert rows(ws, "VMComputer | summarize dcount(Machine) by bin(TimeGenerated, 1h) | summarize min(dcount_Machine), count()") \
            == [[MACHINES - 1, 48]]
        silent = silent_agent(sim.env)[0]
        assert not rows(ws, f"union VMConnection, VMComputer, InsightsMetrics, Heartbeat | where Computer == '{silent}' | take 1")
        stripe = rows(ws, "VMConnection | where RemoteDnsQuestions == '[\"api.stripe.com\"]' "
                          "| summarize records = count(), established = sum(LinksEstablished), failed = sum(LinksFailed)")
        assert stripe[0][0] > 0 and stripe[0][1] == 0 and stripe[0][2] >= stripe[0][0]
        first = min(new, key=lambda f: f.from_minute)
        began = start + timedelta(minutes=first.from_minute - lo)
        got = rows(ws, f"VMConnection | where DestinationIp == '{first.dst}' and DestinationPort == {first.port} "
                       f"and SourceIp == '{first.src}' and Direction == 'outbound' | summarize min(TimeGenerated), count()")
        assert got[0][1] > 0 and got[0][0] >= began
        assert environment.NO_MINUTE > first.until_minute > first.from_minute
        # on the map of the hours after it appeared (the day before is held too), it is a new edge
        from netatlas import webmap
        late = [f for f in new if f.from_minute >= lo + 1440 + 60 and f.until_minute > f.from_minute + 120]
        assert late
        for f in late[:3]:
            t = start + timedelta(minutes=f.from_minute - lo)
            got = webmap.build_map(ws, webmap.Selection("machine", f.client[0].id),
                                   webmap.Span(t, t + timedelta(hours=2)))
            target = (f"g-internet-{json.loads(f.remote_out['RemoteDnsQuestions'])[0]}" if f.server is None
                      else f.server[1].pid)
            edges = [e for e in got["edges"] if e["source"] == f.client[1].pid and e["target"] == target
                     and e["port"] == f.port]
            assert [e["status"] for e in edges] == ["new"], (f.dst, f.port, edges)
    finally:
        ws.close()


def _marker_workspace(tmp_path, end: datetime):
    from netatlas.demo.live import marker_for
    from netatlas.demo.pipeline import load, plan
    ws = netatlas.connect(tmp_path)
    env = plan(MIN_MACHINES, 1, 4, end)
    counts = load(ws, env)
    marker = marker_for(env, counts, 0)
    marker.save(tmp_path)
    return ws, marker


def test_catch_up_fills_the_gap_once(tmp_path):
    """A restart fills the minutes from where the demo's data ends to now, bounded by the demo's
    window; a stop between a write and the marker's update leaves records that are replaced, not doubled."""
    from netatlas.demo.live import Marker, catch_up
    ws, marker = _marker_workspace(tmp_path, END)
    try:
        before = rows(ws, "VMConnection | count")[0][0]
        now = END + timedelta(hours=3, seconds=20)
        counts = catch_up(ws, tmp_path, marker, now=now)
        assert counts["VMConnection"] > 0
        assert Marker.load(tmp_path).through == "2024-05-02T15:00:00Z"
        key = "ConnectionId, Direction, TimeGenerated"
        assert rows(ws, f"VMConnection | summarize n = count() by {key} | where n > 1 | count") == [[0]]
        assert rows(ws, "VMConnection | summarize max(TimeGenerated)")[0][0] < END + timedelta(hours=3)
        total = rows(ws, "VMConnection | count")[0][0]
        assert total == before + counts["VMConnection"]
        # a stop after records were written but before the marker moved: they are written again, once
        marker.through = "2024-05-02T14:00:00Z"
        marker.save(tmp_path)
        kept = rows(ws, "VMConnection | where TimeGenerated < datetime(2024-05-02T14:00:00Z) | count")[0][0]
        assert kept < total
        again = catch_up(ws, tmp_path, Marker.load(tmp_path), now=now)
        assert again["VMConnection"] > 0
        assert rows(ws, "VMConnection | count")[0][0] == kept + again["VMConnection"]
        assert rows(ws, f"VMConnection | summarize n = count() by {key} | where n > 1 | count") == [[0]]
        # stopped for 3 days: only the last day (the demo's window) is filled
        later = END + timedelta(days=4)
        catch_up(ws, tmp_path, Marker.load(tmp_path), now=later)
        hours = rows(ws, f"VMConnection | where TimeGenerated > datetime(2024-05-02T15:00:00Z) "
                         f"| summarize min(TimeGenerated), max(TimeGenerated)")[0]
        assert hours[0] >= later - timedelta(days=1) and hours[1] >= later - timedelta(minutes=2)
    finally:
        ws.close()


def test_remove_deletes_the_simulated_machines_only(tmp_path):
    """`netatlas demo remove`: every demo record goes (every table, by Machine / resource name /
    Computer), with its Usage bytes and the demo's feed; a real machine's records stay."""
    ws, marker = _marker_workspace(tmp_path, END)
    real = dict(Computer="real-1", Machine="m-real", TimeGenerated="2024-05-02T11:00:00Z")
    try:
        ws.ingest("VMConnection", [dict(real, Direction="outbound", RemoteIp="93.184.216.34", BytesSent=10)])
        ws.ingest("VMComputer", [dict(real, Ipv4Addresses=["10.9.9.9"])])
        ws.ingest("ServiceMapComputer_CL", [dict(Computer="real-1", ResourceName_s="m-real",
                                                 TimeGenerated="2024-05-02T11:00:00Z")])
        assert rows(ws, "ThreatIntelligenceIndicator | count")[0][0] > 0
    finally:
        ws.close()
    q = _netatlas("demo", "remove", "--data", str(tmp_path))
    assert q.returncode == 0, q.stderr
    assert re.search(r"^VMConnection\s+[\d,]+$", q.stdout, re.M)
    ws = netatlas.connect(tmp_path)
    try:
        for table in TABLES:
            left = rows(ws, f"{table} | count")[0][0]
            assert left == (1 if table in ("VMConnection", "VMComputer", "ServiceMapComputer_CL") else 0), table
        assert rows(ws, "VMConnection | project Computer, Machine") == [["real-1", "m-real"]]
        assert rows(ws, "ThreatIntelligenceIndicator | count") == [[0]]
        # Usage keeps the real records' bytes only
        billed = rows(ws, "VMConnection | summarize sum(_BilledSize)")[0][0]
        usage = rows(ws, "Usage | where DataType == 'VMConnection' | summarize sum(Quantity), count()")[0]
        assert usage[1] == 1 and abs(usage[0] * 1e6 - billed) < 1e-6
        assert rows(ws, "Usage | where DataType == 'VMProcess' | count") == [[0]]
    finally:
        ws.close()
    again = _netatlas("demo", "remove", "--data", str(tmp_path))
    assert again.returncode == 0 and "already removed" in again.stderr
    none = _netatlas("demo", "remove", "--data", str(tmp_path / "nothing"))
    assert none.returncode == 2 and "holds no simulated datacenter" in none.stderr


def test_a_marker_from_before_the_live_demo_goes_on(tmp_path):
    """A workspace loaded by an earlier `up` (its marker: machines, days, seed) is completed from the
    workspace (the machines from the seed, the window's end from their last record) and caught up."""
    import json
    from netatlas.demo.live import Marker, catch_up, upgrade
    ws, marker = _marker_workspace(tmp_path, END)
    try:
        (tmp_path / ".demo-loaded").write_text(json.dumps({"machines": MIN_MACHINES, "days": 1, "seed": 4,
                                                            "records": {}, "seconds": 9.0}))
        old = Marker.load(tmp_path)
        assert old.end is None and not old.machine_ids
        assert upgrade(ws, old)
        assert (old.end, old.machine_ids, old.computers) == (marker.end, marker.machine_ids, marker.computers)
        counts = catch_up(ws, tmp_path, old, now=END + timedelta(minutes=30))
        assert counts["VMConnection"] > 0
        assert rows(ws, "VMConnection | where TimeGenerated >= datetime(2024-05-02T12:00:00Z) "
                        "| summarize dcount(bin(TimeGenerated, 1m))") == [[30]]
    finally:
        ws.close()
