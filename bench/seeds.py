"""Seed-query benchmark: every query of netatlas/seed-queries.kql on the simulated datacenter, beside
the same work done by hand-written DuckDB SQL.

    python bench/seeds.py [--repeat 5] [--http] [--query NAME] [--check]

The data is the simulated datacenter of `netatlas demo`: 200 machines over the 7 days up to
2026-11-25 00:00 UTC (seed 1), created once in bench/.data/demo-<machines>x<days>/ and reused
while its marker file (bench-seeds.json, written after a successful generation) matches.
For each seed query it measures `Workspace.query(kql, now=<data end>)` end to end (compile,
execute, rows converted to Python values; a query run again runs as a prepared statement) against
the hand-written SQL on the same DuckDB connection, run as `connection.execute(sql).fetchall()`
and as a prepared statement (the faster of the two counts), the median over --repeat interleaved
runs after one warm-up each (more for a short query: until each side ran about MIN_SECONDS, at most
MAX_RUNS times; a 20 ms query measured 7 times varies by 15 %), and checks that both return the same rows. With --http it then serves the
workspace (`netatlas workspace serve`) and times the same queries through POST /api/query.
No goal is set: the numbers are a report (--check exits 1 only when a result differs).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PreparedHand, _same, _sort_key, _value  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / ".data"
SEEDS_FILE = ROOT / "netatlas" / "seed-queries.kql"   # the seed's queries, shipped with the package
SCHEMAS_FILE = ROOT / "netatlas" / "schemas.json"
MACHINES = 200
DAYS = 7
SEED = 1
END = datetime(2026, 11, 25, tzinfo=timezone.utc)  # the end of the simulated window, and now() for the queries
MARKER = "bench-seeds.json"  # written into the workspace directory once the demo data is complete
MARKER_VERSION = 1  # bump when what the marker vouches for changes, so cached workspaces are rebuilt
COMPARE_LIMIT = 200_000  # results up to this many rows are compared row by row, larger ones by count
RETENTION_DAYS_MAX = 4383  # the server's retention pass at start must not eat the (dated) bench data
SERVER_START_TIMEOUT = 90.0
HTTP_TIMEOUT = 900.0
USES_NOW = re.compile(r"\b(now|ago)\s*\(")


# ---------------------------------------------------------------- the hand-written SQL

@dataclass(frozen=True)
class Hand:
    """The hand-written side of one seed block.

    sql: DuckDB SQL with placeholders {now} (the query's now(), a TIMESTAMP literal body),
    {since} (now minus 24 hours) and {cap} (netatlas's row cap, for queries returning raw rows);
    None when the block is skipped, with the reason in `skip`.
    sets: dynamic columns holding make_set arrays, whose element order Kusto leaves open."""
    name: str
    sql: str | None
    skip: str | None = None
    sets: tuple[str, ...] = ()


def _schemas() -> dict[str, list[tuple[str, str]]]:
    return {t: [tuple(c) for c in cols] for t, cols in json.loads(SCHEMAS_FILE.read_text()).items()}


def _text_columns(table: str) -> list[str]:
    """The columns `search` can match the terms of the seed queries in, as SQL text: strings and guids.
    (Datetimes and reals render as digits, dashes, colons and dots: no resource name, IP or 'sql'.)"""
    cols = []
    for name, typ in _schemas()[table]:
        if typ == "string":
            cols.append(f'"{name}"')
        elif typ == "guid":
            cols.append(f'CAST("{name}" AS VARCHAR)')
    return cols


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def search_has(table: str, term: str) -> str:
    """`search in (table) "term"`: some column holds the term as a whole term, case-insensitively.
    A cheap substring test first, the term-boundary regex only on the rows that pass it."""
    pattern = _sql_str(r"(^|[^[:alnum:]])" + re.escape(term.lower()) + r"($|[^[:alnum:]])")
    needle = _sql_str(term.lower())
    return "\n   OR ".join(f"(contains(lower({c}), {needle}) AND regexp_matches({c}, {pattern}, 'i'))"
                          for c in _text_columns(table))


def search_contains(table: str, text: str) -> str:
    """`search in (table) "*text*"`: some column contains text, case-insensitively."""
    like = _sql_str("%" + text.replace("%", r"\%").replace("_", r"\_") + "%")
    return "\n   OR ".join(f"{c} ILIKE {like}" for c in _text_columns(table))


LATEST = "QUALIFY row_number() OVER (PARTITION BY {key} ORDER BY TimeGenerated DESC) = 1"
DEPENDENCIES_OF = "m-82412a7a-6a32-45a9-a8d6-538354224a25"


def hand_queries() -> dict[str, Hand]:
    """Seed block title -> its hand-written DuckDB SQL."""
    latest_by_resource = LATEST.format(key="ResourceId")
    return {
        "Sessions per machine and process (blog, example 2)": Hand("sessions_per_process", """
-- the full outer join pairs every connection record with every VMComputer record of its computer:
-- count both sides per computer and multiply instead of building the pairs
WITH c AS (SELECT Computer, ProcessName, count(*) AS n FROM VMConnection GROUP BY ALL),
     m AS (SELECT Computer, count(*) AS n FROM VMComputer GROUP BY ALL)
SELECT coalesce(c.Computer, '') AS Computer, coalesce(c.ProcessName, '') AS ProcessName,
       CAST(sum(coalesce(c.n, 1) * coalesce(m.n, 1)) AS BIGINT) AS count_
FROM c FULL JOIN m ON c.Computer = m.Computer
GROUP BY ALL
HAVING count_ > 100000
ORDER BY Computer, count_ DESC"""),

        "Remote endpoints on the world map (blog, example 3)": Hand("world_map", """
SELECT RemoteCountry, RemoteLatitude, RemoteLongitude, BytesSent
FROM VMConnection
WHERE RemoteLatitude > 0
LIMIT {cap}"""),

        "Remote endpoints with DNS names (blog, example 4)": Hand("endpoints_with_dns", """
SELECT RemoteCountry, RemoteLatitude, RemoteLongitude, BytesSent, SourceIp, DestinationIp, RemoteDnsQuestions
FROM VMConnection
ORDER BY RemoteCountry DESC
LIMIT {cap}"""),

        "Connections by FQDN (blog, example 4)": Hand("connections_by_fqdn", """
SELECT RemoteDnsQuestions, count(*) AS CountAll
FROM VMConnection
WHERE RemoteDnsQuestions <> ''
GROUP BY RemoteDnsQuestions
ORDER BY CountAll DESC"""),

        "Connections without FQDN, localhost excluded (blog, example 4)": Hand("no_fqdn_by_computer", """
SELECT Computer, count(*) AS CountAll
FROM VMConnection
WHERE RemoteDnsQuestions = '' AND (DestinationIp <> '127.0.0.1' OR SourceIp <> '127.0.0.1')
GROUP BY Computer"""),

        "Machine inventory, latest record (blog, example 6)": Hand("inventory_latest", f"""
SELECT ComputerName_s, VirtualMachineType_s, VirtualizationState_s, OperatingSystemFullName_s, DnsNames_s,
       Ipv4Addresses_s, CpuSpeed_d, Cpus_d, PhysicalMemory_d
FROM ServiceMapComputer_CL
{latest_by_resource}"""),

        "Distinct process identities (blog, example 7)": Hand("process_identities", """
SELECT DISTINCT DisplayName, ProductVersion, Description, "Group", CompanyName, InternalName, CommandLine,
       UserName, UserDomain
FROM VMProcess
ORDER BY DisplayName"""),

        "Clusters of machines talking together (blog, example 5; the blog left the query to be written)": Hand(
            "autocluster", None, skip="autocluster is netatlas's own greedy algorithm (Kusto does not publish one): no hand-written SQL to compare"),

        "List all known machines (docs)": Hand("all_machines", f"""
SELECT ResourceId, TimeGenerated, * EXCLUDE (ResourceId, TimeGenerated)
FROM ServiceMapComputer_CL
{latest_by_resource}"""),

        "When was the VM last rebooted (docs)": Hand("last_reboot", """
SELECT DISTINCT Computer, TIMESTAMP '{now}' - BootTime_t AS DaysSinceBoot, BootTime_t
FROM ServiceMapComputer_CL
ORDER BY BootTime_t"""),

        "Summary of Azure VMs by image, location, and SKU (docs)": Hand("azure_vm_summary", """
SELECT DISTINCT ComputerName_s, AzureImageOffering_s, AzureLocation_s, AzureImageSku_s
FROM ServiceMapComputer_CL
WHERE AzureLocation_s <> ''"""),

        "Physical memory of all managed computers (docs)": Hand("physical_memory", f"""
SELECT PhysicalMemory_d, ComputerName_s
FROM ServiceMapComputer_CL
{latest_by_resource}"""),

        "Computer name, DNS, IP, and OS (docs)": Hand("name_dns_ip_os", f"""
SELECT ComputerName_s, OperatingSystemFullName_s, DnsNames_s, Ipv4Addresses_s
FROM ServiceMapComputer_CL
{latest_by_resource}"""),

        'Processes with "sql" in the command line (docs)': Hand("sql_command_lines", f"""
SELECT ResourceId, TimeGenerated, * EXCLUDE (ResourceId, TimeGenerated)
FROM ServiceMapProcess_CL
WHERE contains(CommandLine_s, 'sql')
{latest_by_resource}"""),

        "Find a machine by resource name (docs)": Hand("find_by_resource_name", f"""
SELECT ResourceId, TimeGenerated, 'ServiceMapComputer_CL' AS "$table", * EXCLUDE (ResourceId, TimeGenerated)
FROM ServiceMapComputer_CL
WHERE {search_has("ServiceMapComputer_CL", "m-4b9c93f9-bc37-46df-b43c-899ba829e07b")}
{latest_by_resource}"""),

        "Find a machine by IP address (docs)": Hand("find_by_ip", f"""
SELECT ResourceId, TimeGenerated, 'ServiceMapComputer_CL' AS "$table", * EXCLUDE (ResourceId, TimeGenerated)
FROM ServiceMapComputer_CL
WHERE {search_has("ServiceMapComputer_CL", "10.229.243.232")}
{latest_by_resource}"""),

        "All known processes on a machine (docs)": Hand("machine_processes", f"""
SELECT ResourceId, TimeGenerated, * EXCLUDE (ResourceId, TimeGenerated)
FROM ServiceMapProcess_CL
WHERE MachineResourceName_s = 'm-559dbcd8-3130-454d-8d1d-f624e57961bc'
{latest_by_resource}"""),

        "All computers running SQL Server (docs)": Hand("sql_server_computers", f"""
SELECT DISTINCT ComputerName_s
FROM ServiceMapComputer_CL
WHERE ResourceName_s IN (
    SELECT MachineResourceName_s
    FROM ServiceMapProcess_CL
    WHERE {search_contains("ServiceMapProcess_CL", "sql")})"""),

        "Unique product versions of curl (docs)": Hand("curl_versions", """
SELECT DISTINCT ProductVersion_s
FROM ServiceMapProcess_CL
WHERE ExecutableName_s = 'curl'"""),

        "Computer group of all computers running CentOS (docs)": Hand("centos_computers", """
SELECT DISTINCT ComputerName_s
FROM ServiceMapComputer_CL
WHERE contains(OperatingSystemFullName_s, 'CentOS')"""),

        "Bytes sent and received per hour and machine (docs)": Hand("bytes_per_hour", """
SELECT date_trunc('hour', TimeGenerated) AS TimeGenerated, Computer,
       CAST(sum(BytesSent) AS BIGINT) AS sum_BytesSent, CAST(sum(BytesReceived) AS BIGINT) AS sum_BytesReceived
FROM VMConnection
GROUP BY ALL
ORDER BY Computer DESC"""),

        "Which machines transmit the most bytes (docs)": Hand("most_bytes", """
-- as for sessions_per_process: count per computer on each side of the full outer join, multiply
WITH c AS (SELECT Computer, count(BytesSent) AS n FROM VMConnection GROUP BY Computer),
     s AS (SELECT ComputerName_s, AzureVMSize_s, count(*) AS n FROM ServiceMapComputer_CL GROUP BY ALL)
SELECT coalesce(c.Computer, '') AS Computer, coalesce(s.AzureVMSize_s, '') AS AzureVMSize_s,
       CAST(sum(coalesce(c.n, 0) * coalesce(s.n, 1)) AS BIGINT) AS count_BytesSent
FROM c FULL JOIN s ON c.Computer = s.ComputerName_s
GROUP BY ALL
ORDER BY count_BytesSent DESC"""),

        "Link status trends (docs)": Hand("link_status_24h", """
SELECT date_trunc('hour', TimeGenerated) AS TimeGenerated,
       count(DISTINCT LinksEstablished) AS dcount_LinksEstablished,
       count(DISTINCT LinksLive) AS dcount_LinksLive,
       count(DISTINCT LinksFailed) AS dcount_LinksFailed,
       count(DISTINCT LinksTerminated) AS dcount_LinksTerminated
FROM VMConnection
WHERE TimeGenerated >= TIMESTAMP '{since}' AND Computer = 'acme-demo'
GROUP BY 1"""),

        "Connection failures trend (docs)": Hand("failures_by_hour", """
SELECT hour(TimeGenerated) AS bythehour, count(*) AS failCount
FROM VMConnection
WHERE Computer = 'acme-demo'
GROUP BY bythehour
ORDER BY bythehour"""),

        "Bound ports (docs)": Hand("bound_ports_24h", """
SELECT DISTINCT Port, ProcessName
FROM VMBoundPort
WHERE TimeGenerated >= TIMESTAMP '{since}' AND Computer = 'admdemo-appsvr'"""),

        "Number of open ports across machines (docs)": Hand("open_ports_by_machine", """
SELECT Computer, Machine, count(DISTINCT (Port, Protocol)) AS OpenPorts
FROM VMBoundPort
WHERE Ip <> '127.0.0.1'
GROUP BY Computer, Machine
ORDER BY OpenPorts DESC"""),

        "Score processes by the number of ports they have open (docs)": Hand("ports_by_process", """
SELECT ProcessName, count(DISTINCT (Port, Protocol)) AS OpenPorts
FROM VMBoundPort
WHERE Ip <> '127.0.0.1'
GROUP BY ProcessName
ORDER BY OpenPorts DESC"""),

        "Aggregate behavior for each port (docs)": Hand("port_behaviour", """
SELECT Machine, Computer, ProcessName, Ip, Port, IsWildcardBind,
       CAST(sum(BytesSent) AS BIGINT) AS BytesSent, CAST(sum(BytesReceived) AS BIGINT) AS BytesReceived,
       CAST(sum(LinksEstablished) AS BIGINT) AS LinksEstablished, CAST(sum(LinksTerminated) AS BIGINT) AS LinksTerminated,
       arg_max(LinksLive, TimeGenerated) AS LinksLive
FROM VMBoundPort
WHERE Ip <> '127.0.0.1'
GROUP BY Machine, Computer, ProcessName, Ip, Port, IsWildcardBind
ORDER BY Machine DESC, Computer DESC, Port DESC, Ip DESC, ProcessName DESC"""),

        "Outbound dependencies of a group of machines (docs)": Hand("outbound_dependencies", f"""
WITH ips AS (        -- every IPv4 address a monitored machine ever reported
    SELECT DISTINCT ResourceName_s AS MonitoredMachine,
           unnest(json_extract_string(Ipv4Addresses_s, '$[*]')) AS ip
    FROM ServiceMapComputer_CL
    WHERE Ipv4Addresses_s <> ''
), latest AS (       -- the latest record of each connection of the machines of interest
    SELECT ConnectionId, Direction, Machine, Process, ProcessName, SourceIp, DestinationIp, DestinationPort,
           Protocol, RemoteIp, starts_with(RemoteIp, '127.') AS loopback
    FROM VMConnection
    WHERE Machine IN ('{DEPENDENCIES_OF}')
    QUALIFY row_number() OVER (PARTITION BY ConnectionId ORDER BY TimeGenerated DESC) = 1
), conns AS (        -- with the monitored machine at the other end: itself for loopback, else by IP
    SELECT DISTINCT l.*,
           CASE WHEN l.loopback THEN l.Machine ELSE coalesce(i.MonitoredMachine, '') END AS RemoteMachine
    FROM latest l LEFT JOIN ips i ON NOT l.loopback AND l.RemoteIp = i.ip
), ports AS (        -- the latest record of every port bound on those remote machines
    SELECT Machine, Ip, Port, Protocol, Process, ProcessName
    FROM VMBoundPort
    WHERE Machine IN (SELECT RemoteMachine FROM conns WHERE NOT loopback)
    QUALIFY row_number() OVER (PARTITION BY PortId ORDER BY TimeGenerated DESC) = 1
)
SELECT c.ConnectionId, c.Direction, c.Machine, c.Process, c.ProcessName, c.SourceIp, c.DestinationIp,
       c.DestinationPort, c.Protocol,
       to_json(list(DISTINCT CASE WHEN c.RemoteMachine = '' THEN JSON '{{}}'
                                  ELSE json_object('Machine', c.RemoteMachine, 'Process', coalesce(p.Process, ''),
                                                   'ProcessName', coalesce(p.ProcessName, '')) END)) AS Remote
FROM (SELECT DISTINCT * EXCLUDE (loopback) FROM conns
      WHERE Direction = 'outbound' OR (Direction = 'inbound' AND RemoteMachine NOT IN ('{DEPENDENCIES_OF}'))) c
LEFT JOIN ports p
       ON p.Machine = c.RemoteMachine AND p.Ip = c.RemoteIp AND p.Protocol = c.Protocol
      AND p.Port = CASE WHEN c.Direction = 'outbound' THEN c.DestinationPort ELSE 0 END
GROUP BY ALL""", sets=("Remote",)),
    }


# ---------------------------------------------------------------- the seed queries

@dataclass(frozen=True)
class SeedQuery:
    title: str
    kql: str
    hand: Hand

    @property
    def name(self) -> str:
        return self.hand.name

    @property
    def uses_now(self) -> bool:
        return bool(USES_NOW.search(_without_comments(self.kql)))


def _without_comments(kql: str) -> str:
    return "\n".join(line.split("//", 1)[0] for line in kql.splitlines())


def slug(title: str) -> str:
    return re.sub(r"_+", "_", re.sub(r"[^a-z0-9]", "_", title.lower())).strip("_")


def seed_queries(path: Path = SEEDS_FILE) -> list[SeedQuery]:
    """The blocks of the seed file ("// ==== <title>" headers), each with its hand-written SQL."""
    parts = re.split(r"^// ==== (.+?)\s*$", path.read_text(), flags=re.M)
    hands = hand_queries()
    queries = []
    for i in range(1, len(parts), 2):
        title, kql = parts[i].strip(), parts[i + 1].strip() + "\n"
        hand = hands.get(title) or Hand(slug(title)[:40], None, skip="no hand-written SQL for this block yet")
        queries.append(SeedQuery(title, kql, hand))
    return queries


def render(sql: str, now: datetime, cap: int) -> str:
    """The hand SQL with its placeholders filled: now() and now() - 24h as UTC literals, the row cap."""
    now = now.astimezone(timezone.utc).replace(tzinfo=None)
    return (sql.strip().replace("{now}", f"{now:%Y-%m-%d %H:%M:%S.%f}")
            .replace("{since}", f"{now - timedelta(hours=24):%Y-%m-%d %H:%M:%S.%f}")
            .replace("{cap}", str(cap)))


# ---------------------------------------------------------------- the data

@dataclass
class Dataset:
    path: Path
    machines: int
    days: int
    seed: int
    end: datetime
    counts: dict[str, int]
    seconds: float | None  # generation time, None when the workspace was reused


def _marker_for(machines: int, days: int, seed: int, end: datetime) -> dict:
    return {"version": MARKER_VERSION, "machines": machines, "days": days, "seed": seed,
            "end": end.astimezone(timezone.utc).isoformat()}


def _table_counts(ws) -> dict[str, int]:
    return {t: ws.connection.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in ("VMConnection", "VMBoundPort", "VMComputer", "VMProcess", "ServiceMapComputer_CL",
                      "ServiceMapProcess_CL")}


def ensure_data(data_dir: Path, machines: int = MACHINES, days: int = DAYS, seed: int = SEED, end: datetime = END,
                in_process: bool = False, write=print) -> Dataset:
    """Reuse the demo workspace in data_dir when its marker matches; else (re)generate it.

    Generation runs `python -m netatlas demo` in a subprocess, or with in_process
    `netatlas.demo.generate` here. A directory holding connection records but no matching marker
    (an interrupted run, other settings) is emptied first when it lies under bench/.data;
    anywhere else it is refused rather than overwritten."""
    import netatlas

    data_dir = Path(data_dir)
    want = _marker_for(machines, days, seed, end)
    marker = data_dir / MARKER
    try:
        have = json.loads(marker.read_text())
    except (OSError, ValueError):
        have = {}
    db = data_dir / "netatlas.duckdb"
    if {k: have.get(k) for k in want} == want and db.exists():
        ws = netatlas.connect(data_dir)
        try:
            counts = _table_counts(ws)
        finally:
            ws.close()
        if counts == have.get("counts"):
            return Dataset(data_dir, machines, days, seed, end, counts, None)
        write(f"the workspace in {data_dir} no longer holds what its marker says ({counts} != {have.get('counts')}); "
              "generating it again")
    marker.unlink(missing_ok=True)
    if db.exists():
        ws = netatlas.connect(data_dir)
        try:
            held = ws.connection.execute('SELECT count(*) FROM "VMConnection"').fetchone()[0]
        finally:
            ws.close()
        if held:
            if DATA_DIR.resolve() not in data_dir.resolve().parents:
                raise SystemExit(f"{data_dir} holds {held} VMConnection records but no complete benchmark "
                                 f"workspace of these settings ({MARKER}); give an empty directory")
            for f in (db, data_dir / "netatlas.duckdb.wal"):
                f.unlink(missing_ok=True)
    data_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if in_process:
        import netatlas.demo
        ws = netatlas.connect(data_dir)
        try:
            netatlas.demo.generate(ws, machines=machines, days=days, seed=seed, end=end)
        finally:
            ws.close()
    else:
        write(f"generating the demo workspace in {data_dir} (about 90 s for 200 machines x 7 days)...")
        cmd = [sys.executable, "-m", "netatlas", "demo", "--data", str(data_dir), "--machines", str(machines),
               "--days", str(days), "--seed", str(seed), "--end", end.strftime("%Y-%m-%dT%H:%M:%SZ")]
        done = subprocess.run(cmd, cwd=ROOT, env=_env(), stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stdout}")
    seconds = time.perf_counter() - t0
    ws = netatlas.connect(data_dir)
    try:
        counts = _table_counts(ws)
    finally:
        ws.close()
    marker.write_text(json.dumps(dict(want, counts=counts, generated_seconds=round(seconds, 1)), indent=2) + "\n")
    return Dataset(data_dir, machines, days, seed, end, counts, seconds)


def _env() -> dict:
    """The environment of subprocesses: this checkout's netatlas first on the path."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


# ---------------------------------------------------------------- comparing results

def _canonical_json(v, as_set: bool = False) -> str:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            pass
    if as_set and isinstance(v, list):
        v = sorted(v, key=lambda e: json.dumps(e, sort_keys=True))
    return json.dumps(v, sort_keys=True)


def _normalizer(types: list[str], columns: list[str], sets: tuple[str, ...]):
    """Row -> tuple of comparable values; dynamic columns become canonical JSON text (parsed first)."""
    dynamic = {i: columns[i] in sets for i, t in enumerate(types) if t == "dynamic"}

    def norm(row) -> tuple:
        return tuple(_canonical_json(v, dynamic[i]) if i in dynamic and v is not None else _value(v)
                     for i, v in enumerate(row))
    return norm


def _sorted(rows):
    try:
        return sorted(rows, key=_sort_key)
    except TypeError:  # values of mixed types in one column: fall back to a textual order
        return sorted(rows, key=repr)


def compare_rows(a_rows, b_rows, norm, a_name: str = "netatlas", b_name: str = "hand SQL") -> str | None:
    """None when both row lists hold the same rows in some order; otherwise what differs."""
    if len(a_rows) != len(b_rows):
        return f"row count differs: {a_name} {len(a_rows)}, {b_name} {len(b_rows)}"
    if len(a_rows) > COMPARE_LIMIT:
        return None
    a = _sorted(norm(r) for r in a_rows)
    b = _sorted(norm(r) for r in b_rows)
    for n, (ra, rb) in enumerate(zip(a, b)):
        if len(ra) != len(rb) or not all(_same(x, y) for x, y in zip(ra, rb)):
            return f"rows differ (sorted row {n} of {len(a)}):\n    {a_name:<9} {ra!r}\n    {b_name:<9} {rb!r}"
    return None


def compare(res, sql_columns: list[str], sql_rows: list[tuple], sets: tuple[str, ...]) -> str | None:
    """netatlas Result against the hand SQL's columns and rows."""
    if list(res.columns) != list(sql_columns):
        return f"columns differ: netatlas {list(res.columns)}, hand SQL {list(sql_columns)}"
    return compare_rows(res.rows, sql_rows, _normalizer(list(res.types), list(res.columns), sets))


# ---------------------------------------------------------------- measuring in process

@dataclass
class Outcome:
    query: SeedQuery
    hand_sql: str | None = None
    netatlas_sql: str | None = None  # the SQL netatlas generated, shown when something differs
    netatlas_s: float | None = None
    hand_s: float | None = None
    rows: int | None = None
    truncated: bool = False  # netatlas's result was cut at its row cap (the hand SQL has the same LIMIT)
    error: str | None = None  # the engine failed on the KQL
    hand_error: str | None = None  # the hand SQL failed
    mismatch: str | None = None  # the engine's result differs from the hand-written SQL's
    reference: dict | None = None  # netatlas's result in JSON form, for the HTTP check
    # --http
    http_s: float | None = None
    http_error: str | None = None
    http_mismatch: str | None = None
    http_clock: list = field(default_factory=list)  # (before, after, rows) of runs that used the server's clock

    @property
    def name(self) -> str:
        return self.query.name

    @property
    def skipped(self) -> bool:
        return self.query.hand.sql is None

    @property
    def ratio(self) -> float | None:
        if self.netatlas_s is None or not self.hand_s:
            return None
        return self.netatlas_s / self.hand_s

    @property
    def http_ratio(self) -> float | None:
        if self.http_s is None or not self.netatlas_s:
            return None
        return self.http_s / self.netatlas_s

    @property
    def matched(self) -> bool:
        return (not self.skipped and self.error is None and self.hand_error is None and self.mismatch is None
                and self.rows is not None)

    @property
    def state(self) -> str:
        if self.skipped:
            return f"skipped: {self.query.hand.skip}"
        if self.error:
            return "ERROR"
        if self.hand_error:
            return "HAND SQL ERROR"
        if self.mismatch:
            return "MISMATCH"
        return "ok, capped at the row limit" if self.truncated else "ok"


MIN_SECONDS = 1.0   # each side of a short query runs until about this much time was measured
MAX_RUNS = 61


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: " + str(e).strip().replace("\n", "\n    ")


def measure(q: SeedQuery, ws, now: datetime, repeat: int, cap: int) -> Outcome:
    out = Outcome(q)
    if out.skipped:
        return out
    con = ws.connection
    out.hand_sql = sql = render(q.hand.sql, now, cap)

    def run_sql():
        cur = con.execute(sql)
        return [d[0] for d in cur.description], cur.fetchall()

    def run_kql():
        return ws.query(q.kql, now=now)

    sql_ok = kql_ok = True
    try:
        sql_columns, sql_rows = run_sql()  # warm-up; its result is the reference
        out.rows = len(sql_rows)
    except Exception as e:  # noqa: BLE001 - a failing side is reported, not raised
        out.hand_error = _one_line(e)
        sql_ok = False
    try:
        warm_s, res = _timed(run_kql)  # warm-up
        out.netatlas_sql = res.sql
        out.truncated = res.truncated
        if res.truncated or len(res.rows) <= COMPARE_LIMIT:
            out.reference = {"columns": list(res.columns), "types": list(res.types), "count": len(res.rows),
                             "rows": res.json_rows() if len(res.rows) <= COMPARE_LIMIT else None}
        if sql_ok:
            out.mismatch = compare(res, sql_columns, sql_rows, q.hand.sets)
        del res
    except Exception as e:  # noqa: BLE001
        out.error = _one_line(e)
        kql_ok = False
        try:
            out.netatlas_sql = ws.compile(q.kql, now=now).sql
        except Exception:  # noqa: BLE001 - it failed before any SQL existed
            pass
    if sql_ok:
        del sql_rows

    # the hand SQL also runs as a prepared statement, as netatlas runs a query run again
    # (pool.QueryPool.execute): its time is the faster of the two ways
    kql_times, sql_times, prep_times = [], [], []
    runs = repeat
    if kql_ok:  # a short query runs more often, so that each side's median is over MIN_SECONDS at least
        runs = max(repeat, min(MAX_RUNS, math.ceil(MIN_SECONDS / max(warm_s, 1e-4))))
    with PreparedHand(con, sql) if sql_ok else nullcontext() as prepared:
        for r in range(runs):  # interleaved, alternating which side goes first
            steps = (([(sql_times, run_sql)] if sql_ok else [])
                     + ([(prep_times, prepared.run)] if sql_ok and prepared.ok else [])
                     + ([(kql_times, run_kql)] if kql_ok else []))
            for bucket, fn in (steps if r % 2 else steps[::-1]):
                bucket.append(_timed(fn)[0])
    hand = [statistics.median(t) for t in (sql_times, prep_times) if t]
    out.hand_s = min(hand) if hand else None
    out.netatlas_s = statistics.median(kql_times) if kql_times else None
    return out


# ---------------------------------------------------------------- measuring over HTTP

class Server:
    """`netatlas workspace serve` on a free local port, in a subprocess we start and stop."""

    def __init__(self, data_dir: Path, log_path: Path):
        self.data_dir = Path(data_dir)
        self.log_path = log_path
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = None

    def __enter__(self):
        cmd = [sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(self.data_dir),
               "--host", "127.0.0.1", "--port", str(self.port), "--query-timeout", str(HTTP_TIMEOUT)]
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(), stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                self._close_log()
                raise RuntimeError(f"the server exited ({self.proc.returncode}) before answering:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(self.url + "/healthz", timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            if time.monotonic() > deadline:
                self.__exit__(None, None, None)
                raise RuntimeError(f"the server did not answer within {SERVER_START_TIMEOUT:g} s:\n{self.log_tail()}")
            time.sleep(0.2)

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # SIGTERM: uvicorn lets requests end and the workspace close
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def _close_log(self):
        if getattr(self, "_log", None) is not None and not self._log.closed:
            self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text().splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loads(body: bytes):
    """The answer parsed as a fast client would: orjson, with Python's cyclic collector paused
    (its passes over 500,000 new row lists cost 0.5-0.8 s, more than the server's whole answer),
    json where orjson refuses."""
    import orjson

    from netatlas.kql.values import gc_paused
    with gc_paused:
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            return json.loads(body)


def post_query(url: str, key: str, kql: str) -> dict:
    """POST /api/query and the parsed JSON answer; RuntimeError with the server's message when it refuses."""
    body = json.dumps({"query": kql}).encode("utf-8")
    req = urllib.request.Request(url + "/api/query", data=body, method="POST",
                                 headers={"Content-Type": "application/json", "Authorization": f"Bearer {key}"})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as r:
            return _loads(r.read())
    except urllib.error.HTTPError as e:
        detail = e.read().decode("utf-8", "replace")
        try:
            detail = json.loads(detail).get("error", detail)
        except (ValueError, AttributeError):
            pass
        raise RuntimeError(f"HTTP {e.code}: {detail}") from None


def _utc(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, timezone.utc)


def measure_http(outcomes: list[Outcome], data: Dataset, repeat: int, write=print) -> None:
    """Serve the workspace and time every query that ran in process through POST /api/query.

    Results are checked against netatlas's in-process result (itself checked against the hand SQL).
    Queries using now()/ago() run with the server's clock: their rows are only counted, against
    the hand SQL evaluated at the time of each request (done after the server stopped)."""
    import netatlas
    from netatlas.keys import create_key

    ws = netatlas.connect(data.path)
    try:  # the server's first retention pass uses the wall clock: keep the dated bench data whole
        for table in ws.catalogue.names():
            ws.set_retention(table, RETENTION_DAYS_MAX)
    finally:
        ws.close()
    key = create_key(data.path, "query").secret     # query secrets are stored hashed: a new key
    runnable = [o for o in outcomes if not o.skipped and o.error is None]
    with Server(data.path, data.path / "bench-serve.log") as server:
        write(f"HTTP: {server.url} (netatlas workspace serve, pid {server.proc.pid})")
        for o in runnable:
            def run():
                before = time.time()
                answer = post_query(server.url, key, o.query.kql)
                return before, time.time(), answer
            try:
                times = []
                before, after, answer = run()  # warm-up
                _check_http(o, answer, before, after)
                for _ in range(repeat):
                    seconds, (before, after, answer) = _timed(run)
                    times.append(seconds)
                    if o.query.uses_now:
                        o.http_clock.append((before, after, len(answer["tables"][0]["rows"])))
                    del answer
                o.http_s = statistics.median(times)
            except Exception as e:  # noqa: BLE001 - reported per query
                o.http_error = _one_line(e)
    # the clock-dependent queries: count the hand SQL's rows at each request's time
    clocked = [o for o in runnable if o.http_clock and o.http_error is None and o.hand_error is None]
    if clocked:
        ws = netatlas.connect(data.path)
        try:
            from netatlas.kql import DEFAULT_MAX_ROWS
            for o in clocked:
                for before, after, n in o.http_clock:
                    want = {ws.connection.execute(f"SELECT count(*) FROM ({render(o.query.hand.sql, _utc(t), DEFAULT_MAX_ROWS)})")
                            .fetchone()[0] for t in (before, after)}
                    if not min(want) <= n <= max(want):
                        o.http_mismatch = (f"row count {n} over HTTP at {_utc(before):%Y-%m-%d %H:%M:%S} UTC; "
                                           f"the hand SQL gives {sorted(want)} with now() at that time")
                        break
            counts = _table_counts(ws)
        finally:
            ws.close()
        if counts != data.counts:
            write(f"WARNING: the workspace's row counts changed while it was served: {counts} != {data.counts}")


def _check_http(o: Outcome, answer: dict, before: float, after: float) -> None:
    table = answer["tables"][0]
    columns = [c["name"] for c in table["columns"]]
    rows = table["rows"]
    if o.query.uses_now:
        o.http_clock.append((before, after, len(rows)))
        return
    ref = o.reference
    if ref is None:
        return
    if columns != ref["columns"]:
        o.http_mismatch = f"columns differ: HTTP {columns}, in process {ref['columns']}"
    elif ref["rows"] is None or len(rows) > COMPARE_LIMIT:
        if len(rows) != ref["count"]:
            o.http_mismatch = f"row count differs: HTTP {len(rows)}, in process {ref['count']}"
    else:
        o.http_mismatch = compare_rows(rows, ref["rows"], _normalizer(ref["types"], columns, o.query.hand.sets),
                                       "HTTP", "in process")


# ---------------------------------------------------------------- report

def _fmt(v, spec: str, missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def _geo(values: list[float]) -> float:
    return math.exp(statistics.fmean(math.log(v) for v in values))


def summary(outcomes: list[Outcome], http: bool) -> list[str]:
    ran = [o for o in outcomes if not o.skipped]
    skipped = len(outcomes) - len(ran)
    timed = [o for o in ran if o.ratio is not None]
    lines = []
    if timed:
        worst = max(timed, key=lambda o: o.ratio)
        partial = f" over {len(timed)} of {len(ran)} queries" if len(timed) < len(ran) else f" over {len(timed)} queries"
        lines.append(f"geometric-mean ratio: {_geo([o.ratio for o in timed]):.2f}x{partial}")
        lines.append(f"max ratio:            {worst.ratio:.2f}x ({worst.name})")
    else:
        lines.append("ratio:                -")
    matched = sum(o.matched for o in ran)
    lines.append(f"results:              {matched}/{len(ran)} match the hand-written SQL"
                 + (f" ({skipped} skipped)" if skipped else ""))
    if http:
        served = [o for o in ran if o.http_ratio is not None]
        if served:
            worst = max(served, key=lambda o: o.http_ratio)
            lines.append(f"HTTP / in process:    {_geo([o.http_ratio for o in served]):.2f}x geometric mean, "
                         f"max {worst.http_ratio:.2f}x ({worst.name})")
        tried = [o for o in ran if o.error is None]
        good = sum(o.http_error is None and o.http_mismatch is None and o.http_s is not None for o in tried)
        lines.append(f"HTTP results:         {good}/{len(tried)} match (those marked * by row count only)")
    return lines


def report(outcomes: list[Outcome], http: bool = False, write=print) -> None:
    """Print the table, the summary, then each failure with the KQL and both SQLs."""
    width = max(len(o.name) for o in outcomes)
    head = f"{'query':<{width}}  {'rows':>8}  {'netatlas s':>10}  {'hand SQL s':>10}  {'ratio':>7}"
    if http:
        head += f"  {'HTTP s':>9}  {'HTTP/in':>7}"
    write(head + "  result")
    for o in outcomes:
        ratio = "-" if o.ratio is None else f"{o.ratio:.2f}x"
        line = (f"{o.name:<{width}}  {_fmt(o.rows, 'd'):>8}  {_fmt(o.netatlas_s, '.4f'):>10}  "
                f"{_fmt(o.hand_s, '.4f'):>10}  {ratio:>7}")
        state = o.state
        if http:
            mark = "*" if o.query.uses_now and o.http_s is not None else " "
            line += f"  {_fmt(o.http_s, '.4f') + mark:>9}  {_fmt(o.http_ratio, '.2f') + ('x' if o.http_ratio else ''):>7}"
            if o.http_error:
                state += "; HTTP ERROR"
            elif o.http_mismatch:
                state += "; HTTP MISMATCH"
        write(line + "  " + state)
    write("")
    for line in summary(outcomes, http):
        write(line)
    if http and any(o.query.uses_now for o in outcomes if not o.skipped):
        write("* uses now()/ago(), which HTTP cannot fix: it ran with the server's clock (another time window),"
              " its rows counted against the hand SQL at the request's time")
    for o in outcomes:
        if o.skipped or (o.matched and not o.http_error and not o.http_mismatch):
            continue
        write("")
        problem = (o.error and f"ERROR (netatlas): {o.error}") or (o.hand_error and f"ERROR (hand SQL): {o.hand_error}") \
            or (o.mismatch and f"MISMATCH: {o.mismatch}") or (o.http_error and f"HTTP ERROR: {o.http_error}") \
            or f"HTTP MISMATCH: {o.http_mismatch}"
        write(f"{o.name} -- {o.query.title}")
        write(f"  {problem}")
        write("  KQL:\n" + _indent(o.query.kql.strip()))
        if o.hand_sql and (o.mismatch or o.hand_error):
            write("  hand SQL:\n" + _indent(o.hand_sql))
        if o.netatlas_sql and (o.mismatch or o.error):
            write("  netatlas SQL:\n" + _indent(o.netatlas_sql))


def _indent(text: str, pad: str = "    ") -> str:
    return "\n".join(pad + line for line in text.splitlines())


def run_benchmark(data_dir: Path | None = None, machines: int = MACHINES, days: int = DAYS, seed: int = SEED,
                  end: datetime = END, repeat: int = 5, only: list[str] | None = None, http: bool = False,
                  in_process: bool = False, seeds: Path = SEEDS_FILE, write=print) -> list[Outcome]:
    """Build or reuse the demo workspace, measure every seed query, print the report; returns the outcomes."""
    import duckdb

    import netatlas
    from netatlas.kql import DEFAULT_MAX_ROWS

    data_dir = Path(data_dir) if data_dir else DATA_DIR / f"demo-{machines}x{days}"
    data = ensure_data(data_dir, machines, days, seed, end, in_process=in_process, write=write)
    queries = [q for q in seed_queries(seeds) if not only or q.name in only]
    how = f"generated in {data.seconds:.1f} s" if data.seconds is not None else "reused"
    write(f"demo workspace: {machines} machines x {days} days (seed {seed}) to {end:%Y-%m-%d %H:%M} UTC "
          f"({how}, {data_dir})")
    write("  " + ", ".join(f"{t} {n:,}" for t, n in data.counts.items()))
    ws = netatlas.connect(data_dir)
    try:
        threads = ws.connection.execute("SELECT current_setting('threads')").fetchone()[0]
        write(f"DuckDB {duckdb.__version__}, {threads} threads; now() = {end:%Y-%m-%d %H:%M} UTC (the data end); "
              f"median of {repeat} interleaved runs after one warm-up (of up to {MAX_RUNS} "
              f"for a short query, about {MIN_SECONDS:g} s a side); results over {DEFAULT_MAX_ROWS:,} rows "
              f"are capped there on both sides")
        write("")
        outcomes = [measure(q, ws, end, repeat, DEFAULT_MAX_ROWS) for q in queries]
    finally:
        ws.close()  # the server can only open the DuckDB file once nobody else holds it
    if http:
        try:
            measure_http(outcomes, data, repeat, write)
        except RuntimeError as e:
            write(f"HTTP: could not run: {e}")
            http = False
    write("")
    report(outcomes, http, write)
    return outcomes


def _parse_end(text: str) -> datetime:
    d = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return d.replace(tzinfo=timezone.utc) if d.tzinfo is None else d.astimezone(timezone.utc)


def main(argv=None, write=print) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=5, help="timed runs per query and side (default 5)")
    p.add_argument("--http", action="store_true",
                   help="also time the queries through a real server (netatlas workspace serve, POST /api/query)")
    p.add_argument("--query", action="append", dest="only", metavar="NAME", help="run only this query (repeatable)")
    p.add_argument("--data", type=Path, metavar="DIR",
                   help="workspace directory (default bench/.data/demo-<machines>x<days>)")
    p.add_argument("--machines", type=int, default=MACHINES, help=f"machines of the demo (default {MACHINES})")
    p.add_argument("--days", type=int, default=DAYS, help=f"days of the demo (default {DAYS})")
    p.add_argument("--seed", type=int, default=SEED, help=f"the demo's random seed (default {SEED})")
    p.add_argument("--end", type=_parse_end, default=END, metavar="DATETIME",
                   help=f"end of the demo window and now() of the queries (default {END:%Y-%m-%dT%H:%M:%SZ})")
    p.add_argument("--in-process", action="store_true",
                   help="generate the demo with netatlas.demo.generate in this process, not the CLI")
    p.add_argument("--seeds", type=Path, default=SEEDS_FILE, help=f"the seed queries (default {SEEDS_FILE})")
    p.add_argument("--check", action="store_true", help="exit 1 when a result differs or a query fails")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    if not args.seeds.exists():
        p.error(f"{args.seeds} is missing")
    names = [q.name for q in seed_queries(args.seeds)]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        p.error(f"unknown query {', '.join(unknown)}; the queries are {', '.join(names)}")
    outcomes = run_benchmark(args.data, args.machines, args.days, args.seed, args.end, args.repeat, args.only,
                             args.http, args.in_process, args.seeds, write)
    failed = [o for o in outcomes if not o.skipped and (not o.matched or o.http_error or o.http_mismatch)]
    return 1 if args.check and failed else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout: import netatlas from it
    sys.exit(main())
