"""Aggregate stage: socket snapshots, close events and process events -> one-minute records.

``Aggregator`` is pure and deterministic: no I/O, no clock. Every call carries its own time
(``now``, seconds since the epoch); calls are expected in time order (an earlier ``now`` is
treated as the latest one seen). Its products are records (dicts of column -> JSON value, times
as ISO 8601 UTC text) for ``Workspace.ingest`` / the ship stage:

=================================== ======================================================
call                                gives
=================================== ======================================================
``observe(now, sockets, owners)``   (state) one sock_diag dump with the owner of each inode
``closed(now, sockets, owners)``    (state) TCP-destroy events, with final counters
``process_started / _exited``       (state) process pools
``flush(now)``                      VMConnection, VMBoundPort, VMProcess, ServiceMapProcess_CL
                                    of every one-minute window that ended at or before ``now``
``machine_records(now, info, tags)`` VMComputer, ServiceMapComputer_CL, VMComputerTags_CL
=================================== ======================================================

The rules, and the heuristics where the kernel does not say:

* Windows are [t, t + 60) with t a multiple of 60 s since the epoch (UTC minutes);
  ``TimeGenerated`` is t. An event belongs to the window of its ``now``: bytes that grew between
  two polls count in the window of the later poll. A window is closed (its LinksLive counted,
  its records made) by the first call whose ``now`` is in a later window. Windows in which no
  call came at all (the agent stalled) get the live links of the connections still open, for at
  most ``MAX_GAP_WINDOWS`` windows; longer gaps are counted in ``overflow["gap_windows"]``.
* Direction: a socket whose local (address, port) matches a listening socket of the last dump
  (same address, or a wildcard 0.0.0.0 / :: bind on that port; :: also takes IPv4) is inbound,
  any other outbound. Fixed at the first sight of a connection.
* States: LISTEN = a bound port; SYN_SENT / SYN_RECV = not yet established; TIME_WAIT / CLOSE in
  a dump = closed; all others (ESTABLISHED, FIN_WAIT*, CLOSE_WAIT, LAST_ACK, CLOSING) = open.
* The first dump is a baseline: the connections in it are live, but not counted as established
  in that window, and their byte counters are the starting point (their history before the agent
  started is not reported as one minute's traffic). A cookie first seen in a later dump counts as
  established, with all of its bytes.
* A tracked connection absent from a dump, or closed by an event, is terminated (or failed, see
  below) in that window. A close event for a cookie already closed (the dump noticed first) only
  adds its final bytes. A close event for an unknown cookie is a connection that opened and
  closed between two polls: established and terminated, all of its bytes, in that window.
* Failed connects (outbound only): a connection that was never seen established and either is
  closed by an event in state SYN_SENT, or by an event in state CLOSE with no byte either way and
  at most one segment received (a RST, or nothing: a refusal or a timeout), or was seen in
  SYN_SENT and then vanished from a dump.
* Responses, ResponseTimeMin/Max/Sum: the request/response exchanges the collector counted on the
  socket (``Socket.responses``, ``rt_sum_us``, cumulative; ``rt_min_us``/``rt_max_us`` of the
  current window, 0 when not known: then the mean of those exchanges stands for them), the
  increase since the last observation going to the window; milliseconds, the sum rounded once
  per window. eBPF counts every exchange in the kernel; netlink estimates them (netlink.Exchanges).
  Nothing is inferred from byte counts or the round-trip time; no exchange, no ResponseTime columns.
* Owner of a socket: ``owners[inode]``. netlink's close events carry inode 0 and state CLOSE,
  eBPF's inode -cookie and the state the socket left (ebpf.py): a tracked cookie keeps the owner
  it had; an unknown outbound one is reported only when the runner gives its owner (under its
  inode, ``dataclasses.replace(sock, inode=...)``, or -cookie), otherwise counted in
  ``unowned``. An inbound socket (dump or close event) whose owner is not given goes to the
  process owning its listening socket (an accepted socket nobody has read from yet). Close
  events of listeners and never-connected sockets (remote port 0 and no remote address) are
  ignored; one with a remote address and port 0 is a blocking connect that failed (the kernel
  cleared its port and counters before freeing it): a failed link at DestinationPort 0.
* Process pools: processes with the same executable (``exe``, or ``name`` when unreadable) and
  command line. Process = "p-" + the first 12 hex digits of sha1(machine id, exe, command line):
  the same after an agent restart. FirstPid / StartTime: the lowest pid and the earliest start of
  the pool's members since it (re)started, as of the flush that releases the record. A pool ends
  when its last member exits; a pid that execs into another program changes pool.
* DNS names (outbound records only): with a ``names`` hook (``names(ip, now) -> (questions,
  canonical names)``, the Aggregator's only outside call; the collector's is ``dns.Names.lookup``,
  the DNS answers the host received), a record gets ``RemoteDnsQuestions`` (the names asked that
  resolved to its RemoteIp) and ``RemoteDnsCanonicalNames`` (the owner names of the A/AAAA records:
  the ends of the CNAME chains) as compact JSON array text (``["api.example.com"]``: both are
  string columns, as in the fixture and the demo). The hook is asked once per record, when the
  window's records are made, with the ``now`` of the call that closes the window; with no names
  known, or no hook, the columns are left out (empty). Inbound records never get names (their
  remote end is the client; the host's own lookups say nothing about it).
* Identities, as the fixture's (tests/seed/fixture.py): ConnectionId
  "U(<SourceIp>-<DestinationIp>:<DestinationPort>)/<Process>", PortId
  "<Machine>/<Process>/<Ip>:<Port>/tcp"; IPv6 addresses in brackets in both.
* Inventory (VMProcess + ServiceMapProcess_CL): one record when a pool first owns a socket, then
  one every hour while it owned a socket during that hour; a pool idle of TCP for an hour stops
  and gets a fresh record the next time it owns a socket.
* Bound ports (VMBoundPort): the inbound connections' metrics summed per listener and local
  address, each minute with traffic or live links. A wildcard bind is reported with the specific
  local address of that traffic (IsWildcardBind = true), and as the wildcard address only in a
  minute without such a record; a specific bind has IsWildcardBind = false. A port without
  traffic gets an idle record when first seen and then every ``idle_port_interval`` seconds
  (default one hour, as the demo data does; 60 gives one per minute).
* UDP flows (``udp_links(now, links, owners)``, from ``udp.py``, which the kernel half counted per
  link and minute; Protocol "udp"): a flow is one 5-tuple (local address/port, remote address/port)
  of one process. Its payload bytes and responses (a request then the first answer on the flow, the
  time between them) count in the window of their minute (in the open one when that has closed
  already); Direction is the kernel's (inbound: the socket is a server's, it bound its port or its
  flow began with a datagram in; else outbound), ConnectionId as TCP's. LinksEstablished = flows
  with a datagram in the window and none in the one before; LinksLive = flows with a datagram in
  the window (a connectionless flow is "open" while it talks); LinksTerminated = flows whose
  previous window had traffic and this one none (ended by one idle minute, as a stateful firewall
  times a UDP flow out), reported in that quiet window; LinksFailed stays 0.
  Over a flow's life established = terminated, as for TCP. Flows of unknown processes are counted
  in ``unowned``. VMBoundPort (Protocol "udp", PortId ".../udp"): the inbound flows' metrics per
  server socket and local address, in each window with traffic; a UDP socket bound to a port
  (``udp_listeners(now, listeners, owners)``, the current ones) gets an idle record with its bind
  address when first seen and every ``idle_port_interval`` without traffic, as TCP listeners.
* Caps: at most ``max_connections`` tracked sockets and logical keys per window, at most
  ``max_processes`` tracked pids; what does not fit is counted in ``overflow`` (a refused cookie
  once while it stays refused; a pid over the cap still gets its deterministic Process id on its
  connections, but no inventory record).
* Machine tags: no VMComputer or ServiceMapComputer_CL column holds free-form tags, so every tag
  goes to a VMComputerTags_CL record (netatlas's own table, catalogue.py), ``Tags`` = the tags as
  a property bag, beside each VMComputer record. A tag whose name is an Azure*/HostingProvider
  column that MachineInfo leaves empty also fills that column (and its ServiceMapComputer_CL twin).
"""
from __future__ import annotations

import hashlib
import json
import math
import posixpath
import uuid
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import lru_cache
from ipaddress import ip_address
from typing import NamedTuple

from .model import (TCP_CLOSE, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT, MachineInfo,
                    ProcessInfo, Socket)

WINDOW = 60                 # seconds per record window
INVENTORY_INTERVAL = 3600   # seconds between a process pool's inventory records
MAX_GAP_WINDOWS = 10        # windows without any call that still get their live links
PROTOCOL = "tcp"
UDP = "udp"
INBOUND, OUTBOUND = "inbound", "outbound"

PENDING = frozenset({TCP_SYN_SENT, TCP_SYN_RECV})     # not yet a connection
GONE = frozenset({TCP_TIME_WAIT, TCP_CLOSE})          # closed, when seen in a dump
# local address family -> the bind addresses that accept it, most specific first (after the address itself)
WILDCARDS_FOR = {4: ("0.0.0.0", "::"), 6: ("::",)}
WILDCARD_ADDRESSES = frozenset({"0.0.0.0", "::"})

TABLES = ("VMConnection", "VMBoundPort", "VMProcess", "ServiceMapProcess_CL")

# Tags that fill a VMComputer column (MachineInfo leaves them empty), with the ServiceMapComputer_CL twin.
TAG_COLUMNS = {
    "HostingProvider": None,
    "AzureLocation": "AzureLocation_s", "AzureImagePublisher": "AzureImagePublisher_s",
    "AzureImageOffering": "AzureImageOffering_s", "AzureImageSku": "AzureImageSku_s",
    "AzureImageVersion": "AzureImageVersion_s", "AzureSize": "AzureVMSize_s",
    "AzureResourceGroup": "AzureResourceGroup_s", "AzureResourceName": "AzureResourceName_s",
    "AzureSubscriptionId": "AzureSubscriptionId_g", "AzureVmId": "AzureVmId_g",
    "AzureCloudServiceName": None, "AzureCloudServiceDeployment": None, "AzureCloudServiceInstanceId": None,
    "AzureCloudServiceRoleName": None, "AzureCloudServiceRoleType": None, "AzureFaultDomain": None,
    "AzureUpdateDomain": None, "AzureServiceFabricClusterId": None, "AzureServiceFabricClusterName": None,
    "AzureVmScaleSetDeployment": None, "AzureVmScaleSetInstanceId": None, "AzureVmScaleSetName": None,
    "AzureVmScaleSetResourceId": None,
}


# ---- small values ---------------------------------------------------------------------------------

class LinkKey(NamedTuple):
    """A logical connection: the grouping of VMConnection (Machine and Protocol are constant)."""
    direction: str
    process: str
    process_name: str
    source_ip: str
    destination_ip: str
    destination_port: int

    @property
    def remote_ip(self) -> str:
        return self.source_ip if self.direction == INBOUND else self.destination_ip


class PortKey(NamedTuple):
    """A listening socket: its owning pool and bind address."""
    process: str
    process_name: str
    ip: str
    port: int


@dataclass(slots=True)
class Metrics:
    established: int = 0
    terminated: int = 0
    failed: int = 0
    live: int = 0
    sent: int = 0
    received: int = 0
    responses: int = 0
    rt_min: int | None = None
    rt_max: int | None = None
    rt_sum: float = 0              # ms, rounded in columns()

    def traffic(self, sent: int, received: int) -> None:
        """Payload bytes since the last observation."""
        self.sent += max(0, sent)
        self.received += max(0, received)

    def exchanges(self, n: int, sum_us: int, min_us: int = 0, max_us: int = 0) -> None:
        """``n`` exchanges completed since the last observation, their response times summed (µs),
        and the min/max of the window's exchanges (µs; 0: not known, the mean stands for them)."""
        if n <= 0:
            return
        mean = max(0, sum_us) / n
        lo, hi = round((min_us or mean) / 1000), round((max_us or mean) / 1000)
        self.responses += n
        self.rt_sum += max(0, sum_us) / 1000
        self.rt_min = lo if self.rt_min is None else min(self.rt_min, lo)
        self.rt_max = hi if self.rt_max is None else max(self.rt_max, hi)

    def merge(self, o: Metrics) -> None:
        for name in ("established", "terminated", "failed", "live", "sent", "received", "responses", "rt_sum"):
            setattr(self, name, getattr(self, name) + getattr(o, name))
        if o.rt_min is not None:
            self.rt_min = o.rt_min if self.rt_min is None else min(self.rt_min, o.rt_min)
            self.rt_max = o.rt_max if self.rt_max is None else max(self.rt_max, o.rt_max)

    def active(self) -> bool:
        return bool(self.established or self.terminated or self.failed or self.live or self.sent or self.received)

    def columns(self, failed: bool = True) -> dict:
        out = dict(BytesSent=self.sent, BytesReceived=self.received, LinksEstablished=self.established,
                   LinksTerminated=self.terminated, LinksLive=self.live, Responses=self.responses)
        if failed:
            out["LinksFailed"] = self.failed
        if self.responses:
            out.update(ResponseTimeMin=self.rt_min, ResponseTimeMax=self.rt_max, ResponseTimeSum=round(self.rt_sum))
        return out


@dataclass(slots=True)
class Conn:
    """A tracked socket (by cookie)."""
    key: LinkKey
    listener: PortKey | None
    established: bool
    sent: int
    received: int
    responses: int = 0
    rt_sum_us: int = 0


@dataclass(slots=True)
class Pool:
    """Processes sharing an executable and command line."""
    id: str
    ident: tuple[str, str]
    name: str          # ExecutableName / ProcessName
    display: str       # DisplayName: the executable, or what an interpreter runs (names.py)
    exe: str
    cmdline: str
    cwd: str
    user: str
    start: float
    first_pid: int
    pids: set[int] = field(default_factory=set)
    last_tcp: float | None = None      # last time it owned a socket
    last_report: float | None = None   # time of its last inventory record (None: none due)


# ---- helpers -----------------------------------------------------------------------------------------

def iso(t: float) -> str:
    """Seconds since the epoch -> ISO 8601 UTC to the second: 2024-05-02T11:30:00Z."""
    return datetime.fromtimestamp(math.floor(t), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def window_of(t: float) -> int:
    return int(math.floor(t / WINDOW)) * WINDOW


def pool_id(machine_id: str, exe: str, cmdline: str) -> str:
    digest = hashlib.sha1("\0".join((machine_id, exe, cmdline)).encode("utf-8", "surrogateescape")).hexdigest()
    return "p-" + digest[:12]


def identity(info: ProcessInfo) -> tuple[str, str]:
    return (info.exe or info.name, info.cmdline)


def executable_name(info: ProcessInfo) -> str:
    return posixpath.basename(info.exe) if info.exe else info.name


def family(ip: str) -> int:
    return 6 if ":" in ip else 4


@lru_cache(maxsize=4096)
def is_loopback(ip: str) -> bool:
    try:
        return ip_address(ip).is_loopback
    except ValueError:
        return False


def host_port(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def connection_id(key: LinkKey) -> str:
    """As the fixture's: U(<SourceIp>-<DestinationIp>:<DestinationPort>)/<Process>, IPv6 in brackets."""
    src = f"[{key.source_ip}]" if ":" in key.source_ip else key.source_ip
    return f"U({src}-{host_port(key.destination_ip, key.destination_port)})/{key.process}"


def json_list(values) -> str:
    """Compact JSON array text, as the *_s columns hold it: ["10.0.0.4","10.0.0.5"]."""
    return json.dumps(list(values), separators=(",", ":"))


def is_failed_close(s: Socket) -> bool:
    """A close event of a never-established outbound socket that is a failed connect (module doc)."""
    return s.state == TCP_SYN_SENT or (s.state == TCP_CLOSE and not s.bytes_sent and not s.bytes_received
                                       and s.segs_in <= 1)


# ---- the stage -------------------------------------------------------------------------------------

class UdpAggregate:
    """The UDP half of the Aggregator (module doc, "UDP flows"); its state is made on first use."""

    def _udp_state(self) -> dict:
        st = self.__dict__.get("_udp")
        if st is None:
            st = self.__dict__["_udp"] = dict(metrics={}, live={}, before={}, ports={}, listeners={}, reported={})
        return st

    def udp_listeners(self, now: float, listeners, owners: dict[int, ProcessInfo]) -> None:
        """The UDP sockets bound to a port now (``udp.UdpListener``s), with the process of each tgid:
        they replace the previous ones; each gets an idle VMBoundPort record as TCP listeners do."""
        now = self._advance(now)
        st = self._udp_state()
        table: dict[PortKey, None] = {}
        for lst in listeners:
            info = owners.get(lst.tgid)
            owner = self._owner(info, now) if info is not None else None
            if owner is not None:
                table[PortKey(owner[0], owner[1], lst.ip, lst.port)] = None
        st["listeners"] = table
        st["reported"] = {lk: w for lk, w in st["reported"].items() if lk in table}

    def udp_links(self, now: float, links, owners: dict[int, ProcessInfo]) -> None:
        """UDP links' traffic since the last call (``udp.UdpLink``s, oldest minute first), with the
        process of each tgid; each row goes to its minute's window while that is open."""
        st = self._udp_state()
        for link in links:
            t = self._advance(min(now, (link.minute + 1) * WINDOW - 0.001))
            current = self._window == link.minute * WINDOW
            info = owners.get(link.tgid)
            if info is None:
                self.unowned += link.flows_new
                continue
            owner = self._owner(info, t)
            if owner is None or (self.exclude_loopback and is_loopback(link.src) and is_loopback(link.dst)):
                continue
            process, name = owner
            if link.inbound:
                key = LinkKey(INBOUND, process, name, link.dst, link.src, link.port)
                st["ports"][key] = PortKey(process, name, link.bind, link.port)
            else:
                key = LinkKey(OUTBOUND, process, name, link.src, link.dst, link.port)
            m = st["metrics"].get(key)
            if m is None:
                if len(st["metrics"]) >= self.max_connections:
                    self.overflow["connections"] += 1
                    continue
                m = st["metrics"][key] = Metrics()
            m.established += link.flows_new
            if current:                            # the minute's flows so far (a count, not a difference)
                st["live"][key] = max(st["live"].get(key, 0), link.flows_live)
            m.traffic(link.sent, link.received)
            m.exchanges(link.responses, link.rt_sum_us, link.rt_min_us, link.rt_max_us)

    def _udp_finish(self, base: dict, w: int) -> None:
        """Close window w for UDP: live and ended flows, then its VMConnection and VMBoundPort records."""
        st = self.__dict__.get("_udp")
        if st is None:
            return
        metrics, live, before = st["metrics"], st["live"], st["before"]
        for key in [*metrics, *(k for k in before if k not in metrics)]:
            m = metrics.get(key)
            if m is None:
                if len(metrics) >= self.max_connections:
                    self.overflow["connections"] += 1
                    continue
                m = metrics[key] = Metrics()
            m.live = max(live.get(key, 0), m.established)
            # the flows of the window before that had no datagram in this one have ended
            m.terminated += max(0, before.get(key, 0) - (m.live - m.established))
        by_port: dict[tuple[PortKey, str], Metrics] = {}
        for key, m in metrics.items():
            if not m.active():
                continue
            record = self._connection_record(base, key, m)
            record["Protocol"] = UDP
            self._ready["VMConnection"].append(record)
            lk = st["ports"].get(key)
            if lk is not None:
                by_port.setdefault((lk, key.destination_ip), Metrics()).merge(m)
        idle = [((lk, lk.ip), Metrics()) for lk in st["listeners"]
                if lk not in {k for k, _ in by_port} and w - st["reported"].get(lk, -math.inf) >= self.idle_port_interval]
        for (lk, ip), m in [*by_port.items(), *idle]:
            record = self._port_record(base, lk, ip, m)
            record.update(Protocol=UDP, PortId=f"{self.machine_id}/{lk.process}/{host_port(ip, lk.port)}/{UDP}")
            self._ready["VMBoundPort"].append(record)
            if lk in st["listeners"]:
                st["reported"][lk] = w
        st["before"] = {k: m.live for k, m in metrics.items() if m.live}
        st["metrics"], st["live"] = {}, {}
        st["ports"] = {k: lk for k, lk in st["ports"].items() if k in st["before"]}


class Aggregator(UdpAggregate):
    def __init__(self, machine_id: str, computer: str, agent_id: str, *, max_connections: int = 100_000,
                 max_processes: int = 20_000, exclude_processes=frozenset(), exclude_loopback: bool = False,
                 versions: dict[str, tuple[str, str]] | None = None, idle_port_interval: int = INVENTORY_INTERVAL,
                 agent_version: str = "",
                 names: Callable[[str, float], tuple[list[str], list[str]]] | None = None,
                 unmeasured: frozenset[str] = frozenset()):
        self.machine_id = machine_id
        # the VMConnection / VMBoundPort columns the collector cannot measure (``UNMEASURED`` of
        # portable.py): left out of the records (empty in the workspace), never reported as 0
        self.unmeasured = frozenset(unmeasured)
        self.computer = computer
        self.agent_id = agent_id
        self.max_connections = max_connections
        self.max_processes = max_processes
        self.exclude_processes = frozenset(exclude_processes)
        self.exclude_loopback = exclude_loopback
        self.versions = dict(versions or {})
        self.idle_port_interval = idle_port_interval
        self.agent_version = agent_version
        self.names = names                                 # (RemoteIp, now) -> (DNS questions, canonical names)
        self.overflow = {"connections": 0, "processes": 0, "gap_windows": 0}
        self.unowned = 0                                   # sockets without a known owner, per sighting
        self._clock: float | None = None
        self._window: int | None = None                    # start of the open window
        self._baseline = True                              # the next dump is the first
        self._conns: dict[int, Conn] = {}                  # cookie -> tracked open or pending socket
        self._closed: OrderedDict[int, Conn] = OrderedDict()   # cookie -> recently closed (late close events)
        self._refused: set[int] = set()                    # cookies refused by the cap in the last dump
        self._listeners: dict[int, dict[str, PortKey | None]] = {}  # port -> bind address -> listener
        self._metrics: dict[LinkKey, Metrics] = {}         # the open window's metrics
        self._port_of: dict[LinkKey, PortKey] = {}         # inbound key -> its listener
        self._window_listeners: dict[PortKey, None] = {}   # listeners seen in the open window's dumps
        self._port_reported: dict[PortKey, int] = {}       # listener -> window of its last record
        self._pids: dict[int, str] = {}                    # pid -> pool id
        self._last_owner: dict[int, tuple] = {}            # pid -> (ProcessInfo, its _owner()): a cache
        self._pools: dict[str, Pool] = {}
        self._ready: dict[str, list[dict]] = {t: [] for t in TABLES}
        self._inventory: list[tuple[float, Pool]] = []     # inventory records due, made by flush

    # ---- calls --------------------------------------------------------------------------------
    def observe(self, now: float, sockets: list[Socket], owners: dict[int, ProcessInfo]) -> None:
        """One dump: every TCP socket of the host, with the owning process of each socket inode."""
        now = self._advance(now)
        self._listen([s for s in sockets if s.state == TCP_LISTEN], owners, now)
        seen: set[int] = set()
        refused: set[int] = set()
        for s in sockets:
            if s.state == TCP_LISTEN:
                continue
            seen.add(s.cookie)
            conn = self._conns.get(s.cookie)
            if conn is not None:
                self._touch(conn.key.process, now)      # its process still takes part in TCP
                if s.state in GONE:
                    self._update(conn, s, links=False)
                    self._close(s.cookie, conn, failed=not conn.established)
                else:
                    self._update(conn, s)
                continue
            if s.state in GONE or s.cookie in self._closed:
                continue
            info = owners.get(s.inode) if s.inode else None
            if info is not None:
                owner = self._owner(info, now)
                if owner is None:
                    continue                               # excluded
            else:                                          # accepted by the listener's process?
                hit = self._listener_for(s.src, s.sport)
                if hit is None or hit[1] is None:
                    self.unowned += 1
                    continue
                owner = (hit[1].process, hit[1].process_name)
                self._touch(hit[1].process, now)
            key, listener = self._link(s, owner)
            if key is None:
                continue
            if len(self._conns) >= self.max_connections:
                refused.add(s.cookie)
                if s.cookie not in self._refused:
                    self.overflow["connections"] += 1
                continue
            established = s.state not in PENDING
            conn = Conn(key, listener, established, s.bytes_sent, s.bytes_received, s.responses, s.rt_sum_us)
            self._conns[s.cookie] = conn
            if established and not self._baseline:
                m = self._metric(key, listener)
                if m is not None:
                    m.established += 1
                    m.traffic(s.bytes_sent, s.bytes_received)
                    m.exchanges(s.responses, s.rt_sum_us, s.rt_min_us, s.rt_max_us)
        self._refused = refused
        for cookie in [c for c in self._conns if c not in seen]:
            conn = self._conns[cookie]
            self._touch(conn.key.process, now)
            self._close(cookie, conn, failed=not conn.established)
        self._baseline = False

    def closed(self, now: float, sockets: list[Socket], owners: dict[int, ProcessInfo]) -> None:
        """Close events (SKNLGRP_INET_TCP_DESTROY) with the sockets' final counters."""
        self._advance(now)
        for s in sockets:
            if s.state == TCP_LISTEN or (not s.dport and s.dst in WILDCARD_ADDRESSES) or s.cookie in self._refused:
                continue                                    # a listener or never-connected socket ends
            if s.cookie in self._closed:                    # the dump saw it go: only the last bytes
                conn = self._closed[s.cookie]
                self._update(conn, s, links=False)
                continue
            conn = self._conns.get(s.cookie)
            if conn is not None:
                self._touch(conn.key.process)
                self._update(conn, s, links=False)
                failed = not conn.established and conn.key.direction == OUTBOUND and is_failed_close(s)
                if not conn.established and not failed:
                    self._count(conn, "established")
                    conn.established = True
                self._close(s.cookie, conn, failed=failed)
                continue
            self._closed_unknown(s, owners)

    def links(self, now: float, links, owners: dict[int, ProcessInfo]) -> None:
        """What the eBPF kernel half aggregated itself (``ebpf.Link``s, oldest minute first): the
        connections no dump saw, made and ended within their minute, summed per link. Each row goes
        to its minute's window while that is still open, else (a few microseconds late) to the open
        one. An accepted connection its process never read nor wrote (tgid 0) is its listener's."""
        for link in links:
            t = self._advance(min(now, (link.minute + 1) * WINDOW - 0.001))
            info = owners.get(link.tgid) if link.tgid else None
            owner = self._owner(info, t) if info is not None else None
            if info is not None and owner is None:
                continue                                    # excluded
            hit = self._listener_for(link.local, link.port) if link.inbound else None
            if owner is None:
                if hit is None or hit[1] is None:
                    self.unowned += link.established + link.failed
                    continue
                owner = (hit[1].process, hit[1].process_name)
                self._touch(hit[1].process, t)
            if self.exclude_loopback and is_loopback(link.local) and is_loopback(link.remote):
                continue
            if link.inbound:
                key = LinkKey(INBOUND, owner[0], owner[1], link.remote, link.local, link.port)
            else:
                key = LinkKey(OUTBOUND, owner[0], owner[1], link.local, link.remote, link.port)
            m = self._metric(key, hit[1] if hit is not None else None)
            if m is None:
                continue
            m.established += link.established
            m.terminated += link.established
            m.failed += link.failed
            m.traffic(link.sent, link.received)
            m.exchanges(link.responses, link.rt_sum_us, link.rt_min_us, link.rt_max_us)

    def process_started(self, now: float, info: ProcessInfo) -> None:
        self._advance(now)
        self._admit(info)

    def process_exited(self, now: float, pid: int) -> None:
        self._advance(now)
        self._leave(pid)

    def flush(self, now: float, final: bool = False) -> dict[str, list[dict]]:
        """The records of every window that ended at or before ``now`` (and not flushed yet);
        ``final`` (the agent is stopping): the open window too, closed as it stands (its open
        connections live), with its inventory. A restart does not count them again: its first look
        at the sockets is a baseline (``observe``)."""
        now = self._advance(now)
        cutoff = window_of(now)
        if final and self._window is not None:
            self._finish(self._window)
            cutoff = self._window + WINDOW
        out, self._ready = self._ready, {t: [] for t in TABLES}
        keep = []
        for t, pool in self._inventory:
            if t < cutoff:
                vm, smp = self._process_records(t, pool)
                out["VMProcess"].append(vm)
                out["ServiceMapProcess_CL"].append(smp)
            else:
                keep.append((t, pool))
        self._inventory = keep
        out["VMConnection"].sort(key=lambda r: (r["TimeGenerated"], r["ConnectionId"], r["Direction"]))
        out["VMBoundPort"].sort(key=lambda r: (r["TimeGenerated"], r["PortId"]))
        out["VMProcess"].sort(key=lambda r: (r["TimeGenerated"], r["Process"]))
        out["ServiceMapProcess_CL"].sort(key=lambda r: (r["TimeGenerated"], r["ResourceName_s"]))
        return out

    # ---- time --------------------------------------------------------------------------------
    def _advance(self, now: float) -> float:
        """Move the clock to ``now``, closing the windows that ended; returns the (monotonic) time."""
        if self._clock is not None and now < self._clock:
            now = self._clock
        self._clock = now
        w = window_of(now)
        if self._window is None:
            self._window = w
            return now
        if w > self._window:
            self._finish(self._window)
            gap = range(self._window + WINDOW, w, WINDOW)
            filled = gap[:MAX_GAP_WINDOWS]
            self.overflow["gap_windows"] += len(gap) - len(filled)
            for g in filled:
                self._finish(g)
            self._window = w
            self._inventory_due(w)
        return now

    def _finish(self, w: int) -> None:
        """Close window w: count the live links, make its connection and port records."""
        for conn in self._conns.values():
            if conn.established:
                m = self._metric(conn.key, conn.listener)
                if m is not None:
                    m.live += 1
        t = iso(w)
        base = dict(TimeGenerated=t, AgentId=self.agent_id, Computer=self.computer, Machine=self.machine_id)
        for key, m in self._metrics.items():
            if m.active():
                self._ready["VMConnection"].append(self._connection_record(base, key, m))
        self._ready["VMBoundPort"].extend(self._port_records(base, w))
        self._udp_finish(base, w)
        self._metrics, self._port_of, self._window_listeners = {}, {}, {}

    # ---- connections ----------------------------------------------------------------------------
    def _metric(self, key: LinkKey, listener: PortKey | None) -> Metrics | None:
        m = self._metrics.get(key)
        if m is None:
            if len(self._metrics) >= self.max_connections:
                self.overflow["connections"] += 1
                return None
            m = self._metrics[key] = Metrics()
            if listener is not None:
                self._port_of[key] = listener
        return m

    def _count(self, conn: Conn, what: str) -> None:
        m = self._metric(conn.key, conn.listener)
        if m is not None:
            setattr(m, what, getattr(m, what) + 1)

    def _update(self, conn: Conn, s: Socket, links: bool = True) -> None:
        """Counters since the last observation; a pending socket seen established is established now."""
        sent, received = s.bytes_sent - conn.sent, s.bytes_received - conn.received
        responses = s.responses - conn.responses
        if links and not conn.established and s.state not in PENDING:
            conn.established = True
            self._count(conn, "established")
        if sent > 0 or received > 0 or responses > 0:
            m = self._metric(conn.key, conn.listener)
            if m is not None:
                m.traffic(sent, received)
                m.exchanges(responses, s.rt_sum_us - conn.rt_sum_us, s.rt_min_us, s.rt_max_us)
        conn.sent, conn.received = max(conn.sent, s.bytes_sent), max(conn.received, s.bytes_received)
        if responses > 0:
            conn.responses, conn.rt_sum_us = s.responses, s.rt_sum_us

    def _close(self, cookie: int, conn: Conn, failed: bool) -> None:
        """A tracked socket ends: terminated if it was a connection, failed if an outbound connect."""
        self._conns.pop(cookie, None)
        if conn.established:
            self._count(conn, "terminated")
        elif failed and conn.key.direction == OUTBOUND:
            self._count(conn, "failed")
        self._remember(cookie, conn)

    def _remember(self, cookie: int, conn: Conn) -> None:
        self._closed[cookie] = conn
        while len(self._closed) > self.max_connections:
            self._closed.popitem(last=False)

    def _closed_unknown(self, s: Socket, owners: dict[int, ProcessInfo]) -> None:
        """A close event for a socket no dump saw: it opened and closed between two polls."""
        if s.state in PENDING - {TCP_SYN_SENT}:
            return
        info = owners.get(s.inode) if s.inode else None
        owner = self._owner(info, self._clock) if info is not None else None
        if info is not None and owner is None:
            return                                          # excluded
        if owner is None:                                   # accepted by the listener's process?
            hit = self._listener_for(s.src, s.sport)
            if hit is None or hit[1] is None:
                self.unowned += 1
                return
            owner = (hit[1].process, hit[1].process_name)
            self._touch(hit[1].process)
        key, listener = self._link(s, owner)
        if key is None:
            return
        m = self._metric(key, listener)
        if m is None:
            return
        conn = Conn(key, listener, False, s.bytes_sent, s.bytes_received, s.responses, s.rt_sum_us)
        if key.direction == OUTBOUND and is_failed_close(s):
            m.failed += 1
        else:
            conn.established = True
            m.established += 1
            m.terminated += 1
            m.traffic(s.bytes_sent, s.bytes_received)
            m.exchanges(s.responses, s.rt_sum_us, s.rt_min_us, s.rt_max_us)
        self._remember(s.cookie, conn)

    def _link(self, s: Socket, owner: tuple[str, str]) -> tuple[LinkKey | None, PortKey | None]:
        """The logical key of a socket (None when excluded) and, for inbound, its listener."""
        if self.exclude_loopback and is_loopback(s.src) and is_loopback(s.dst):
            return None, None
        process, name = owner
        hit = self._listener_for(s.src, s.sport)
        if hit is not None:
            return LinkKey(INBOUND, process, name, s.dst, s.src, s.sport), hit[1]
        return LinkKey(OUTBOUND, process, name, s.src, s.dst, s.dport), None

    def _measured(self, columns: dict) -> dict:
        return {c: v for c, v in columns.items() if c not in self.unmeasured} if self.unmeasured else columns

    def _connection_record(self, base: dict, key: LinkKey, m: Metrics) -> dict:
        record = dict(base, Direction=key.direction, Process=key.process, ProcessName=key.process_name,
                      SourceIp=key.source_ip, DestinationIp=key.destination_ip,
                      DestinationPort=key.destination_port, Protocol=PROTOCOL, RemoteIp=key.remote_ip,
                      ConnectionId=connection_id(key), **self._measured(m.columns()))
        if self.names is not None and key.direction == OUTBOUND:
            questions, canonical = self.names(key.remote_ip, self._clock)
            if questions:
                record["RemoteDnsQuestions"] = json_list(questions)
            if canonical:
                record["RemoteDnsCanonicalNames"] = json_list(canonical)
        return record

    # ---- listeners and ports ------------------------------------------------------------------------
    def _listen(self, sockets: list[Socket], owners: dict[int, ProcessInfo], now: float) -> None:
        """The listening sockets of a dump replace the previous ones."""
        table: dict[int, dict[str, PortKey | None]] = {}
        for s in sockets:
            info = owners.get(s.inode) if s.inode else None
            owner = self._owner(info, now) if info is not None else None
            # unowned or excluded listeners still make their port's connections inbound
            lk = PortKey(owner[0], owner[1], s.src, s.sport) if owner is not None else None
            table.setdefault(s.sport, {})[s.src] = lk
            if lk is not None:
                self._window_listeners[lk] = None
        self._listeners = table
        current = self._current_listeners()
        self._port_reported = {lk: w for lk, w in self._port_reported.items() if lk in current}

    def _current_listeners(self) -> dict[PortKey, None]:
        return {lk: None for by_addr in self._listeners.values() for lk in by_addr.values() if lk is not None}

    def _listener_for(self, ip: str, port: int) -> tuple[str, PortKey | None] | None:
        by_addr = self._listeners.get(port)
        if not by_addr:
            return None
        for addr in (ip, *WILDCARDS_FOR[family(ip)]):
            if addr in by_addr:
                return addr, by_addr[addr]
        return None

    def _port_records(self, base: dict, w: int) -> list[dict]:
        traffic: dict[tuple[PortKey, str], Metrics] = {}
        for key, m in self._metrics.items():
            lk = self._port_of.get(key)
            if lk is not None and m.active():
                traffic.setdefault((lk, key.destination_ip), Metrics()).merge(m)
        out = []
        for (lk, ip), m in traffic.items():
            out.append(self._port_record(base, lk, ip, m))
            self._port_reported[lk] = w
        for lk in self._window_listeners or self._current_listeners():
            last = self._port_reported.get(lk)
            if last is None or w - last >= self.idle_port_interval:
                out.append(self._port_record(base, lk, lk.ip, Metrics()))
                self._port_reported[lk] = w
        return out

    def _port_record(self, base: dict, lk: PortKey, ip: str, m: Metrics) -> dict:
        return dict(base, Process=lk.process, ProcessName=lk.process_name, Ip=ip, Port=lk.port, Protocol=PROTOCOL,
                    PortId=f"{self.machine_id}/{lk.process}/{host_port(ip, lk.port)}/{PROTOCOL}",
                    IsWildcardBind=lk.ip in WILDCARD_ADDRESSES, **self._measured(m.columns(failed=False)))

    # ---- processes ----------------------------------------------------------------------------------
    def _excluded(self, info: ProcessInfo) -> bool:
        return info.name in self.exclude_processes or executable_name(info) in self.exclude_processes

    def _owner(self, info: ProcessInfo, now: float) -> tuple[str, str] | None:
        """(Process, ProcessName) of a socket's owner, which now takes part in TCP; None when excluded."""
        last = self._last_owner.get(info.pid)
        if last is not None and last[0] is info:          # the same ProcessInfo as last time
            if last[1] is not None:
                self._touch(last[1][0], now)
            return last[1]
        owner = self._owner_of(info, now)
        if len(self._last_owner) >= self.max_processes:
            self._last_owner.clear()
        self._last_owner[info.pid] = (info, owner)
        return owner

    def _owner_of(self, info: ProcessInfo, now: float) -> tuple[str, str] | None:
        if self._excluded(info):
            return None
        pool = self._admit(info)
        if pool is None:      # over the cap: the deterministic id, no inventory
            return pool_id(self.machine_id, *identity(info)), executable_name(info)
        self._touch(pool.id, now)
        return pool.id, pool.name

    def _touch(self, pid_of_pool: str, now: float | None = None) -> None:
        pool = self._pools.get(pid_of_pool)
        if pool is None:
            return
        now = self._clock if now is None else now
        pool.last_tcp = now
        if pool.last_report is None:
            pool.last_report = now
            self._emit_process(now, pool)

    def _admit(self, info: ProcessInfo) -> Pool | None:
        """The pool of a process, joining it; None when excluded or over the cap."""
        if self._excluded(info):
            self._leave(info.pid)          # it may have exec'd into an excluded program
            return None
        ident = identity(info)
        current = self._pids.get(info.pid)
        if current is not None:
            pool = self._pools[current]
            if pool.ident == ident:
                return pool
            self._leave(info.pid)          # the pid now runs something else (exec, or reuse)
        if len(self._pids) >= self.max_processes:
            self.overflow["processes"] += 1
            return None
        pid = pool_id(self.machine_id, *ident)
        pool = self._pools.get(pid)
        if pool is None:
            pool = self._pools[pid] = Pool(pid, ident, executable_name(info), info.display or info.name, info.exe,
                                           info.cmdline, info.cwd, info.user, info.start_time, info.pid)
        pool.pids.add(info.pid)
        pool.first_pid = min(pool.first_pid, info.pid)
        pool.start = min(pool.start, info.start_time)
        self._pids[info.pid] = pid
        return pool

    def _leave(self, pid: int) -> None:
        self._last_owner.pop(pid, None)
        pool = self._pools.get(self._pids.pop(pid, None) or "")
        if pool is not None:
            pool.pids.discard(pid)
            if not pool.pids:
                del self._pools[pool.id]

    def _inventory_due(self, w: int) -> None:
        """Hourly records of the pools that owned a socket during the hour."""
        for pool in self._pools.values():
            while pool.last_report is not None and pool.last_report + INVENTORY_INTERVAL <= w:
                due = pool.last_report + INVENTORY_INTERVAL
                if pool.last_tcp is None or pool.last_tcp <= due - INVENTORY_INTERVAL:
                    pool.last_report = None    # idle of TCP for an hour: a fresh record when it comes back
                    break
                pool.last_report = due
                self._emit_process(due, pool)

    def _emit_process(self, t: float, pool: Pool) -> None:
        """An inventory record of the pool at t, made when its window is flushed (FirstPid and StartTime
        then include the members that joined during that window)."""
        self._inventory.append((t, pool))

    def _process_records(self, t: float, pool: Pool) -> tuple[dict, dict]:
        product, version = self.versions.get(pool.exe) or self.versions.get(pool.name) or ("", "")
        ts, start = iso(t), iso(pool.start)
        vm = dict(TimeGenerated=ts, AgentId=self.agent_id, Computer=self.computer, Machine=self.machine_id,
                  Process=pool.id, ExecutableName=pool.name, DisplayName=pool.display, ExecutablePath=pool.exe,
                  CommandLine=pool.cmdline, WorkingDirectory=pool.cwd, UserName=pool.user, StartTime=start,
                  FirstPid=pool.first_pid, ProductName=product, ProductVersion=version)
        smp = dict(TimeGenerated=ts, Computer=self.computer, ResourceId=f"{self.machine_id}/{pool.id}",
                   ResourceName_s=pool.id, MachineResourceName_s=self.machine_id, ExecutableName_s=pool.name,
                   StartTime_t=start, FirstPid_d=float(pool.first_pid), ProductName_s=product,
                   ProductVersion_s=version, CommandLine_s=pool.cmdline, ExecutablePath_s=pool.exe,
                   WorkingDirectory_s=pool.cwd, UserName=pool.user)
        return vm, smp

    # ---- the machine --------------------------------------------------------------------------------
    def machine_records(self, now: float, info: MachineInfo,
                        tags: dict[str, str] | None = None) -> dict[str, list[dict]]:
        """VMComputer, ServiceMapComputer_CL and (with tags) VMComputerTags_CL at ``now`` (the runner
        calls it at start and hourly)."""
        t = iso(now)
        family_ = info.os_family.lower()
        vm = dict(TimeGenerated=t, AgentId=self.agent_id, Computer=self.computer, Machine=self.machine_id,
                  HostName=info.hostname, DisplayName=info.hostname, FullDisplayName=info.fqdn,
                  DnsNames=list(info.dns_names), Ipv4Addresses=list(info.ipv4), Ipv6Addresses=list(info.ipv6),
                  MacAddresses=list(info.macs), OperatingSystemFamily=family_,
                  OperatingSystemFullName=info.os_full_name, Cpus=info.cpus, CpuSpeed=info.cpu_speed_mhz,
                  PhysicalMemoryMB=info.memory_mb, BootTime=iso(info.boot_time), TimeZone=info.timezone,
                  VirtualizationState=info.virtualization, HypervisorType=info.hypervisor,
                  VirtualMachineType=info.hypervisor, DependencyAgentVersion=self.agent_version)
        smc = dict(TimeGenerated=t, Computer=self.computer, ResourceId=self.machine_id,
                   ResourceName_s=self.machine_id, ComputerName_s=self.computer,
                   Ipv4Addresses_s=json_list(info.ipv4), Ipv6Addresses_s=json_list(info.ipv6),
                   DnsNames_s=json_list(info.dns_names), OperatingSystemFamily_s=family_,
                   OperatingSystemFullName_s=info.os_full_name, Bitness_s=info.bitness.replace("-", ""),
                   PhysicalMemory_d=float(info.memory_mb), Cpus_d=float(info.cpus),
                   CpuSpeed_d=float(info.cpu_speed_mhz), VirtualizationState_s=info.virtualization,
                   VirtualMachineType_s=info.hypervisor, BootTime_t=iso(info.boot_time))
        out = {"VMComputer": [vm], "ServiceMapComputer_CL": [smc]}
        for name, value in (tags or {}).items():
            if name in TAG_COLUMNS:
                vm[name] = str(value)
                twin = TAG_COLUMNS[name]
                if twin is not None and (not twin.endswith("_g") or _is_guid(value)):
                    smc[twin] = str(value)
        if tags:
            out["VMComputerTags_CL"] = [dict(TimeGenerated=t, Computer=self.computer, Machine=self.machine_id,
                                             Tags={k: str(v) for k, v in tags.items()})]
        return out


def _is_guid(value) -> bool:
    try:
        uuid.UUID(str(value))
        return True
    except ValueError:
        return False
