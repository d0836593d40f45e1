"""KQL benchmark: netatlas against hand-written DuckDB SQL on a synthetic VMConnection table.

    python bench/kql.py [--rows 10000000] [--repeat 5] [--check]

For each query it measures the compile time of `netatlas.kql.compile` (median, ms), the
end-to-end time of `Workspace.query(kql)` against `connection.execute(sql).fetchall()` on the
same DuckDB connection (median over --repeat interleaved runs after one warm-up each), and
checks that both return the same rows. Goals: compile < 2 ms, netatlas/hand ratio <= 1.2x
(geometric mean and max). The generated workspace is cached in bench/.data/vmconnection-<rows>/.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PreparedHand, _same, _sort_key, _value  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = ROOT / "bench" / ".data"
GENERATOR_VERSION = 1  # bump when the generated data changes, so cached workspaces are rebuilt
MINUTES = 7 * 24 * 60
MACHINES = 200
COMPILE_GOAL_MS = 2.0
RATIO_GOAL = 1.2
COMPARE_LIMIT = 200_000  # results up to this many rows are compared row by row, larger ones by count
FOCUS = "host-001"  # the busiest machine (the machine pick is skewed towards low numbers)


# ---------------------------------------------------------------- synthetic VMConnection

_COUNTRIES = [  # (country, latitude, longitude); the first is drawn 40% of the time
    ("United States", 39.8, -98.6), ("Ireland", 53.3, -6.3), ("Netherlands", 52.4, 4.9),
    ("Germany", 50.1, 8.7), ("United Kingdom", 51.5, -0.1), ("France", 48.9, 2.4),
    ("Japan", 35.7, 139.7), ("Singapore", 1.35, 103.8), ("Australia", -33.9, 151.2),
    ("Brazil", -23.5, -46.6), ("Canada", 43.7, -79.4), ("India", 19.1, 72.9),
    ("South Africa", -26.2, 28.0), ("Sweden", 59.3, 18.1), ("South Korea", 37.6, 127.0),
    ("Hong Kong", 22.3, 114.2),
]
_DOMAINS = [  # drawn with a skew towards the front of the list
    "login.microsoftonline.com", "management.azure.com", "prodstore.blob.core.windows.net",
    "ods.opinsights.azure.com", "oms.opinsights.azure.com", "graph.microsoft.com",
    "github.com", "api.github.com", "registry-1.docker.io", "pypi.org",
    "files.pythonhosted.org", "s3.amazonaws.com", "www.google.com", "update.microsoft.com",
    "archive.ubuntu.com", "security.ubuntu.com", "api.stripe.com", "slack.com",
    "cdn.jsdelivr.net", "fonts.googleapis.com", "dc.services.visualstudio.com",
    "time.windows.com", "packages.microsoft.com", "api.segment.io",
]
# (process name, listening port or NULL for client-only processes)
_SERVERS = [("nginx", 443), ("w3wp", 80), ("sqlservr", 1433), ("postgres", 5432),
            ("redis-server", 6379), ("java", 8080), ("node", 3000), ("dotnet", 5000),
            ("kafka", 9092), ("mongod", 27017), ("python3", 8000), ("sshd", 22)]
_CLIENTS = [("chrome", None), ("svchost", None), ("omsagent", None), ("curl", None),
            ("MsMpEng", None), ("dockerd", None)]
_PORTS_INTERNAL = [443, 443, 443, 1433, 5432, 6379, 8080, 9092, 445, 53, 22, 3389, 27017, 80, 5000, 8443]
_PORTS_PUBLIC = [443, 443, 443, 443, 443, 443, 443, 80, 80, 53, 123]
_PORTS_LOOPBACK = [8080, 6379, 5432, 9000, 8125, 3000]

_GUID = r"regexp_replace(md5({x}), '^(.{{8}})(.{{4}})(.{{4}})(.{{4}})(.{{12}})$', '\1-\2-\3-\4-\5')"


def _sql_list(values) -> str:
    return "[" + ", ".join("NULL" if v is None else repr(v) if isinstance(v, (int, float)) else _q(v)
                           for v in values) + "]"


def _q(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _dimension_sql() -> list[str]:
    """Small temp tables the rows are drawn from: machines, their processes, public endpoints."""
    procs = _SERVERS + _CLIENTS
    countries = _sql_list(c for c, _, _ in _COUNTRIES)
    lats = _sql_list(lat for _, lat, _ in _COUNTRIES)
    lons = _sql_list(lon for _, _, lon in _COUNTRIES)
    # country index: 40% the first one, the rest spread over the others
    country = "CASE WHEN bench_h(j, 1) % 10 < 4 THEN 1 ELSE 2 + bench_h(j, 2) % {n} END".format(n=len(_COUNTRIES) - 1)
    return [
        # h(x, k): a BIGINT hash of x salted with k; u(x, k): uniform in [0, 1)
        "CREATE OR REPLACE TEMP MACRO bench_h(x, k) AS CAST(hash(x, k) >> 1 AS BIGINT)",
        "CREATE OR REPLACE TEMP MACRO bench_u(x, k) AS (bench_h(x, k) % 1000003) / 1000003.0",
        f"""CREATE OR REPLACE TEMP TABLE bench_machine AS
        SELECT mi,
               printf('host-%03d', mi + 1) AS Computer,
               'm-' || {_GUID.format(x="'machine-' || mi")} AS Machine,
               {_GUID.format(x="'agent-' || mi")} AS AgentId,
               printf('10.%d.%d.%d', 1 + mi % 4, mi // 4, 4 + (mi * 37) % 240) AS Ip,
               '/subscriptions/3f2b6a4e-9c1d-4e8a-b7f0-5d2c8e1a9b34/resourcegroups/rg-'
                 || ['web', 'data', 'apps', 'ops'][1 + mi % 4]
                 || '/providers/microsoft.compute/virtualmachines/' || printf('host-%03d', mi + 1) AS ResourceId,
               3 + (mi * 5) % 6 AS nproc,
               mi % 10 = 0 AS frontend,
               CASE WHEN mi % 23 = 0 THEN 0.08 ELSE 0.01 END AS failrate
        FROM range({MACHINES}) r(mi)""",
        f"""CREATE OR REPLACE TEMP TABLE bench_process AS
        SELECT m.mi, k,
               'p-' || md5('process-' || m.mi || '-' || k) AS Process,
               CASE WHEN k = 0 THEN {_sql_list(n for n, _ in _SERVERS)}[1 + m.mi % {len(_SERVERS)}]
                    ELSE {_sql_list(n for n, _ in procs)}[1 + (m.mi * 5 + k * 7) % {len(procs)}] END AS ProcessName,
               CASE WHEN k = 0 THEN {_sql_list(p for _, p in _SERVERS)}[1 + m.mi % {len(_SERVERS)}]
                    ELSE {_sql_list(p for _, p in procs)}[1 + (m.mi * 5 + k * 7) % {len(procs)}] END AS ListenPort
        FROM bench_machine m, range(8) r(k)
        WHERE k < m.nproc""",
        f"""CREATE OR REPLACE TEMP TABLE bench_server AS
        SELECT j,
               printf('%d.%d.%d.%d', [13, 20, 23, 34, 40, 52, 104, 140, 151, 185, 199, 204][1 + j % 12],
                      bench_h(j, 3) % 256, bench_h(j, 4) % 256, 1 + bench_h(j, 5) % 254) AS Ip,
               {countries}[c] AS Country,
               round({lats}[c] + (bench_u(j, 6) - 0.5) * 4, 4) AS Latitude,
               round({lons}[c] + (bench_u(j, 7) - 0.5) * 6, 4) AS Longitude,
               CASE WHEN j % 12 = 5 THEN ''
                    ELSE '["' || {_sql_list(_DOMAINS)}[1 + floor({len(_DOMAINS)} * pow(bench_u(j, 8), 2))::INT] || '"]'
               END AS Dns,
               j = 0 AS malicious
        FROM (SELECT j, {country} AS c FROM range(1000) r(j))""",
        f"""CREATE OR REPLACE TEMP TABLE bench_client AS
        SELECT j,
               printf('%d.%d.%d.%d', [24, 67, 73, 81, 86, 92, 98, 109, 176, 188][1 + j % 10],
                      bench_h(j, 13) % 256, bench_h(j, 14) % 256, 1 + bench_h(j, 15) % 254) AS Ip,
               {countries}[c] AS Country,
               round({lats}[c] + (bench_u(j, 16) - 0.5) * 4, 4) AS Latitude,
               round({lons}[c] + (bench_u(j, 17) - 0.5) * 6, 4) AS Longitude
        FROM (SELECT j, {country} AS c FROM range(500) r(j))""",
    ]


def _connections_sql(rows: int) -> str:
    """Temp table bench_connection: every connection, with its fixed attributes.

    Row i of the data falls in minute t = i * MINUTES // rows, in slot s (its place within the
    minute). A slot carries a sequence of connections lasting 5..60 minutes each; connection
    key = s * 20000 + t // lifetime fixes the machine, process, direction, remote end and port,
    so one ConnectionId recurs over the minutes of its lifetime.
    """
    slots = math.ceil(rows / MINUTES)
    ports_int, ports_pub, ports_loop = (_sql_list(p) for p in (_PORTS_INTERNAL, _PORTS_PUBLIC, _PORTS_LOOPBACK))
    return f"""
    CREATE OR REPLACE TEMP TABLE bench_connection AS
    WITH conn AS (
        SELECT s * 20000 + n AS key, mi,
               bench_u(s * 20000 + n, 2) AS u_proc, bench_u(s * 20000 + n, 3) AS u_dir,
               bench_u(s * 20000 + n, 4) AS u_remote, bench_h(s * 20000 + n, 5) AS h_port,
               bench_h(s * 20000 + n, 6) AS h_peer, bench_h(s * 20000 + n, 7) AS h_server,
               bench_h(s * 20000 + n, 8) AS h_client, 32768 + bench_h(s * 20000 + n, 9) % 28000 AS ephemeral
        FROM (SELECT s, n, CAST(floor({MACHINES} * pow(bench_u(s * 20000 + n, 1), 1.6)) AS BIGINT) AS mi
              FROM range({slots}) r(s), range({MINUTES // 5 + 1}) q(n)
              WHERE n <= {MINUTES} // (5 + bench_h(s, 99) % 56))
    ), shaped AS (
        SELECT c.*, m.Computer, m.Machine, m.AgentId, m.Ip AS LocalIp, m.ResourceId, m.failrate,
               p.Process, p.ProcessName, p.ListenPort,
               CASE WHEN p.ListenPort IS NOT NULL AND c.u_dir < 0.4 THEN 'inbound' ELSE 'outbound' END AS Direction,
               CASE WHEN c.u_remote < 0.05 THEN 'loopback'
                    WHEN p.ListenPort IS NOT NULL AND c.u_dir < 0.4
                         THEN CASE WHEN m.frontend AND c.u_remote < 0.65 THEN 'client' ELSE 'internal' END
                    WHEN c.u_remote < 0.55 THEN 'internal'
                    ELSE 'server' END AS kind,
               (c.mi + 1 + 17 * (c.h_peer % 10)) % {MACHINES} AS peer,
               (c.mi * 37 + c.h_server % 60) % 1000 AS server,
               c.h_client % 500 AS client
        FROM conn c
        JOIN bench_machine m ON m.mi = c.mi
        JOIN bench_process p ON p.mi = c.mi AND p.k = CAST(floor(c.u_proc * m.nproc) AS BIGINT)
    ), remote AS (
        SELECT x.*,
               CASE kind WHEN 'loopback' THEN '127.0.0.1' WHEN 'internal' THEN pm.Ip
                         WHEN 'server' THEN sv.Ip ELSE cl.Ip END AS RemoteIp,
               CASE WHEN Direction = 'inbound' THEN ListenPort
                    WHEN kind = 'loopback' THEN {ports_loop}[1 + h_port % {len(_PORTS_LOOPBACK)}]
                    WHEN kind = 'internal' THEN {ports_int}[1 + h_port % {len(_PORTS_INTERNAL)}]
                    ELSE {ports_pub}[1 + h_port % {len(_PORTS_PUBLIC)}] END AS DestinationPort,
               coalesce(sv.Country, cl.Country, '') AS RemoteCountry,
               coalesce(sv.Latitude, cl.Latitude) AS RemoteLatitude,
               coalesce(sv.Longitude, cl.Longitude) AS RemoteLongitude,
               coalesce(sv.Dns, '') AS RemoteDnsQuestions,
               coalesce(sv.malicious, false) AS malicious
        FROM shaped x
        LEFT JOIN bench_machine pm ON x.kind = 'internal' AND pm.mi = x.peer
        LEFT JOIN bench_server sv ON x.kind = 'server' AND sv.j = x.server
        LEFT JOIN bench_client cl ON x.kind = 'client' AND cl.j = x.client
    ), ends AS (
        SELECT *,
               CASE WHEN kind = 'loopback' THEN '127.0.0.1' WHEN Direction = 'outbound' THEN LocalIp ELSE RemoteIp END AS SourceIp,
               CASE WHEN kind = 'loopback' THEN '127.0.0.1' WHEN Direction = 'outbound' THEN RemoteIp ELSE LocalIp END AS DestinationIp,
               CASE WHEN DestinationPort IN (53, 123) THEN 'udp' ELSE 'tcp' END AS Protocol
        FROM remote
    )
    SELECT key, Computer, Machine, AgentId, ResourceId, failrate, Process, ProcessName, Direction,
           SourceIp, DestinationIp, DestinationPort, Protocol, RemoteIp, RemoteCountry, RemoteLatitude,
           RemoteLongitude, RemoteDnsQuestions, malicious,
           Protocol = 'tcp' AND kind <> 'loopback' AS responds,
           'U(' || SourceIp || '-' || ephemeral || '-' || DestinationIp || '-' || DestinationPort || ')' AS ConnectionId
    FROM ends
    """


def _rows_sql(rows: int, end: datetime) -> str:
    """INSERT of `rows` one-minute VMConnection records over the 7 days before `end`.

    Each row takes its connection's attributes from bench_connection; the per-minute measures
    (bytes with a daily rhythm, links, responses) are drawn from the row number.
    """
    start = end - timedelta(minutes=MINUTES)
    return f"""
    INSERT INTO "VMConnection" BY NAME
    WITH slot AS (
        SELECT i, t, s, 5 + bench_h(s, 99) % 56 AS life
        FROM (SELECT i, t, i - (t * {rows} + {MINUTES - 1}) // {MINUTES} AS s
              FROM (SELECT i, i * {MINUTES} // {rows} AS t FROM range({rows}) r(i)))
    ), measured AS (
        SELECT c.*, t, life, t % life AS age,
               TIMESTAMP '{start:%Y-%m-%d %H:%M:%S}' + to_minutes(t) AS TimeGenerated,
               0.55 + 0.45 * sin(pi() * (((t + {start.hour * 60 + start.minute}) % 1440) / 60.0 - 8) / 12) AS daily,
               bench_h(i, 21) AS h1, bench_h(i, 22) AS h2, bench_u(i, 23) AS u1, bench_u(i, 24) AS u2,
               bench_u(i, 25) AS u3,
               CASE WHEN responds THEN bench_h(i, 21) % 60 ELSE 0 END AS Responses,
               1 + bench_h(i, 22) % 400 AS rt
        FROM slot JOIN bench_connection c ON c.key = slot.s * 20000 + slot.t // slot.life
    )
    SELECT TimeGenerated,
           AgentId,
           480.0 + length(RemoteDnsQuestions) + h2 % 64 AS _BilledSize,
           CAST(daily * pow(10, CASE WHEN Direction = 'outbound' THEN 3.0 + 3.5 * u2 ELSE 2.0 + 3.0 * u2 END) AS BIGINT) AS BytesReceived,
           CAST(daily * pow(10, CASE WHEN Direction = 'outbound' THEN 2.0 + 3.0 * u1 ELSE 3.0 + 3.5 * u1 END) AS BIGINT) AS BytesSent,
           Computer,
           CASE WHEN malicious THEN '80' ELSE '' END AS Confidence,
           ConnectionId,
           CASE WHEN malicious THEN 'Known command and control endpoint' ELSE '' END AS Description,
           DestinationIp,
           DestinationPort,
           Direction,
           CASE WHEN malicious THEN '2024-03-01T00:00:00Z' ELSE '' END AS FirstReportedDateTime,
           CASE WHEN malicious THEN 'Botnet' ELSE '' END AS IndicatorThreatType,
           CASE WHEN malicious THEN 'True' ELSE '' END AS IsActive,
           'true' AS _IsBillable,
           CASE WHEN malicious THEN '{end:%Y-%m-%dT00:00:00Z}' ELSE '' END AS LastReportedDateTime,
           CASE WHEN age = 0 THEN 1 + h1 % 3 WHEN h1 % 20 = 0 THEN 1 ELSE 0 END AS LinksEstablished,
           CASE WHEN u3 < failrate THEN 1 + h2 % 3 ELSE 0 END AS LinksFailed,
           CASE WHEN age = life - 1 THEN 0 ELSE 1 + h2 % 4 END AS LinksLive,
           CASE WHEN age = life - 1 THEN 1 + h2 % 2 WHEN h1 % 25 = 0 THEN 1 ELSE 0 END AS LinksTerminated,
           Machine,
           CASE WHEN malicious THEN RemoteIp ELSE '' END AS MaliciousIp,
           Process,
           ProcessName,
           Protocol,
           '' AS RemoteClassification,
           RemoteCountry,
           RemoteDnsQuestions AS RemoteDnsCanonicalNames,
           RemoteDnsQuestions,
           RemoteIp,
           RemoteLatitude,
           RemoteLongitude,
           ResourceId AS _ResourceId,
           Responses,
           CASE WHEN Responses > 0 THEN rt * 3 + h1 % 100 ELSE 0 END AS ResponseTimeMax,
           CASE WHEN Responses > 0 THEN rt // 3 ELSE 0 END AS ResponseTimeMin,
           Responses * rt AS ResponseTimeSum,
           CASE WHEN malicious THEN 3 END AS Severity,
           SourceIp,
           'Insights' AS SourceSystem,
           '3f2b6a4e-9c1d-4e8a-b7f0-5d2c8e1a9b34' AS _SubscriptionId,
           CASE WHEN malicious THEN 'Amber' ELSE '' END AS TLPLevel,
           'VMConnection' AS Type,
           CASE WHEN malicious THEN 'https://interflowwebportalext.trafficmanager.net/reports/DisplayReport' ELSE '' END AS ReportReferenceLink,
           '' AS AdditionalInformation
    FROM measured
    """


_TEMP_TABLES = ("bench_connection", "bench_machine", "bench_process", "bench_server", "bench_client")


def generate(con, rows: int, end: datetime) -> None:
    """Replace the rows of VMConnection with `rows` synthetic records ending at `end` (naive UTC)."""
    con.execute('DELETE FROM "VMConnection"')
    for stmt in _dimension_sql() + [_connections_sql(rows), _rows_sql(rows, end)]:
        con.execute(stmt)
    for t in _TEMP_TABLES:
        con.execute(f"DROP TABLE {t}")
    con.execute("DROP MACRO bench_u")
    con.execute("DROP MACRO bench_h")
    con.execute("CHECKPOINT")


@dataclass
class Dataset:
    rows: int
    end: datetime  # naive UTC; the data covers the 7 days before it
    seconds: float | None  # generation time, None when the cached workspace was reused


def ensure_data(con, data_dir: Path, rows: int) -> Dataset:
    """Reuse the workspace's VMConnection when it holds `rows` rows of this generator; else build it."""
    meta_path = data_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        meta = {}
    if meta.get("rows") == rows and meta.get("version") == GENERATOR_VERSION:
        if con.execute('SELECT count(*) FROM "VMConnection"').fetchone()[0] == rows:
            return Dataset(rows, datetime.fromisoformat(meta["end"]), None)
    end = datetime.now(timezone.utc).replace(tzinfo=None, second=0, microsecond=0)
    t0 = time.perf_counter()
    generate(con, rows, end)
    seconds = time.perf_counter() - t0
    meta_path.write_text(json.dumps({"rows": rows, "version": GENERATOR_VERSION, "end": end.isoformat()}))
    return Dataset(rows, end, seconds)


# ---------------------------------------------------------------- the queries

@dataclass(frozen=True)
class BenchQuery:
    name: str
    kql: str
    sql: str  # what a DuckDB user would write by hand for the same result


def bench_queries(end: datetime) -> list[BenchQuery]:
    """The seed-style queries; `end` is the end of the data, so "last 24h" is a fixed window."""
    since = f"{end - timedelta(hours=24):%Y-%m-%d %H:%M:%S}"
    return [
        BenchQuery(
            "bytes_per_hour",
            """VMConnection
| summarize sum(BytesSent), sum(BytesReceived) by bin(TimeGenerated, 1h), Computer
| order by Computer desc""",
            """SELECT date_trunc('hour', TimeGenerated) AS TimeGenerated, Computer,
       CAST(sum(BytesSent) AS BIGINT) AS sum_BytesSent, CAST(sum(BytesReceived) AS BIGINT) AS sum_BytesReceived
FROM VMConnection
GROUP BY ALL
ORDER BY Computer DESC"""),
        BenchQuery(
            "connections_by_fqdn",
            """VMConnection
| where RemoteDnsQuestions != ""
| summarize CountAll = count() by RemoteDnsQuestions
| project RemoteDnsQuestions, CountAll
| order by CountAll desc""",
            """SELECT RemoteDnsQuestions, count(*) AS CountAll
FROM VMConnection
WHERE RemoteDnsQuestions <> ''
GROUP BY RemoteDnsQuestions
ORDER BY CountAll DESC"""),
        BenchQuery(
            "no_fqdn_by_computer",
            """VMConnection
| where RemoteDnsQuestions == "" and (DestinationIp != "127.0.0.1" or SourceIp != "127.0.0.1")
| summarize CountAll = count() by Computer
| project Computer, CountAll""",
            """SELECT Computer, count(*) AS CountAll
FROM VMConnection
WHERE RemoteDnsQuestions = '' AND (DestinationIp <> '127.0.0.1' OR SourceIp <> '127.0.0.1')
GROUP BY Computer"""),
        BenchQuery(
            "link_status_24h",
            f"""VMConnection
| where TimeGenerated >= datetime({since})
| where Computer == "{FOCUS}"
| summarize dcount(LinksEstablished), dcount(LinksLive), dcount(LinksFailed), dcount(LinksTerminated) by bin(TimeGenerated, 1h)""",
            f"""SELECT date_trunc('hour', TimeGenerated) AS TimeGenerated,
       count(DISTINCT LinksEstablished) AS dcount_LinksEstablished,
       count(DISTINCT LinksLive) AS dcount_LinksLive,
       count(DISTINCT LinksFailed) AS dcount_LinksFailed,
       count(DISTINCT LinksTerminated) AS dcount_LinksTerminated
FROM VMConnection
WHERE TimeGenerated >= TIMESTAMP '{since}' AND Computer = '{FOCUS}'
GROUP BY 1"""),
        BenchQuery(
            "failures_by_hour_of_day",
            f"""VMConnection
| where Computer == "{FOCUS}"
| extend bythehour = datetime_part("hour", TimeGenerated)
| project bythehour, LinksFailed
| summarize failCount = sum(LinksFailed) by bythehour
| sort by bythehour asc""",
            f"""SELECT hour(TimeGenerated) AS bythehour, CAST(sum(LinksFailed) AS BIGINT) AS failCount
FROM VMConnection
WHERE Computer = '{FOCUS}'
GROUP BY bythehour
ORDER BY bythehour"""),
        BenchQuery(
            "top_talkers",
            """VMConnection
| summarize SentBytes = sum(BytesSent), ReceivedBytes = sum(BytesReceived) by Computer, ProcessName
| top 10 by SentBytes desc""",
            """SELECT Computer, ProcessName, CAST(sum(BytesSent) AS BIGINT) AS SentBytes, CAST(sum(BytesReceived) AS BIGINT) AS ReceivedBytes
FROM VMConnection
GROUP BY Computer, ProcessName
ORDER BY SentBytes DESC
LIMIT 10"""),
        BenchQuery(
            "large_https_uploads",
            """VMConnection
| where Direction == "outbound" and DestinationPort == 443 and BytesSent > 50000
| project TimeGenerated, Computer, ProcessName, RemoteIp, RemoteCountry, BytesSent
| order by BytesSent desc, TimeGenerated desc, Computer asc, ProcessName asc, RemoteIp asc, RemoteCountry asc
| take 100""",
            """SELECT TimeGenerated, Computer, ProcessName, RemoteIp, RemoteCountry, BytesSent
FROM VMConnection
WHERE Direction = 'outbound' AND DestinationPort = 443 AND BytesSent > 50000
ORDER BY BytesSent DESC, TimeGenerated DESC, Computer, ProcessName, RemoteIp, RemoteCountry
LIMIT 100"""),
        BenchQuery(
            "latest_per_connection",
            """VMConnection
| summarize arg_max(TimeGenerated, *) by ConnectionId
| count""",
            """SELECT count(DISTINCT ConnectionId) AS Count
FROM VMConnection"""),
        BenchQuery(
            "distinct_processes",
            """VMConnection
| distinct Computer, ProcessName""",
            """SELECT DISTINCT Computer, ProcessName
FROM VMConnection"""),
        BenchQuery(
            "outbound_inbound_join",
            """VMConnection
| where Direction == "outbound"
| summarize OutBytes = sum(BytesSent), OutLinks = sum(LinksEstablished) by RemoteIp
| join kind=inner (
    VMConnection
    | where Direction == "inbound"
    | summarize InBytes = sum(BytesReceived), InLinks = sum(LinksEstablished) by RemoteIp
  ) on RemoteIp
| project RemoteIp, OutBytes, InBytes, OutLinks, InLinks
| order by OutBytes desc""",
            """WITH o AS (
    SELECT RemoteIp, CAST(sum(BytesSent) AS BIGINT) AS OutBytes, CAST(sum(LinksEstablished) AS BIGINT) AS OutLinks
    FROM VMConnection WHERE Direction = 'outbound' GROUP BY RemoteIp
), i AS (
    SELECT RemoteIp, CAST(sum(BytesReceived) AS BIGINT) AS InBytes, CAST(sum(LinksEstablished) AS BIGINT) AS InLinks
    FROM VMConnection WHERE Direction = 'inbound' GROUP BY RemoteIp
)
SELECT o.RemoteIp, OutBytes, InBytes, OutLinks, InLinks
FROM o JOIN i ON o.RemoteIp = i.RemoteIp
ORDER BY OutBytes DESC"""),
        BenchQuery(
            "remote_endpoints",
            """VMConnection
| where RemoteIp !startswith "127."
| summarize Connections = sum(LinksEstablished), Bytes = sum(BytesSent + BytesReceived) by Computer, RemoteIp, DestinationPort""",
            """SELECT Computer, RemoteIp, DestinationPort,
       CAST(sum(LinksEstablished) AS BIGINT) AS Connections, CAST(sum(BytesSent + BytesReceived) AS BIGINT) AS Bytes
FROM VMConnection
WHERE RemoteIp NOT LIKE '127.%'
GROUP BY Computer, RemoteIp, DestinationPort"""),
        BenchQuery(
            "bytes_by_country",
            """VMConnection
| where RemoteLatitude > 0
| summarize Bytes = sum(BytesSent), Latitude = avg(RemoteLatitude), Longitude = avg(RemoteLongitude) by RemoteCountry
| order by Bytes desc""",
            """SELECT RemoteCountry, CAST(sum(BytesSent) AS BIGINT) AS Bytes, avg(RemoteLatitude) AS Latitude, avg(RemoteLongitude) AS Longitude
FROM VMConnection
WHERE RemoteLatitude > 0
GROUP BY RemoteCountry
ORDER BY Bytes DESC"""),
    ]


# ---------------------------------------------------------------- comparing results

def compare(kql_columns, kql_rows, sql_columns, sql_rows) -> str | None:
    """None when both results agree; otherwise what differs."""
    kql_columns = [c if isinstance(c, str) else c[0] for c in kql_columns]
    if len(kql_rows) != len(sql_rows):
        return f"row count differs: netatlas {len(kql_rows)}, hand SQL {len(sql_rows)}"
    if kql_columns != list(sql_columns):
        return f"columns differ: netatlas {kql_columns}, hand SQL {list(sql_columns)}"
    if len(sql_rows) > COMPARE_LIMIT:
        return None
    try:
        a = sorted((tuple(map(_value, r)) for r in kql_rows), key=_sort_key)
        b = sorted((tuple(map(_value, r)) for r in sql_rows), key=_sort_key)
    except TypeError:  # values of mixed types in one column: fall back to a textual order
        a = sorted((tuple(map(_value, r)) for r in kql_rows), key=repr)
        b = sorted((tuple(map(_value, r)) for r in sql_rows), key=repr)
    for n, (ra, rb) in enumerate(zip(a, b)):
        if len(ra) != len(rb) or not all(_same(x, y) for x, y in zip(ra, rb)):
            return f"rows differ (sorted row {n} of {len(a)}): netatlas {ra!r}, hand SQL {rb!r}"
    return None


# ---------------------------------------------------------------- measuring

@dataclass
class Outcome:
    query: BenchQuery
    compile_ms: float | None = None
    stages_ms: dict = field(default_factory=dict)  # median per compile stage
    netatlas_sql: str | None = None  # the SQL netatlas generated, shown when the results differ
    netatlas_s: float | None = None
    hand_s: float | None = None
    rows: int | None = None
    error: str | None = None  # the engine failed on the KQL
    mismatch: str | None = None  # the engine's result differs from the hand-written SQL's
    other_s: float | None = None  # --duckdb-kql: duckdb_kql.query(con, kql).fetchall()
    other_error: str | None = None  # duckdb-kql failed on the query or its rows differ

    @property
    def ratio(self) -> float | None:
        if self.netatlas_s is None or not self.hand_s:
            return None
        return self.netatlas_s / self.hand_s

    @property
    def matched(self) -> bool:
        return self.error is None and self.mismatch is None and self.rows is not None


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def measure(q: BenchQuery, ws, compile_kql, repeat: int, compile_runs: int, other=None) -> Outcome:
    """``other``: the duckdb_kql module (--duckdb-kql), timed on the same connection as a third side."""
    out = Outcome(q)
    con = ws.connection

    def run_sql():
        cur = con.execute(q.sql)
        return [d[0] for d in cur.description], cur.fetchall()

    def run_kql():
        return ws.query(q.kql)

    try:
        out.netatlas_sql = compile_kql(q.kql).sql  # warm-up
        times, stages = [], {}
        for _ in range(compile_runs):
            seconds, compiled = _timed(lambda: compile_kql(q.kql))
            times.append(seconds)
            for stage, s in (getattr(compiled, "timings", None) or {}).items():
                stages.setdefault(stage, []).append(s)
        out.compile_ms = statistics.median(times) * 1000
        out.stages_ms = {k: statistics.median(v) * 1000 for k, v in stages.items()}
    except Exception as e:  # noqa: BLE001 - an engine failure is reported, not raised
        out.error = f"compile: {type(e).__name__}: {e}"

    sql_columns, sql_rows = run_sql()  # warm-up; its result is the reference
    out.rows = len(sql_rows)
    kql_ok = out.error is None
    if kql_ok:
        try:
            res = run_kql()  # warm-up
            out.mismatch = compare(res.columns, res.rows, sql_columns, sql_rows)
        except Exception as e:  # noqa: BLE001
            out.error = f"query: {type(e).__name__}: {e}"
            kql_ok = False

    other_times = []
    other_ok = other is not None

    def run_other():
        return other.query(con, q.kql).fetchall()
    if other_ok:
        try:
            got = run_other()  # warm-up
            differs = compare(sql_columns, got, sql_columns, sql_rows)
            if differs:
                out.other_error = f"rows differ from the hand SQL: {differs}"
        except Exception as e:  # noqa: BLE001
            out.other_error, other_ok = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}", False

    # the hand SQL also runs as a prepared statement, as netatlas runs a query run again
    # (pool.QueryPool.execute): its time is the faster of the two ways
    kql_times, sql_times, prep_times = [], [], []
    with PreparedHand(con, q.sql) as prepared:
        for r in range(repeat):  # interleaved, alternating which side goes first
            steps = ([(sql_times, run_sql)] + ([(prep_times, prepared.run)] if prepared.ok else [])
                     + ([(kql_times, run_kql)] if kql_ok else []) + ([(other_times, run_other)] if other_ok else []))
            for bucket, fn in (steps if r % 2 else steps[::-1]):
                bucket.append(_timed(fn)[0])
    out.hand_s = min(statistics.median(t) for t in (sql_times, prep_times) if t)
    out.other_s = statistics.median(other_times) if other_times else None
    out.netatlas_s = statistics.median(kql_times) if kql_times else None
    return out


# ---------------------------------------------------------------- report

def _fmt(v, spec: str, missing: str = "-") -> str:
    return missing if v is None else format(v, spec)


def summary(outcomes: list[Outcome]) -> list[tuple[str, bool]]:
    """The summary lines, each with whether its goal is met."""
    n = len(outcomes)
    compiled = [o for o in outcomes if o.compile_ms is not None]
    timed = [o for o in outcomes if o.ratio is not None]
    lines = []
    if compiled:
        worst = max(compiled, key=lambda o: o.compile_ms)
        stages = ", ".join(f"{k} {v:.3f}" for k, v in worst.stages_ms.items())
        partial = f" over {len(compiled)} of {n} queries" if len(compiled) < n else ""
        lines.append((f"max compile:          {worst.compile_ms:.3f} ms ({worst.query.name}"
                      f"{'; ' + stages if stages else ''}){partial}  goal < {COMPILE_GOAL_MS:g} ms",
                      worst.compile_ms < COMPILE_GOAL_MS and len(compiled) == n))
    else:
        lines.append((f"max compile:          -  goal < {COMPILE_GOAL_MS:g} ms", False))
    if timed:
        geo = math.exp(statistics.fmean(math.log(o.ratio) for o in timed))
        worst = max(timed, key=lambda o: o.ratio)
        partial = f" over {len(timed)} of {n} queries" if len(timed) < n else ""
        lines.append((f"geometric-mean ratio: {geo:.2f}x{partial}  goal <= {RATIO_GOAL:g}x",
                      geo <= RATIO_GOAL and not partial))
        lines.append((f"max ratio:            {worst.ratio:.2f}x ({worst.query.name}){partial}  goal <= {RATIO_GOAL:g}x",
                      worst.ratio <= RATIO_GOAL and not partial))
    else:
        lines.append((f"ratio:                -  goal <= {RATIO_GOAL:g}x", False))
    matched = sum(o.matched for o in outcomes)
    lines.append((f"results:              {matched}/{n} match the hand-written SQL", matched == n))
    return lines


def report(outcomes: list[Outcome], write=print) -> None:
    """Print the table, the summary lines with PASS/MISS, then each engine error or mismatch."""
    width = max(len(o.query.name) for o in outcomes)
    other = any(o.other_s is not None or o.other_error for o in outcomes)
    write(f"{'query':<{width}}  {'compile ms':>10}  {'netatlas s':>10}  {'hand SQL s':>10}  {'ratio':>7}  "
          + (f"{'duckdb-kql s':>12}  {'na/dk':>6}  " if other else "") + f"{'rows':>8}  result")
    for o in outcomes:
        state = "ERROR" if o.error else "MISMATCH" if o.mismatch else "ok"
        ratio = "-" if o.ratio is None else f"{o.ratio:.2f}x"
        versus = ""
        if other:
            vs = "-" if o.other_s is None or o.netatlas_s is None else f"{o.netatlas_s / o.other_s:.2f}x"
            versus = f"{_fmt(o.other_s, '.4f'):>12}  {vs:>6}  "
        write(f"{o.query.name:<{width}}  {_fmt(o.compile_ms, '.3f'):>10}  {_fmt(o.netatlas_s, '.4f'):>10}  "
              f"{_fmt(o.hand_s, '.4f'):>10}  {ratio:>7}  {versus}{_fmt(o.rows, 'd'):>8}  {state}")
    write("")
    for line, good in summary(outcomes):
        write(f"{line}  {'PASS' if good else 'MISS'}")
    if other:
        pairs = [o for o in outcomes if o.other_s and o.netatlas_s]
        if pairs:
            geo = math.exp(statistics.fmean(math.log(o.netatlas_s / o.other_s) for o in pairs))
            ahead = sum(o.netatlas_s < o.other_s for o in pairs)
            write(f"netatlas / duckdb-kql: {geo:.2f}x geometric mean; netatlas faster on {ahead} of {len(pairs)}"
                  f" queries (duckdb-kql failed or differed on {sum(bool(o.other_error) for o in outcomes)})")
        for o in outcomes:
            if o.other_error:
                write(f"  duckdb-kql on {o.query.name}: {o.other_error}")
    for o in outcomes:
        if o.matched:
            continue
        write("")
        write(f"{'ERROR' if o.error else 'MISMATCH'} in {o.query.name}: {o.error or o.mismatch}")
        write("  KQL:  " + o.query.kql.replace("\n", "\n        "))
        if o.mismatch:
            write("  hand SQL:      " + o.query.sql.replace("\n", "\n                 "))
            write(f"  netatlas SQL:  {o.netatlas_sql}")


def run_benchmark(rows: int = 10_000_000, repeat: int = 5, data_dir: Path | None = None,
                  compile_runs: int = 200, only: list[str] | None = None, write=print,
                  duckdb_kql: bool = False) -> list[Outcome]:
    """Build or reuse the workspace, measure every query, print the report; returns the outcomes."""
    import netatlas
    from netatlas.kql import compile as compile_kql

    import duckdb

    data_dir = Path(data_dir) if data_dir else DATA_DIR / f"vmconnection-{rows}"
    data_dir.mkdir(parents=True, exist_ok=True)
    ws = netatlas.connect(str(data_dir))
    data = ensure_data(ws.connection, data_dir, rows)
    threads = ws.connection.execute("SELECT current_setting('threads')").fetchone()[0]
    how = f"generated in {data.seconds:.1f} s" if data.seconds is not None else "reused"
    write(f"VMConnection: {rows:,} rows over the 7 days to {data.end:%Y-%m-%d %H:%M} UTC ({how}, {data_dir})")
    write(f"DuckDB {duckdb.__version__}, {threads} threads; compile: median of {compile_runs}; "
          f"end to end: median of {repeat} interleaved runs after one warm-up")
    write("")
    queries = [q for q in bench_queries(data.end) if not only or q.name in only]
    other = None
    if duckdb_kql:
        import duckdb_kql as other  # noqa: F811 - the third-party KQL-to-DuckDB translator (pip install duckdb-kql)
        write(f"duckdb-kql {getattr(other, '__version__', '?')}: duckdb_kql.query(con, kql).fetchall() on the same connection")
        write("")
    outcomes = [measure(q, ws, compile_kql, repeat, compile_runs, other) for q in queries]
    report(outcomes, write)
    return outcomes


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="VMConnection rows (default 10,000,000)")
    p.add_argument("--repeat", type=int, default=5, help="timed runs per query and side (default 5)")
    p.add_argument("--compile-runs", type=int, default=200, help="compile runs per query (default 200)")
    p.add_argument("--data-dir", type=Path, help="workspace directory (default bench/.data/vmconnection-<rows>)")
    p.add_argument("--query", action="append", dest="only", metavar="NAME", help="run only this query (repeatable)")
    p.add_argument("--check", action="store_true", help="exit 1 when a goal is missed or a result differs")
    p.add_argument("--duckdb-kql", action="store_true",
                   help="time duckdb-kql (pip install duckdb-kql) on the same connection as a third side")
    args = p.parse_args(argv)
    if args.rows < 1 or args.repeat < 1 or args.compile_runs < 1:
        p.error("--rows, --repeat and --compile-runs must be at least 1")
    names = [q.name for q in bench_queries(datetime.now())]
    unknown = sorted(set(args.only or ()) - set(names))
    if unknown:
        p.error(f"unknown query {', '.join(unknown)}; the queries are {', '.join(names)}")
    outcomes = run_benchmark(args.rows, args.repeat, args.data_dir, args.compile_runs, args.only,
                             duckdb_kql=args.duckdb_kql)
    met = all(good for _, good in summary(outcomes))
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout: import netatlas from it
    sys.exit(main())
