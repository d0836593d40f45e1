"""Migration waves (netatlas/waves.py, `netatlas waves`): planted communities joined by thin links,
written as VMComputer and VMConnection records into a real workspace in a temporary directory, are
found exactly; the size cap and pins hold; the crossing traffic the report names equals what an
independent KQL query sums over the same VMConnection rows; the CLI writes csv and json."""
from __future__ import annotations

import csv
import io
import json
import random
from datetime import datetime, timedelta, timezone

import pytest

from netatlas import cli
from netatlas.waves import Options, WavesError, format_text, plan
from netatlas.workspace import open_workspace

NOW = datetime.now(timezone.utc).replace(microsecond=0)
T = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
OLD = (NOW - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%SZ")
# tier -> (machines, the process its machines call each other with, the port)
TIERS = {"web": (6, "nginx", 443), "app": (5, "java", 8080), "db": (7, "postgres", 5432), "cache": (4, "redis", 6379)}
# thin links between tiers: the caller tier calls the callee tier
THIN = [("web", "app"), ("app", "db"), ("app", "cache"), ("web", "cache")]


def ip(tier: str, i: int) -> str:
    return f"10.{list(TIERS).index(tier) + 1}.0.{i + 1}"


def name(tier: str, i: int) -> str:
    return f"{tier}-{i}"


def conn(caller: tuple, callee: tuple, process: str, port: int, nbytes: int, links: int = 1, t: str = T) -> list[dict]:
    """The caller's outbound row and the callee's inbound row of the same traffic."""
    (ct, ci), (dt, di) = caller, callee
    base = dict(TimeGenerated=t, SourceIp=ip(ct, ci), DestinationIp=ip(dt, di), DestinationPort=port,
                BytesSent=nbytes // 2, BytesReceived=nbytes - nbytes // 2, LinksEstablished=links)
    return [dict(base, Computer=name(ct, ci), Machine=f"m-{name(ct, ci)}", Direction="outbound",
                 ProcessName=f"{ct}-client"),
            dict(base, Computer=name(dt, di), Machine=f"m-{name(dt, di)}", Direction="inbound", ProcessName=process)]


def planted() -> tuple[list[dict], list[dict]]:
    rnd = random.Random(16)
    computers = [dict(TimeGenerated=T, Computer=name(t, i), Machine=f"m-{name(t, i)}", Ipv4Addresses=[ip(t, i)])
                 for t, (n, _, _) in TIERS.items() for i in range(n)]
    rows = []
    for t, (n, process, port) in TIERS.items():
        for i in range(n):
            for j in range(n):
                if i != j:
                    rows += conn((t, i), (t, j), process, port, rnd.randint(50_000, 90_000), rnd.randint(5, 9))
    for a, b in THIN:
        _, process, port = TIERS[b]
        rows += conn((a, 0), (b, 1), process, port, rnd.randint(100, 900))
        rows += conn((a, 2), (b, 0), process, port, rnd.randint(100, 900))
    # not dependencies: loopback, the agent shipping, and a row older than the range
    rows.append(dict(TimeGenerated=T, Computer="web-0", Machine="m-web-0", Direction="outbound", SourceIp="127.0.0.1",
                     DestinationIp="127.0.0.1", DestinationPort=9000, ProcessName="php-fpm", BytesSent=10**9))
    rows.append(dict(TimeGenerated=T, Computer="db-0", Machine="m-db-0", Direction="outbound", SourceIp=ip("db", 0),
                     DestinationIp=ip("web", 3), DestinationPort=8080, ProcessName="netatlas-agent", BytesSent=10**9))
    rows += conn(("web", 4), ("db", 4), "postgres", 5432, 10**9, t=OLD)
    # a backup server every machine sends to: one community with everything unless excluded
    computers.append(dict(TimeGenerated=T, Computer="backup", Machine="m-backup", Ipv4Addresses=["10.9.0.1"]))
    for t, (n, _, _) in TIERS.items():
        for i in range(n):
            rows.append(dict(TimeGenerated=T, Computer=name(t, i), Machine=f"m-{name(t, i)}", Direction="outbound",
                             SourceIp=ip(t, i), DestinationIp="10.9.0.1", DestinationPort=10000, ProcessName="bacula-fd",
                             BytesSent=10**7, LinksEstablished=1))
    return computers, rows


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    path = tmp_path_factory.mktemp("waves")
    w = open_workspace(str(path))
    computers, rows = planted()
    w.ingest("VMComputer", computers)
    w.ingest("VMConnection", rows)
    yield w
    w.close()


def options(**kw) -> Options:
    return Options(**{"exclude": frozenset({"bacula-fd"}), "now": NOW, **kw})


def tiers() -> list[set[str]]:
    return [{f"m-{name(t, i)}" for i in range(n)} for t, (n, _, _) in TIERS.items()]


def wave_sets(report: dict) -> list[set[str]]:
    return [{m["machine"] for m in w["machines"]} for w in report["waves"]]


def test_planted_communities_are_recovered_exactly_and_callees_move_first(ws):
    report = plan(ws, options())
    found = [set(c) for c in report["communities"]]
    assert sorted(map(sorted, found)) == sorted(map(sorted, tiers()))
    waves = wave_sets(report)
    backup = waves.pop()                    # the backup server, its traffic excluded, has no dependency left
    assert backup == {"m-backup"}
    assert sorted(map(sorted, waves)) == sorted(map(sorted, tiers()))
    first = {t: next(n for n, w in enumerate(waves) if f"m-{name(t, 0)}" in w) for t in TIERS}
    assert first["db"] < first["app"] < first["web"] and first["cache"] < first["app"]
    assert report["backward"] == 0
    # loopback, the agent and the old row do not count; the processes and ports of a machine are listed
    assert {c["process"] for c in report["crossing"]} == {"web-client", "app-client"}
    db0 = next(m for w in report["waves"] for m in w["machines"] if m["machine"] == "m-db-0")
    assert {"process": "postgres", "ports": [5432]} in db0["processes"]
    assert plan(ws, options()) == report                  # deterministic


def test_without_the_exclusion_the_backup_server_is_a_shared_service_moved_first(ws):
    """Every machine sends to the backup server: a hub between all four communities (participation
    0.74), peeled off as a shared service, so the tiers are still found exactly and the backup
    server, called by all and calling none, moves first."""
    report = plan(ws, options(exclude=frozenset()))
    assert [s["machine"] for s in report["shared_services"]] == ["m-backup"]
    assert report["shared_services"][0]["peers"] == 22 and report["shared_services"][0]["communities"] == 4
    found = [set(c) for c in report["communities"]]
    assert sorted(map(sorted, found)) == sorted(map(sorted, tiers() + [{"m-backup"}]))
    assert wave_sets(report)[0] == {"m-backup"}
    assert report["backward"] == 0
    assert "shared services: backup (22 peers in 4 communities)" in format_text(report)


def test_a_busy_machine_inside_one_community_is_not_a_shared_service(ws):
    """The planted tiers' machines all call each other (the busiest has 6 peers of its own tier):
    no machine is a hub without the backup server."""
    assert plan(ws, options())["shared_services"] == []


@pytest.mark.parametrize("cap", [1, 3, 4, 6])
def test_the_size_cap_holds_and_every_machine_is_in_one_wave(ws, cap):
    report = plan(ws, options(max_wave_size=cap))
    waves = wave_sets(report)
    assert all(0 < len(w) <= cap for w in waves)
    everyone = [m for w in waves for m in w]
    assert sorted(everyone) == sorted(set().union(*tiers(), {"m-backup"}))
    if cap >= 6:                            # the tiers that fit stay whole
        for tier in tiers():
            assert len(tier) > cap or tier in waves


def test_pins_hold_by_machine_or_computer_name_under_the_cap(ws):
    report = plan(ws, options(max_wave_size=5, pins={"m-db-3": 1, "web-2": 4, "cache-1": 9}))
    waves = wave_sets(report)
    assert "m-db-3" in waves[0] and "m-web-2" in waves[3] and "m-cache-1" in waves[8]
    assert all(len(w) <= 5 for w in waves)
    with pytest.raises(WavesError, match="pinned to wave 2"):
        plan(ws, options(max_wave_size=1, pins={"m-db-3": 2, "m-db-4": 2}))
    with pytest.raises(WavesError, match="no monitored machine"):
        plan(ws, options(pins={"nowhere": 1}))


CHECK = """declare query_parameters(since:datetime, until:datetime, caller:string, process:string, remote:string,
    port:int);
VMConnection
| where TimeGenerated >= since and TimeGenerated < until
| where Direction == "outbound" and Machine == caller and ProcessName == process and RemoteIp == remote
    and DestinationPort == port
| summarize b = sum(BytesSent) + sum(BytesReceived), c = sum(LinksEstablished), last = max(TimeGenerated)"""


@pytest.mark.parametrize("cap,weight", [(None, "bytes"), (4, "bytes"), (3, "connections")])
def test_crossing_traffic_equals_the_rows_it_names(ws, cap, weight):
    report = plan(ws, options(max_wave_size=cap, weight=weight))
    assert report["crossing"]
    since, until = NOW - timedelta(days=7), NOW
    total = 0
    for c in report["crossing"]:
        params = {"since": since.replace(tzinfo=None), "until": until.replace(tzinfo=None), "caller": c["caller"],
                  "process": c["process"], "remote": c["remote_ip"], "port": c["port"]}
        b, n, last = ws.query(CHECK, params=params).rows[0]
        assert (c["bytes"], c["connections"]) == (b, n)
        assert c["last_seen"].startswith(T[:19])
        total += b
    assert report["crossing_bytes"] == total
    # the whole crossing traffic at once: the named rows joined to VMConnection
    named = ", ".join(f"{json.dumps(c['caller'])}, {json.dumps(c['process'])}, {json.dumps(c['remote_ip'])}, {c['port']}"
                      for c in report["crossing"])
    whole = ws.query(f"""declare query_parameters(since:datetime, until:datetime);
let named = datatable(Machine:string, ProcessName:string, RemoteIp:string, DestinationPort:int)[{named}];
VMConnection
| where TimeGenerated >= since and TimeGenerated < until and Direction == "outbound"
| join kind=inner named on Machine, ProcessName, RemoteIp, DestinationPort
| summarize b = sum(BytesSent + BytesReceived), c = sum(LinksEstablished)""",
                     params={"since": since.replace(tzinfo=None), "until": until.replace(tzinfo=None)}).rows[0]
    assert tuple(whole) == (report["crossing_bytes"], report["crossing_connections"])


def test_cli_writes_csv_and_json(tmp_path, capsys):
    data = tmp_path / "ws"
    with open_workspace(str(data)) as w:
        computers, rows = planted()
        w.ingest("VMComputer", computers)
        w.ingest("VMConnection", rows)
    out_json, out_csv = tmp_path / "w.json", tmp_path / "w.csv"
    common = ["waves", "--data", str(data), "--max-wave-size", "5", "--exclude", "bacula-fd,sshd", "--pin", "m-db-3=1"]
    assert cli.main(common + ["--format", "json", "--output", str(out_json)]) == 0
    report = json.loads(out_json.read_text())
    assert all(len(w["machines"]) <= 5 for w in report["waves"])
    assert "m-db-3" in {m["machine"] for m in report["waves"][0]["machines"]}
    assert cli.main(common + ["--format", "csv", "--output", str(out_csv), "--range", "7d"]) == 0
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    calls = [r for r in rows if r["kind"] == "calls"]
    assert len(calls) == len(report["crossing"])
    assert sum(int(r["bytes"]) for r in calls) == report["crossing_bytes"]
    assert {r["machine"] for r in rows if r["kind"] == "machine"} == \
        {m["machine"] for w in report["waves"] for m in w["machines"]}
    assert cli.main(["waves", "--data", str(data), "--exclude", "bacula-fd", "--weight", "connections"]) == 0
    assert "5 waves, 4 communities" in capsys.readouterr().out
    assert cli.main(["waves", "--data", str(data), "--max-wave-size", "1", "--pin", "m-db-3=2",
                     "--pin", "m-db-4=2"]) == 2
    assert cli.main(["waves", "--data", str(data), "--range", "soon"]) == 2
    assert cli.main(["waves", "--data", str(tmp_path / "none")]) == 2
    # --to ends the range: a day that ends before the planted rows holds only the old one (web-4 -> db-4)
    capsys.readouterr()
    old = (NOW - timedelta(days=9)).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert cli.main(["waves", "--data", str(data), "--range", "2d", "--to", old, "--format", "json"]) == 0
    early = json.loads(capsys.readouterr().out)
    assert early["range"]["until"].startswith(old[:19]) and [c["caller"] for c in early["crossing"]] in ([], ["m-web-4"])
    assert {(e["caller"], e["callee"]) for e in early["edges"]} == {("m-web-4", "m-db-4")}
    assert cli.main(["waves", "--data", str(data), "--to", "yesterday"]) == 2


PLUGIN = ('VMConnection | where TimeGenerated > ago(7d) '
          '| evaluate migration_waves(MaxWaveSize=4, ExcludedProcesses=dynamic(["bacula-fd"]))')


@pytest.mark.parametrize("store", ["duckdb", "chdb"])
def test_the_kql_plugin_gives_the_waves_of_the_command(tmp_path, store):
    """`evaluate migration_waves(...)` over VMConnection, its remote addresses resolved through
    VMComputer at plan time, on DuckDB and on ClickHouse (chdb), as `waves.plan` of the same data."""
    if store == "chdb":
        pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed")
    from netatlas.workspace import Workspace
    w = Workspace(tmp_path / store, **({"store": "chdb"} if store == "chdb" else {}))
    try:
        computers, rows = planted()
        w.ingest("VMComputer", computers)
        w.ingest("VMConnection", rows)
        want = plan(w, options(max_wave_size=4))
        got = w.query(PLUGIN, now=NOW)
        assert got.columns[:4] == ["Wave", "Community", "Machine", "Computer"]
        waves: dict[int, set] = {}
        for wave, _, machine, _, _, _ in got.rows:
            waves.setdefault(wave, set()).add(machine)
        assert [waves[n] for n in sorted(waves)] == wave_sets(want)
        crossing = {r[2]: r[4] for r in got.rows}
        assert sum(crossing.values()) == 2 * want["crossing_bytes"]     # each crossing counted at both ends
        with pytest.raises(Exception, match="MaxWaveSize is a whole number"):
            w.query("VMConnection | evaluate migration_waves(0)")
    finally:
        w.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The planted workspace held by its running server, as `netatlas up` leaves it."""
    from test_server import serve_filled

    def fill(w):
        computers, rows = planted()
        w.ingest("VMComputer", computers)
        w.ingest("VMConnection", rows)
    yield from serve_filled(tmp_path_factory, "waves-served", fill)


def _answered(server) -> float:
    from test_server import request
    text = request(server.port, "GET", "/metrics").body
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("netatlas_queries_total{"))


def test_cli_asks_the_server_that_holds_the_workspace(served, tmp_path):
    out = tmp_path / "w.json"
    before = _answered(served)
    assert cli.main(["waves", "--data", str(served.data), "--exclude", "bacula-fd", "--format", "json",
                     "--output", str(out)]) == 0
    report = json.loads(out.read_text())
    assert sorted(map(sorted, report["communities"])) == sorted(map(sorted, tiers()))
    assert report["backward"] == 0 and report["crossing"]
    assert _answered(served) >= before + 3          # flows, the resolution, the inventory
