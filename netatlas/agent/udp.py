"""Observe stage, eBPF, UDP: per-flow payload bytes, datagrams and request/response times.

The kernel half is ``bpf/udp.bpf.c`` (built by ``scripts/build-bpf.sh`` into ``bpf/udp.bpf.o``,
shipped in the package): the ``sock_send_length`` / ``sock_recv_length`` tracepoints count each
datagram into a hash map keyed by its 5-tuple; the peer of an unconnected ``sendto``/``recvfrom``
comes from cgroup sock_addr hooks (``cgroup/sendmsg4|6``, ``cgroup/recvmsg4|6``) attached to the
cgroup v2 root, a connected socket's from the socket. The map's size is the cap on tracked flows
(``max_flows``); datagrams of flows past it are counted (``counters()["flows_full"]``).

``read()`` -> the ``UdpFlow``s that moved since the last call (one call per record window or more):
it moves the kernel's epoch on and reads the counters of the previous one (``udp.bpf.c`` says how),
and forgets flows idle for ``IDLE_FORGET`` seconds. This module reuses ``ebpf.py``'s libbpf loader.
"""
from __future__ import annotations

import ctypes
import errno
import logging
import os
import socket
import struct
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

from . import ebpf
from .ebpf import BpfError, _address, netns_inode
from .netlink import in_netns

log = logging.getLogger("netatlas.agent.udp")
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_void_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

OBJECT = Path(__file__).with_name("bpf") / "udp.bpf.o"
TRACEPOINTS = ("on_udp_send", "on_udp_recv")
CGROUP_HOOKS = ("on_sendmsg4", "on_sendmsg6", "on_recvmsg4", "on_recvmsg6", "on_bind4", "on_bind6", "on_release")
SO_NETNS_COOKIE = 71
COUNTERS = ("flows_full", "no_peer")        # na_udp_counters, in order
MAX_FLOWS = 65_536
IDLE_FORGET = 30.0                          # seconds without a datagram before a flow leaves the map
BATCH = 4096                                # flows read by one system call
F_BOUND = 1
CFG_NETNS, CFG_EPOCH = 0, 1
WILDCARDS = frozenset({"0.0.0.0", "::"})


class FlowKey(ctypes.Structure):
    """struct flow_key (udp.bpf.c)."""
    _fields_ = [("laddr", ctypes.c_uint8 * 16), ("raddr", ctypes.c_uint8 * 16), ("lport", ctypes.c_uint16),
                ("rport", ctypes.c_uint16), ("family", ctypes.c_uint16), ("pad", ctypes.c_uint16)]


class Slot(ctypes.Structure):
    """struct slot: one epoch's counters."""
    _fields_ = [("sent", ctypes.c_uint64), ("received", ctypes.c_uint64), ("rt_sum_us", ctypes.c_uint64),
                ("dgrams_out", ctypes.c_uint32), ("dgrams_in", ctypes.c_uint32), ("responses", ctypes.c_uint32),
                ("rt_min_us", ctypes.c_uint32), ("rt_max_us", ctypes.c_uint32), ("epoch", ctypes.c_uint32)]


class Flow(ctypes.Structure):
    """struct flow, the value of na_udp_flows."""
    _fields_ = [("tgid", ctypes.c_uint32), ("flags", ctypes.c_uint32), ("last_ns", ctypes.c_uint64),
                ("pending_ns", ctypes.c_uint64), ("comm", ctypes.c_char * 16), ("slots", Slot * 2)]


FLOW = struct.Struct("<IIQQ16s" + "QQQIIIIII" * 2)    # struct flow, read in bulk
KEY_TAIL = struct.Struct("<HHH")                       # lport, rport, family after the two addresses


LISTENER = struct.Struct("<IHH16s16s")                 # struct udp_listener


class UdpListener(NamedTuple):
    """A UDP socket that bound a port itself (until it is closed), with the process that bound it."""
    ip: str
    port: int
    tgid: int
    comm: str


class UdpFlow(NamedTuple):
    """One flow's traffic since the last read. ``bind`` is the local socket's own address (a wildcard
    for an unbound or 0.0.0.0-bound socket), ``src`` the local address used (the route's source
    address to ``dst`` when the socket has none)."""
    src: str
    sport: int
    dst: str
    dport: int
    bind: str
    inbound: bool           # the local socket bound its port itself: a server
    tgid: int
    comm: str
    sent: int               # payload bytes
    received: int
    datagrams_out: int
    datagrams_in: int
    responses: int
    rt_sum_ms: int
    rt_min_ms: int
    rt_max_ms: int


def _lib():
    lib = ebpf._lib()
    p, i = ctypes.c_void_p, ctypes.c_int
    for fn, res, args in (("bpf_program__attach_cgroup", p, [p, i]),
                          ("bpf_map__set_max_entries", i, [p, ctypes.c_uint32]),
                          ("bpf_map_get_next_key", i, [i, p, p]),
                          ("bpf_map_delete_elem", i, [i, p]),
                          ("bpf_map_lookup_batch", i, [i, p, p, p, p, p, p])):
        try:
            f = getattr(lib, fn)
        except AttributeError:
            raise BpfError(errno.ENOSYS, f"UDP flows: this libbpf has no {fn} (libbpf 0.7 or later needed)") from None
        f.restype, f.argtypes = res, args
    return lib


def _mounted_cgroup2() -> str | None:
    with open("/proc/self/mounts") as f:
        for line in f:
            parts = line.split()
            if len(parts) > 2 and parts[2] == "cgroup2":
                return parts[1]
    return None


def open_cgroup_root() -> tuple[int, str]:
    """(fd, where) of the cgroup v2 root the sock_addr hooks attach to. ``ip netns exec`` gives its
    process a /sys of its own without the cgroup mounts: then cgroup2 is mounted on a temporary
    directory just long enough to open it (the fd keeps the cgroup; nothing stays mounted)."""
    where = _mounted_cgroup2()
    if where is not None:
        return os.open(where, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), where
    tmp = tempfile.mkdtemp(prefix="netatlas-cgroup2-")
    try:
        if _libc.mount(b"none", tmp.encode(), b"cgroup2", 0, None) != 0:
            err = ctypes.get_errno()
            raise BpfError(err, f"UDP flows: no cgroup v2 mounted, and mounting one failed: {os.strerror(err)}")
        try:
            return os.open(tmp, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC), "cgroup2 (mounted for a moment)"
        finally:
            _libc.umount2(tmp.encode(), 2)          # MNT_DETACH
    finally:
        os.rmdir(tmp)


def prerequisites() -> tuple[bool, str]:
    ok, why = ebpf.prerequisites()
    if ok and not OBJECT.exists():
        return False, f"{OBJECT} is missing (scripts/build-bpf.sh builds it)"
    return ok, why


class UdpFlows:
    """The loaded, attached UDP kernel half (one per agent)."""

    def __init__(self, netns: str | None = None, *, max_flows: int = MAX_FLOWS, obj_path: Path | None = None):
        self.lib = _lib()
        self.lib.libbpf_set_print(ebpf._libbpf_log)
        self._obj = None
        self._links: list[int] = []
        self.netns_name = netns
        self.netns = netns_inode(netns)
        self.max_flows = max_flows
        self.cpus = max(1, self.lib.libbpf_num_possible_cpus())
        self.epoch = 0
        self._batch = True                         # the kernel has batch lookups (until it says no)
        self._route: dict[str, str] = {}           # remote address -> local source address (routing)
        self._route_socks: dict[int, socket.socket] = {}
        path = str(obj_path or OBJECT).encode()
        cg = -1
        try:
            self._obj = self._check(self.lib.bpf_object__open_file(path, None), f"open {path.decode()}")
            flows = self._check(self.lib.bpf_object__find_map_by_name(self._obj, b"na_udp_flows"), "map na_udp_flows")
            self._check(self.lib.bpf_map__set_max_entries(flows, max_flows) == 0 or None, "set the flow cap")
            self._check(self.lib.bpf_object__load(self._obj) == 0 or None, "load (verifier or BTF)")
            self._check_sizes()
            self._flows = self.lib.bpf_map__fd(flows)
            self._counters = self._map_fd("na_udp_counters")
            self._config = self._map_fd("na_udp_config")
            self._set(CFG_NETNS, self.netns)
            self._bound = self._map_fd("na_udp_bound")
            cookie = self._netns_cookie()
            key, value = ctypes.c_uint32(0), ctypes.c_uint64(cookie)
            self._check(self.lib.bpf_map_update_elem(self._map_fd("na_udp_netns_cookie"), ctypes.byref(key),
                                                     ctypes.byref(value), 0) == 0 or None, "configure")
            for name in TRACEPOINTS:
                prog = self._check(self.lib.bpf_object__find_program_by_name(self._obj, name.encode()), name)
                self._links.append(self._check(self.lib.bpf_program__attach(prog), f"attach {name}"))
            cg, root = open_cgroup_root()
            for name in CGROUP_HOOKS:
                prog = self._check(self.lib.bpf_object__find_program_by_name(self._obj, name.encode()), name)
                self._links.append(self._check(self.lib.bpf_program__attach_cgroup(prog, cg),
                                               f"attach {name} to {root}"))
        except BaseException:
            self.close()
            raise
        finally:
            if cg >= 0:
                os.close(cg)

    def _netns_cookie(self) -> int:
        """The observed namespace's cookie (SO_NETNS_COOKIE), which the bind hooks compare."""
        def cookie():
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                return struct.unpack("<Q", sock.getsockopt(socket.SOL_SOCKET, SO_NETNS_COOKIE, 8))[0]
        try:
            return in_netns(self.netns_name, cookie)
        except OSError as e:           # a kernel before 5.14: listeners of every namespace
            log.info("UDP listeners: no netns cookie (%s): bound ports of every namespace are seen", e)
            return 0

    def listeners(self) -> list[UdpListener]:
        """The UDP sockets bound to a port now (of the observed namespace)."""
        out, key, nxt, value, prev = [], ctypes.c_uint64(), ctypes.c_uint64(), ctypes.create_string_buffer(
            LISTENER.size), None
        while self.lib.bpf_map_get_next_key(self._bound, prev, ctypes.byref(nxt)) == 0:
            key.value = nxt.value
            prev = ctypes.byref(key)
            if self.lib.bpf_map_lookup_elem(self._bound, ctypes.byref(key), value) == 0:
                tgid, family, port, addr, comm = LISTENER.unpack(value.raw)
                out.append(UdpListener(_address(family, addr), port, tgid,
                                       comm.split(b"\0", 1)[0].decode(errors="replace")))
        return out

    def _check(self, value, what: str):
        if not value:
            err = ctypes.get_errno() or errno.EINVAL
            raise BpfError(err, f"UDP flows: {what} failed: {os.strerror(err)}")
        return value

    def _check_sizes(self) -> None:
        """Keys and values read here must be the size the object says (udp.bpf.c and this module agree)."""
        for name, size in (("na_udp_flows", ctypes.sizeof(Flow)), ("na_udp_config", 4), ("na_udp_counters", 8),
                           ("na_udp_bound", LISTENER.size), ("na_udp_netns_cookie", 8)):
            m = self._check(self.lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"map {name}")
            got = self.lib.bpf_map__value_size(m)
            if got != size:
                raise BpfError(errno.EINVAL, f"UDP flows: map {name} holds {got}-byte values, this module reads "
                               f"{size}: udp.bpf.o and udp.py do not match (scripts/build-bpf.sh)")

    def _map_fd(self, name: str) -> int:
        m = self._check(self.lib.bpf_object__find_map_by_name(self._obj, name.encode()), f"map {name}")
        return self.lib.bpf_map__fd(m)

    def _set(self, index: int, value: int) -> None:
        key, v = ctypes.c_uint32(index), ctypes.c_uint32(value)
        self._check(self.lib.bpf_map_update_elem(self._config, ctypes.byref(key), ctypes.byref(v), 0) == 0 or None,
                    "configure")

    # ---- reading --------------------------------------------------------------------------------
    def read(self) -> list[UdpFlow]:
        """The flows that carried datagrams since the last call, with what they carried."""
        old = self.epoch
        self.epoch = (old + 1) & 0xFFFFFFFF
        if self.epoch == 0xFFFFFFFF:          # the kernel's "never used" mark
            self.epoch = 0
        self._set(CFG_EPOCH, self.epoch)
        forget = time.clock_gettime_ns(time.CLOCK_MONOTONIC) - int(IDLE_FORGET * 1e9)
        half = old & 1
        out, idle = [], []
        for raw_key, raw_value in self._entries():
            v = FLOW.unpack(raw_value)
            tgid, flags, last_ns, _pending, comm = v[:5]
            sent, received, rt_sum, d_out, d_in, responses, rt_min, rt_max, epoch = v[5 + 9 * half:14 + 9 * half]
            if epoch == old and (d_out or d_in):
                lport, rport, family = KEY_TAIL.unpack_from(raw_key, 32)
                bind = _address(family, raw_key[:16])
                dst = _address(family, raw_key[16:32])
                src = self._source(dst) if bind in WILDCARDS else bind
                out.append(UdpFlow(src, lport, dst, rport, bind, bool(flags & F_BOUND), tgid,
                                   comm.split(b"\0", 1)[0].decode(errors="replace"), sent, received, d_out, d_in,
                                   responses, round(rt_sum / 1000), round(rt_min / 1000), round(rt_max / 1000)))
            elif last_ns < forget:
                idle.append(raw_key)
        for raw in idle:                   # deleted after the walk: deleting during it restarts it
            k = FlowKey.from_buffer_copy(raw)
            self.lib.bpf_map_delete_elem(self._flows, ctypes.byref(k))
        return out

    def _entries(self):
        """(key bytes, value bytes) of every flow in the map: by batches of BATCH (one system call
        each), or key by key where the kernel has no batch lookups."""
        if self._batch:
            ks, vs = ctypes.sizeof(FlowKey), ctypes.sizeof(Flow)
            keys, values = ctypes.create_string_buffer(ks * BATCH), ctypes.create_string_buffer(vs * BATCH)
            count, cursor, nxt = ctypes.c_uint32(), ctypes.c_uint32(), ctypes.c_uint32()
            first, got = True, []
            while True:
                count.value = BATCH
                rc = self.lib.bpf_map_lookup_batch(self._flows, None if first else ctypes.byref(cursor),
                                                   ctypes.byref(nxt), keys, values, ctypes.byref(count), None)
                err = ctypes.get_errno() if rc else 0
                if rc and err != errno.ENOENT:
                    if first and err in (errno.EINVAL, errno.EOPNOTSUPP, 524):     # 524: ENOTSUPP
                        self._batch = False          # an older kernel: key by key
                        break
                    raise BpfError(err, f"UDP flows: reading the flow map failed: {os.strerror(err)}")
                kb, vb = keys.raw, values.raw
                got.extend((kb[i * ks:(i + 1) * ks], vb[i * vs:(i + 1) * vs]) for i in range(count.value))
                if rc:
                    return got
                first = False
                cursor.value = nxt.value
        got, key, nxt_key, value, prev = [], FlowKey(), FlowKey(), Flow(), None
        while self.lib.bpf_map_get_next_key(self._flows, prev, ctypes.byref(nxt_key)) == 0:
            ctypes.memmove(ctypes.byref(key), ctypes.byref(nxt_key), ctypes.sizeof(FlowKey))
            prev = ctypes.byref(key)
            if self.lib.bpf_map_lookup_elem(self._flows, ctypes.byref(key), ctypes.byref(value)) == 0:
                got.append((bytes(key), bytes(value)))
        return got

    def _source(self, remote: str) -> str:
        """The local address the namespace's routes pick to reach ``remote`` (no packet is sent)."""
        hit = self._route.get(remote)
        if hit is not None:
            return hit
        fam = socket.AF_INET6 if ":" in remote else socket.AF_INET
        sock = self._route_socks.get(fam)
        if sock is None:
            sock = self._route_socks[fam] = in_netns(self.netns_name, lambda: socket.socket(fam, socket.SOCK_DGRAM))
        try:
            sock.connect((remote, 9))
            src = sock.getsockname()[0]
        except OSError:
            src = "0.0.0.0" if fam == socket.AF_INET else "::"
        if len(self._route) >= 4096:
            self._route.clear()
        self._route[remote] = src
        return src

    def tracked(self) -> int:
        """Flows in the kernel's map now."""
        n, key, nxt, prev = 0, FlowKey(), FlowKey(), None
        while self.lib.bpf_map_get_next_key(self._flows, prev, ctypes.byref(nxt)) == 0:
            ctypes.memmove(ctypes.byref(key), ctypes.byref(nxt), ctypes.sizeof(FlowKey))
            prev = ctypes.byref(key)
            n += 1
        return n

    def counters(self) -> dict[str, int]:
        """Datagrams of flows past the cap (``flows_full``) and datagrams without a known peer."""
        out = {}
        for i, name in enumerate(COUNTERS):
            key, values = ctypes.c_uint32(i), (ctypes.c_uint64 * self.cpus)()
            self.lib.bpf_map_lookup_elem(self._counters, ctypes.byref(key), values)
            out[name] = sum(values)
        return out

    def close(self) -> None:
        for link in self._links:
            self.lib.bpf_link__destroy(link)
        self._links = []
        if self._obj:
            self.lib.bpf_object__close(self._obj)
            self._obj = None
        for sock in self._route_socks.values():
            sock.close()
        self._route_socks = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
