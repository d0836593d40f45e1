"""Observe stage, portable: sockets and processes from psutil, for hosts without netlink or eBPF
(Windows, macOS, BSD; on Linux with ``--collector psutil``).

Each poll reads the host's TCP connection table with the owning pids (``psutil.net_connections``)
and turns it into the ``Socket`` / ``ProcessInfo`` the aggregate stage (records.py) takes from
the other collectors, so the records are the same, minus what a connection table cannot tell:

| what | how |
|---|---|
| identity across polls | no socket cookie: the 4-tuple and the pid (``cookie``) |
| LinksEstablished / LinksTerminated / LinksLive | a connection first seen established / gone from the table; only those that live across a poll (one a second by default): shorter ones are not seen |
| Process | the pid the table gives (where the OS tells it; else the unknown process). A live connection first listed without a pid waits one look (``poll``): psutil walks the processes' descriptors before it reads the table, so one made in between has no owner yet, and counted then it would be established twice, as unknown and again as its process. A closing one without a pid (an orphan) is never a new connection |
| BytesSent / BytesReceived, Responses, ResponseTime*, LinksFailed | not measured (``UNMEASURED``): left out of the records, so empty in the workspace, never 0 |

The machine (VMComputer) comes from psutil and the standard library (``machine``). The network
namespace setting does not apply: psutil sees the agent's own.
"""
from __future__ import annotations

import hashlib
import logging
import os
import platform
import socket
import threading
import time

from .. import __version__
from .config import AgentConfig, load_machine_id
from .model import (TCP_CLOSE, TCP_CLOSE_WAIT, TCP_CLOSING, TCP_ESTABLISHED, TCP_FIN_WAIT1, TCP_FIN_WAIT2,
                    TCP_LAST_ACK, TCP_LISTEN, TCP_SYN_RECV, TCP_SYN_SENT, TCP_TIME_WAIT, MachineInfo, ProcessInfo,
                    Socket)
from .names import display_name
from .perf import Sampler, heartbeat_columns, read_psutil
from .records import Aggregator

log = logging.getLogger("netatlas.agent.portable")

# what a connection table cannot tell: these columns are left out of the records
UNMEASURED = frozenset({"BytesSent", "BytesReceived", "Responses", "ResponseTimeMin", "ResponseTimeMax",
                        "ResponseTimeSum", "LinksFailed"})

STATES = {"ESTABLISHED": TCP_ESTABLISHED, "SYN_SENT": TCP_SYN_SENT, "SYN_RECV": TCP_SYN_RECV,
          "FIN_WAIT1": TCP_FIN_WAIT1, "FIN_WAIT2": TCP_FIN_WAIT2, "TIME_WAIT": TCP_TIME_WAIT,
          "CLOSE": TCP_CLOSE, "CLOSE_WAIT": TCP_CLOSE_WAIT, "LAST_ACK": TCP_LAST_ACK, "LISTEN": TCP_LISTEN,
          "CLOSING": TCP_CLOSING}
# a socket in these states without a pid is closing with no process left: not a connection to count
CLOSING = frozenset({TCP_FIN_WAIT1, TCP_FIN_WAIT2, TCP_CLOSING, TCP_LAST_ACK, TCP_TIME_WAIT, TCP_CLOSE})
PROCESS_RECHECK = 60.0          # seconds a process's details are kept before being read again
UNKNOWN_PROCESS = "unknown"


def available() -> tuple[bool, str]:
    import importlib.util
    if importlib.util.find_spec("psutil") is None:
        return False, "psutil is not installed"
    return True, ""


def cookie(family: int, src: str, sport: int, dst: str, dport: int, pid: int) -> int:
    """A stable 63-bit id for a connection of a process (the table has no socket cookie)."""
    digest = hashlib.blake2b(f"{family}|{src}|{sport}|{dst}|{dport}|{pid}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def _address(ip: str) -> str:
    return ip[7:] if ip.startswith("::ffff:") and "." in ip else ip


def machine() -> MachineInfo:
    """VMComputer's facts from psutil and the standard library."""
    import psutil
    hostname = socket.gethostname()
    ipv4, ipv6, macs = [], [], []
    link = getattr(psutil, "AF_LINK", None)
    for name, addrs in psutil.net_if_addrs().items():
        for a in addrs:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                ipv4.append(a.address)
            elif a.family == socket.AF_INET6 and a.address.split("%")[0] not in ("::1",):
                ipv6.append(a.address.split("%")[0])
            elif a.family == link and a.address and a.address != "00:00:00:00:00:00":
                macs.append(a.address.replace("-", ":").lower())
    freq = psutil.cpu_freq() if hasattr(psutil, "cpu_freq") else None
    return MachineInfo(hostname=hostname, fqdn=socket.getfqdn(), ipv4=sorted(set(ipv4)), ipv6=sorted(set(ipv6)),
                       macs=sorted(set(macs)), dns_names=[socket.getfqdn()], os_family=platform.system(),
                       os_full_name=platform.platform(), bitness="64-bit" if platform.architecture()[0] == "64bit"
                       else "32-bit", cpus=psutil.cpu_count() or 1,
                       cpu_speed_mhz=int(freq.max or freq.current) if freq else 0,
                       memory_mb=psutil.virtual_memory().total // (1 << 20), boot_time=psutil.boot_time(),
                       timezone=time.strftime("%Z"), virtualization="unknown", hypervisor="",
                       os_name=platform.system(), os_version=platform.release())


class PortableCollector:
    """A poll thread reading psutil's connection table into an Aggregator; calling the object
    returns the finished records (the same ``Collect`` as collect.Collector)."""

    kind = "psutil"

    def __init__(self, config: AgentConfig, *, agent_id: str | None = None, start: bool = True):
        import psutil
        self.psutil = psutil
        if config.netns:
            raise OSError("the psutil collector sees the agent's own network namespace only: run the agent "
                          "inside the namespace (ip netns exec) instead of --netns")
        self.config = config
        self.agent_id = agent_id or load_machine_id(config.machine_id_file)
        self.machine_id = self.agent_id if self.agent_id.startswith("m-") else f"m-{self.agent_id}"
        info = machine()
        self.computer = config.computer_name or info.fqdn or info.hostname
        self.agg = Aggregator(self.machine_id, self.computer, self.agent_id,
                              max_connections=config.max_connections, max_processes=config.max_processes,
                              exclude_processes=config.exclude_processes,
                              exclude_loopback=config.exclude_loopback, unmeasured=UNMEASURED)
        self.unknown = ProcessInfo(0, 0, UNKNOWN_PROCESS, "", "", "", -1, "", time.time())
        self.stats = {"polls": 0, "poll_errors": 0, "last_poll_ms": 0.0, "max_poll_ms": 0.0}
        self._info: dict[int, tuple[float, ProcessInfo]] = {}
        self._ownerless: set[tuple] = set()     # live connections the last look listed without a pid
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._machine_due = 0.0
        self._machine = info
        self.sampler = Sampler(self.computer, self.agent_id, read_psutil,
                               heartbeat=lambda: heartbeat_columns(self._machine, config.tags, __version__),
                               metrics=config.metrics, perf=config.perf)
        self._thread = threading.Thread(target=self._loop, name="netatlas-poll", daemon=True)
        log.info("collector: psutil (connection table every %g s; bytes, responses and failed links "
                 "are not measured)", config.poll)
        if start:
            self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:
                self.stats["poll_errors"] += 1
                if self.stats["poll_errors"] <= 5:
                    log.exception("poll failed; going on")
            self._stop.wait(self.config.poll)

    def poll(self, now: float | None = None) -> None:
        t0 = time.monotonic()
        now = time.time() if now is None else now
        sockets, owners, ownerless = [], {}, set()
        for c in self.psutil.net_connections(kind="tcp"):
            state = STATES.get(c.status)
            if state is None or not c.laddr:
                continue
            src, sport = _address(c.laddr.ip), c.laddr.port
            dst, dport = (_address(c.raddr.ip), c.raddr.port) if c.raddr else (
                "::" if c.family == socket.AF_INET6 else "0.0.0.0", 0)
            pid = c.pid or 0
            if not pid and state != TCP_LISTEN:
                if state in CLOSING:
                    continue            # an orphan its process let go of: an end, never a new connection
                ends = (c.family, src, sport, dst, dport)
                ownerless.add(ends)
                if ends not in self._ownerless:
                    continue            # made after psutil walked the descriptors: its owner shows next look
            key = cookie(c.family, src, sport, dst, dport, pid)
            sockets.append(Socket(family=int(c.family), state=state, src=src, sport=sport, dst=dst, dport=dport,
                                  inode=key, uid=0, cookie=key))
            info = self._process(pid, now) if pid else None
            owners[key] = info if info is not None else self.unknown
        self._ownerless = ownerless
        with self._lock:
            self.agg.observe(now, sockets, owners)
        ms = (time.monotonic() - t0) * 1000
        self.stats["polls"] += 1
        self.stats["last_poll_ms"] = round(ms, 2)
        self.stats["max_poll_ms"] = max(self.stats["max_poll_ms"], round(ms, 2))

    def _process(self, pid: int, now: float) -> ProcessInfo | None:
        cached = self._info.get(pid)
        if cached is not None and now - cached[0] < PROCESS_RECHECK:
            return cached[1]
        try:
            d = self.psutil.Process(pid).as_dict(attrs=["ppid", "name", "exe", "cmdline", "cwd", "uids",
                                                        "username", "create_time"])
        except (self.psutil.Error, OSError):
            return cached[1] if cached is not None else None
        argv = d.get("cmdline") or []
        exe = d.get("exe") or ""
        name = os.path.basename(exe) if exe else (d.get("name") or "")
        uids = d.get("uids")
        info = ProcessInfo(pid=pid, ppid=d.get("ppid") or 0, name=name, exe=exe, cmdline=" ".join(argv),
                           cwd=d.get("cwd") or "", uid=uids.effective if uids else 0, user=d.get("username") or "",
                           start_time=d.get("create_time") or 0.0, display=display_name(name, argv))
        self._info[pid] = (now, info)
        return info

    def __call__(self) -> dict[str, list[dict]]:
        now = time.time()
        with self._lock:
            out = self.agg.flush(now)
        if now >= self._machine_due:
            self._machine_due = now + 3600
            try:
                self._machine = info = machine()
                with self._lock:
                    records = self.agg.machine_records(now, info, self.config.tags)
                for table, rows in records.items():
                    out.setdefault(table, []).extend(rows)
            except Exception:
                log.exception("machine records failed")
        for table, rows in self.sampler(now).items():
            out.setdefault(table, []).extend(rows)
        return {t: r for t, r in out.items() if r}

    def final(self) -> dict[str, list[dict]]:
        """Stopping: a last look, then every record not flushed yet, the open minute's included."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        try:
            self.poll()
        except Exception:
            log.exception("the last look at the connections failed; the open minute goes as it stands")
        with self._lock:
            out = self.agg.flush(time.time(), final=True)
        return {t: r for t, r in out.items() if r}

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
