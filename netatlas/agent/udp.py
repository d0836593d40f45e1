"""Observe stage, eBPF, UDP: per-flow payload bytes, datagrams and request/response times.

The kernel half is ``bpf/udp.bpf.c`` (built by ``scripts/build-bpf.sh`` into ``bpf/udp.bpf.o``,
shipped in the package): the ``sock_send_length`` / ``sock_recv_length`` tracepoints count each
datagram into a hash map keyed by its 5-tuple; the peer of an unconnected ``sendto``/``recvfrom``
comes from cgroup sock_addr hooks (``cgroup/sendmsg4|6``, ``cgroup/recvmsg4|6``) attached to the
cgroup v2 root, a connected socket's from the socket. The map's size is the cap on tracked flows
(``max_flows``); datagrams of flows past it are counted (``counters()["flows_full"]``).

The kernel half counts each datagram into its flow (5-tuple and minute) and its link's per-minute
counters (``udp.bpf.c`` says how). ``read()`` -> the ``UdpLink``s whose counters moved since the
last call (a row per minute and link: flows new and live in the minute, payload bytes, datagrams,
responses), and forgets the minutes that can no longer change (links and flows before the last
minute). So the work here is per link and minute, not per flow. ``sync_clock()`` gives the kernel
half the wall clock. This module reuses ``ebpf.py``'s libbpf loader and map reading.
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
COUNTERS = ("flows_full", "no_peer", "links_full")    # na_udp_counters, in order
MAX_FLOWS = 65_536
CFG_NETNS, CFG_CLOCK = 0, 1
WILDCARDS = frozenset({"0.0.0.0", "::"})


FLOW_KEY = struct.Struct("<16s16sHHHxxI")             # struct flow_key
FLOW_VALUE = struct.Struct("<IIQ")                     # struct flow
LINK_KEY = ebpf.LINK_KEY                               # struct link_key: the same layout as TCP's
LINK_VALUE = struct.Struct("<QQQIIIIIII4x16s")         # struct link_value (one CPU's)
MAX_LINKS = 8192                                       # na_udp_links' size (preallocated, per CPU)
DIR_INBOUND = 2


LISTENER = struct.Struct("<IHH16s16s")                 # struct udp_listener


class UdpListener(NamedTuple):
    """A UDP socket that bound a port itself (until it is closed), with the process that bound it."""
    ip: str
    port: int
    tgid: int
    comm: str


class UdpLink(NamedTuple):
    """What one link's flows gained in one minute since the last read. ``bind`` is the local
    socket's own address (a wildcard for an unbound or 0.0.0.0-bound socket), ``src`` the local
    address used (the route's source address to ``dst`` when the socket has none); ``port`` the
    server's (``dport`` for outbound, the local port for inbound). ``flows_live`` is the minute's
    count so far (not a difference): flows with a datagram in it; ``flows_new`` those of them that had
    none in the minute before (a difference, as the rest)."""
    minute: int
    src: str
    dst: str
    port: int
    bind: str
    inbound: bool           # the local socket bound its port itself: a server
    tgid: int
    comm: str
    flows_new: int
    flows_live: int
    sent: int               # payload bytes
    received: int
    datagrams_out: int
    datagrams_in: int
    responses: int
    rt_sum_us: int
    rt_min_us: int
    rt_max_us: int


def _lib():
    lib = ebpf._lib()
    p, i = ctypes.c_void_p, ctypes.c_int
    for fn, res, args in (("bpf_program__attach_cgroup", p, [p, i]),):
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

    def __init__(self, netns: str | None = None, *, max_flows: int = MAX_FLOWS, obj_path: Path | None = None,
                 max_links: int = MAX_LINKS):
        self.lib = _lib()
        self.lib.libbpf_set_print(ebpf._libbpf_log)
        self._obj = None
        self._links: list[int] = []
        self.netns_name = netns
        self.netns = netns_inode(netns)
        self.max_flows = max_flows
        self.cpus = max(1, self.lib.libbpf_num_possible_cpus())
        self._clock = None                         # the offset last written to na_udp_config[CFG_CLOCK]
        self._seen: dict[bytes, tuple] = {}        # na_udp_links key -> its sums at the last read
        self._map_state: dict = {}                 # ebpf.read_map's: batch lookups or key by key
        self._route: dict[str, str] = {}           # remote address -> local source address (routing)
        self._route_socks: dict[int, socket.socket] = {}
        path = str(obj_path or OBJECT).encode()
        cg = -1
        try:
            self._obj = self._check(self.lib.bpf_object__open_file(path, None), f"open {path.decode()}")
            flows = self._check(self.lib.bpf_object__find_map_by_name(self._obj, b"na_udp_flows"), "map na_udp_flows")
            self._check(self.lib.bpf_map__set_max_entries(flows, max_flows) == 0 or None, "set the flow cap")
            links = self._check(self.lib.bpf_object__find_map_by_name(self._obj, b"na_udp_links"), "map na_udp_links")
            self._check(self.lib.bpf_map__set_max_entries(links, max(16, max_links)) == 0 or None, "size the links")
            self._check(self.lib.bpf_object__load(self._obj) == 0 or None, "load (verifier or BTF)")
            self._check_sizes()
            self._flows = self.lib.bpf_map__fd(flows)
            self._links_fd = self.lib.bpf_map__fd(links)
            self._counters = self._map_fd("na_udp_counters")
            self._config = self._map_fd("na_udp_config")
            self._set(CFG_NETNS, self.netns)
            self.sync_clock()
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
        for name, size in (("na_udp_flows", FLOW_VALUE.size), ("na_udp_config", 8), ("na_udp_counters", 8),
                           ("na_udp_links", LINK_VALUE.size),
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
        key, v = ctypes.c_uint32(index), ctypes.c_uint64(value & 0xFFFFFFFFFFFFFFFF)
        self._check(self.lib.bpf_map_update_elem(self._config, ctypes.byref(key), ctypes.byref(v), 0) == 0 or None,
                    "configure")

    # ---- reading --------------------------------------------------------------------------------
    def sync_clock(self) -> None:
        """The wall clock to the kernel half (as ``ebpf.BpfEvents.sync_clock``)."""
        offset = time.time_ns() - time.monotonic_ns()
        if self._clock is None or abs(offset - self._clock) >= 1_000_000:
            self._set(CFG_CLOCK, offset)
            self._clock = offset

    def read(self) -> list[UdpLink]:
        """What each link's counters gained since the last call, a row per minute and link, oldest
        minute first; links and flows of the minutes before the last one are forgotten (their links
        read one last time)."""
        self.sync_clock()
        current = int(time.time() // 60)
        out = []
        for key, now, before, rt_min, rt_max, comm in ebpf.link_deltas(self.lib, self._links_fd, LINK_VALUE, self.cpus,
                                                                       self._seen, self._map_state):
            minute, tgid, family, port, direction, bind_raw, remote_raw = key
            bind, dst = _address(family, bind_raw), _address(family, remote_raw)
            sent, received, rt_sum, new, _, d_out, d_in, n = (a - b for a, b in zip(now, before))
            out.append(UdpLink(minute, self._source(dst) if bind in WILDCARDS else bind, dst, port, bind,
                               direction == DIR_INBOUND, tgid, comm, new, now[4], sent, received, d_out, d_in, n,
                               rt_sum, rt_min, rt_max))
        self._forget_flows(current)
        return out

    def _forget_flows(self, current: int) -> None:
        """Delete the flows of the minutes before the last one (the kernel looks only at the current
        and the previous minute's)."""
        ks = FLOW_KEY.size
        stale = [k for k, _ in ebpf.read_map(self.lib, self._flows, ks, FLOW_VALUE.size, self._map_state)
                 if int.from_bytes(k[40:44], "little") < current - 1]
        ebpf.delete_keys(self.lib, self._flows, stale)

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
        return len(ebpf.read_map(self.lib, self._flows, FLOW_KEY.size, FLOW_VALUE.size, self._map_state))

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
