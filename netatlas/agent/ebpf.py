"""Observe stage, eBPF: close events with their owner, the owner of every new socket, exec and exit.

The kernel half is ``bpf/collector.bpf.c`` (libbpf CO-RE, ``tp_btf`` tracepoints only; built by
``scripts/build-bpf.sh`` into ``bpf/collector.bpf.o``, shipped in the package). This module loads
it through libbpf (``libbpf.so.1``, by ctypes), attaches it, and reads:

* ``read()`` -> ``Events(closes, procs, listens)``: close events as ``(Socket, tgid, comm)``
  (state = the state the socket left, so SYN_SENT is a failed connect; inode = -cookie, the key
  of a socket that has no file any more; tgid/comm of its owner, 0/"" when not known),
  ``("exec" | "exit", tgid)`` process events, and ``(tgid, inode)`` of each new listening socket;
* ``owner(cookie)`` -> tgid the kernel half recorded for an open socket (connect() caller for
  outbound sockets, first sender/receiver for accepted ones), or 0;
* ``sock(cookie)`` -> ``Counts`` of an open socket the kernel half follows: its owner, its
  request/response exchanges (count, summed response time, and min/max over those completed in
  the current minute) and the dump generation it was made in; or None;
* ``links()`` -> ``Link``s: with in-kernel aggregation on (``aggregate=True``, what the collector
  uses), the sockets no dump saw end in their link's per-minute counters in the kernel, not as
  close events; this returns what those counters gained since the last call (one row per minute
  and link), and forgets the minutes that can no longer change.

Close events and links carry payload bytes (tcp_sock's data bytes, retransmissions once, the
peer's FIN left out). ``sync_clock()`` gives the kernel half the wall clock (its minutes are the
aggregator's windows); ``next_generation()`` is called just before each dump: the sockets made
after it (``Counts.gen == generation``) are the kernel half's until the next one, and a dump leaves
them out (collect.py).

Only sockets of one network namespace are reported (``netns``: a name under /var/run/netns, a
path, or None for the agent's own); eBPF sees them all. ``available()`` says whether this host can
run it, and why not.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import os
import socket
import struct
import time
from collections import OrderedDict
from pathlib import Path
from typing import NamedTuple

from .model import Socket
from .netlink import _V4_NAMES, _V6_NAMES, _socket, _v4_name, _v6_name, netns_path

log = logging.getLogger("netatlas.agent.ebpf")

OBJECT = Path(__file__).with_name("bpf") / "collector.bpf.o"
PROGRAMS = ("on_state", "on_recv", "on_send", "on_exec", "on_exit")
EV_CLOSE, EV_EXEC, EV_EXIT, EV_LISTEN = 1, 2, 3, 4
CLOSE_EVENT = struct.Struct("<IIQQQQIIIIIIIIHHHBB16s16s16s")     # struct na_close_event
PROC_EVENT = struct.Struct("<IIII")                       # struct na_proc_event (exit)
EXEC_EVENT = struct.Struct("<IIII256s512s")               # struct na_exec_event
EXECS_KEPT = 4096                                          # exec'd programs remembered (execs)
LISTEN_EVENT = struct.Struct("<IIQ")                      # struct na_listen_event
EVENT_SIZES = {EV_CLOSE: CLOSE_EVENT.size, EV_EXEC: EXEC_EVENT.size, EV_EXIT: PROC_EVENT.size,
               EV_LISTEN: LISTEN_EVENT.size}
COUNTERS = ("socks_full", "events_lost", "links_full")    # the na_counters array, in order
CFG_NETNS, CFG_CLOCK, CFG_GEN, CFG_AGGREGATE = 0, 1, 2, 3  # na_config's entries
LINK_KEY = struct.Struct("<IIHHB3x16s16s")                 # struct link_key
LINK_VALUE = struct.Struct("<QQQIIIII4x16s")               # struct link_value (one CPU's)
MAX_LINKS = 8192                                           # na_links' size (preallocated, per CPU)
BATCH = 4096                                               # map entries read by one system call
DIR_OUTBOUND, DIR_INBOUND = 1, 2

_SAMPLE_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
_PRINT_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)


class SockInfo(ctypes.Structure):
    """struct sock_info, the value of the na_socks map: the kernel writes all of it on a lookup."""
    _fields_ = [("tgid", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("comm", ctypes.c_char * 16),
                ("req_end_ns", ctypes.c_uint64),
                ("resp_end_ns", ctypes.c_uint64), ("rt_sum_us", ctypes.c_uint64), ("responses", ctypes.c_uint32),
                ("rt_min_us", ctypes.c_uint32), ("rt_max_us", ctypes.c_uint32), ("rt_epoch", ctypes.c_uint32),
                ("gen", ctypes.c_uint32), ("pad", ctypes.c_uint32)]


class Counts(NamedTuple):
    """What the kernel half keeps of an open socket: its owner (0: not known yet), its exchanges
    (cumulative, but min/max: the current minute's) and the dump generation it was made in."""
    tgid: int
    responses: int
    rt_sum_us: int
    rt_min_us: int
    rt_max_us: int
    gen: int


class Link(NamedTuple):
    """What one link's sockets that no dump saw added in one minute (kernel in-kernel aggregation):
    ``established`` connections made and ended, ``failed`` connects, payload bytes, exchanges
    (min/max: the minute's so far, 0 when none). ``port`` is the server's (remote for outbound,
    local for inbound); ``tgid`` 0: an accepted socket its process never read nor wrote."""
    minute: int
    tgid: int
    comm: str
    inbound: bool
    local: str
    remote: str
    port: int
    established: int
    failed: int
    sent: int
    received: int
    responses: int
    rt_sum_us: int
    rt_min_us: int
    rt_max_us: int


class Events(NamedTuple):
    closes: list[tuple[Socket, int, str]]
    procs: list[tuple[str, int]]
    listens: list[tuple[int, int]]


class BpfError(OSError):
    """The eBPF collector cannot run here; the message says what failed."""


def _lib():
    name = ctypes.util.find_library("bpf") or "libbpf.so.1"
    try:
        lib = ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise BpfError(errno.ENOENT, f"libbpf not found ({e}); install libbpf1") from None
    p, i, u = ctypes.c_void_p, ctypes.c_int, ctypes.c_uint64
    for fn, res, args in (
            ("bpf_object__open_file", p, [ctypes.c_char_p, p]),
            ("bpf_object__load", i, [p]),
            ("bpf_object__close", None, [p]),
            ("bpf_object__find_program_by_name", p, [p, ctypes.c_char_p]),
            ("bpf_program__attach", p, [p]),
            ("bpf_link__destroy", i, [p]),
            ("bpf_object__find_map_by_name", p, [p, ctypes.c_char_p]),
            ("bpf_map__fd", i, [p]),
            ("bpf_map__value_size", ctypes.c_uint32, [p]),
            ("bpf_map_update_elem", i, [i, p, p, u]),
            ("bpf_map_lookup_elem", i, [i, p, p]),
            ("bpf_map__set_max_entries", i, [p, ctypes.c_uint32]),
            ("bpf_map_get_next_key", i, [i, p, p]),
            ("bpf_map_delete_elem", i, [i, p]),
            ("ring_buffer__new", p, [i, _SAMPLE_FN, p, p]),
            ("ring_buffer__consume", i, [p]),
            ("ring_buffer__free", None, [p]),
            ("libbpf_set_print", p, [_PRINT_FN]),
            ("libbpf_num_possible_cpus", i, [])):
        f = getattr(lib, fn)
        f.restype, f.argtypes = res, args
    try:                                  # libbpf >= 0.7; read_map / delete_keys go key by key without them
        lib.bpf_map_lookup_batch.restype = i
        lib.bpf_map_lookup_batch.argtypes = [i, p, p, p, p, p, p]
        lib.bpf_map_delete_batch.restype = i
        lib.bpf_map_delete_batch.argtypes = [i, p, p, p]
    except AttributeError:
        pass
    return lib


_libc = ctypes.CDLL(None)
_libc.vsnprintf.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_void_p]


@_PRINT_FN
def _libbpf_log(level, fmt, args):       # libbpf's messages go to our log, not to stderr
    buf = ctypes.create_string_buffer(1024)
    _libc.vsnprintf(buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace").rstrip()
    (log.warning if level == 0 else log.debug)("libbpf: %s", text)
    return 0


def read_map(lib, fd: int, key_size: int, value_size: int, state: dict) -> list[tuple[bytes, bytes]]:
    """(key bytes, value bytes) of every entry of a map: by batches of BATCH (one system call each),
    or key by key where the kernel has no batch lookups (``state["batch"]`` remembers which)."""
    if state.get("batch", True) and hasattr(lib, "bpf_map_lookup_batch"):
        keys = ctypes.create_string_buffer(key_size * BATCH)
        values = ctypes.create_string_buffer(value_size * BATCH)
        count, cursor, nxt = ctypes.c_uint32(), ctypes.c_uint64(), ctypes.c_uint64()
        first, got = True, []
        while True:
            count.value = BATCH
            rc = lib.bpf_map_lookup_batch(fd, None if first else ctypes.byref(cursor), ctypes.byref(nxt),
                                          keys, values, ctypes.byref(count), None)
            err = ctypes.get_errno() if rc else 0
            if rc and err != errno.ENOENT:
                if first and err in (errno.EINVAL, errno.EOPNOTSUPP, 524):     # 524: ENOTSUPP
                    state["batch"] = False                # an older kernel: key by key
                    break
                raise BpfError(err, f"eBPF: reading a map failed: {os.strerror(err)}")
            kb, vb = keys.raw, values.raw
            got.extend((kb[i * key_size:(i + 1) * key_size], vb[i * value_size:(i + 1) * value_size])
                       for i in range(count.value))
            if rc:
                return got
            first = False
            cursor.value = nxt.value
    got, prev = [], None
    key, nxt_key = ctypes.create_string_buffer(key_size), ctypes.create_string_buffer(key_size)
    value = ctypes.create_string_buffer(value_size)
    while lib.bpf_map_get_next_key(fd, prev, nxt_key) == 0:
        ctypes.memmove(key, nxt_key, key_size)
        prev = key
        if lib.bpf_map_lookup_elem(fd, key, value) == 0:
            got.append((key.raw, value.raw))
    return got


def delete_keys(lib, fd: int, keys: list[bytes]) -> None:
    """Delete these keys of a map: by batches (one system call each), or key by key where the
    kernel or libbpf has no batch deletes. A key already gone is passed over."""
    if not keys:
        return
    if hasattr(lib, "bpf_map_delete_batch"):
        size, done = len(keys[0]), 0
        while done < len(keys):
            chunk = keys[done:done + BATCH]
            buf, count = ctypes.create_string_buffer(b"".join(chunk), size * len(chunk)), ctypes.c_uint32(len(chunk))
            rc = lib.bpf_map_delete_batch(fd, buf, ctypes.byref(count), None)
            if rc == 0:
                done += len(chunk)
                continue
            if ctypes.get_errno() != errno.ENOENT:
                break                                       # no batch deletes here: key by key
            done += count.value + 1                         # the key at count.value was gone already
        else:
            return
        keys = keys[done:]
    for raw in keys:
        lib.bpf_map_delete_elem(fd, ctypes.create_string_buffer(raw, len(raw)))


def link_deltas(lib, fd: int, value: struct.Struct, cpus: int, seen: dict, state: dict) -> list[tuple]:
    """The entries of a per-CPU link map (key: ``LINK_KEY``'s layout, the minute first; value: summed
    counters, then rt_min_us, rt_max_us and comm, as collector.bpf.c's and udp.bpf.c's link_value)
    whose counters moved since the last call, oldest minute first: (key fields, counters now,
    counters at the last call, rt_min_us, rt_max_us, comm), the counters summed over the CPUs and
    rt_min/max taken over them. Entries of the minutes before the last one are read one last time
    and deleted (nothing writes them any more); ``seen`` keeps each key's counters between calls."""
    current = int(time.time() // 60)
    out, old = [], []
    for raw_key, raw in read_map(lib, fd, LINK_KEY.size, value.size * cpus, state):
        sums, rt_min, rt_max, comm = None, 0, 0, b""
        for c in range(cpus):
            *counters, lo, hi, cm = value.unpack_from(raw, c * value.size)
            sums = counters if sums is None else [a + b for a, b in zip(sums, counters)]
            if lo and (not rt_min or lo < rt_min):
                rt_min = lo
            rt_max = max(rt_max, hi)
            comm = comm or cm.split(b"\0", 1)[0]
        key = LINK_KEY.unpack(raw_key)
        now = tuple(sums)
        before = seen.get(raw_key, (0,) * len(now))
        if key[0] < current - 1:
            old.append(raw_key)
            seen.pop(raw_key, None)
        else:
            seen[raw_key] = now
        if now != before:
            out.append((key, now, before, rt_min, rt_max, comm.decode(errors="replace")))
    delete_keys(lib, fd, old)
    for raw_key in [k for k in seen if LINK_KEY.unpack_from(k)[0] < current - 1]:
        del seen[raw_key]                        # gone from the map without our reading it (cannot be)
    out.sort(key=lambda row: row[0][0])
    return out


def netns_inode(netns: str | None) -> int:
    return os.stat(netns_path(netns) if netns else "/proc/self/ns/net").st_ino


def prerequisites() -> tuple[bool, str]:
    """The cheap checks: (True, "") when root, BTF and the object are there, else (False, why)."""
    if os.geteuid() != 0:
        return False, "needs root"
    if not Path("/sys/kernel/btf/vmlinux").exists():
        return False, "the kernel has no BTF (/sys/kernel/btf/vmlinux)"
    if not OBJECT.exists():
        return False, f"{OBJECT} is missing (scripts/build-bpf.sh builds it)"
    return True, ""


def available() -> tuple[bool, str]:
    """(True, "") when the eBPF collector can load here (it is loaded once to see), else (False, why)."""
    ok, why = prerequisites()
    if not ok:
        return ok, why
    try:
        BpfEvents(load_only=True).close()
    except OSError as e:
        return False, str(e)
    return True, ""


def _address(family: int, raw: bytes) -> str:
    """Address text as netlink.py writes it (IPv4-mapped IPv6 shown as IPv4), cached the same way."""
    if family == socket.AF_INET:
        raw = raw[:4]
        return _V4_NAMES.get(raw) or _v4_name(raw)
    return _V6_NAMES.get(raw) or _v6_name(raw)


class BpfEvents:
    """The loaded, attached kernel half and its ring buffer (one per agent)."""

    def __init__(self, netns: str | None = None, *, load_only: bool = False, obj_path: Path | None = None,
                 aggregate: bool = False, max_links: int = MAX_LINKS):
        self.lib = _lib()
        self.lib.libbpf_set_print(_libbpf_log)
        self._obj = self._rb = None
        self._links: list[int] = []
        self._closes: list[tuple[Socket, int, str]] = []
        self._procs: list[tuple[str, int]] = []
        self._listens: list[tuple[int, int]] = []
        self.bad_events = 0                    # samples of an unexpected size, dropped
        self._sample = _SAMPLE_FN(self._on_sample)
        self.netns = netns_inode(netns)
        self.aggregate = aggregate             # sockets no dump saw end in na_links (module doc)
        self.generation = 0                    # na_config[CFG_GEN]
        self._clock = None                     # the offset last written to na_config[CFG_CLOCK]
        self._link_seen: dict[bytes, tuple] = {}   # na_links key -> its sums at the last links()
        self._map_state: dict = {}
        # tgid -> (program path, argv) at exec time, the newest EXECS_KEPT: the identity of a
        # process gone before /proc could be read (a client that lived 30 ms)
        self.execs: OrderedDict[int, tuple[str, list[str]]] = OrderedDict()
        self.cpus = max(1, self.lib.libbpf_num_possible_cpus())
        path = str(obj_path or OBJECT).encode()
        try:
            self._obj = self._check(self.lib.bpf_object__open_file(path, None), f"open {path.decode()}")
            links = self._check(self.lib.bpf_object__find_map_by_name(self._obj, b"na_links"), "map na_links")
            self._check(self.lib.bpf_map__set_max_entries(links, max(16, max_links)) == 0 or None, "size na_links")
            self._check(self.lib.bpf_object__load(self._obj) == 0 or None, "load (verifier or BTF)")
            self._check_sizes()
            self._socks = self._map_fd("na_socks")
            self._counters = self._map_fd("na_counters")
            self._config = self._map_fd("na_config")
            self._links_fd = self._map_fd("na_links")
            self._set(CFG_NETNS, self.netns)
            self.sync_clock()
            self._set(CFG_AGGREGATE, int(aggregate))
            if load_only:
                return
            for name in PROGRAMS:
                prog = self._check(self.lib.bpf_object__find_program_by_name(self._obj, name.encode()), name)
                self._links.append(self._check(self.lib.bpf_program__attach(prog), f"attach {name}"))
            self._rb = self._check(self.lib.ring_buffer__new(self._map_fd("na_events"), self._sample, None, None),
                                   "ring buffer")
        except BaseException:
            self.close()
            raise

    def _check(self, value, what: str):
        if not value:
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(err, f"eBPF collector: {what} failed: {os.strerror(err)}")
        return value

    def _check_sizes(self) -> None:
        """The map values this module reads must be the size of its structures: the kernel writes
        a whole value into the buffer given to a lookup."""
        for name, size in (("na_socks", ctypes.sizeof(SockInfo)), ("na_config", 8), ("na_counters", 8),
                           ("na_links", LINK_VALUE.size)):
            m = self._check(self.lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"map {name}")
            got = self.lib.bpf_map__value_size(m)
            if got != size:
                raise BpfError(errno.EINVAL, f"eBPF collector: map {name} holds {got}-byte values, this module "
                               f"reads {size}: collector.bpf.o and ebpf.py do not match (scripts/build-bpf.sh)")

    def _map_fd(self, name: str) -> int:
        m = self._check(self.lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"map {name}")
        return self.lib.bpf_map__fd(m)

    def _set(self, index: int, value: int) -> None:
        key, v = ctypes.c_uint32(index), ctypes.c_uint64(value & 0xFFFFFFFFFFFFFFFF)
        self._check(self.lib.bpf_map_update_elem(self._config, ctypes.byref(key), ctypes.byref(v), 0) == 0 or None,
                    "configure")

    # ---- reading ----------------------------------------------------------------------------
    def _on_sample(self, ctx, data, size) -> int:
        raw = ctypes.string_at(data, size)
        kind = raw[0]
        if size != EVENT_SIZES.get(kind):      # an object built from other structures: never misread
            self.bad_events += 1
            return 0
        if kind == EV_CLOSE:
            (_, tgid, cookie, sent, received, rt_sum, responses, rt_min, rt_max, epoch, srtt, segs_in, segs_out, _ns,
             family, sport, dport, oldstate, flags, saddr, daddr, comm) = CLOSE_EVENT.unpack_from(raw)
            if epoch != int(time.time() // 60):      # min/max of another minute: the mean stands for them
                rt_min = rt_max = 0
            self._closes.append((_socket(family, oldstate, _address(family, saddr), sport, _address(family, daddr),
                                         dport, -cookie, 0, cookie, sent, received, srtt, segs_out, segs_in,
                                         responses, rt_sum, rt_min, rt_max),
                                 tgid, comm.split(b"\0", 1)[0].decode(errors="replace")))
        elif kind == EV_LISTEN:
            _, tgid, inode = LISTEN_EVENT.unpack_from(raw)
            self._listens.append((tgid, inode))
        elif kind == EV_EXEC:
            _, tgid, _pid, n, path, args = EXEC_EVENT.unpack_from(raw)
            argv = args[:n].rstrip(b"\0").decode("utf-8", "replace").split("\0") if n else []
            path = path.split(b"\0", 1)[0].decode("utf-8", "replace")
            self.execs[tgid] = (os.path.realpath(path) if path.startswith("/") else path, argv)
            self.execs.move_to_end(tgid)
            while len(self.execs) > EXECS_KEPT:
                self.execs.popitem(last=False)
            self._procs.append(("exec", tgid))
        elif kind == EV_EXIT:
            _, tgid, _pid, _ = PROC_EVENT.unpack_from(raw)
            self._procs.append(("exit", tgid))
        return 0

    def read(self) -> Events:
        """Everything the kernel half reported since the last call."""
        if self._rb is not None:
            n = self.lib.ring_buffer__consume(self._rb)
            if n < 0:
                raise BpfError(-n, f"eBPF collector: ring buffer read failed: {os.strerror(-n)}")
        out = Events(self._closes, self._procs, self._listens)
        self._closes, self._procs, self._listens = [], [], []
        return out

    def sock(self, cookie: int) -> Counts | None:
        """What the kernel half keeps of an open socket, else None (one open before it was loaded)."""
        key, v = ctypes.c_uint64(cookie), SockInfo()
        if self.lib.bpf_map_lookup_elem(self._socks, ctypes.byref(key), ctypes.byref(v)) != 0:
            return None
        current = v.rt_epoch == int(time.time() // 60)
        return Counts(v.tgid, v.responses, v.rt_sum_us, v.rt_min_us if current else 0,
                      v.rt_max_us if current else 0, v.gen)

    def owner(self, cookie: int) -> int:
        """The tgid the kernel half recorded for an open socket, 0 if none."""
        c = self.sock(cookie)
        return c.tgid if c is not None else 0

    def next_generation(self) -> int:
        """A dump is about to be taken: the sockets made from now on are the next generation's
        (the kernel half aggregates those that end before the next call; module doc)."""
        self.generation = (self.generation + 1) & 0xFFFFFFFF
        self._set(CFG_GEN, self.generation)
        return self.generation

    def sync_clock(self) -> None:
        """The wall clock to the kernel half (CLOCK_REALTIME - CLOCK_MONOTONIC, which
        bpf_ktime_get_ns() reads), when it moved by a millisecond or more since the last call."""
        offset = time.time_ns() - time.monotonic_ns()
        if self._clock is None or abs(offset - self._clock) >= 1_000_000:
            self._set(CFG_CLOCK, offset)
            self._clock = offset

    def links(self) -> list[Link]:
        """What each link's counters in the kernel gained since the last call, a row per minute and
        link, oldest minute first; the minutes before the last one are forgotten (read one last time:
        no socket ends in them any more)."""
        out = []
        for key, now, before, rt_min, rt_max, comm in link_deltas(self.lib, self._links_fd, LINK_VALUE, self.cpus,
                                                                  self._link_seen, self._map_state):
            minute, tgid, family, port, direction, local, remote = key
            sent, received, rt_sum, est, failed, responses = (a - b for a, b in zip(now, before))
            out.append(Link(minute, tgid, comm, direction == DIR_INBOUND, _address(family, local),
                            _address(family, remote), port, est, failed, sent, received, responses, rt_sum,
                            rt_min, rt_max))
        return out

    def counters(self) -> dict[str, int]:
        """Sockets not tracked (the kernel map was full) and events lost (ring buffer full)."""
        out = {}
        for i, name in enumerate(COUNTERS):
            key, values = ctypes.c_uint32(i), (ctypes.c_uint64 * self.cpus)()
            self.lib.bpf_map_lookup_elem(self._counters, ctypes.byref(key), values)
            out[name] = sum(values)
        return out

    def close(self) -> None:
        if self._rb:
            self.lib.ring_buffer__free(self._rb)
            self._rb = None
        for link in self._links:
            self.lib.bpf_link__destroy(link)
        self._links = []
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = None

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
