"""Sample stage: the machine's performance counters and its heartbeat -> InsightsMetrics (as VM
insights writes them), Perf (the Log Analytics agent's counters, off by default) and Heartbeat.

Once a minute (the first ``Sampler(now)`` call in a new UTC minute) the sampler takes one look at
the host's counters (``Counters``) and turns the difference from the previous look into records:

| look (``read_proc`` under the agent's root; ``read_psutil`` elsewhere) | gives |
|---|---|
| proc/stat, the ``cpu`` line and the ``cpuN`` count | Processor ``UtilizationPercentage``: busy jiffies / all jiffies between the two looks (busy = all but idle and iowait); tag ``totalCpus`` |
| proc/meminfo ``MemAvailable``, ``MemTotal`` | Memory ``AvailableMB``; tag ``memorySizeMB`` |
| proc/net/dev, every adapter but ``lo`` | Network ``ReadBytesPerSecond`` / ``WriteBytesPerSecond``; tags ``networkDeviceId`` and ``bytesReceived`` / ``bytesSent`` (the bytes of the interval) |
| proc/self/mounts (disk file systems, one mount per device) and statvfs | LogicalDisk ``FreeSpaceMB`` (tag ``diskSizeMB``), ``FreeSpacePercentage`` (``df``'s: available / (used + available)) |
| proc/diskstats, the mount's block device | LogicalDisk ``ReadsPerSecond``, ``WritesPerSecond``, ``TransfersPerSecond``, ``ReadBytesPerSecond``, ``WriteBytesPerSecond``, ``BytesPerSecond``, ``ReadLatencyMs``, ``WriteLatencyMs``, ``TransferLatencyMs`` (ms spent / operations; 0 without operations) |
| (always) | Computer ``Heartbeat`` (Val 1), and a Heartbeat record |

Every InsightsMetrics record has ``Origin`` "vm.azm.ms", its ``Namespace`` and ``Name``, ``Val``, and
``Tags``: JSON text with the ``vm.azm.ms/...`` keys above and, on every LogicalDisk record, ``mountId``
(the mount point). Rates need two looks: the first look after start gives only the gauges (memory,
free space) and the heartbeats. A counter that went backwards (a device reset, a counter wrap) gives
no rate for that interval.

``PERF`` maps each InsightsMetrics counter to the Log Analytics agent's object and counter names
(``Perf``: ObjectName, CounterName, InstanceName, CounterValue, CounterPath, SampleCount 1, Min and
Max the value), plus ``PERF_DERIVED``, the agent's counters that VM insights has no name for.
"""
from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .records import iso

log = logging.getLogger("netatlas.agent.perf")

ORIGIN = "vm.azm.ms"
TAG = "vm.azm.ms/"
SECTOR = 512                     # /proc/diskstats counts 512-byte sectors whatever the device's
MB = 1 << 20
# file systems on a disk (a mount of any other type: tmpfs, overlay, proc, nfs, ... is not a LogicalDisk)
DISK_FILESYSTEMS = frozenset({"ext2", "ext3", "ext4", "xfs", "btrfs", "vfat", "exfat", "ntfs", "ntfs3",
                              "f2fs", "jfs", "reiserfs", "zfs", "hfsplus", "apfs", "ufs", "NTFS", "FAT32"})


@dataclass(slots=True)
class Disk:
    reads: int = 0
    read_bytes: int = 0
    read_ms: int = 0
    writes: int = 0
    write_bytes: int = 0
    write_ms: int = 0


@dataclass(slots=True)
class Space:
    size: int           # bytes
    free: int           # bytes available to unprivileged users (df's "Available")
    used: int           # bytes in use (size - all free blocks)


@dataclass(slots=True)
class Counters:
    """One look at the host's counters, at ``at`` (seconds since the epoch)."""
    at: float
    cpu_busy: int = 0                   # jiffies (any unit: only ratios are used)
    cpu_total: int = 0
    cpus: int = 1
    mem_available: int = 0              # bytes
    mem_total: int = 0
    net: dict[str, tuple[int, int]] = field(default_factory=dict)     # adapter -> (bytes in, bytes out)
    space: dict[str, Space] = field(default_factory=dict)              # mount point -> its file system
    disks: dict[str, Disk] = field(default_factory=dict)              # mount point -> its device's counters


# ---- looks --------------------------------------------------------------------------------------

def _read(path: Path) -> str:
    with open(path, "rb") as f:
        return f.read().decode("utf-8", "replace")


def _unescape(path: str) -> str:
    """A mount point as /proc/self/mounts writes it (space, tab, newline, backslash octal-escaped)."""
    return path.replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n").replace("\\134", "\\")


def _space(path: str) -> Space | None:
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    if st.f_blocks == 0:
        return None
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    return Space(size=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize, used=used)


def read_proc(root: str | os.PathLike = "/", netns: str | None = None) -> Counters:
    """A look at the counters under ``root`` (proc/stat, proc/meminfo, proc/net/dev, proc/self/mounts,
    proc/diskstats; statvfs of each mount point under ``root``). With ``netns`` (the network
    namespace the agent observes), the adapters are that namespace's (read by a thread inside it)."""
    root = Path(root)
    proc = root / "proc"
    c = Counters(at=time.time())
    cpus = 0
    for line in _read(proc / "stat").splitlines():
        if line.startswith("cpu "):
            v = [int(x) for x in line.split()[1:9]]           # user nice system idle iowait irq softirq steal
            v += [0] * (8 - len(v))
            c.cpu_total = sum(v)
            c.cpu_busy = c.cpu_total - v[3] - v[4]
        elif line.startswith("cpu"):
            cpus += 1
    c.cpus = cpus or 1
    mem = {}
    for line in _read(proc / "meminfo").splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            mem[key] = int(parts[0]) * 1024
    c.mem_total = mem.get("MemTotal", 0)
    c.mem_available = mem.get("MemAvailable", mem.get("MemFree", 0))
    if netns:
        from .netlink import in_netns
        netdev = in_netns(netns, lambda: _read(Path("/proc/thread-self/net/dev")))
    else:
        netdev = _read(proc / "net/dev")
    for line in netdev.splitlines()[2:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        name = name.strip()
        if name and name != "lo" and len(fields) >= 9:
            c.net[name] = (int(fields[0]), int(fields[8]))
    stats = {}
    try:
        for line in _read(proc / "diskstats").splitlines():
            f = line.split()
            if len(f) >= 14:
                stats[f[2]] = stats[(int(f[0]), int(f[1]))] = Disk(
                    reads=int(f[3]), read_bytes=int(f[5]) * SECTOR, read_ms=int(f[6]),
                    writes=int(f[7]), write_bytes=int(f[9]) * SECTOR, write_ms=int(f[10]))
    except OSError:
        pass
    devices: set[str] = set()
    for line in _read(proc / "self/mounts").splitlines():
        f = line.split()
        if len(f) < 3 or f[2] not in DISK_FILESYSTEMS:
            continue
        source, mount = f[0], _unescape(f[1])
        if source in devices:                 # a bind mount (or a subvolume) of a disk seen already
            continue
        where = str(root / mount.lstrip("/")) if mount != "/" else str(root)
        space = _space(where)
        if space is None:
            continue
        devices.add(source)
        c.space[mount] = space
        disk = _disk_of(source, where, root, stats)
        if disk is not None:
            c.disks[mount] = disk
    return c


def _disk_of(source: str, where: str, root: Path, stats: dict) -> Disk | None:
    """The diskstats of a mount: by its device's name (``/dev/mapper/x`` -> ``dm-0``), else by the
    device number of the mounted file system."""
    if source.startswith("/dev/"):
        dev = root / source.lstrip("/")
        name = os.path.basename(os.path.realpath(dev)) if dev.exists() else os.path.basename(source)
        if name in stats:
            return stats[name]
    try:
        st = os.stat(where)
    except OSError:
        return None
    return stats.get((os.major(st.st_dev), os.minor(st.st_dev)))


def read_psutil() -> Counters:
    """A look at the counters through psutil (hosts where /proc is not Linux's)."""
    import psutil
    c = Counters(at=time.time())
    t = psutil.cpu_times()
    total = sum(t)
    idle = t.idle + getattr(t, "iowait", 0.0)
    c.cpu_total, c.cpu_busy = round(total * 100), round((total - idle) * 100)
    c.cpus = psutil.cpu_count() or 1
    vm = psutil.virtual_memory()
    c.mem_total, c.mem_available = vm.total, vm.available
    for name, n in psutil.net_io_counters(pernic=True).items():
        if not name.startswith("lo"):
            c.net[name] = (n.bytes_recv, n.bytes_sent)
    io = psutil.disk_io_counters(perdisk=True) or {}
    devices: set[str] = set()
    for part in psutil.disk_partitions(all=False):
        if part.device in devices:
            continue
        try:
            u = psutil.disk_usage(part.mountpoint)
        except OSError:
            continue
        devices.add(part.device)
        c.space[part.mountpoint] = Space(size=u.total, free=u.free, used=u.used)
        d = io.get(os.path.basename(part.device))
        if d is not None:
            c.disks[part.mountpoint] = Disk(d.read_count, d.read_bytes, getattr(d, "read_time", 0),
                                            d.write_count, d.write_bytes, getattr(d, "write_time", 0))
    return c


# ---- metrics: two looks -> values ----------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Metric:
    namespace: str
    name: str
    instances: str                          # "" (the machine), "net" (per adapter), "disk" (per mount)
    value: Callable                         # (previous, current, instance, seconds) -> float | None
    tags: Callable = lambda p, c, i, dt: {}  # -> the vm.azm.ms/ tags beyond the instance's own


def _rate(get):
    """(prev, cur, instance, seconds) -> increase per second of ``get(counters, instance)``."""
    def rate(p, c, i, dt):
        if p is None or dt <= 0:
            return None
        a, b = get(p, i), get(c, i)
        if a is None or b is None or b < a:
            return None
        return (b - a) / dt
    return rate


def _latency(ms, ops):
    """Milliseconds per operation between the two looks (0 without an operation)."""
    def latency(p, c, i, dt):
        if p is None or i not in p.disks or i not in c.disks:
            return None
        a, b = p.disks[i], c.disks[i]
        d_ops = sum(getattr(b, o) - getattr(a, o) for o in ops)
        d_ms = sum(getattr(b, m) - getattr(a, m) for m in ms)
        if d_ops < 0 or d_ms < 0:
            return None
        return d_ms / d_ops if d_ops else 0.0
    return latency


def _disk(*attrs):
    return lambda c, i: sum(getattr(c.disks[i], a) for a in attrs) if i in c.disks else None


def _cpu(p, c, i, dt):
    if p is None:
        return None
    total, busy = c.cpu_total - p.cpu_total, c.cpu_busy - p.cpu_busy
    if total <= 0 or busy < 0:
        return None
    return 100.0 * busy / total


def _free_percent(p, c, i, dt):
    s = c.space[i]
    return 100.0 * s.free / (s.used + s.free) if s.used + s.free else 0.0


def _net(k):
    return lambda c, i: c.net[i][k] if i in c.net else None


NET_READ, NET_WRITE = _rate(_net(0)), _rate(_net(1))


def _net_bytes(k):
    def tags(p, c, i, dt):
        if p is None or i not in p.net or i not in c.net:
            return {}
        return {"bytesReceived" if k == 0 else "bytesSent": c.net[i][k] - p.net[i][k]}
    return tags


METRICS: tuple[Metric, ...] = (
    Metric("Processor", "UtilizationPercentage", "", _cpu, lambda p, c, i, dt: {"totalCpus": c.cpus}),
    Metric("Memory", "AvailableMB", "", lambda p, c, i, dt: c.mem_available / MB,
           lambda p, c, i, dt: {"memorySizeMB": round(c.mem_total / MB)}),
    Metric("Network", "ReadBytesPerSecond", "net", NET_READ, _net_bytes(0)),
    Metric("Network", "WriteBytesPerSecond", "net", NET_WRITE, _net_bytes(1)),
    Metric("LogicalDisk", "FreeSpaceMB", "space", lambda p, c, i, dt: c.space[i].free / MB,
           lambda p, c, i, dt: {"diskSizeMB": round(c.space[i].size / MB)}),
    Metric("LogicalDisk", "FreeSpacePercentage", "space", _free_percent),
    Metric("LogicalDisk", "ReadsPerSecond", "disk", _rate(_disk("reads"))),
    Metric("LogicalDisk", "WritesPerSecond", "disk", _rate(_disk("writes"))),
    Metric("LogicalDisk", "TransfersPerSecond", "disk", _rate(_disk("reads", "writes"))),
    Metric("LogicalDisk", "ReadBytesPerSecond", "disk", _rate(_disk("read_bytes"))),
    Metric("LogicalDisk", "WriteBytesPerSecond", "disk", _rate(_disk("write_bytes"))),
    Metric("LogicalDisk", "BytesPerSecond", "disk", _rate(_disk("read_bytes", "write_bytes"))),
    Metric("LogicalDisk", "ReadLatencyMs", "disk", _latency(("read_ms",), ("reads",))),
    Metric("LogicalDisk", "WriteLatencyMs", "disk", _latency(("write_ms",), ("writes",))),
    Metric("LogicalDisk", "TransferLatencyMs", "disk", _latency(("read_ms", "write_ms"), ("reads", "writes"))),
)

# instance kind -> (the instances of a look, their tag)
INSTANCES = {"": (lambda c: [""], None), "net": (lambda c: sorted(c.net), "networkDeviceId"),
             "space": (lambda c: list(c.space), "mountId"), "disk": (lambda c: list(c.disks), "mountId")}

# (Namespace, Name) -> the Log Analytics agent's (ObjectName, CounterName, scale of the value)
PERF = {
    ("Processor", "UtilizationPercentage"): ("Processor", "% Processor Time", 1.0),
    ("Memory", "AvailableMB"): ("Memory", "Available MBytes", 1.0),
    ("Network", "ReadBytesPerSecond"): ("Network Adapter", "Bytes Received/sec", 1.0),
    ("Network", "WriteBytesPerSecond"): ("Network Adapter", "Bytes Sent/sec", 1.0),
    ("LogicalDisk", "FreeSpaceMB"): ("Logical Disk", "Free Megabytes", 1.0),
    ("LogicalDisk", "FreeSpacePercentage"): ("Logical Disk", "% Free Space", 1.0),
    ("LogicalDisk", "ReadsPerSecond"): ("Logical Disk", "Disk Reads/sec", 1.0),
    ("LogicalDisk", "WritesPerSecond"): ("Logical Disk", "Disk Writes/sec", 1.0),
    ("LogicalDisk", "TransfersPerSecond"): ("Logical Disk", "Disk Transfers/sec", 1.0),
    ("LogicalDisk", "ReadBytesPerSecond"): ("Logical Disk", "Disk Read Bytes/sec", 1.0),
    ("LogicalDisk", "WriteBytesPerSecond"): ("Logical Disk", "Disk Write Bytes/sec", 1.0),
    ("LogicalDisk", "BytesPerSecond"): ("Logical Disk", "Disk Bytes/sec", 1.0),
    ("LogicalDisk", "ReadLatencyMs"): ("Logical Disk", "Avg. Disk sec/Read", 0.001),
    ("LogicalDisk", "WriteLatencyMs"): ("Logical Disk", "Avg. Disk sec/Write", 0.001),
    ("LogicalDisk", "TransferLatencyMs"): ("Logical Disk", "Avg. Disk sec/Transfer", 0.001),
}
# the agent's counters computed from the look's other counters: (ObjectName, CounterName, instance kind, value)
PERF_DERIVED = (
    ("Memory", "% Available Memory", "",
     lambda p, c, i, dt: 100.0 * c.mem_available / c.mem_total if c.mem_total else None),
    ("Memory", "% Used Memory", "",
     lambda p, c, i, dt: 100.0 - 100.0 * c.mem_available / c.mem_total if c.mem_total else None),
    ("Network Adapter", "Bytes Total/sec", "net",
     lambda p, c, i, dt: None if (r := NET_READ(p, c, i, dt)) is None
     or (w := NET_WRITE(p, c, i, dt)) is None else r + w),
)
# the InstanceName of a machine-wide counter, by object (Linux agent's names)
PERF_INSTANCE = {"Processor": "_Total", "Memory": "Memory"}


def metric_values(prev: Counters | None, cur: Counters):
    """(namespace, name, instance, tag key, value, extra tags) of every metric the two looks give."""
    dt = cur.at - prev.at if prev is not None else 0.0
    for m in METRICS:
        instances, tag = INSTANCES[m.instances]
        for i in instances(cur):
            v = m.value(prev, cur, i, dt)
            if v is None or not math.isfinite(v):
                continue
            yield m, i, tag, v, m.tags(prev, cur, i, dt)


# ---- the records ---------------------------------------------------------------------------------

class Sampler:
    """Once a minute: InsightsMetrics (``metrics``), Perf (``perf``) and Heartbeat records.

    ``look`` is the counters' source (``read_proc`` bound to a root, or ``read_psutil``);
    ``heartbeat`` the Heartbeat record's own columns (``heartbeat_columns``)."""

    def __init__(self, computer: str, agent_id: str, look: Callable[[], Counters], *,
                 heartbeat: Callable[[], dict] | None = None, metrics: bool = True, perf: bool = False):
        self.computer, self.agent_id, self.look = computer, agent_id, look
        self.heartbeat, self.metrics, self.perf = heartbeat, metrics, perf
        self.prev: Counters | None = None
        self.minute = -1
        self.errors = 0

    def due(self, now: float) -> bool:
        return int(now // 60) != self.minute

    def __call__(self, now: float) -> dict[str, list[dict]]:
        """The records of this minute's look, once per UTC minute ({} otherwise)."""
        if not self.due(now):
            return {}
        self.minute = int(now // 60)
        out: dict[str, list[dict]] = {}
        if self.metrics or self.perf:
            try:
                cur = self.look()
            except Exception:
                self.errors += 1
                if self.errors <= 5 or self.errors % 100 == 0:
                    log.exception("reading the performance counters failed (%d so far)", self.errors)
                cur = None
            if cur is not None:
                out = self.records(self.prev, cur)
                self.prev = cur
        if self.heartbeat is not None:
            try:
                out.setdefault("Heartbeat", []).append(dict(self.heartbeat(), TimeGenerated=iso(now),
                                                            Computer=self.computer))
            except Exception:
                log.exception("the heartbeat record failed")
        if self.metrics:
            out.setdefault("InsightsMetrics", []).append(self._metric(iso(now), "Computer", "Heartbeat", 1.0, {}))
        return out

    def _metric(self, t: str, namespace: str, name: str, value: float, tags: dict) -> dict:
        return dict(TimeGenerated=t, Computer=self.computer, AgentId=self.agent_id, Origin=ORIGIN,
                    Namespace=namespace, Name=name, Val=value,
                    Tags=json.dumps({TAG + k: v for k, v in tags.items()}, separators=(",", ":")))

    def records(self, prev: Counters | None, cur: Counters) -> dict[str, list[dict]]:
        t = iso(cur.at)
        out: dict[str, list[dict]] = {}
        for m, i, tag, v, extra in metric_values(prev, cur):
            tags = ({tag: i} if tag else {}) | extra
            if self.metrics:
                out.setdefault("InsightsMetrics", []).append(self._metric(t, m.namespace, m.name, v, tags))
            if self.perf:
                obj, counter, scale = PERF[(m.namespace, m.name)]
                out.setdefault("Perf", []).append(self._perf(t, obj, counter, i, v * scale))
        if self.perf:
            dt = cur.at - prev.at if prev is not None else 0.0
            for obj, counter, kind, value in PERF_DERIVED:
                for i in INSTANCES[kind][0](cur):
                    v = value(prev, cur, i, dt)
                    if v is not None and math.isfinite(v):
                        out.setdefault("Perf", []).append(self._perf(t, obj, counter, i, v))
        return out

    def _perf(self, t: str, obj: str, counter: str, instance: str, value: float) -> dict:
        instance = instance or PERF_INSTANCE.get(obj, "")
        return dict(TimeGenerated=t, Computer=self.computer, ObjectName=obj, CounterName=counter,
                    InstanceName=instance, CounterValue=value, Min=value, Max=value, SampleCount=1,
                    StandardDeviation=0.0, SourceSystem="Linux" if platform.system() == "Linux" else "OpsManager",
                    CounterPath=f"\\\\{self.computer}\\{obj}({instance})\\{counter}")


# Azure's resource columns of a Heartbeat, from the VMComputer tags that name them
HEARTBEAT_TAGS = {"AzureResourceName": "Resource", "AzureResourceGroup": "ResourceGroup",
                  "AzureSubscriptionId": "SubscriptionId"}


def heartbeat_columns(info, tags: dict | None, version: str) -> dict:
    """A Heartbeat record's columns (all but its time and Computer) from ``MachineInfo`` and the
    agent's tags: its addresses (ComputerIP: the first IPv4 address, else IPv6), the OS from
    os-release (OSName = NAME, OSMajorVersion / OSMinorVersion from VERSION_ID), the agent's
    version, and the Azure resource it runs on when its tags say so (then ComputerEnvironment "Azure")."""
    tags = tags or {}
    major, _, minor = (info.os_version or "").partition(".")
    addresses = list(info.ipv4) or list(info.ipv6)
    out = dict(Category="Direct Agent", ComputerIP=addresses[0] if addresses else "",
               ComputerPrivateIPs=list(info.ipv4), OSType="Linux" if info.os_family.lower() == "linux"
               else info.os_family, OSName=info.os_name or info.os_full_name, OSMajorVersion=major,
               OSMinorVersion=minor.split(".")[0], Version=version, SCAgentChannel="Direct",
               IsGatewayInstalled=False, Solutions="ServiceMap, VMInsights", VMUUID=info.vm_uuid,
               ComputerEnvironment="Azure" if tags.get("AzureVmId") or tags.get("AzureResourceName")
               else "Non-Azure", SourceSystem="Linux" if info.os_family.lower() == "linux" else "OpsManager")
    for tag, column in HEARTBEAT_TAGS.items():
        if tags.get(tag):
            out[column] = str(tags[tag])
    if tags.get("AzureSubscriptionId") and tags.get("AzureResourceGroup") and tags.get("AzureResourceName"):
        out["ResourceProvider"] = "Microsoft.Compute"
        out["ResourceType"] = "virtualMachines"
        out["ResourceId"] = (f"/subscriptions/{tags['AzureSubscriptionId']}/resourceGroups/"
                             f"{tags['AzureResourceGroup']}/providers/Microsoft.Compute/virtualMachines/"
                             f"{tags['AzureResourceName']}")
    return out


__all__ = ["Sampler", "Counters", "read_proc", "read_psutil", "heartbeat_columns", "METRICS", "PERF"]
