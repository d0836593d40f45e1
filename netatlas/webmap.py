"""The map stage: what the web UI draws, built from a workspace's records (docs/web-api.md).

``build_map(ws, selection, span, options) -> dict`` is the dependency map of ``/api/map``; the
other products are ``edge_records`` (``/api/edges``), ``network`` (``/api/network``), ``usage``
(``/api/usage``), ``find_machines`` / ``machine_detail`` (``/api/machines``), ``schema`` and
``samples`` (the query editor). The data comes from KQL through ``Workspace.query`` (the query
texts are the constants below, with ``declare query_parameters``: no value is ever pasted into
KQL text) and remote addresses are resolved by ``machines.resolve``; everything else is pure
functions over the rows.

The map is built in named, timed steps (the timings go out as the ``Server-Timing`` header):

| step | input | output | where |
|---|---|---|---|
| inventory | the range | ``Machine`` per id: latest VMComputer (+ VMComputerTags_CL) within LOOKBACK before the end | ``INVENTORY``, ``TAGS``, ``inventory()`` |
| focus | ``Selection`` (machine, all, tag:K=V, subnet:CIDR) | the focus machine ids | ``SELECTORS`` |
| remotes | both windows (the range and the same range ``COMPARE`` earlier), focus, ``Options`` | each remote address with its DNS name and country | ``REMOTES`` |
| resolve | remote addresses | address -> monitored machine (``machines.resolve``); each address classified once (``remote_ends``: loopback, monitored and its machine, public and its internet place, private) | ``remote_ends`` |
| flows | both windows, the classification as parameters | VMConnection folded in SQL (a window's whole hours read from its hourly rollup, rollup.py, its partial ends from the records: ``CONNECTIONS``): summed per (process, direction, remote address, port) per window, looked up in the classification (``lookup``), then summed per edge key (opener process, direction, kind, the machine it resolves to or the place, port); one row per edge and window, the group ends' addresses joined | ``FOLD`` (``map_query`` picks the focus and exclusion filters' text) |
| listeners | machines | (machine, port, loopback?) -> the process bound there | ``LISTENERS`` (VMBoundPort) |
| fold | the FOLD rows | ``Edge``s: one per (source, target, port), the listener looked up (``Ends.folded``, the ``ENDS`` table); each edge ``failing`` (``failing``: at least ``Options.failure_rate`` of its link attempts failed) and its ``status()`` against the same edge a day earlier | ``fold_map``, ``fold()`` |
| processes | machines | process -> display name | ``PROCESSES`` (VMProcess) |
| shape | edges | the JSON answer (``map_json``); "only failures" keeps the failing edges and their ends | ``build_map`` |
| group | the answer, ``group_by``, ``open`` | ``grouped``: machines by role, /24 or tag, edges summed between groups | ``grouped()``, ``GROUP_BY`` |
| heartbeats | the machines of the answer | each machine's ``last_heartbeat`` and ``heartbeat_stopped`` (older than ``STALE`` as of the range's end) | ``HEARTBEATS`` (Heartbeat, else InsightsMetrics' Computer Heartbeat), ``last_heartbeats()``, ``heartbeat_state()`` |

An edge goes from the process that opened the connection to the process that accepted it (found
through the remote machine's bound ports), or to a group of remote ends without an agent. Each
VMConnection row is classified by its direction and what its remote address is (``ENDS``):
outbound rows make every edge whose opener is monitored; inbound rows only make the edges from
unmonitored clients, since a monitored caller reports the same connection as outbound.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cached_property
from importlib import resources

from . import addresses, rollup
from .errors import WebMapError
from .kql.values import gc_paused
from .limits import DEFAULT_TIMEOUT

LOOKBACK = timedelta(days=1)        # inventory, bound ports and processes reported this long before the range count
COMPARE = timedelta(days=1)         # each edge's status compares the range with the same range this much earlier
MAX_ROWS = 2_000_000                # rows an internal query may return before the answer is refused as too large
MAX_GROUP_IPS = 100                 # addresses listed per group (``count`` has them all)
MAX_EDGE_RECORDS = 1000             # records of /api/edges
MAX_MACHINES_FOUND = 50             # machines of /api/machines?search=
TOP = 10                            # machines and processes of /api/usage
PORTS_WINDOW = timedelta(hours=1)   # bound ports of /api/machines/{id}: the last hour the machine reported
WEIGHTS = ("bytes", "links")
STALE = timedelta(minutes=5)        # a machine whose last heartbeat is older than this (as of the range's end) stopped
FAILURE_RATE = 0.05                 # an edge fails when at least this share of its links over the range failed




# ---------------------------------------------------------------- the request's products

@dataclass(frozen=True)
class Span:
    """A time range [start, end), UTC."""
    start: datetime
    end: datetime

    def earlier(self, delta: timedelta) -> "Span":
        return Span(self.start - delta, self.end - delta)

    def json(self) -> dict:
        return {"from": iso(self.start), "to": iso(self.end)}


@dataclass(frozen=True)
class Options:
    only_failures: bool = False
    hide_loopback: bool = True
    exclude: tuple[str, ...] = ()            # process names left out (compared case-insensitively)
    failure_rate: float = FAILURE_RATE       # the share of failed links that makes an edge fail (``failing``)

    @cached_property
    def _excluded(self) -> frozenset:
        return frozenset(e.lower() for e in self.exclude)

    def excluded(self, name: str) -> bool:
        return name.lower() in self._excluded


@dataclass(frozen=True)
class Selection:
    """What the map is of: ``machine`` (an id, Computer, its first label or an address), ``all``,
    ``tag`` ((key, value) of VMComputerTags_CL) or ``subnet`` (an ip_network)."""
    kind: str
    value: object = None

    @classmethod
    def parse(cls, machine: str | None, group: str | None) -> "Selection":
        if machine and group:
            raise WebMapError("give machine or group, not both", field="group")
        if machine:
            return cls("machine", machine.strip())
        if not group:
            raise WebMapError("give machine=<id, name or address> or group=all|tag:KEY=VALUE|subnet:CIDR",
                              field="machine")
        kind, _, rest = group.strip().partition(":")
        parse = GROUPS.get(kind)
        if parse is None or (kind == "all") != (not rest):
            raise WebMapError(f"unknown group {group!r}; a group is all, tag:KEY=VALUE or subnet:CIDR", field="group")
        return cls(kind, parse(rest))


def _tag(text: str) -> tuple[str, str]:
    key, eq, value = text.partition("=")
    if not eq or not key.strip():
        raise WebMapError(f"tag:{text} is not tag:KEY=VALUE", field="group")
    return key.strip(), value.strip()


def _subnet(text: str):
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise WebMapError(f"subnet:{text} is not a CIDR range (subnet:10.1.2.0/24)", field="group") from None


GROUPS = {"all": lambda _rest: None, "tag": _tag, "subnet": _subnet}


def iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


# ---------------------------------------------------------------- running the queries

class Source:
    """A workspace's KQL, each query timed under a step name, and its remote machine resolution."""

    def __init__(self, ws, timeout: float = DEFAULT_TIMEOUT, *, rolled: bool = True):
        self.ws, self.timeout = ws, timeout
        self.timings: dict[str, float] = {}
        # the catalogue that has VMConnection's rollup (rollup.py), where the workspace keeps one
        # and ``rolled`` is not turned off (the tests compare both ways)
        self.rolled = getattr(ws, "rolled_catalogue", None) if rolled else None

    def kql(self, step: str, text: str, *, catalogue=None, **params):
        t0 = time.perf_counter()
        try:
            extra = {"catalogue": catalogue} if catalogue is not None else {}
            res = self.ws.query(text, params=params, timeout=self.timeout, max_rows=MAX_ROWS, **extra)
        finally:
            self.timings[step] = self.timings.get(step, 0.0) + time.perf_counter() - t0
        if res.truncated:
            raise WebMapError(f"more than {MAX_ROWS} rows for {step}; choose a shorter range or a smaller group",
                              field="from", status=400, code="MAP_TOO_LARGE")
        return res

    def resolve(self, addresses, now: datetime) -> dict[str, list[dict]]:
        t0 = time.perf_counter()
        try:
            return self.ws.resolve_addresses(sorted(addresses), LOOKBACK / timedelta(days=1), now=now)
        finally:
            self.timings["resolve"] = self.timings.get("resolve", 0.0) + time.perf_counter() - t0

    def step(self, name: str, fn, *args):
        t0 = time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - t0


# ---------------------------------------------------------------- the queries

INVENTORY = """declare query_parameters(since:datetime, stop:datetime);
VMComputer
| where TimeGenerated >= since and TimeGenerated < stop
| summarize arg_max(TimeGenerated, Computer, OperatingSystemFullName, Ipv4Addresses, Ipv6Addresses,
    Ipv4SubnetMasks) by Machine"""

TAGS = """declare query_parameters(since:datetime, stop:datetime);
VMComputerTags_CL
| where TimeGenerated >= since and TimeGenerated < stop
| summarize arg_max(TimeGenerated, Tags) by Machine"""

# The raw query bench/web.py compares the map with (the map fed on it in Python before it folded in
# SQL, ``FOLD``): VMConnection of the range summed per process and remote end.
FLOWS = """declare query_parameters(start:datetime, stop:datetime, everything:bool, focus:dynamic,
    addresses:dynamic, exclude:dynamic);
VMConnection
| where TimeGenerated >= start and TimeGenerated < stop
| where everything or Machine in (focus) or (Direction == "outbound" and RemoteIp in (addresses))
| where ProcessName !in~ (exclude)
| extend Loopback = (SourceIp startswith "127." or SourceIp == "::1")
    and (DestinationIp startswith "127." or DestinationIp == "::1")
| summarize Links = sum(LinksEstablished), Failed = sum(LinksFailed), Sent = sum(BytesSent),
    Received = sum(BytesReceived), Responses = sum(Responses), ResponseTime = sum(ResponseTimeSum),
    Records = count(), Malicious = countif(MaliciousIp != ""), Dns = max(RemoteDnsQuestions),
    Country = max(RemoteCountry), arg_max(TimeGenerated, LinksLive)
    by Machine, Computer, Process, ProcessName, Direction, RemoteIp, DestinationPort, Loopback"""

# The map's own queries fold in SQL (``fold_query``): REMOTES lists the remote addresses of both
# windows (the range and the day before it) with what names them, Python classifies each address
# once (``remote_ends``), and FOLD sums the records of both windows per edge key (opener process,
# direction, what the remote end is, the machine it resolves to or the place it is in, port) with
# that classification looked up in SQL. The focus and exclusion filters are pieces of text chosen by
# the request's shape (never values); the values are parameters.
FOCUS_FILTER = {
    True: "",
    False: '| where Machine in (focus) or (Direction == "outbound" and RemoteIp in (addresses))\n',
}
EXCLUDE_FILTER = {False: "", True: "| where ProcessName !in~ (exclude)\n"}
MAP_PARAMETERS = """declare query_parameters(since:datetime, start:datetime, stop:datetime, focus:dynamic,
    addresses:dynamic, exclude:dynamic, ips:dynamic, kinds:dynamic, fars:dynamic, places:dynamic,
    before_lo:datetime, before_hi:datetime, now_lo:datetime, now_hi:datetime, all_lo:datetime, all_hi:datetime);
"""

# Both read a window's connections as rows of the rollup's columns (rollup.py): from VMConnection's
# records (RAW: the ClickHouse store, which keeps no rollup), or the window's whole hours from the
# rollup and only the rest from VMConnection (ROLLED: DuckDB). {a}, {b}: the window's ends; {w}_lo,
# {w}_hi: the whole hours inside it (rollup.hour_bounds).
AS_ROLLED = """Machine, Computer, Process, ProcessName, Direction, RemoteIp, DestinationPort,
        Links = LinksEstablished, Failed = LinksFailed, Sent = BytesSent, Received = BytesReceived, Responses,
        ResponseTime = ResponseTimeSum, Records = long(1), Malicious = iff(MaliciousIp != "", long(1), long(0)),
        Last = TimeGenerated, LinksLive, Dns = RemoteDnsQuestions, Country = RemoteCountry"""
CONNECTIONS = {
    False: """VMConnection
    | where TimeGenerated >= {a} and TimeGenerated < {b}
    | project """ + AS_ROLLED + """
    """,
    True: """union (VMConnection
        | where (TimeGenerated >= {a} and TimeGenerated < {w}_lo) or (TimeGenerated >= {w}_hi and TimeGenerated < {b})
        | project """ + AS_ROLLED + """),
    (""" + rollup.TABLE + """ | where TimeGenerated >= {w}_lo and TimeGenerated < {w}_hi | project-away TimeGenerated)
    """,
}

REMOTES = """{all}{focus}{exclude}| summarize Dns = max(Dns), Country = max(Country) by RemoteIp"""

FOLD = """let ends = print RemoteIp = ips, Kind = kinds, Far = fars, Place = places
    | mv-expand RemoteIp to typeof(string), Kind to typeof(string), Far to typeof(string), Place to typeof(string);
union ({now}{focus}{exclude}| summarize Links = sum(Links), Failed = sum(Failed), Sent = sum(Sent),
        Received = sum(Received), Responses = sum(Responses), ResponseTime = sum(ResponseTime),
        Records = sum(Records), Malicious = sum(Malicious), arg_max(Last, LinksLive),
        Machine = take_any(Machine), Computer = take_any(Computer), ProcessName = take_any(ProcessName)
        by Process, Direction, RemoteIp, DestinationPort
    | project Now = true, Machine, Process, Direction, RemoteIp, DestinationPort, Links = tolong(Links),
        Failed = tolong(Failed), Sent = tolong(Sent), Received = tolong(Received), Responses = tolong(Responses),
        ResponseTime = tolong(ResponseTime), Records = tolong(Records), Malicious = tolong(Malicious),
        LinksLive = tolong(LinksLive), Computer, ProcessName),
  ({before}{focus}{exclude}| summarize Links = sum(Links), Failed = sum(Failed), Records = sum(Records),
        Machine = take_any(Machine) by Process, Direction, RemoteIp, DestinationPort
    | project Now = false, Machine, Process, Direction, RemoteIp, DestinationPort, Links = tolong(Links),
        Failed = tolong(Failed), Sent = long(0), Received = long(0), Responses = long(0), ResponseTime = long(0),
        Records = tolong(Records), Malicious = long(0), LinksLive = long(0), Computer = "", ProcessName = "")
| lookup kind=leftouter ends on RemoteIp
| extend Kind = iff(isempty(Kind), "private", Kind)
| where Direction == "outbound" or (Direction == "inbound" and Kind in ("public", "private"))
| extend Far = case(Kind == "loopback", Machine, Kind == "monitored", Far, ""),
    Place = iff(Direction == "outbound" and Kind == "public", Place, ""),
    GroupIp = iff(Kind in ("public", "private"), RemoteIp, "")
| extend Grouped = isnotempty(GroupIp)
| summarize Links = sum(Links), Failed = sum(Failed), Sent = sum(Sent), Received = sum(Received),
    Responses = sum(Responses), ResponseTime = sum(ResponseTime), Records = sum(Records),
    Malicious = sum(Malicious), LinksLive = sum(LinksLive), Ips = strcat_array(make_set_if(GroupIp, Grouped), " "),
    Machine = take_any(Machine), Computer = take_any(Computer), ProcessName = take_any(ProcessName)
    by Now, Process, Direction, Kind, Far, Place, DestinationPort
| extend Loopback = Kind == 'loopback'"""

# the windows a map reads: (its name in the parameters, its ends' parameters)
WINDOWS = {"now": ("start", "stop"), "before": ("since", "start"), "all": ("since", "stop")}


def map_query(body: str, everything: bool, exclude: bool, rolled: bool = False) -> str:
    """A map query's text for the request's shape: everything or a focus, an exclusion or none,
    the connections read through the rollup or not."""
    windows = {w: CONNECTIONS[rolled].format(a=a, b=b, w=w) for w, (a, b) in WINDOWS.items()}
    return MAP_PARAMETERS + body.format(focus=FOCUS_FILTER[everything], exclude=EXCLUDE_FILTER[exclude], **windows)


def window_params(since: datetime, start: datetime, stop: datetime) -> dict:
    """The whole hours inside each window (``{w}_lo``, ``{w}_hi``), which the rollup gives."""
    ends = {"since": since, "start": start, "stop": stop}
    out = {}
    for w, (a, b) in WINDOWS.items():
        out[f"{w}_lo"], out[f"{w}_hi"] = rollup.hour_bounds(ends[a], ends[b])
    return out


LISTENERS = """declare query_parameters(since:datetime, stop:datetime, machines:dynamic);
VMBoundPort
| where TimeGenerated >= since and TimeGenerated < stop and Machine in (machines)
| extend Loopback = Ip startswith "127." or Ip == "::1"
| summarize Records = count(), arg_max(TimeGenerated, ProcessName) by Machine, Port, Loopback, Process"""

PROCESSES = """declare query_parameters(since:datetime, stop:datetime, machines:dynamic);
VMProcess
| where TimeGenerated >= since and TimeGenerated < stop and Machine in (machines)
| summarize arg_max(TimeGenerated, DisplayName, ExecutableName) by Process"""

EDGE_KEYS = """declare query_parameters(start:datetime, stop:datetime, process:string, direction:string, port:long);
VMConnection
| where TimeGenerated >= start and TimeGenerated < stop
| where Process == process and Direction == direction and DestinationPort == port
| summarize Records = count(), Malicious = countif(MaliciousIp != ""), Dns = max(RemoteDnsQuestions),
    Country = max(RemoteCountry) by Machine, Computer, Process, ProcessName, Direction, RemoteIp, DestinationPort"""

EDGE_RECORDS = """declare query_parameters(start:datetime, stop:datetime, process:string, direction:string, port:long,
    remotes:dynamic, n:long);
VMConnection
| where TimeGenerated >= start and TimeGenerated < stop
| where Process == process and Direction == direction and DestinationPort == port and RemoteIp in (remotes)
| order by TimeGenerated desc
| take n"""

NETWORK = """declare query_parameters(start:datetime, stop:datetime, exclude:dynamic);
VMConnection
| where TimeGenerated >= start and TimeGenerated < stop and Direction == "outbound"
| where ProcessName !in~ (exclude)
| where not((SourceIp startswith "127." or SourceIp == "::1")
            and (DestinationIp startswith "127." or DestinationIp == "::1"))
| summarize Bytes = sum(BytesSent + BytesReceived), Links = sum(LinksEstablished), Failed = sum(LinksFailed)
    by Machine, RemoteIp, DestinationPort"""

LATEST_MACHINES = """VMComputer
| summarize arg_max(TimeGenerated, Computer, OperatingSystemFullName, Ipv4Addresses, Ipv6Addresses,
    Ipv4SubnetMasks) by Machine"""

ALL_TAGS = """VMComputerTags_CL
| summarize arg_max(TimeGenerated, Tags) by Machine"""

MACHINE_RECORD = """declare query_parameters(machine:string);
VMComputer
| where Machine == machine
| top 1 by TimeGenerated desc"""

MACHINE_PROCESSES = """declare query_parameters(machine:string);
VMProcess
| where Machine == machine
| summarize arg_max(TimeGenerated, ExecutableName, DisplayName, CommandLine, UserName, UserDomain, ProductVersion,
    FileVersion, StartTime) by Process
| order by ExecutableName asc, Process asc"""

MACHINE_PORTS = """declare query_parameters(machine:string, window:timespan);
let latest = toscalar(VMBoundPort | where Machine == machine | summarize max(TimeGenerated));
VMBoundPort
| where Machine == machine and TimeGenerated > latest - window
| summarize by Ip, Port, Protocol, Process, ProcessName, IsWildcardBind
| order by Port asc, Ip asc"""

# Where a machine's heartbeats are, in the order asked: the Heartbeat table's records, then (for the
# machines not found there) VM insights' Computer Heartbeat metric. Each: its last one per Computer
# named (lower-case) in [since, stop).
HEARTBEATS = (
    """declare query_parameters(since:datetime, stop:datetime, computers:dynamic);
Heartbeat
| where TimeGenerated >= since and TimeGenerated < stop and tolower(Computer) in (computers)
| summarize Last = max(TimeGenerated) by Computer""",
    """declare query_parameters(since:datetime, stop:datetime, computers:dynamic);
InsightsMetrics
| where TimeGenerated >= since and TimeGenerated < stop and Namespace == "Computer" and Name == "Heartbeat"
    and tolower(Computer) in (computers)
| summarize Last = max(TimeGenerated) by Computer""",
)


USAGE_DAYS = """declare query_parameters(since:datetime);
Usage
| where TimeGenerated >= since
| summarize MB = sum(Quantity) by Day = startofday(TimeGenerated), DataType
| order by Day asc, DataType asc"""


# ---------------------------------------------------------------- inventory and focus

@dataclass
class Machine:
    id: str
    computer: str
    os: str = ""
    ips: list = field(default_factory=list)
    tags: dict = field(default_factory=dict)
    subnet: str = ""

    @cached_property
    def short(self) -> str:
        return self.computer.split(".")[0] if self.computer and not _is_address(self.computer) else self.computer

    def json(self) -> dict:
        return {"id": self.id, "computer": self.computer, "os": self.os, "ips": self.ips, "tags": self.tags}


def _is_address(text: str) -> bool:
    return addresses.parse(text) is not None


def _subnet_of(v4: list, masks: list) -> str:
    for ip, mask in zip(v4 or [], masks or []):
        try:
            return str(ipaddress.ip_network(f"{ip}/{mask}", strict=False))
        except ValueError:
            continue
    return ""


def last_heartbeats(src: "Source", computers, end: datetime) -> dict[str, datetime]:
    """lower-case Computer -> its last heartbeat in the LOOKBACK before ``end`` (``HEARTBEATS``, in order)."""
    last: dict[str, datetime] = {}
    wanted = sorted({c.lower() for c in computers if c})
    for text in HEARTBEATS:
        if not wanted:
            break
        for r in src.kql("heartbeats", text, since=end - LOOKBACK, stop=end, computers=wanted).to_dicts():
            key = r["Computer"].lower()
            last[key] = max(last.get(key, r["Last"]), r["Last"])
        wanted = [c for c in wanted if c not in last]
    return last


def heartbeat_state(last: datetime | None, end: datetime, now: datetime) -> dict:
    """A machine's last heartbeat (before ``end``) and whether it stopped: older than STALE as of the
    range's end (or now, for a range that ends later). A machine without heartbeats never stopped."""
    asof = min(end, now)
    return {"last_heartbeat": iso(last) if last is not None else None,
            "heartbeat_stopped": last is not None and asof - last > STALE}


def inventory(rows: list[dict], tag_rows: list[dict]) -> dict[str, Machine]:
    """Latest VMComputer rows (and VMComputerTags_CL rows) -> Machine per id."""
    tags = {r["Machine"]: r["Tags"] for r in tag_rows if isinstance(r.get("Tags"), dict)}
    out = {}
    for r in rows:
        v4, v6 = list(r.get("Ipv4Addresses") or []), list(r.get("Ipv6Addresses") or [])
        out[r["Machine"]] = Machine(r["Machine"], r.get("Computer") or "", r.get("OperatingSystemFullName") or "",
                                    [str(a) for a in v4 + v6], dict(tags.get(r["Machine"], {})),
                                    _subnet_of(v4, r.get("Ipv4SubnetMasks") or []))
    return out


def _names_machine(m: Machine, text: str) -> bool:
    t = text.strip().lower()
    return t in (m.id.lower(), m.computer.lower(), m.short.lower()) or t in (a.lower() for a in m.ips)


def machine_named(machines: dict[str, Machine], key: str) -> Machine | None:
    """The machine of an id, else the first (by id) with that Computer name, first label or address."""
    return machines.get(key) or next((m for m in sorted(machines.values(), key=lambda m: m.id)
                                      if _names_machine(m, key)), None)


def _in_subnet(m: Machine, net) -> bool:
    return any((a := addresses.parse(ip)) is not None and a.version == net.version and a in net for ip in m.ips)


SELECTORS = {
    "machine": lambda m, value: _names_machine(m, value),
    "all": lambda m, value: True,
    "tag": lambda m, value: str(m.tags.get(value[0], "\0")) == value[1],
    "subnet": lambda m, value: _in_subnet(m, value),
}


def focus_of(selection: Selection, machines: dict[str, Machine]) -> list[str]:
    match = SELECTORS[selection.kind]
    found = sorted(m.id for m in machines.values() if match(m, selection.value))
    if selection.kind == "machine" and not found:
        raise WebMapError(f"no machine reported in the range is named {selection.value!r} (give its Machine id, "
                          "its Computer name or one of its addresses)", field="machine", status=404,
                          code="MACHINE_NOT_FOUND")
    return found


# ---------------------------------------------------------------- classifying rows: ENDS

def remote_kind(address: str, resolved: list | None) -> str:
    """What a remote address is: loopback, monitored (a machine with an agent), public or private
    (which includes text that is no address)."""
    a = addresses.parse(address)
    if a is None:
        return "private"
    if a.is_loopback:
        return "loopback"
    if resolved:
        return "monitored"
    return "public" if a.is_global else "private"


def dns_name(value: str) -> str:
    """The first name of RemoteDnsQuestions (a JSON list as text, or a plain name)."""
    if not value:
        return ""
    try:
        names = json.loads(value)
    except ValueError:
        names = re.split(r"[,\s]+", value.strip("[]"))
    if isinstance(names, str):
        names = [names]
    if not isinstance(names, list):
        return ""
    return next((str(n).strip().strip('"') for n in names if str(n).strip().strip('"')), "")


def place_of(dns: str | None, country: str | None) -> str:
    """The internet group of a public address: its DNS name, else its country."""
    return dns_name(dns or "") or country or "unknown location"


def remote_ends(rows: list[dict], resolved: dict[str, list[dict]]) -> tuple[dict, dict]:
    """REMOTES rows -> the FOLD parameters classifying each address (ips, kinds, fars, places) and
    address -> country."""
    params = {"ips": [], "kinds": [], "fars": [], "places": []}
    countries = {}
    for r in rows:
        ip = r["RemoteIp"]
        if ip is None:
            continue
        hits = resolved.get(ip)
        kind = remote_kind(ip, hits)
        params["ips"].append(ip)
        params["kinds"].append(kind)
        params["fars"].append(hits[0]["machine"] if kind == "monitored" else "")
        params["places"].append(place_of(r["Dns"], r["Country"]) if kind == "public" else "")
        if r["Country"]:
            countries[ip] = r["Country"]
    return params, countries


@dataclass
class GroupKey:
    id: str
    kind: str
    label: str                       # servers groups get their count in the label when shaped


@dataclass
class End:
    """One row's edge: (source, target) node ids, the group the remote end falls in, and whether the
    source is the remote end (inbound rows: the bytes are seen from the other side)."""
    source: str
    target: str
    group: GroupKey | None = None
    inbound: bool = False


class Ends:
    """Classifies rows into edge ends with the range's resolution, listeners and inventory."""

    def __init__(self, machines: dict[str, Machine], resolved: dict[str, list[dict]], listeners: "Listeners"):
        self.machines, self.resolved, self.listeners = machines, resolved, listeners
        self._kinds: dict[str, str] = {}

    def classify(self, r: dict) -> End | None:
        remote = r["RemoteIp"]
        kind = self._kinds.get(remote)
        if kind is None:
            kind = self._kinds[remote] = remote_kind(remote, self.resolved.get(remote))
        rule = ENDS.get((r["Direction"], kind))   # a record without a Direction: no end to draw
        return rule(self, r) if rule else None

    def folded(self, r: dict) -> End | None:
        """The end of a FOLD row, whose remote end SQL already named (Kind, Far, Place)."""
        rule = ENDS.get((r["Direction"], r["Kind"]))
        return rule(self, r) if rule else None

    def computer(self, machine: str, fallback: str = "") -> str:
        m = self.machines.get(machine)
        return m.short if m else (fallback.split(".")[0] if fallback and not _is_address(fallback) else fallback)

    def _here(self, r: dict) -> End:
        return End(r["Process"], self.listeners.at(r["Machine"], r["DestinationPort"], True))

    def _there(self, r: dict) -> End:
        machine = r.get("Far") or self.resolved[r["RemoteIp"]][0]["machine"]
        return End(r["Process"], self.listeners.at(machine, r["DestinationPort"], False))

    def _internet(self, r: dict) -> End:
        name = r.get("Place") or place_of(r.get("Dns"), r.get("Country"))
        return End(r["Process"], f"g-internet-{name}", GroupKey(f"g-internet-{name}", "internet", name))

    def _servers(self, r: dict) -> End:
        port = r["DestinationPort"]
        return End(r["Process"], f"g-servers-{port}", GroupKey(f"g-servers-{port}", "servers", f"Port {port}"))

    def _clients(self, r: dict) -> End:
        machine, port = r["Machine"], r["DestinationPort"]
        gid = f"g-clients-{machine}-{port}"
        label = f"Clients of {self.computer(machine, r.get('Computer', ''))}:{port}"
        return End(gid, r["Process"], GroupKey(gid, "clients", label), inbound=True)


# (Direction, what the remote address is) -> the edge of the row; None: another row has it
ENDS = {
    ("outbound", "loopback"): Ends._here,
    ("outbound", "monitored"): Ends._there,
    ("outbound", "public"): Ends._internet,
    ("outbound", "private"): Ends._servers,
    ("inbound", "loopback"): None,           # the same machine's outbound row
    ("inbound", "monitored"): None,          # the caller's outbound row
    ("inbound", "public"): Ends._clients,
    ("inbound", "private"): Ends._clients,
}


class Listeners:
    """(machine, port, loopback bind?) -> the process bound there, from VMBoundPort rows; also each
    process's machine, name and ports."""

    def __init__(self, rows: list[dict]):
        best: dict[tuple, tuple] = {}
        self.ports: dict[str, set] = {}
        self.process: dict[str, tuple[str, str]] = {}      # process -> (machine, name)
        for r in rows:
            key = (r["Machine"], r["Port"], bool(r["Loopback"]))
            rank = (r["Records"], r["TimeGenerated"])
            if key not in best or rank > best[key][0]:
                best[key] = (rank, r["Process"])
            self.ports.setdefault(r["Process"], set()).add(r["Port"])
            self.process[r["Process"]] = (r["Machine"], r["ProcessName"])
        self.best = {k: v[1] for k, v in best.items()}

    def at(self, machine: str, port: int, loopback: bool) -> str:
        """The process listening on the port (a bind of the same kind first), else the machine itself."""
        return self.best.get((machine, port, loopback)) or self.best.get((machine, port, not loopback)) or machine


# ---------------------------------------------------------------- folding rows into edges

@dataclass
class Edge:
    source: str
    target: str
    port: int
    group: GroupKey | None = None
    links: int = 0
    failed: int = 0
    live: int = 0
    sent: int = 0
    received: int = 0
    responses: int = 0
    response_sum: int = 0
    records: int = 0
    ips: set = field(default_factory=set)
    countries: dict = field(default_factory=dict)
    malicious: bool = False
    status: str = "ok"
    failing: bool = False

    @property
    def key(self) -> tuple:
        return (self.source, self.target, self.port)

    @property
    def id(self) -> str:
        return "e-" + hashlib.blake2b(f"{self.source}>{self.target}:{self.port}".encode(), digest_size=8).hexdigest()

    def add(self, r: dict, inbound: bool) -> None:
        if "Ips" in r:
            return self.add_folded(r, inbound)
        self.links += r.get("Links") or 0
        self.failed += r.get("Failed") or 0
        self.live += r.get("LinksLive") or 0
        sent, received = r.get("Sent") or 0, r.get("Received") or 0
        self.sent += received if inbound else sent          # bytes sent by the source (the opener)
        self.received += sent if inbound else received
        self.responses += r.get("Responses") or 0
        self.response_sum += r.get("ResponseTime") or 0
        self.records += r.get("Records") or 0
        self.ips.add(r["RemoteIp"])
        if r.get("Country"):
            self.countries[r["Country"]] = self.countries.get(r["Country"], 0) + 1
        self.malicious |= bool(r.get("Malicious"))

    def add_folded(self, r: dict, inbound: bool) -> None:
        """A FOLD row (every column there; the groups' addresses space-separated in Ips)."""
        self.links += r["Links"] or 0
        self.failed += r["Failed"] or 0
        self.live += r["LinksLive"] or 0
        sent, received = r["Sent"] or 0, r["Received"] or 0
        self.sent += received if inbound else sent
        self.received += sent if inbound else received
        self.responses += r["Responses"] or 0
        self.response_sum += r["ResponseTime"] or 0
        self.records += r["Records"] or 0
        if r["Ips"]:
            self.ips.update(r["Ips"].split())
        self.malicious |= bool(r["Malicious"])

    def json(self) -> dict:
        return {"id": self.id, "source": self.source, "target": self.target, "port": self.port,
                "links": self.links, "failed": self.failed, "live": self.live, "bytes_sent": self.sent,
                "bytes_received": self.received,
                "response_ms": round(self.response_sum / self.responses, 3) if self.responses else None,
                "status": self.status, "failing": self.failing, "records": self.records}


def fold(rows: list[dict], ends: Ends, options: Options,
         process_names: dict[str, tuple[str, str]], classify=Ends.classify, light: bool = False) -> dict[tuple, Edge]:
    """Flow rows (or FOLD rows, with ``classify=Ends.folded``) -> edges by (source, target, port);
    ``process_names`` learns each process's (machine, name). Rows whose other end is an excluded
    process are left out. ``light``: only links and failed links are summed (the day before,
    for ``status``)."""
    edges: dict[tuple, Edge] = {}
    for r in rows:
        end = classify(ends, r)
        if end is None:
            continue
        process_names.setdefault(r["Process"], (r["Machine"], r["ProcessName"]))
        far = end.source if end.inbound else end.target
        if far.startswith("p-") and options.exclude:
            name = ends.listeners.process.get(far, ("", ""))[1]
            if options.excluded(name):
                continue
        key = (end.source, end.target, r["DestinationPort"])
        e = edges.get(key)
        if e is None:
            e = edges[key] = Edge(end.source, end.target, r["DestinationPort"], end.group)
        if light:
            e.links += r["Links"] or 0
            e.failed += r["Failed"] or 0
        else:
            e.add(r, end.inbound)
    return edges


def failing(links: int, failed: int, rate: float = FAILURE_RATE) -> bool:
    """An edge (or a group's aggregate) fails when at least ``rate`` of its link attempts (established
    plus failed) over the range failed; one failed link among thousands does not make it fail."""
    return failed > 0 and failed >= rate * (links + failed)


def status(now: Edge, before: Edge | None, rate: float = FAILURE_RATE) -> str:
    """used_to_work: failing now (``failing``), and one day earlier established links and no
    failures; new: no record one day earlier; else failed (failing now) or ok."""
    fails = failing(now.links, now.failed, rate)
    if fails and before is not None and before.links > 0 and before.failed == 0:
        return "used_to_work"
    if before is None:
        return "new"
    return "failed" if fails else "ok"


# ---------------------------------------------------------------- the map

@dataclass
class Folded:
    """What the map's steps found: the inventory, the focus, the edges of the range (those shown and
    the loopback ones hidden) with their status, and how to name processes."""
    machines: dict
    focus: list
    edges: dict
    loopback: dict
    names: dict
    listeners: "Listeners"
    rows: list
    ends: "Ends"
    countries: dict
    places: dict


def fold_map(src: Source, selection: Selection, span: Span, options: Options) -> Folded:
    """The map's edges, folded in SQL: REMOTES, resolution and ``remote_ends``, then FOLD over the
    range and the day before it in one query, and its rows (one per edge and window) made edges."""
    since = span.start - LOOKBACK
    machines = inventory(src.kql("inventory", INVENTORY, since=since, stop=span.end).to_dicts(),
                         src.kql("inventory", TAGS, since=since, stop=span.end).to_dicts())
    focus = src.step("focus", focus_of, selection, machines)
    everything = selection.kind == "all"
    before = span.earlier(COMPARE)
    params = dict(since=before.start, start=span.start, stop=span.end, focus=[] if everything else focus,
                  addresses=[] if everything else sorted({a for m in focus for a in machines[m].ips}),
                  exclude=list(options.exclude), ips=[], kinds=[], fars=[], places=[],
                  **window_params(before.start, span.start, span.end))
    rolled = src.rolled is not None
    texts = {name: map_query(body, everything, bool(options.exclude), rolled) for name, body in
             (("remotes", REMOTES), ("flows", FOLD))}
    remotes = src.kql("remotes", texts["remotes"], catalogue=src.rolled, **params).to_dicts()
    resolved = src.resolve({r["RemoteIp"] for r in remotes if r["RemoteIp"]}, span.end)
    ends_params, countries = src.step("resolve", remote_ends, remotes, resolved)
    folded = src.kql("flows", texts["flows"], catalogue=src.rolled, **dict(params, **ends_params)).to_dicts()
    now_rows = [r for r in folded if r["Now"]]
    rows, hidden = loopback_apart(now_rows, options)
    rows_before, _ = loopback_apart([r for r in folded if not r["Now"]], options)
    near = {r["Machine"] for r in folded}
    far = {r["Far"] for r in folded if r["Far"]}
    listeners = Listeners(src.kql("listeners", LISTENERS, since=since, stop=span.end,
                                  machines=sorted(near | far)).to_dicts())
    ends = Ends(machines, resolved, listeners)
    names: dict[str, tuple[str, str]] = {}
    edges = src.step("fold", fold, rows, ends, options, names, Ends.folded)
    edges_before = src.step("fold", fold, rows_before, ends, options, {}, Ends.folded, True)
    loopback = src.step("fold", fold, hidden, ends, options, {}, Ends.folded)
    for group in (edges, loopback):
        for e in group.values():
            e.failing = failing(e.links, e.failed, options.failure_rate)
            e.status = status(e, edges_before.get(e.key), options.failure_rate)
            for ip in e.ips:
                if ip in countries:
                    e.countries[countries[ip]] = e.countries.get(countries[ip], 0) + 1
    places = dict(zip(ends_params["ips"], ends_params["places"]))
    return Folded(machines, focus, edges, loopback, names, listeners, rows, ends, countries, places)


def build_map(ws, selection: Selection, span: Span, options: Options = Options(), *,
              timeout: float = DEFAULT_TIMEOUT, src: Source | None = None, group_by: str | None = None,
              open_groups: tuple[str, ...] = ()) -> dict:
    """The dependency map of a machine or group over a range (``GET /api/map``); with ``group_by``
    its machines also grouped (``grouped``). Built with the cyclic garbage collector paused: its
    tens of thousands of rows, edges and answer dicts hold no cycles, yet they made the collector
    walk them again and again (0.09 s of a busy fleet's 0.9 s)."""
    with gc_paused:
        return _build_map(ws, selection, span, options, timeout=timeout, src=src, group_by=group_by,
                          open_groups=open_groups)


def _build_map(ws, selection: Selection, span: Span, options: Options, *, timeout: float,
               src: Source | None, group_by: str | None, open_groups: tuple[str, ...]) -> dict:
    src = src or Source(ws, timeout)
    f = fold_map(src, selection, span, options)
    edges, loopback = f.edges, f.loopback
    if options.only_failures:
        edges = {k: e for k, e in edges.items() if e.failing}
        loopback = {k: e for k, e in loopback.items() if e.failing}
    loopback_hidden = len(loopback.keys() - edges.keys())
    shown = {n for e in edges.values() for n in (e.source, e.target) if n.startswith("p-")}
    owners = {p: (f.names.get(p) or f.listeners.process.get(p))[0] for p in shown}
    since = span.start - LOOKBACK
    display = {r["Process"]: r["DisplayName"] or r["ExecutableName"] for r in src.kql(
        "processes", PROCESSES, since=since, stop=span.end, machines=sorted(set(owners.values()))).to_dicts()}
    # "only failures" keeps what fails and its ends (and the one machine asked for)
    focus = f.focus if not options.only_failures or selection.kind == "machine" else []
    answer = src.step("shape", map_json, span, focus, f.machines, edges, f.names, f.listeners, display, owners,
                      f.rows, loopback_hidden)
    answer["focus"] = f.focus
    answer["failure_rate"] = options.failure_rate
    last = last_heartbeats(src, [m["computer"] for m in answer["machines"]], span.end)
    now = datetime.now(timezone.utc)
    for m in answer["machines"]:
        m.update(heartbeat_state(last.get(m["computer"].lower()), span.end, now))
        m["focus"] = m["id"] in set(f.focus)
    if group_by is not None:
        answer["grouped"] = src.step("group", grouped, answer, group_by, open_groups)
    return answer


# ---------------------------------------------------------------- the grouped map

ROLE_TAGS = ("tier", "role")
EXTERNAL = {"clients": ("x-clients", "Clients"), "servers": ("x-servers", "Servers without an agent"),
            "internet": ("x-internet", "Internet")}


def role_of(m: dict) -> str:
    """A machine's tier or role: its tier or role tag, else its name without the trailing number
    (web-07.contoso.local -> web)."""
    for key in ROLE_TAGS:
        for k, v in (m.get("tags") or {}).items():
            if k.lower() == key and str(v).strip():
                return str(v).strip()
    name = m.get("computer") or m["id"]
    short = name if _is_address(name) else name.split(".")[0]
    return re.sub(r"[-_]?\d+$", "", short) or short


def subnet24_of(m: dict) -> str:
    for a in m.get("ips") or ():
        ip = addresses.parse(a)
        if ip is not None and ip.version == 4 and not ip.is_loopback:
            return str(ipaddress.ip_network(f"{ip}/24", strict=False))
    return "no IPv4 address"


def tag_key(machines: list[dict], key: str) -> str:
    """The tag key to group by: ``key``, else the one most machines have."""
    if key:
        return key
    counts: dict[str, int] = {}
    for m in machines:
        for k in m.get("tags") or {}:
            counts[k] = counts.get(k, 0) + 1
    return max(sorted(counts), key=counts.get) if counts else ""


GROUP_BY = {   # kind -> (machine, the tag key) -> its group's label
    "role": lambda m, key: role_of(m),
    "subnet": lambda m, key: subnet24_of(m),
    "tag": lambda m, key: f"{key}={m['tags'][key]}" if key in (m.get("tags") or {}) else f"no {key or 'tag'}",
}


def parse_group_by(text: str) -> tuple[str, str]:
    kind, _, key = text.strip().partition(":")
    kind = kind.lower()
    if kind not in GROUP_BY or (key and kind != "tag"):
        raise WebMapError(f"group_by {text!r}: give role, subnet, tag or tag:KEY", field="group_by")
    return kind, key.strip()


def grouped(answer: dict, by: str, open_groups=()) -> dict:
    """The map's machines grouped (``GROUP_BY``), with its edges summed between groups: each node is a
    group (``c-...``), a machine of an opened group, or the outside (clients, servers without an
    agent, the internet: ``x-...``); each edge sums its member edges (``members``), counts its
    failing and used-to-work members, and fails when one of its members fails (each member
    judged by the map's failure rate, ``failing``): a dependency that fails does not vanish into a busy group's sum,
    as the browser's grouping (ui/map.js) draws it."""
    kind, key = parse_group_by(by)
    key = tag_key(answer["machines"], key) if kind == "tag" else key
    opened = set(open_groups)
    groups: dict[str, dict] = {}
    node_of: dict[str, str] = {}
    for m in answer["machines"]:
        label = GROUP_BY[kind](m, key)
        gid = f"c-{kind}-{label}"
        g = groups.setdefault(gid, {"id": gid, "kind": "group", "label": label, "machines": [], "open": gid in opened,
                                    "failing_edges": 0, "heartbeat_stopped": 0, "malicious": False})
        g["machines"].append(m["id"])
        g["heartbeat_stopped"] += bool(m.get("heartbeat_stopped"))
        node_of[m["id"]] = m["id"] if gid in opened else gid
        for p in m["processes"]:
            node_of[p["id"]] = node_of[m["id"]]
    outside = {g["id"]: g for g in answer["groups"]}
    nodes: dict[str, dict] = {}
    for g in outside.values():
        xid, label = EXTERNAL[g["kind"]]
        node_of[g["id"]] = xid
        x = nodes.setdefault(xid, {"id": xid, "kind": "outside", "label": label, "groups": 0, "malicious": False})
        x["groups"] += 1
        x["malicious"] |= bool(g.get("malicious"))
    edges: dict[tuple, dict] = {}
    for e in answer["edges"]:
        a, b = node_of.get(e["source"], e["source"]), node_of.get(e["target"], e["target"])
        x = edges.setdefault((a, b), {"source": a, "target": b, "links": 0, "failed": 0, "bytes_sent": 0,
                                      "bytes_received": 0, "records": 0, "failing_edges": 0, "used_to_work": 0,
                                      "members": []})
        for f in ("links", "failed", "bytes_sent", "bytes_received", "records"):
            x[f] += e[f]
        x["failing_edges"] += bool(e["failing"])
        x["used_to_work"] += e["status"] == "used_to_work"
        x["members"].append(e["id"])
        for end in (a, b):
            if end in groups:
                groups[end]["failing_edges"] += bool(e["failing"])
        # a group talking with a malicious address (a member edge to or from it) is flagged
        for mine, other in ((a, e["target"]), (b, e["source"])):
            if mine in groups and outside.get(other, {}).get("malicious"):
                groups[mine]["malicious"] = True
    out_edges = []
    for (a, b), x in sorted(edges.items()):
        x["failing"] = x["failing_edges"] > 0
        x["status"] = ("used_to_work" if x["used_to_work"] else "failed") if x["failing"] else "ok"
        x["id"] = "a-" + hashlib.blake2b(f"{a}>{b}".encode(), digest_size=8).hexdigest()
        out_edges.append(x)
    for g in groups.values():
        g["count"] = len(g["machines"])
    note = ""
    if kind == "tag" and not key:
        note = "no machine on this map has tags (VMComputerTags_CL): group by role or subnet instead"
    return {"by": kind, "key": key, "groups": sorted(groups.values(), key=lambda g: g["label"].lower()),
            "outside": sorted(nodes.values(), key=lambda n: n["id"]), "edges": out_edges, "note": note}


def loopback_apart(rows: list[dict], options: Options) -> tuple[list[dict], list[dict]]:
    """Flow rows -> (the rows the map shows, the loopback rows "hide loopback" leaves out)."""
    if not options.hide_loopback:
        return rows, []
    shown, hidden = [], []
    for r in rows:
        (hidden if r["Loopback"] else shown).append(r)
    return shown, hidden


def map_json(span: Span, focus: list[str], machines: dict[str, Machine], edges: dict[tuple, Edge],
             names: dict, listeners: Listeners, display: dict, owners: dict, rows: list[dict],
             loopback_hidden: int = 0) -> dict:
    computers = {r["Machine"]: r["Computer"] for r in rows}
    on_map = dict.fromkeys(focus)
    ordered = sorted(edges.values(), key=lambda e: e.key)
    for e in ordered:
        for n in (e.source, e.target):
            if n.startswith("p-"):
                on_map.setdefault(owners[n])
            elif n.startswith("m-"):
                on_map.setdefault(n)
    processes: dict[str, list] = {}
    for p, machine in sorted(owners.items()):
        name = (names.get(p) or listeners.process.get(p))[1]
        processes.setdefault(machine, []).append({"id": p, "name": name, "display": display.get(p) or name,
                                                  "ports": sorted(listeners.ports.get(p, ()))})
    focused = set(focus)
    out_machines = []
    for mid in on_map:
        m = machines.get(mid) or Machine(mid, computers.get(mid, ""))
        out_machines.append(dict(m.json(), focus=mid in focused, processes=processes.get(mid, [])))
    return {"range": span.json(), "focus": focus, "machines": out_machines,
            "groups": groups_json(edges.values()),
            "edges": [e.json() for e in ordered],
            "loopback_hidden": loopback_hidden}


def groups_json(edges) -> list[dict]:
    groups: dict[str, dict] = {}
    for e in edges:
        if e.group is None:
            continue
        g = groups.setdefault(e.group.id, {"key": e.group, "ips": set(), "countries": {}, "malicious": False})
        g["ips"] |= e.ips
        for c, n in e.countries.items():
            g["countries"][c] = g["countries"].get(c, 0) + n
        g["malicious"] |= e.malicious
    out = []
    for gid in sorted(groups):
        g = groups[gid]
        key, ips = g["key"], sorted(g["ips"], key=_address_order)
        item = {"id": gid, "kind": key.kind, "label": GROUP_LABELS[key.kind](key.label, len(ips)),
                "ips": ips[:MAX_GROUP_IPS]}
        item.update(GROUP_FIELDS[key.kind](g, len(ips)))
        out.append(item)
    return out


def _address_order(a: str):
    parts = a.split(".")        # dotted IPv4 without leading zeros: its number, without ipaddress
    if len(parts) == 4 and all(p.isdigit() and (p == "0" or p[0] != "0") and int(p) < 256 for p in parts):
        return (4, ((int(parts[0]) * 256 + int(parts[1])) * 256 + int(parts[2])) * 256 + int(parts[3]), a)
    ip = addresses.parse(a)
    return (ip.version, int(ip), a) if ip is not None else (9, 0, a)


GROUP_LABELS = {
    "clients": lambda label, n: label,
    "servers": lambda label, n: f"{label} ({n} server{'s' if n != 1 else ''})",
    "internet": lambda label, n: label,
}
GROUP_FIELDS = {
    "clients": lambda g, n: {"count": n, "malicious": g["malicious"]},      # e.g. a brute-force source among them
    "servers": lambda g, n: {"count": n, "malicious": g["malicious"]},
    "internet": lambda g, n: {"country": max(g["countries"], key=g["countries"].get) if g["countries"] else "",
                              "malicious": g["malicious"]},
}


# ---------------------------------------------------------------- /api/edges

def edge_query_of(source: str, target: str) -> tuple[str, str]:
    """The process whose records make the edge, and their Direction."""
    if source.startswith("g-clients-"):
        if not target.startswith("p-"):
            raise WebMapError("the target of a clients group's edge is a process (p-...)", field="target")
        return target, "inbound"
    if not source.startswith("p-"):
        raise WebMapError("source is a process (p-...) or a clients group (g-clients-...), as in /api/map",
                          field="source")
    if not target.startswith(("p-", "m-", "g-servers-", "g-internet-")):
        raise WebMapError("target is a process (p-...), a machine (m-...) or a servers or internet group "
                          "(g-servers-..., g-internet-...), as in /api/map", field="target")
    return source, "outbound"


def edge_records(ws, source: str, target: str, port: int, span: Span, *, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """The VMConnection records under one map edge, newest first (``GET /api/edges``)."""
    process, direction = edge_query_of(source, target)
    src = Source(ws, timeout)
    keys = src.kql("keys", EDGE_KEYS, start=span.start, stop=span.end, process=process, direction=direction,
                   port=port).to_dicts()
    since = span.start - LOOKBACK
    machines = inventory(src.kql("inventory", INVENTORY, since=since, stop=span.end).to_dicts(), [])
    resolved = src.resolve({r["RemoteIp"] for r in keys if r["RemoteIp"]}, span.end)
    near = {r["Machine"] for r in keys} | {h[0]["machine"] for h in resolved.values() if h}
    listeners = Listeners(src.kql("listeners", LISTENERS, since=since, stop=span.end,
                                  machines=sorted(near)).to_dicts())
    ends = Ends(machines, resolved, listeners)
    remotes = sorted({r["RemoteIp"] for r in keys
                      if (e := ends.classify(r)) is not None and (e.source, e.target) == (source, target)})
    res = src.kql("records", EDGE_RECORDS, start=span.start, stop=span.end, process=process, direction=direction,
                  port=port, remotes=remotes, n=MAX_EDGE_RECORDS + 1)
    rows = res.json_rows()
    return {"columns": [{"name": c, "type": t} for c, t in zip(res.columns, res.types)],
            "rows": rows[:MAX_EDGE_RECORDS], "truncated": len(rows) > MAX_EDGE_RECORDS}


# ---------------------------------------------------------------- /api/network

def network(ws, span: Span, *, subnet=None, weight: str = "bytes", exclude: tuple[str, ...] = (),
            timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Machine-to-machine traffic (``GET /api/network``): outbound records whose remote address is
    a monitored machine, summed per pair; with ``subnet``, the pairs with an end in it."""
    src = Source(ws, timeout)
    options = Options(exclude=tuple(exclude))
    since = span.start - LOOKBACK
    machines = inventory(src.kql("inventory", INVENTORY, since=since, stop=span.end).to_dicts(), [])
    rows = src.kql("flows", NETWORK, start=span.start, stop=span.end, exclude=list(exclude)).to_dicts()
    resolved = src.resolve({r["RemoteIp"] for r in rows if r["RemoteIp"]}, span.end)
    listeners = None
    if exclude:
        far = sorted({h[0]["machine"] for h in resolved.values() if h})
        listeners = Listeners(src.kql("listeners", LISTENERS, since=since, stop=span.end, machines=far).to_dicts())
    inside = {m.id for m in machines.values() if subnet is None or _in_subnet(m, subnet)}
    pairs: dict[tuple, dict] = {}
    for r in rows:
        hits = resolved.get(r["RemoteIp"])
        if not hits or hits[0]["machine"] == r["Machine"]:
            continue
        target = hits[0]["machine"]
        if subnet is not None and r["Machine"] not in inside and target not in inside:
            continue
        if listeners is not None:
            name = listeners.process.get(listeners.at(target, r["DestinationPort"], False), ("", ""))[1]
            if options.excluded(name):
                continue
        p = pairs.setdefault((r["Machine"], target), {"source": r["Machine"], "target": target,
                                                      "bytes": 0, "links": 0, "failed": 0})
        p["bytes"] += r["Bytes"] or 0
        p["links"] += r["Links"] or 0
        p["failed"] += r["Failed"] or 0
    edges = sorted((p for p in pairs.values() if p[weight] > 0), key=lambda p: (-p[weight], p["source"], p["target"]))
    nodes = {mid: {"id": mid, "computer": machines[mid].computer if mid in machines else "",
                   "subnet": machines[mid].subnet if mid in machines else "", "bytes": 0, "links": 0}
             for mid in sorted(inside)}
    for e in edges:
        for end in (e["source"], e["target"]):
            n = nodes.setdefault(end, {"id": end, "computer": machines[end].computer if end in machines else "",
                                       "subnet": machines[end].subnet if end in machines else "",
                                       "bytes": 0, "links": 0})
            n["bytes"] += e["bytes"]
            n["links"] += e["links"]
    return {"nodes": sorted(nodes.values(), key=lambda n: (-n[weight], n["computer"], n["id"])), "edges": edges}


# ---------------------------------------------------------------- /api/usage

# what /api/usage ranks by _BilledSize -> the columns naming it (the first a table has)
BILLED = {"machines": ("Computer",), "processes": ("ProcessName", "ExecutableName")}


def billed_tables(catalogue, names: tuple[str, ...]) -> list[tuple[str, str]]:
    """(table, column) for each catalogue table with _BilledSize, Computer and one of ``names``."""
    out = []
    for table in catalogue.tables.values():
        cols = table.column_types
        found = next((c for c in names if c in cols), None)
        if found and "_BilledSize" in cols and "Computer" in cols:
            out.append((table.name, found))
    return out


def billed_query(tables: list[tuple[str, str]], by_process: bool) -> str:
    parts = ", ".join(f"({t} | where TimeGenerated >= since | project Computer, Name = {c}, _BilledSize)"
                      for t, c in tables)
    by = "Computer, Name" if by_process else "Computer"
    return (f"declare query_parameters(since:datetime, n:long);\nunion {parts}\n"
            f"| summarize MB = sum(_BilledSize) / 1e6 by {by}\n| top n by MB desc")


def usage(ws, days: int, *, now: datetime | None = None, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Billed data per day and table (the Usage table), the top machines and processes by
    _BilledSize, and retention (``GET /api/usage``). ``days``: today (UTC) and the days before it."""
    src = Source(ws, timeout)
    now = now or datetime.now(timezone.utc)
    since = (now - timedelta(days=days - 1)).replace(hour=0, minute=0, second=0, microsecond=0)
    per_day: dict[str, dict] = {}
    total = 0.0
    for r in src.kql("days", USAGE_DAYS, since=since).to_dicts():
        if r["Day"] is None:      # an hour beyond year 9999 (kql/values.py): not a day to show
            continue
        day = r["Day"].date().isoformat()
        per_day.setdefault(day, {})[r["DataType"]] = round(r["MB"], 6)
        total += r["MB"]
    top = {}
    for kind, names in BILLED.items():
        tables, by_process = billed_tables(ws.catalogue, names), kind == "processes"
        rows = src.kql(kind, billed_query(tables, by_process), since=since, n=TOP).to_dicts() if tables else []
        top[kind] = [({"process": r["Name"], "computer": r["Computer"]} if by_process else {"computer": r["Computer"]})
                     | {"mb": round(r["MB"] or 0, 6)} for r in rows]
    return {"days": [{"day": d, "tables": per_day[d]} for d in sorted(per_day)], "total_mb": round(total, 6),
            "machines": top["machines"], "processes": top["processes"], "retention": ws.retention()}


# ---------------------------------------------------------------- /api/machines

def find_machines(ws, search: str = "", *, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Latest VMComputer per machine whose name, id or an address contains ``search`` (at most 50)."""
    src = Source(ws, timeout)
    machines = inventory(src.kql("inventory", LATEST_MACHINES).to_dicts(), src.kql("tags", ALL_TAGS).to_dicts())
    t = search.strip().lower()
    found = [m for m in machines.values()
             if not t or t in m.computer.lower() or t in m.id.lower() or any(t in a.lower() for a in m.ips)]
    found.sort(key=lambda m: (m.computer.lower(), m.id))
    return {"machines": [m.json() for m in found[:MAX_MACHINES_FOUND]]}


def machine_detail(ws, key: str, *, timeout: float = DEFAULT_TIMEOUT) -> dict:
    """One machine (its id, Computer name or an address): its latest VMComputer record, tags,
    processes (latest VMProcess each) and bound ports (``GET /api/machines/{id}``)."""
    src = Source(ws, timeout)
    machines = inventory(src.kql("inventory", LATEST_MACHINES).to_dicts(), src.kql("tags", ALL_TAGS).to_dicts())
    found = machine_named(machines, key)
    if found is None:
        raise WebMapError(f"no machine {key!r} (give its Machine id, its Computer name or one of its addresses)",
                          field="id", status=404, code="MACHINE_NOT_FOUND")
    record = src.kql("record", MACHINE_RECORD, machine=found.id)
    processes = src.kql("processes", MACHINE_PROCESSES, machine=found.id).to_dicts()
    ports = src.kql("ports", MACHINE_PORTS, machine=found.id, window=PORTS_WINDOW).to_dicts()
    return {"id": found.id, "record": dict(zip(record.columns, record.json_rows()[0])), "tags": found.tags,
            "processes": [{"id": p["Process"], "name": p["ExecutableName"], "display": p["DisplayName"],
                           "command_line": p["CommandLine"],
                           "user": f"{p['UserDomain']}\\{p['UserName']}" if p["UserDomain"] else p["UserName"],
                           "version": p["ProductVersion"] or p["FileVersion"],
                           "start_time": iso(p["StartTime"]) if p["StartTime"] else None} for p in processes],
            "ports": [{"ip": p["Ip"], "port": p["Port"], "protocol": p["Protocol"], "process": p["Process"],
                       "name": p["ProcessName"], "wildcard": p["IsWildcardBind"]} for p in ports]}


# ---------------------------------------------------------------- the query editor

def schema(catalogue) -> dict:
    """Tables and columns of the catalogue; function and operator names from the KQL engine's tables."""
    from .kql import parser, planner
    from .kql.aggregates import AGGREGATES, ARG_EXTREMES
    from .kql.functions import FUNCTIONS
    functions = set(FUNCTIONS) | set(AGGREGATES) | set(ARG_EXTREMES) | set(planner.SPECIAL_CALLS)
    return {"tables": {name: [list(c) for c in t.columns] for name, t in catalogue.tables.items()},
            "functions": sorted(functions), "operators": sorted(set(parser.OPERATORS) | set(parser.SOURCES))}


SAMPLE_HEADER = re.compile(r"^//\s*====\s*(.+?)\s*$", re.MULTILINE)


def samples(text: str | None = None) -> list[dict]:
    """The seed queries (``netatlas/seed-queries.kql``): each block headed ``// ==== <title>``."""
    if text is None:
        text = resources.files("netatlas").joinpath("seed-queries.kql").read_text(encoding="utf-8")
    parts = SAMPLE_HEADER.split(text)          # [preamble, title, body, title, body, ...]
    return [{"title": title, "query": body.strip()} for title, body in zip(parts[1::2], parts[2::2])]
