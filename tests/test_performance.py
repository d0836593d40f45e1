"""The performance and health views (netatlas/performance.py, docs/web-api.md) through a real server.

The workspace holds four machines over the hour before NOW, written here as the agent writes them
(agent/perf.py: InsightsMetrics with VM insights' names and ``vm.azm.ms/`` tags, one Heartbeat a
minute): web-01, db-01 and app-01 with VMComputer records, app-01 silent for its last 20 minutes
(its heartbeat stopped), and edge-01, which sends only counters and VM insights' Computer
Heartbeat metric (no VMComputer, no Heartbeat record). Every expected value is computed here from
the records written, or by independent KQL over /api/query; the same records copied into a
ClickHouse store (chdb) give the same answers.
"""
from __future__ import annotations

import json
import statistics
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas import performance as perf, webmap
from netatlas.webmap import Span

from test_server import assert_error_shape, request, serve_filled

NOW = datetime.now(timezone.utc).replace(second=0, microsecond=0)
HOUR = {"from": webmap.iso(NOW - timedelta(hours=1)), "to": webmap.iso(NOW)}
MINUTES = range(1, 61)                  # the records of minute k are at NOW - k minutes
SILENT = 20                             # app-01 sent nothing in its last 20 minutes


def mid(n: int) -> str:
    return f"m-00000000-0000-0000-0000-{n:012x}"


# computer -> machine id (None: no VMComputer), address, CPU base, available MB, memory MB,
#             {mount: free %}, {adapter: (read B/s, write B/s)}, minutes of silence
MACHINES = {
    "web-01.perf.test": (mid(0xa1), "10.20.0.11", 80.0, 512.0, 4096, {"/": 30.0, "/var": 60.0},
                         {"eth0": (5000.0, 20000.0)}, 0),
    "db-01.perf.test": (mid(0xa2), "10.20.0.12", 40.0, 2048.0, 8192, {"/": 70.0, "/data": 15.0},
                        {"eth0": (30000.0, 1000.0), "eth1": (1000.0, 1000.0)}, 0),
    "app-01.perf.test": (mid(0xa3), "10.20.0.13", 10.0, 1024.0, 2048, {"/": 50.0}, {"eth0": (100.0, 200.0)}, SILENT),
    "edge-01.perf.test": (None, "10.20.0.14", 60.0, None, None, {}, {"eth0": (10.0, 5000.0)}, 0),
}
STOPPED = {"app-01.perf.test"}


def minutes_of(computer: str) -> list[int]:
    return [k for k in MINUTES if k > MACHINES[computer][7]]


def cpu(computer: str, k: int) -> float:
    base = MACHINES[computer][2]
    return base if MACHINES[computer][0] is None else base + k % 5


def tags(**kv) -> str:
    return json.dumps({f"vm.azm.ms/{k}": v for k, v in kv.items()}, separators=(",", ":"))


def fill(ws) -> None:
    metrics, beats, computers = [], [], []
    for computer, (machine, ip, _, avail, size, mounts, adapters, _) in MACHINES.items():
        if machine is not None:
            computers.append(dict(TimeGenerated=(NOW - timedelta(minutes=50)).isoformat(), Computer=computer,
                                  Machine=machine, HostName=computer.split(".")[0], Ipv4Addresses=[ip],
                                  Ipv4SubnetMasks=["255.255.255.0"], OperatingSystemFullName="Debian GNU/Linux 12",
                                  Cpus=2))
        for k in minutes_of(computer):
            t = (NOW - timedelta(minutes=k)).isoformat()
            base = dict(TimeGenerated=t, Computer=computer, AgentId="agent-" + computer, Origin="vm.azm.ms")
            metrics.append(dict(base, Namespace="Processor", Name="UtilizationPercentage", Val=cpu(computer, k),
                                Tags=tags(totalCpus=2)))
            metrics.append(dict(base, Namespace="Computer", Name="Heartbeat", Val=1.0, Tags="{}"))
            if avail is not None:
                metrics.append(dict(base, Namespace="Memory", Name="AvailableMB", Val=avail,
                                    Tags=tags(memorySizeMB=size)))
            for mount, free in mounts.items():
                metrics.append(dict(base, Namespace="LogicalDisk", Name="FreeSpacePercentage", Val=free,
                                    Tags=tags(mountId=mount)))
                metrics.append(dict(base, Namespace="LogicalDisk", Name="ReadBytesPerSecond", Val=100.0 * k,
                                    Tags=tags(mountId=mount)))
            for adapter, (read, write) in adapters.items():
                metrics.append(dict(base, Namespace="Network", Name="ReadBytesPerSecond", Val=read,
                                    Tags=tags(networkDeviceId=adapter)))
                metrics.append(dict(base, Namespace="Network", Name="WriteBytesPerSecond", Val=write,
                                    Tags=tags(networkDeviceId=adapter)))
            if machine is not None:
                beats.append(dict(TimeGenerated=t, Computer=computer, ComputerIP=ip, OSType="Linux",
                                  OSName="Debian GNU/Linux", Version="1.0", Category="Direct Agent"))
    ws.ingest("VMComputer", computers)
    ws.ingest("InsightsMetrics", metrics)
    ws.ingest("Heartbeat", beats)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_filled(tmp_path_factory, "performance", fill)


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def get(client, path: str, **params):
    return client.call("GET", path + ("?" + urllib.parse.urlencode(params) if params else ""))


def ok(client, path: str, **params) -> dict:
    r = get(client, path, **params)
    assert r.status == 200, r.body
    return r.body


def kql(client, text: str) -> list[dict]:
    r = client.query(text)
    assert r.status == 200, r.body
    t = r.body["tables"][0]
    return [dict(zip([c["name"] for c in t["columns"]], row)) for row in t["rows"]]


# ---------------------------------------------------------------- without a server

def test_the_step_fits_the_range_in_at_most_max_points_bins():
    cases = {timedelta(minutes=30): 60, timedelta(hours=1): 60, timedelta(hours=6): 300, timedelta(days=1): 900,
             timedelta(days=7): 7200, timedelta(days=30): 21600, timedelta(days=365): 4 * 86400}
    for length, seconds in cases.items():
        span = Span(NOW - length, NOW)
        step = perf.step_of(span)
        assert step.total_seconds() == seconds, length
        bins = perf.bins_of(span, step)
        assert len(bins) <= perf.MAX_POINTS and bins[0] == span.start and bins[-1] < span.end <= bins[-1] + step


def test_heartbeat_state_is_stopped_only_past_stale_and_with_heartbeats():
    end = NOW
    assert webmap.heartbeat_state(None, end, end) == {"last_heartbeat": None, "heartbeat_stopped": False}
    fresh = webmap.heartbeat_state(end - webmap.STALE, end, end)
    assert fresh == {"last_heartbeat": webmap.iso(end - webmap.STALE), "heartbeat_stopped": False}
    assert webmap.heartbeat_state(end - webmap.STALE - timedelta(seconds=1), end, end)["heartbeat_stopped"]
    # a range that ends later than now is judged as of now
    assert not webmap.heartbeat_state(end - timedelta(minutes=1), end + timedelta(hours=1), end)["heartbeat_stopped"]


def test_every_counter_query_plans_on_the_catalogue():
    ws = netatlas.connect(None)
    try:
        for counter in perf.COUNTERS.values():
            for stat in perf.STATS:
                ws.query(perf.ranking_query(counter, stat), params=dict(
                    start=NOW - timedelta(hours=1), stop=NOW, namespace=counter.namespace, name=counter.name, n=3))
            ws.query(perf.series_query(counter), params=dict(
                start=NOW - timedelta(hours=1), stop=NOW, namespace=counter.namespace, name=counter.name,
                width=timedelta(minutes=1), computers=["a"]))
    finally:
        ws.close()


# ---------------------------------------------------------------- GET /api/performance

def expected_values(counter: str) -> dict[str, list[float]]:
    """Per machine, its values of the counter (one per minute), computed from what fill() wrote."""
    out = {}
    for computer, (_, _, _, avail, size, mounts, adapters, _) in MACHINES.items():
        per = {
            "cpu": lambda k: cpu(computer, k),
            "memory_available_mb": lambda k: avail,
            "memory_available_percent": lambda k: 100.0 * avail / size if avail is not None else None,
            "disk_used_percent": lambda k: max(100.0 - f for f in mounts.values()) if mounts else None,
            "network_sent": lambda k: sum(w for _, w in adapters.values()),
            "network_received": lambda k: sum(r for r, _ in adapters.values()),
        }[counter]
        values = [per(k) for k in minutes_of(computer)]
        if values and values[0] is not None:
            out[computer] = values
    return out


@pytest.mark.parametrize("counter", ["cpu", "memory_available_mb", "memory_available_percent", "disk_used_percent",
                                     "network_sent", "network_received"])
def test_machines_are_ranked_by_the_average_of_a_counter(client, counter):
    got = ok(client, "/api/performance", counter=counter, **HOUR)
    values = expected_values(counter)
    order = perf.COUNTERS[counter].order
    expected = sorted(values, key=lambda c: (statistics.fmean(values[c]) * (-1 if order == "desc" else 1), c))
    assert [m["computer"] for m in got["machines"]] == expected
    assert got["counter"]["id"] == counter and got["stat"] == "avg" and got["top"] == 10
    for m in got["machines"]:
        v = values[m["computer"]]
        assert m["value"] == m["avg"] == pytest.approx(statistics.fmean(v), abs=1e-3)
        assert m["max"] == pytest.approx(max(v)) and m["min"] == pytest.approx(min(v))
        assert m["samples"] == len(v)
        assert m["id"] == MACHINES[m["computer"]][0]
        assert m["heartbeat_stopped"] == (m["computer"] in STOPPED)
        silent = MACHINES[m["computer"]][7]
        assert m["last_heartbeat"] == webmap.iso(NOW - timedelta(minutes=silent + 1))
    assert [c["id"] for c in got["counters"]] == list(perf.COUNTERS) and got["stats"] == list(perf.STATS)


def test_the_ranking_carries_each_machines_series_over_the_ranges_bins(client):
    got = ok(client, "/api/performance", counter="cpu", **HOUR)
    assert got["step_seconds"] == 60 and len(got["times"]) == 60
    assert got["times"][0] == HOUR["from"]
    for m in got["machines"]:
        by_time = {webmap.iso(NOW - timedelta(minutes=k)): cpu(m["computer"], k) for k in minutes_of(m["computer"])}
        assert len(m["series"]) == 60
        assert m["series"] == [by_time.get(t) for t in got["times"]]
    # a day: 15-minute bins, each the average of its minutes
    day = {"from": webmap.iso(NOW - timedelta(days=1)), "to": HOUR["to"]}
    got = ok(client, "/api/performance", counter="cpu", **day)
    assert got["step_seconds"] == 900 and len(got["times"]) == 96
    web = next(m for m in got["machines"] if m["computer"] == "web-01.perf.test")
    starts = [datetime.fromisoformat(t.replace("Z", "+00:00")) for t in got["times"]]
    for i, start in enumerate(starts):
        inside = [cpu("web-01.perf.test", k) for k in MINUTES
                  if start <= NOW - timedelta(minutes=k) < start + timedelta(minutes=15)]
        assert web["series"][i] == (pytest.approx(statistics.fmean(inside)) if inside else None)


def test_top_n_and_the_statistics_match_independent_kql(client):
    two = ok(client, "/api/performance", counter="cpu", top=2, **HOUR)
    assert [m["computer"] for m in two["machines"]] == ["web-01.perf.test", "edge-01.perf.test"]
    rows = kql(client, f"""InsightsMetrics
        | where TimeGenerated >= datetime({HOUR['from']}) and TimeGenerated < datetime({HOUR['to']})
        | where Namespace == "Processor" and Name == "UtilizationPercentage"
        | summarize P95 = percentile(Val, 95), P50 = percentile(Val, 50), Max = max(Val) by Computer""")
    for stat in ("p95", "p50", "max"):
        got = ok(client, "/api/performance", counter="cpu", stat=stat, **HOUR)
        expected = sorted(rows, key=lambda r: (-r[stat.upper() if stat != "max" else "Max"], r["Computer"]))
        assert [m["computer"] for m in got["machines"]] == [r["Computer"] for r in expected]
        for m, r in zip(got["machines"], expected):
            assert m["value"] == pytest.approx(r[stat.upper() if stat != "max" else "Max"])


def test_a_counter_nobody_reports_is_an_empty_list(client):
    got = ok(client, "/api/performance", counter="disk_latency", **HOUR)
    assert got["machines"] == [] and len(got["times"]) == 60


# ---------------------------------------------------------------- GET /api/machines/{id}/performance

def series(answer: dict, chart: str) -> dict[str, list]:
    [c] = [c for c in answer["charts"] if c["id"] == chart]
    return {s["name"]: s["values"] for s in c["series"]}


def test_a_machines_charts_over_the_range(client):
    computer = "db-01.perf.test"
    machine, ip = MACHINES[computer][:2]
    got = ok(client, f"/api/machines/{machine}/performance", **HOUR)
    assert (got["id"], got["computer"]) == (machine, computer)
    assert [c["id"] for c in got["charts"]] == [c.id for c in perf.CHARTS]
    times = got["times"]
    at = {webmap.iso(NOW - timedelta(minutes=k)): k for k in MINUTES}
    assert series(got, "cpu") == {"CPU": [cpu(computer, at[t]) if t in at else None for t in times]}
    assert series(got, "memory") == {"available": [2048.0 if t in at else None for t in times]}
    assert series(got, "memory_percent") == {"available": [25.0 if t in at else None for t in times]}
    assert series(got, "disk_free") == {"/": [70.0 if t in at else None for t in times],
                                        "/data": [15.0 if t in at else None for t in times]}
    # read bytes summed over the mounts; no write counter written: no "write" line
    assert series(got, "disk_io") == {"read": [200.0 * at[t] if t in at else None for t in times]}
    assert series(got, "network") == {
        "eth0 received": [30000.0 if t in at else None for t in times],
        "eth0 sent": [1000.0 if t in at else None for t in times],
        "eth1 received": [1000.0 if t in at else None for t in times],
        "eth1 sent": [1000.0 if t in at else None for t in times]}
    assert got["memory_mb"] == 8192
    assert got["last_heartbeat"] == webmap.iso(NOW - timedelta(minutes=1)) and not got["heartbeat_stopped"]
    # by name or address: the same answer
    assert ok(client, f"/api/machines/{computer}/performance", **HOUR) == got
    assert ok(client, f"/api/machines/{ip}/performance", **HOUR) == got


def test_a_silent_machine_and_a_counters_only_machine(client):
    app = ok(client, "/api/machines/app-01.perf.test/performance", **HOUR)
    assert app["heartbeat_stopped"] and app["last_heartbeat"] == webmap.iso(NOW - timedelta(minutes=SILENT + 1))
    assert series(app, "cpu")["CPU"][-SILENT:] == [None] * SILENT
    edge = ok(client, "/api/machines/edge-01.perf.test/performance", **HOUR)
    assert edge["id"] is None and edge["computer"] == "edge-01.perf.test"
    # its heartbeat is InsightsMetrics' Computer Heartbeat
    assert edge["last_heartbeat"] == webmap.iso(NOW - timedelta(minutes=1)) and not edge["heartbeat_stopped"]
    assert series(edge, "cpu")["CPU"][-1] == 60.0
    assert series(edge, "memory") == {} and series(edge, "disk_free") == {}


# ---------------------------------------------------------------- the map marks stopped heartbeats

def test_the_map_marks_the_machines_whose_heartbeat_stopped(client):
    got = ok(client, "/api/map", group="all", **HOUR)
    machines = {m["computer"]: m for m in got["machines"]}
    assert set(machines) == {c for c, v in MACHINES.items() if v[0] is not None}
    for computer, m in machines.items():
        assert m["heartbeat_stopped"] == (computer in STOPPED)
        assert m["last_heartbeat"] == webmap.iso(NOW - timedelta(minutes=MACHINES[computer][7] + 1))
    # as of a range that ended before app-01 went silent, its heartbeat had not stopped
    earlier = {"from": webmap.iso(NOW - timedelta(minutes=50)), "to": webmap.iso(NOW - timedelta(minutes=30))}
    app = next(m for m in ok(client, "/api/map", machine="app-01.perf.test", **earlier)["machines"]
               if m["computer"] == "app-01.perf.test")
    assert not app["heartbeat_stopped"] and app["last_heartbeat"] == webmap.iso(NOW - timedelta(minutes=31))


# ---------------------------------------------------------------- bad input: a clear 4xx, never a 500

BAD = [
    ("/api/performance", {}, "counter", "counter is required"),
    ("/api/performance", {"counter": "gpu"}, "counter", "cpu"),
    ("/api/performance", {"counter": "cpu", "top": "0"}, "top", "1 to 100"),
    ("/api/performance", {"counter": "cpu", "top": "101"}, "top", "1 to 100"),
    ("/api/performance", {"counter": "cpu", "top": "ten"}, "top", "1 to 100"),
    ("/api/performance", {"counter": "cpu", "top": "-3"}, "top", "1 to 100"),
    ("/api/performance", {"counter": "cpu", "stat": "p99"}, "stat", "p95"),
    ("/api/performance", {"counter": "cpu", "from": "yesterday"}, "from", "ISO 8601"),
    ("/api/performance", {"counter": "cpu", "to": "2026-13-45T00:00:00Z"}, "to", "ISO 8601"),
    ("/api/performance", {"counter": "cpu", "from": HOUR["to"], "to": HOUR["from"]}, "from", "before"),
    ("/api/performance", {"counter": "cpu", "to": "0001-01-01T00:10:00Z"}, "from", "give from"),
    ("/api/performance", {"counter": "cpu", "top": "\uff11\uff10"}, "top", "1 to 100"),       # fullwidth digits
    ("/api/performance", {"counter": "cpu", "from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"},
     "from", "earliest"),
    ("/api/machines/edge-01.perf.test/performance", {"from": "0001-01-01T00:00:00Z", "to": "0001-01-01T00:00:01Z"},
     "from", "earliest"),
    ("/api/machines/nosuch/performance", {"from": "0001-01-02T00:00:00Z", "to": "0001-01-05T00:00:00Z"},
     "from", "earliest"),
    ("/api/map", {"group": "all", "from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "from", "earliest"),
    ("/api/network", {"from": "0001-01-01T00:00:00Z", "to": "0001-01-02T00:00:00Z"}, "from", "earliest"),
    ("/api/edges", {"source": "p-1", "target": "p-2", "port": "1", "from": "0001-01-01T00:00:00Z",
                    "to": "0001-01-02T00:00:00Z"}, "from", "earliest"),
    ("/api/machines/web-01.perf.test/performance", {"from": "soon"}, "from", "ISO 8601"),
    ("/api/machines/web-01.perf.test/performance", {"from": HOUR["to"], "to": HOUR["to"]}, "from", "before"),
    ("/api/machines/web-01.perf.test/performance", {"to": "0001-01-01T00:00:00"}, "from", "give from"),
]


@pytest.mark.parametrize("path, params, field, words", BAD)
def test_bad_input_is_a_400_naming_the_parameter(client, path, params, field, words):
    err = assert_error_shape(get(client, path, **params), 400, "BAD_PARAMETER")
    assert err["field"] == field and words in err["message"], err


def test_an_unknown_machine_is_a_404_and_no_key_a_401(client, server):
    err = assert_error_shape(get(client, "/api/machines/nosuch.perf.test/performance", **HOUR), 404,
                             "MACHINE_NOT_FOUND")
    assert "nosuch.perf.test" in err["message"]
    for path in ("/api/performance?counter=cpu", "/api/machines/web-01.perf.test/performance"):
        assert_error_shape(request(server.port, "GET", path), 401)


def test_the_widest_range_is_answered_in_few_bins(client):
    widest = {"from": "0001-01-03T00:00:00Z", "to": "9999-12-31T23:59:59.999999Z"}
    got = ok(client, "/api/performance", counter="cpu", **widest)
    assert len(got["times"]) <= perf.MAX_POINTS and len(got["machines"]) == len(MACHINES)
    for path in ("/api/machines/web-01.perf.test/performance", "/api/machines/edge-01.perf.test/performance"):
        got = ok(client, path, **widest)
        assert len(got["times"]) <= perf.MAX_POINTS and got["last_heartbeat"] is None     # none in 9999
    assert len(ok(client, "/api/map", group="all", **widest)["machines"]) == 3


# ---------------------------------------------------------------- the same answers from ClickHouse

@pytest.fixture(scope="module")
def stores():
    chdb_store = pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed: pip install -e '.[clickhouse]'")
    from netatlas.store import copy_tables
    from netatlas.workspace import StoreWorkspace
    duck = netatlas.connect()
    fill(duck)
    ch = StoreWorkspace(chdb_store.ChdbStore(None), duck.catalogue, retention={t: 4383 for t in duck.catalogue.names()})
    assert copy_tables(duck, ch.store)["InsightsMetrics"] > 1000
    yield duck, ch
    ch.close()
    duck.close()


def test_the_performance_answers_are_the_same_on_clickhouse(stores):
    duck, ch = stores
    span = Span(NOW - timedelta(hours=1), NOW)
    day = Span(NOW - timedelta(days=1), NOW)
    for counter in perf.COUNTERS:
        for stat in perf.STATS:
            want = perf.top_machines(duck, counter, stat, 10, span, now=NOW)
            assert perf.top_machines(ch, counter, stat, 10, span, now=NOW) == want, (counter, stat)
        assert perf.top_machines(ch, counter, "avg", 3, day, now=NOW) == \
            perf.top_machines(duck, counter, "avg", 3, day, now=NOW), counter
    for key in list(MACHINES) + [mid(0xa1), "10.20.0.12"]:
        for s in (span, day):
            assert perf.machine_performance(ch, key, s, now=NOW) == perf.machine_performance(duck, key, s, now=NOW), key
    want = webmap.build_map(duck, webmap.Selection("all"), span)
    assert [(m["computer"], m["last_heartbeat"], m["heartbeat_stopped"]) for m in want["machines"]] == \
        [(m["computer"], m["last_heartbeat"], m["heartbeat_stopped"])
         for m in webmap.build_map(ch, webmap.Selection("all"), span)["machines"]]
