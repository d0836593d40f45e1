"""The collector: the observe stages (netlink.py or ebpf.py, proc.py) joined to the aggregate stage
(records.py), behind one interface whatever observes the sockets (``Collector.kind``: "ebpf" or
"netlink", from the ``collector`` setting; "auto" takes ebpf where it loads and logs why not).

``collector(config)`` starts a poll thread and returns a ``Collect`` for ``ship.run``: each call
returns the records of the one-minute windows that ended since the previous call (plus
VMComputer / ServiceMapComputer_CL at start and then hourly).

With either, each poll first drains the DNS sniffer (dns.py, the ``dns`` setting: the DNS answers
the host received since the last poll, at most ``dns.MAX_PACKETS_PER_READ`` packets and about
``dns.READ_BUDGET`` seconds of parsing) into ``Names``, the bounded cache the Aggregator asks
(``names`` hook) for the names of each outbound record's remote address; answers come before the
connections they name. Without CAP_NET_RAW (or with a sniffer that fails) the agent says so once
and goes on without names.

With eBPF, every ``config.poll`` seconds the poll thread drains the kernel half's events (close
events with their owner's tgid, read from /proc once per process and cached, or its comm when it
is already gone; a listen event makes it dump first) and dumps every ``dump_interval`` and just
before each minute ends; the owner of a new socket in a dump is asked of the kernel half's map
(``BpfEvents.owner``), /proc fd tables are read only for listeners and the first dump.

With netlink, every ``config.poll`` seconds the poll thread, in this order:

1. reads the proc connector (fork/exec/exit of every process of the host, root in the initial
   namespaces; whatever namespace is observed): the processes started in the last
   ``NEW_PROCESS_TTL`` seconds are where new sockets are looked for first, a forked child's parent
   is kept until it execs.
2. drains the close events (``DestroyListener``: SKNLGRP_INET(6)_TCP_DESTROY, Linux >= 4.10 and
   CAP_NET_ADMIN; without them the log says why and only dumps are read) and hands them to
   ``Aggregator.closed``. The kernel's close events carry inode 0; a cookie that a dump reported
   with an owner gets that inode and owner back (``dataclasses.replace``). Any other outbound
   socket (it opened and closed between two polls, failed connects included) goes to the
   machine's unknown process (``UNKNOWN_PROCESS``: Process = the pool id of the name "unknown",
   ProcessName "unknown", as Service Map's "Unknown processes"), under inode -cookie: never
   dropped, never credited to another process that talked to the same address. Inbound ones go
   to the listener's process (records.py).
3. dumps every TCP socket (``SockDiag``) and finds the owner of each socket inode: an inode seen
   before keeps its pid; new inodes are looked up first in the fd tables of the processes that
   owned sockets at the last look and of the processes the connector saw start, then (at most
   once a poll, an inode missed there retried after ``UNFOUND_RETRY``) in every process of /proc.
   With the connector, a socket new in this dump that those processes do not hold waits for the
   next dump (left out of this one): it belongs to a process older than the collector, or to one
   that exited since the dump (a short-lived client, whose socket is then gone and needs no look);
   only one still there is looked for in all of /proc. So short-lived clients cost no full scan.
   A socket with a file no process is found holding, and an outbound one without a file (closed
   by its process, in FIN_WAIT* / LAST_ACK / CLOSING) that no dump saw owned, goes to the unknown
   process too. Only inodes of this namespace's dump are looked up, so processes of other network
   namespaces sharing /proc are never credited with them. A forked child caught exiting (its
   exe and command line already unreadable, its fds not yet closed) that exec'd nothing since
   its fork runs its parent's program and is read as such.
4. hands the sockets to the aggregator with payload bytes (``netlink.payload``: tcp_info's
   counters without SYN and FIN) and request/response estimates (``netlink.Exchanges``: the
   cumulative ``responses`` / ``rt_sum_us`` and the ``rt_min_us`` / ``rt_max_us`` of the
   observation, from tcpi_last_data_sent / tcpi_last_data_recv) in place of the raw counters.
5. process information (``Proc.process``) is read once per pid that owns a socket and cached;
   re-read on an exec event and forgotten (with ``Aggregator.process_exited``) when the process
   is gone (exit event, or /proc polling).

Work per poll is bounded by the host's sockets and ``MAX_EVENTS_PER_READ``; a poll that raises is
logged (rate-limited) and counted in ``stats["poll_errors"]`` and the next one goes on.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import socket
import sys
import threading
import time
from collections import OrderedDict

from .. import __version__
from .config import AgentConfig, load_machine_id
from .dns import DnsSniffer, Names
from .names import display_name
from .model import TCP_LISTEN, TCP_SYN_RECV, TCP_TIME_WAIT, MachineInfo, ProcessInfo, Socket
from .netlink import ALL_STATES, DestroyListener, Exchanges, ProcConnector, SockDiag, payload, with_payload
from .proc import Proc
from .perf import Sampler, heartbeat_columns, read_proc
from .records import TABLES, Aggregator

log = logging.getLogger("netatlas.agent.collect")

MACHINE_INTERVAL = 3600.0        # seconds between two VMComputer records
FLUSH_GRACE = 1.0                # seconds after a window's end, beyond one poll, before it is flushed
UNFOUND_RETRY = 30.0             # seconds before an inode no process held is looked for everywhere again
PROCESS_RECHECK = 60.0           # seconds between two re-reads of a cached process (exec without connector)
NEW_PROCESS_TTL = 10.0           # seconds a process started (proc connector) is looked at first for new sockets
MAX_NEW_PROCESSES = 4096         # most such processes remembered (the oldest are forgotten first)
MAX_KERNEL_LINKS = 16384         # eBPF: links the kernel half sums itself (na_links; more go as close events)
# The machine's unknown process: the owner of every connection whose process could not be found
# (it opened and closed between two polls, or hid its fd table), as Service Map's "Unknown
# processes" group. Process = pool id of (exe "", command line "", name "unknown").
UNKNOWN_PROCESS = "unknown"
WILDCARDS = ("0.0.0.0", "::")
# TIME_WAIT and SYN_RECV entries are left out of dumps: they have no process and no tcp_info, the
# close event of a connection already gave its final counters, and a busy host has tens of
# thousands of them (500 connections a second leave 30,000 in TIME_WAIT)
DUMP_STATES = tuple(s for s in ALL_STATES if s not in (TCP_TIME_WAIT, TCP_SYN_RECV))


class Collector:
    """A poll thread feeding an Aggregator; calling the object returns the finished records."""

    def __init__(self, config: AgentConfig, *, agent_id: str | None = None, proc: Proc | None = None,
                 start: bool = True):
        self.config = config
        self.netns = config.netns or None
        self.proc = proc or Proc("/")
        self.agent_id = agent_id or load_machine_id(config.machine_id_file)
        self.machine_id = self.agent_id if self.agent_id.startswith("m-") else f"m-{self.agent_id}"
        machine = self.proc.machine()
        self.computer = config.computer_name or machine.fqdn or machine.hostname or socket.getfqdn()
        self.dns: DnsSniffer | None = None
        self.names: Names | None = None
        if config.dns:
            try:
                self.dns = DnsSniffer(self.netns)
                self.names = Names(config.dns_cache_size, counters=self.dns.counters)
            except OSError as e:       # not root (CAP_NET_RAW), or no AF_PACKET in this kernel
                log.warning("DNS names off: cannot capture DNS answers (%s); outbound connections get no "
                            "RemoteDnsQuestions", e)
        self.agg = Aggregator(self.machine_id, self.computer, self.agent_id,
                              max_connections=config.max_connections, max_processes=config.max_processes,
                              exclude_processes=config.exclude_processes,
                              exclude_loopback=config.exclude_loopback, agent_version=__version__,
                              names=self.names.lookup if self.names is not None else None)
        self.stats = dict(polls=0, dumps=0, poll_errors=0, close_events=0, event_overflows=0, full_scans=0,
                          targeted_scans=0, unknown_owner=0, kernel_links=0, last_poll_ms=0.0, max_poll_ms=0.0)
        self._lock = threading.Lock()                      # the aggregator
        self._stop = threading.Event()
        self._machine_due = 0.0
        self._inode_pid: dict[int, int] = {}               # socket inode -> pid (this namespace's dump)
        self._unfound: dict[int, float] = {}               # inode -> when a full scan last missed it
        self._hot: set[int] = set()                        # pids owning sockets at the last look
        self._info: dict[int, tuple[float, ProcessInfo]] = {}   # pid -> (read at, info)
        self._cookie: OrderedDict[int, tuple[int, ProcessInfo]] = OrderedDict()  # cookie -> (inode, owner)
        self._new: dict[int, float] = {}                   # pid -> when it forked or exec'd (proc connector)
        self._forked: dict[int, int] = {}                  # pid forked and not exec'd since -> parent pid
        self._waiting: set[int] = set()                    # new inodes left out of this dump (see _owners)
        self._unknown_inodes: set[int] = set()             # inodes given to the unknown process (netlink)
        self._dumped_inodes: set[int] = set()              # the inodes of the last dump
        self._exchanges = Exchanges(config.max_connections)   # netlink: response estimates by cookie
        self.unknown = ProcessInfo(0, 0, UNKNOWN_PROCESS, "", "", "", -1, "", time.time())
        self._listen: dict[int, set[str]] = {}
        self._packages_done: set[str] = set()
        self.diag = SockDiag(self.netns)
        self.bpf = self.destroy = self.connector = None
        try:
            self.kind = self._choose(config.collector)
        except BaseException:          # collector = ebpf that cannot load: no socket left open
            for sock in (self.diag, self.dns):
                if sock is not None:
                    sock.close()
            raise
        if self.kind == "netlink":
            try:
                self.destroy = DestroyListener(self.netns)
            except OSError as e:          # Linux < 4.10, or no CAP_NET_ADMIN: dumps only
                log.warning("sock_diag close events unavailable (%s): connections that open and close "
                            "between two polls, failed connects included, are not seen", e)
            try:                          # process events of the whole host, whatever netns is observed
                self.connector = ProcConnector()
            except OSError as e:          # not root in the initial namespaces: /proc polling only
                log.info("proc connector unavailable (%s): new sockets are looked for in every process "
                         "of /proc", e)
        self._dumped = float("-inf")                       # monotonic time of the last dump (ebpf)
        self._links_minute = -1                            # the minute of the last links() (ebpf)
        self.udp = self._udp_start()                       # UDP flows (udp.py), or None
        self._udp_read = float("-inf")
        self._udp_minute = -1
        self.sampler = Sampler(self.computer, self.agent_id, lambda: read_proc(self.proc.root, self.netns),
                               heartbeat=self._heartbeat, metrics=config.metrics, perf=config.perf)
        self._machine: MachineInfo | None = None
        self._thread = threading.Thread(target=self._loop, name="netatlas-poll", daemon=True)
        if start:
            self.start()

    def _choose(self, wanted: str) -> str:
        """"ebpf" (``self.bpf`` loaded and attached) or "netlink"; auto falls back, saying why."""
        if wanted == "netlink":
            log.info("collector: netlink (as configured)")
            return "netlink"
        from .ebpf import BpfEvents, prerequisites
        ok, why = prerequisites() if wanted == "auto" else (True, "")      # then one load tells the rest
        if ok:
            try:
                self.bpf = BpfEvents(self.netns, aggregate=True,
                                     max_links=min(max(self.config.max_connections, 1024), MAX_KERNEL_LINKS))
                log.info("collector: ebpf")
                return "ebpf"
            except OSError as e:
                if wanted == "ebpf":
                    raise
                why = str(e)
        log.info("collector: netlink (ebpf unavailable: %s)", why)
        return "netlink"

    # ---- the thread -------------------------------------------------------------------------
    def start(self) -> "Collector":
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        for s in (self.diag, self.destroy, self.connector, self.bpf, self.dns, self.udp):
            if s is not None:
                try:
                    s.close()
                except OSError:
                    pass

    def _loop(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:
                self.stats["poll_errors"] += 1
                n = self.stats["poll_errors"]
                if n <= 5 or n % 100 == 0:
                    log.exception("poll failed (%d so far); going on", n)
            next_at = max(next_at + self.config.poll, time.monotonic())
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # ---- one poll ---------------------------------------------------------------------------
    def poll(self, now: float | None = None) -> None:
        t0 = time.monotonic()
        self._read_dns(now)
        if self.bpf is not None:
            self._poll_bpf(now)
        else:
            self._poll_netlink(now)
        if self.udp is not None:
            self._poll_udp(now)
        ms = (time.monotonic() - t0) * 1000
        self.stats["polls"] += 1
        self.stats["last_poll_ms"] = round(ms, 2)
        self.stats["max_poll_ms"] = max(self.stats["max_poll_ms"], round(ms, 2))

    def _read_dns(self, now: float | None) -> None:
        """The DNS answers received since the last poll into the names cache. A sniffer that fails is
        closed (said once); the names already learnt stay until they expire."""
        if self.dns is None:
            return
        try:
            found = self.dns.read()
        except OSError as e:
            log.warning("DNS capture failed (%s): no more DNS names", e)
            self.dns.close()
            self.dns = None
            return
        if found:
            with self._lock:
                self.names.learn(time.time() if now is None else now, found)
        self.stats["dns"] = dict(self.dns.counters, addresses=len(self.names))

    def _poll_netlink(self, now: float | None) -> None:
        self._process_events()
        events = self.destroy.read() if self.destroy is not None else []
        self.stats["close_events"] += len(events)
        if self.destroy is not None:
            self.stats["event_overflows"] = self.destroy.overflows
        now = time.time() if now is None else now
        if events:
            restored, owners = self._restore(events, now)
            restored = self._payloads(restored, final=True)
            with self._lock:
                self.agg.closed(now, restored, owners)
        self._dump()

    def _dump(self) -> None:
        kernel = None
        if self.bpf is not None:
            # the sockets made from now on are the kernel half's until the next dump: those that
            # end before it go into its link counters, so this dump leaves them out (ebpf.py)
            gen = self.bpf.next_generation()
        sockets = self.diag.dump(states=DUMP_STATES)
        if self.bpf is not None:
            kernel, kept = {}, []
            for s in sockets:
                if s.state != TCP_LISTEN and s.dst not in WILDCARDS:
                    c = self.bpf.sock(s.cookie)
                    if c is not None:
                        if c.gen == gen:
                            continue
                        kernel[s.cookie] = c
                    elif self.stats["dumps"] and s.inode not in self._inode_pid:
                        # not one open before the kernel half loaded (the first dump has those): it
                        # ended between the dump and this look, and its end is counted (event or link)
                        continue
                kept.append(s)
            sockets = kept
        now = time.time()
        owners = self._owners(sockets, now, kernel)
        self.stats["dumps"] += 1
        if self.bpf is None:
            if self._waiting:              # their owner is looked for at the next dump (_owners)
                sockets = [s for s in sockets if s.inode not in self._waiting]
            if self.destroy is None:       # no close event will forget a socket: the dump does
                self._exchanges.retain({s.cookie for s in sockets})
            sockets = self._payloads(self._orphans(sockets, owners))
        else:
            sockets = self._kernel_counts(sockets, kernel)
        with self._lock:
            self.agg.observe(now, sockets, owners)
        self._packages(owners)

    def _poll_bpf(self, now: float | None) -> None:
        """Close events carry their owner (recorded at connect, or at the first send or receive of an
        accepted socket); a dump is taken every ``dump_interval``, just before each minute ends, and
        when a socket starts listening (before the close events: their direction depends on it)."""
        self.bpf.sync_clock()                          # the kernel half's minutes are the wall clock's
        wall = time.time() if now is None else now
        # the ring buffer first: its exec events name the links' owners that are gone (a short-lived
        # client read after them was its comm); then a minute that ended gets its links before it closes
        closes, procs, listens = self.bpf.read()
        if int(wall // 60) != self._links_minute:
            self._read_links(wall)
        self.stats["close_events"] += len(closes)
        if listens:          # a new listening port: dump now, so its connections count as inbound
            for tgid, inode in listens:
                if inode:
                    self._inode_pid[inode] = tgid
            self._dumped = time.monotonic()
            self._dump()
        now = time.time() if now is None else now
        if closes:
            events, owners = [], {}
            for s, tgid, comm in closes:              # s.inode is -cookie (ebpf.py)
                known = self._cookie.pop(s.cookie, None)
                info = self._process(tgid, now, comm) if tgid else (known[1] if known else None)
                if info is not None:
                    owners[s.inode] = info
                events.append(s)
            with self._lock:
                self.agg.closed(now, events, owners)
        for kind, tgid in procs:                   # after the closes: an exit ends its sockets first
            self._process_event(kind, tgid, now)
        mono = time.monotonic()
        minute_ends = int((now + self.config.poll) // 60) != int(now // 60)
        if mono - self._dumped >= self.config.dump_interval or minute_ends:
            self._dumped = mono
            self._dump()
            self._read_links(time.time())
            self.stats["ebpf"] = self.bpf.counters()

    def _read_links(self, now: float) -> None:
        """eBPF: the connections the kernel half summed per link (those no dump saw), into the
        aggregator, each in its minute's window (``Aggregator.links``)."""
        self._links_minute = int(now // 60)
        links = self.bpf.links()
        if not links:
            return
        owners = {}
        for link in links:
            if link.tgid and link.tgid not in owners:
                info = self._process(link.tgid, now, link.comm)
                if info is not None:
                    owners[link.tgid] = info
        self.stats["kernel_links"] += len(links)
        with self._lock:
            self.agg.links(now, links, owners)

    # ---- UDP flows (udp.py) ------------------------------------------------------------------
    def _udp_start(self):
        """The UDP flows' kernel half when the ``udp`` setting is on and it loads, else None (said once)."""
        if not self.config.udp:
            return None
        from .udp import UdpFlows, prerequisites
        ok, why = prerequisites()
        if ok:
            try:
                return UdpFlows(self.netns, max_flows=self.config.max_udp_flows)
            except OSError as e:
                why = str(e)
        log.warning("UDP flows off: %s", why)
        return None

    def _poll_udp(self, now: float | None) -> None:
        """The UDP links' counters (udp.py), read at the first poll of each minute (the minute that
        ended is complete then), every ``dump_interval``, and at a poll after the poll thread was
        told to stop (a last look)."""
        now = time.time() if now is None else now
        mono = time.monotonic()
        if (int(now // 60) == self._udp_minute and mono - self._udp_read < self.config.dump_interval
                and not self._stop.is_set()):
            return
        self._udp_read, self._udp_minute = mono, int(now // 60)
        links = self.udp.read()
        owners = {}
        for link in links:
            if link.tgid not in owners:
                info = self._process(link.tgid, now, link.comm)
                if info is not None:
                    owners[link.tgid] = info
        listeners = self.udp.listeners()
        for lst in listeners:
            if lst.tgid not in owners:
                info = self._process(lst.tgid, now, lst.comm)
                if info is not None:
                    owners[lst.tgid] = info
        with self._lock:
            self.agg.udp_links(now, links, owners)
            self.agg.udp_listeners(now, listeners, owners)
        self.stats["udp"] = dict(self.udp.counters(), links_read=len(links))

    def _restore(self, events: list[Socket], now: float) -> tuple[list[Socket], dict[int, ProcessInfo]]:
        """Close events with the inode (and owner) a dump reported for their cookie. An outbound
        socket no dump saw with an owner (it opened and closed between two polls, a failed connect
        included) goes to the machine's unknown process, under inode -cookie; never to another
        process that merely talked to the same address. Inbound ones are left to the aggregator,
        which gives them to the listener's process; listeners and never-connected sockets (no
        remote address) to nobody."""
        out, owners = [], {}
        for s in events:
            known = self._cookie.pop(s.cookie, None)
            if known is not None:
                inode, info = known
                s = dataclasses.replace(s, inode=inode)
                owners[inode] = info
            elif s.state != TCP_LISTEN and s.dst not in WILDCARDS and not self._inbound(s):
                s = dataclasses.replace(s, inode=-s.cookie)
                owners[s.inode] = self.unknown
                self.stats["unknown_owner"] += 1
            out.append(s)
        return out, owners

    def _orphans(self, sockets: list[Socket], owners: dict[int, ProcessInfo]) -> list[Socket]:
        """netlink: outbound sockets of a dump without a file (closed by a process that no dump saw
        holding them, now in FIN_WAIT*, CLOSING or LAST_ACK) go to the unknown process under inode
        -cookie, as their close event would."""
        out = []
        for s in sockets:
            if (not s.inode and s.state != TCP_LISTEN and s.cookie not in self._cookie and s.dst not in WILDCARDS
                    and not self._inbound(s)):
                s = dataclasses.replace(s, inode=-s.cookie)
                owners[s.inode] = self.unknown
                self._cookie[s.cookie] = (s.inode, self.unknown)
            out.append(s)
        return out

    def _payloads(self, sockets: list[Socket], final: bool = False) -> list[Socket]:
        """netlink: the sockets with payload bytes (``netlink.payload``: no SYN, no FIN) and
        their exchanges (``netlink.Exchanges``) in place of tcp_info's raw counters."""
        out = []
        for s in sockets:
            if s.state == TCP_LISTEN or s.dst in WILDCARDS:
                out.append(s)
                continue
            outbound = not self._inbound(s)
            sent, received = payload(s, outbound)
            responses, rt_sum, rt_min, rt_max = self._exchanges.observe(s, outbound, sent, received, final)
            if responses or sent != s.bytes_sent or received != s.bytes_received:
                s = with_payload(s, sent, received, responses, rt_sum, rt_min, rt_max)
            out.append(s)
        return out

    def _kernel_counts(self, sockets: list[Socket], kernel: dict) -> list[Socket]:
        """eBPF: the sockets with tcp_info's payload bytes (``netlink.payload``, as the close events
        count them) and the exchanges the kernel half counted (``kernel``: cookie -> ``ebpf.Counts``;
        none for one open before it was loaded)."""
        out = []
        for s in sockets:
            if s.state != TCP_LISTEN and s.dst not in WILDCARDS:
                sent, received = payload(s, not self._inbound(s))
                c = kernel.get(s.cookie)
                s = (with_payload(s, sent, received, 0, 0, 0, 0) if c is None else
                     with_payload(s, sent, received, c.responses, c.rt_sum_us, c.rt_min_us, c.rt_max_us))
            out.append(s)
        return out

    def _inbound(self, s: Socket) -> bool:
        addrs = self._listen.get(s.sport)
        return bool(addrs) and (s.src in addrs or any(w in addrs for w in WILDCARDS))

    def _owners(self, sockets: list[Socket], now: float, kernel: dict | None = None) -> dict[int, ProcessInfo]:
        """inode -> owning process for the sockets of this dump (``kernel``, eBPF: what the kernel
        half keeps of each, by cookie); remembers cookies and remotes."""
        listen: dict[int, set[str]] = {}
        inodes = set()
        for s in sockets:
            if s.inode:
                inodes.add(s.inode)
            if s.state == TCP_LISTEN:
                listen.setdefault(s.sport, set()).add(s.src)
        self._listen = listen
        for inode in [i for i in self._inode_pid if i not in inodes]:
            del self._inode_pid[inode]
        self._unknown_inodes &= inodes       # their connections keep the unknown owner: not looked for again
        missing = inodes.difference(self._inode_pid, self._unknown_inodes)
        if missing and self.bpf is not None:        # the owner the kernel half recorded
            for s in sockets:
                if s.inode in missing and s.state != TCP_LISTEN:
                    c = kernel.get(s.cookie) if kernel is not None else None
                    tgid = c.tgid if c is not None else 0
                    if tgid:
                        self._inode_pid[s.inode] = tgid
                        missing.discard(s.inode)
            if self.stats["dumps"]:
                # after the first dump, the kernel half saw every socket open: one it does not know
                # is an accepted one that has not been read from yet (the aggregator gives it to the
                # listener's process) or one closed since the dump (its close event has the owner)
                missing = {s.inode for s in sockets if s.inode in missing and s.state == TCP_LISTEN}
        if missing:          # first the processes that held sockets, and those started lately
            self._forget_new(now)
            self.stats["targeted_scans"] += 1
            missing = self._scan(sorted(self._hot.union(self._new)), missing)
        self._waiting = set()
        if missing and self.connector is not None and self.stats["dumps"]:
            # every process started lately is in _new (proc connector): a socket none of them nor
            # the usual owners holds is an older process's, or its process exited since the dump
            # (a short-lived client). A socket new in this dump waits for the next one (left out
            # of this one); one still there is looked for everywhere then. Listeners never wait
            # (they decide the direction of the others), nor sockets of earlier dumps.
            self._waiting = {s.inode for s in sockets
                             if s.inode in missing and s.inode not in self._dumped_inodes and s.state != TCP_LISTEN}
            missing -= self._waiting
        self._dumped_inodes = inodes
        if missing:     # new inodes not held by the usual owners: one look at every process,
            # unless only inodes that such a look missed recently (sockets of processes we cannot see)
            fresh = {i for i in missing if now - self._unfound.get(i, float("-inf")) >= UNFOUND_RETRY}
            if fresh:
                self.stats["full_scans"] += 1
                for inode in self._scan(self.proc.pids(), missing):
                    self._unfound[inode] = now
        for inode in [i for i in self._unfound if i not in inodes]:
            del self._unfound[inode]
        self._hot = set(self._inode_pid.values())
        infos: dict[int, ProcessInfo | None] = {}
        owners: dict[int, ProcessInfo] = {}
        for inode, pid in self._inode_pid.items():
            if pid not in infos:
                infos[pid] = self._process(pid, now)
            if infos[pid] is not None:
                owners[inode] = infos[pid]
        cap = self.config.max_connections
        for s in sockets:
            info = owners.get(s.inode) if s.inode else None
            if (info is None and s.inode and self.bpf is None and s.inode not in self._waiting
                    and (s.state == TCP_LISTEN or not self._inbound(s))):
                # a socket with a file no process we can read holds: the unknown process (an
                # accepted one is left to the aggregator, which gives it to its listener's process)
                info = owners[s.inode] = self.unknown
                self._unknown_inodes.add(s.inode)
            if info is None or s.state == TCP_LISTEN:
                continue
            self._cookie[s.cookie] = (s.inode, info)
            self._cookie.move_to_end(s.cookie)
        while len(self._cookie) > cap:
            self._cookie.popitem(last=False)
        # forget processes that are gone (no connector in a namespace: this is how we notice)
        for pid in [p for p in self._info if p not in infos]:
            if not os.path.exists(f"{self.proc.proc}/{pid}"):
                self._exited(pid, now)
        return owners

    def _scan(self, pids, missing: set[int]) -> set[int]:
        """Look for the ``missing`` inodes in the fd tables of ``pids``; returns those not found."""
        for pid in pids:
            if not missing:
                break
            try:
                held = self.proc._socket_inodes(self.proc.proc / str(pid) / "fd")
            except OSError:
                continue
            for inode in held & missing:
                self._inode_pid[inode] = pid
            missing = missing - held
        return missing

    def _process(self, pid: int, now: float, comm: str = "", depth: int = 0) -> ProcessInfo | None:
        cached = self._info.get(pid)
        if cached is not None and now - cached[0] < PROCESS_RECHECK:
            return cached[1]
        try:
            info = self.proc.process(pid, sockets=False)
        except OSError:
            if cached is not None:
                return cached[1]
            execd = self.bpf.execs.get(pid) if self.bpf is not None else None
            if execd is not None and execd[0]:
                # gone before we looked, but its exec was seen: the program and arguments it ran
                path, argv = execd
                name = os.path.basename(path)
                info = ProcessInfo(pid, 0, name, path, " ".join(argv), "", 0, "", 0.0,
                                   display=display_name(name, argv))
            elif not comm:
                return None
            else:   # gone before we looked (a short-lived client): its name is what is left
                info = ProcessInfo(pid, 0, comm, "", "", "", 0, "", 0.0)
        execd = self.bpf.execs.get(pid) if self.bpf is not None and not info.exe and not info.cmdline else None
        if execd is not None and execd[0]:      # caught exiting (memory gone): what it exec'd
            info.exe, info.cmdline = execd[0], " ".join(execd[1])
            info.name = os.path.basename(execd[0])
            info.display = display_name(info.name, execd[1])
        if not info.exe and not info.cmdline and pid in self._forked and depth < 4:
            # a forked child caught exiting (its memory, so exe and command line, already gone, its
            # fds not yet): it runs its parent's program, having exec'd nothing since (proc connector)
            parent = self._process(self._forked[pid], now, depth=depth + 1)
            if parent is not None and (parent.exe or parent.cmdline):
                info.exe, info.cmdline, info.name, info.display = parent.exe, parent.cmdline, parent.name, parent.display
                info.cwd = info.cwd or parent.cwd
        self._info[pid] = (now, info)
        if cached is not None and (cached[1].exe, cached[1].cmdline) != (info.exe, info.cmdline):
            with self._lock:
                self.agg.process_started(now, info)      # exec'd into another program
        return info

    def _exited(self, pid: int, now: float) -> None:
        if self._info.pop(pid, None) is not None:
            with self._lock:
                self.agg.process_exited(now, pid)

    def _process_events(self) -> None:
        if self.connector is None:
            return
        try:
            events = self.connector.read()
        except OSError as e:
            log.warning("proc connector failed (%s): polling /proc instead", e)
            self.connector.close()
            self.connector = None
            return
        now = time.time()
        for kind, pid, tgid in events:
            if pid != tgid:                                # threads are not processes
                continue
            parent = self.connector.parents.pop(tgid, None) if kind == "fork" else None
            if kind == "exit":
                self._new.pop(tgid, None)
            else:                                          # fork, exec: where new sockets come from
                self._new.pop(tgid, None)
                self._new[tgid] = now
                if len(self._new) > MAX_NEW_PROCESSES:
                    oldest = next(iter(self._new))
                    del self._new[oldest]
                    self._forked.pop(oldest, None)
                self._forked.pop(tgid, None)
                if parent is not None:
                    self._forked[tgid] = parent
            self._process_event(kind, tgid, now)

    def _forget_new(self, now: float) -> None:
        """Forget the processes started more than NEW_PROCESS_TTL ago (oldest first)."""
        for pid, at in list(self._new.items()):
            if now - at < NEW_PROCESS_TTL:
                break
            del self._new[pid]
            self._forked.pop(pid, None)

    def _process_event(self, kind: str, tgid: int, now: float) -> None:
        if tgid not in self._info:
            return                                         # a process without sockets
        if kind == "exit":
            self._exited(tgid, now)
        elif kind == "exec":
            self._info.pop(tgid, None)
            try:
                info = self.proc.process(tgid, sockets=False)
            except OSError:
                return
            self._info[tgid] = (now, info)
            with self._lock:
                self.agg.process_started(now, info)

    def _packages(self, owners: dict[int, ProcessInfo]) -> None:
        """Product and version of each new executable (dpkg), at most one new one a poll."""
        for info in owners.values():
            exe = info.exe
            if exe and exe not in self._packages_done:
                self._packages_done.add(exe)
                try:
                    version = self.proc.package_version(exe)
                except Exception:
                    version = ("", "")
                if version != ("", ""):
                    with self._lock:
                        self.agg.versions[exe] = version
                return

    # ---- Collect ----------------------------------------------------------------------------
    def __call__(self) -> dict[str, list[dict]]:
        now = time.time()
        with self._lock:
            # a window is flushed once the poll thread had a poll after its end (eBPF: the links
            # the kernel half summed in its last seconds are read at that poll)
            out = self.agg.flush(now - self.config.poll - FLUSH_GRACE)
        if now >= self._machine_due:
            self._machine_due = now + MACHINE_INTERVAL
            try:
                info = self._machine = self.proc.machine()
                with self._lock:
                    machine = self.agg.machine_records(now, info, self.config.tags)
                for table, records in machine.items():
                    out.setdefault(table, []).extend(records)
            except Exception:
                log.exception("machine records failed")
        for table, records in self.sampler(now).items():
            out.setdefault(table, []).extend(records)
        return {t: r for t, r in out.items() if r}

    def _heartbeat(self) -> dict:
        """The Heartbeat columns of this machine (its facts as of the last VMComputer record)."""
        info = self._machine or self.proc.machine()
        return heartbeat_columns(info, self.config.tags, __version__)

    def final(self) -> dict[str, list[dict]]:
        """The agent is stopping: a last look at the sockets (a dump for the byte counts of open
        connections), then every record not flushed yet, the open minute's included (``flush(final=True)``)."""
        self._stop.set()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join(timeout=10)
        try:
            self.poll()
            if self.bpf is not None:
                self._dump()
                self._read_links(time.time())
        except Exception:
            log.exception("the last look at the sockets failed; the open minute goes as it stands")
        with self._lock:
            out = self.agg.flush(time.time(), final=True)
        return {t: r for t, r in out.items() if r}


def collector(config: AgentConfig):
    """The host's ``Collect`` for ``ship.run`` (starts its poll thread): ``Collector`` (eBPF or
    netlink), or ``portable.PortableCollector`` when asked for (psutil) or, with auto, where
    neither runs (not Linux, no sock_diag)."""
    from .portable import PortableCollector, available
    if config.collector == "psutil":
        return PortableCollector(config)
    if config.collector == "auto" and (sys.platform != "linux" or os.environ.get(NO_NETLINK_ENV)):
        ok, why = available()
        if ok:
            log.info("collector: psutil (netlink and eBPF unavailable: %s)",
                     "not Linux" if sys.platform != "linux" else f"{NO_NETLINK_ENV} is set")
            return PortableCollector(config)
        log.warning("collector: none runs here (not Linux, and %s)", why)
    try:
        return Collector(config)
    except OSError as e:
        ok, why = available()
        if config.collector != "auto" or not ok:
            raise
        log.info("collector: psutil (netlink unavailable: %s)", e)
        return PortableCollector(config)


# set (to anything) to make auto behave as on a host without netlink or eBPF (tests, containers
# whose seccomp profile refuses sock_diag)
NO_NETLINK_ENV = "NETATLAS_AGENT_NO_NETLINK"


__all__ = ["Collector", "collector", "TABLES"]
