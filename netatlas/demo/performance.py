"""Performance stage: Environment -> the machines' InsightsMetrics (as VM insights writes them), Perf
(the Log Analytics agent's main counters) and Heartbeat records, for any minutes.

Each machine's load follows its tier's daily shape (``catalog.PERFORMANCE``, the traffic's
``daily_cycles``), scaled by a factor of its own; CPU, memory, network and disk IO rise and fall with
it, with noise. Disks fill slowly over the window; the first file server's data disk fills up (past
95 % by the end). The app servers whose payment calls fail run hot from the minute the failures start
(``catalog.HOT``). A machine that reboots has no sample while it is down.

The agent samples every minute; the demo does so in the last ``DENSE`` minutes of its window and for
every live minute after it, and every ``STEP`` minutes before (a week of 200 machines stays a few
million records). Records carry the agent's names exactly (``netatlas.agent.perf``: ``METRICS``'
namespaces and names, their ``vm.azm.ms/`` tags; ``PERF``'s object and counter names).

``Performance(env).frames(m0, width)`` gives the minutes' records as frames (the bulk path),
``records(m0, width)`` the same records as dicts. Both are pure functions of the seed and the minutes.
"""
from __future__ import annotations

import json

import numpy as np

from ..agent.perf import ORIGIN, PERF, PERF_INSTANCE, TAG
from . import catalog as C
from .environment import NO_MINUTE, Environment
from .traffic import SHAPES, _take, base_frame, daily_cycles

STEP = 15          # minutes between two samples before the last DENSE minutes of the window
DENSE = 120        # the window's last minutes, sampled every minute (as live minutes are)
TABLES = ("InsightsMetrics", "Perf", "Heartbeat")
MB = 1024
READ_SIZE, WRITE_SIZE = 32 * 1024, 16 * 1024     # bytes per disk read / write, on average

# (Namespace, Name, series kind): the machine-wide ones, then each disk's
MACHINE_METRICS = (("Processor", "UtilizationPercentage", "cpu"), ("Memory", "AvailableMB", "avail"),
                   ("Network", "ReadBytesPerSecond", "net_read"), ("Network", "WriteBytesPerSecond", "net_write"),
                   ("Computer", "Heartbeat", "one"))
DISK_METRICS = (("FreeSpaceMB", "free_mb"), ("FreeSpacePercentage", "free_pct"), ("ReadsPerSecond", "reads"),
                ("WritesPerSecond", "writes"), ("TransfersPerSecond", "transfers"),
                ("ReadBytesPerSecond", "read_bytes"), ("WriteBytesPerSecond", "write_bytes"),
                ("BytesPerSecond", "bytes"), ("ReadLatencyMs", "read_ms"), ("WriteLatencyMs", "write_ms"),
                ("TransferLatencyMs", "transfer_ms"))
# the Perf counters the demo writes: (Namespace, Name) of the metric they restate, or a kind of their own
PERF_SERIES = (("Processor", "UtilizationPercentage"), ("Memory", "AvailableMB"),
               ("LogicalDisk", "FreeSpacePercentage"))
PERF_OWN = (("Memory", "% Used Memory", "used_pct"), ("Network Adapter", "Bytes Total/sec", "net_total"))


def sampled(env: Environment, minutes: np.ndarray) -> np.ndarray:
    return (minutes % STEP == 0) | (minutes >= env.minutes - DENSE)


class Performance:
    def __init__(self, env: Environment):
        self.env = env
        ms = env.machines
        rng = np.random.default_rng([env.seed, 0x9E4F])
        n = len(ms)
        prof = [C.PERFORMANCE[m.tier] for m in ms]
        scale = rng.uniform(0.75, 1.25, n)
        self.shape = np.array([SHAPES.index(p["shape"]) for p in prof])
        self.cpu = np.array([p["cpu"] for p in prof], dtype=float) * scale[:, None]
        self.mem = np.array([p["mem"] for p in prof], dtype=float)
        self.net = np.array([p["net"] for p in prof], dtype=float) * scale[:, None]
        self.memory = np.array([m.memory for m in ms], dtype=float)
        hot_from = {}
        for f in env.flows:
            if f.client is not None and f.fail_from != NO_MINUTE:
                m = f.client[0]
                hot_from[m.idx] = min(hot_from.get(m.idx, NO_MINUTE), f.fail_from)
        self.hot_from = np.array([hot_from.get(m.idx, NO_MINUTE) for m in ms], dtype=np.int64)
        self.down = np.array([m.reboot[:2] if m.reboot else (NO_MINUTE, NO_MINUTE) for m in ms], dtype=np.int64)
        # disks: (machine index, mount, size GB, used share at the window's start, per minute of growth, IO share)
        disks = []
        filling = next((m.idx for m in ms if m.tier == C.FILLING_TIER), None)
        for i, m in enumerate(ms):
            system, size, data_mount, _ = C.DISKS[m.family]
            data = prof[i]["data"]
            used = rng.uniform(0.25, 0.6)
            disks.append((i, system, size, used, rng.uniform(0.0, 0.04) / max(env.minutes, 1), 0.2 if data else 1.0))
            if data:
                start, grow = (0.80, 0.165) if m.idx == filling else (rng.uniform(0.3, 0.7), rng.uniform(0.0, 0.06))
                disks.append((i, data_mount, data, start, grow / max(env.minutes, 1), 0.8))
        self.disk_machine = np.array([d[0] for d in disks], dtype=np.int64)
        self.disk_size_mb = np.array([d[2] * MB for d in disks], dtype=float)
        self.disk_used0 = np.array([d[3] for d in disks])
        self.disk_growth = np.array([d[4] for d in disks])
        self.disk_io = np.array([d[5] for d in disks]) * np.array([prof[d[0]]["iops"] for d in disks]) * scale[self.disk_machine]
        self.disk_reads = np.array([prof[d[0]]["reads"] for d in disks])
        self.disk_lat = np.array([prof[d[0]]["lat"] for d in disks])
        self._series(disks)

    # ---- the series: one per machine and counter (and instance) ---------------------------------
    def _series(self, disks) -> None:
        env, ms = self.env, self.env.machines
        im, perf, self.im_kind, self.im_row, self.perf_kind, self.perf_row = [], [], [], [], [], []
        self.net_prefix = {}               # series (InsightsMetrics) whose Tags carry the minute's bytes -> Tags' start

        def common(m):
            return dict(Computer=m.name, _ResourceId=m.resource_id, _SubscriptionId=env.subscription)

        for i, m in enumerate(ms):
            adapter = C.DISKS[m.family][3]
            machine_tags = {"cpu": {"totalCpus": m.cpus}, "avail": {"memorySizeMB": m.memory},
                            "net_read": {"networkDeviceId": adapter}, "net_write": {"networkDeviceId": adapter},
                            "one": {}}
            for ns, name, kind in MACHINE_METRICS:
                tags = machine_tags[kind]
                if kind.startswith("net"):
                    self.net_prefix[len(im)] = _tags(tags)[:-1]
                im.append(dict(common(m), AgentId=m.guid, Origin=ORIGIN, Namespace=ns, Name=name,
                               Tags=_tags(tags), SourceSystem="Insights"))
                self.im_kind.append(kind)
                self.im_row.append(i)
            for ns_name in PERF_SERIES[:2]:
                obj, counter, _ = PERF[ns_name]
                perf.append(self._perf_base(m, obj, counter, PERF_INSTANCE.get(obj, "")))
                self.perf_kind.append(MACHINE_METRICS_KIND[ns_name])
                self.perf_row.append(i)
            for obj, counter, kind in PERF_OWN:
                perf.append(self._perf_base(m, obj, counter, adapter if kind == "net_total" else PERF_INSTANCE.get(obj, "")))
                self.perf_kind.append(kind)
                self.perf_row.append(i)
        for d, (i, mount, size, *_rest) in enumerate(disks):
            m = ms[i]
            for name, kind in DISK_METRICS:
                tags = {"mountId": mount} | ({"diskSizeMB": size * MB} if kind == "free_mb" else {})
                im.append(dict(common(m), AgentId=m.guid, Origin=ORIGIN, Namespace="LogicalDisk", Name=name,
                               Tags=_tags(tags), SourceSystem="Insights"))
                self.im_kind.append(kind)
                self.im_row.append(d)
            for ns_name in PERF_SERIES[2:]:
                obj, counter, _ = PERF[ns_name]
                perf.append(self._perf_base(m, obj, counter, mount))
                self.perf_kind.append(DISK_KIND[ns_name[1]])
                self.perf_row.append(d)
        self.im_machine = np.array([self._machine_of(k, r) for k, r in zip(self.im_kind, self.im_row)], dtype=np.int64)
        self.perf_machine = np.array([self._machine_of(k, r) for k, r in zip(self.perf_kind, self.perf_row)],
                                     dtype=np.int64)
        self.im_kind, self.im_row = np.array(self.im_kind), np.array(self.im_row, dtype=np.int64)
        self.perf_kind, self.perf_row = np.array(self.perf_kind), np.array(self.perf_row, dtype=np.int64)
        self.net_rows = list(self.net_prefix)
        self.bases = {"InsightsMetrics": base_frame("InsightsMetrics", im), "Perf": base_frame("Perf", perf),
                      "Heartbeat": base_frame("Heartbeat", [self._heartbeat_base(m) for m in ms])}

    def _machine_of(self, kind: str, row: int) -> int:
        return int(self.disk_machine[row]) if kind in DISK_KINDS else row

    def _perf_base(self, m, obj: str, counter: str, instance: str) -> dict:
        return dict(Computer=m.name, ObjectName=obj, CounterName=counter, InstanceName=instance,
                    CounterPath=f"\\\\{m.fqdn}\\{obj}({instance})\\{counter}", SampleCount=1, StandardDeviation=0.0,
                    SourceSystem="Linux" if m.family == "linux" else "OpsManager", _ResourceId=m.resource_id,
                    _SubscriptionId=self.env.subscription)

    def _heartbeat_base(self, m) -> dict:
        name, major, minor = C.OS_HEARTBEAT[m.os]
        a = m.azure
        base = dict(Computer=m.name, ComputerIP=m.ip, ComputerPrivateIPs=[m.ip], Category="Direct Agent",
                    OSType="Linux" if m.family == "linux" else "Windows", OSName=name, OSMajorVersion=major,
                    OSMinorVersion=minor, Version=C.AGENT_VERSION[m.family], SCAgentChannel="Direct",
                    IsGatewayInstalled=False, Solutions="ServiceMap, VMInsights",
                    ComputerEnvironment="Azure" if a else "Non-Azure", VMUUID=m.native_id.lower() if m.native_id else "",
                    SourceSystem="Linux" if m.family == "linux" else "OpsManager", _ResourceId=m.resource_id,
                    _SubscriptionId=self.env.subscription)
        if a:
            short = m.fqdn.split(".")[0]
            base.update(Resource=short, ResourceGroup=a["rg"], SubscriptionId=self.env.subscription,
                        ResourceProvider="Microsoft.Compute", ResourceType="virtualMachines", ResourceId=m.resource_id)
        return base

    # ---- the values ------------------------------------------------------------------------------
    def values(self, m0: int, width: int) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
        """(the sampled minutes, {kind: (rows, samples) values}, (machines, samples) up)."""
        env = self.env
        minutes = np.arange(m0, m0 + width, dtype=np.int64)
        keep = sampled(env, minutes)
        minutes = minutes[keep]
        rng = np.random.default_rng([env.seed, 0x9E4F, m0, width])
        cycles = daily_cycles(env, m0, width)[:, keep]
        load = cycles[self.shape]                                   # (machines, samples)
        n, j = load.shape
        hot = minutes[None, :] >= self.hot_from[:, None]
        cpu = self.cpu[:, :1] + self.cpu[:, 1:] * load + rng.normal(0, 2.5, (n, j))
        cpu = np.where(hot, C.HOT["cpu"][0] + C.HOT["cpu"][1] * load + rng.normal(0, 1.5, (n, j)), cpu)
        used = self.mem[:, :1] + self.mem[:, 1:] * load + rng.normal(0, 0.01, (n, j))
        used = np.where(hot, C.HOT["mem"][0] + C.HOT["mem"][1] * load, used)
        used = np.clip(used, 0.05, 0.985)
        net_read = self.net[:, :1] * (0.04 + load) * rng.lognormal(0, 0.25, (n, j))
        net_write = self.net[:, 1:] * (0.04 + load) * rng.lognormal(0, 0.25, (n, j))
        d = len(self.disk_machine)
        dload = load[self.disk_machine]
        used_disk = np.clip(self.disk_used0[:, None] + self.disk_growth[:, None] * minutes[None, :]
                            + rng.normal(0, 0.0005, (d, j)), 0.01, 0.995)
        free_mb = self.disk_size_mb[:, None] * (1 - used_disk)
        io = self.disk_io[:, None] * (0.05 + dload) * rng.lognormal(0, 0.3, (d, j))
        reads = io * self.disk_reads[:, None]
        writes = io - reads
        read_bytes = reads * READ_SIZE * rng.lognormal(0, 0.2, (d, j))
        write_bytes = writes * WRITE_SIZE * rng.lognormal(0, 0.2, (d, j))
        lat = self.disk_lat[:, None] * (1 + 0.8 * dload) * rng.lognormal(0, 0.2, (d, j))
        read_ms, write_ms = 0.8 * lat, 1.3 * lat
        out = dict(cpu=np.clip(cpu, 0.3, 99.9), avail=self.memory[:, None] * (1 - used), used_pct=100 * used,
                   net_read=net_read, net_write=net_write, net_total=net_read + net_write, one=np.ones((n, j)),
                   free_mb=free_mb, free_pct=100 * (1 - used_disk), reads=reads, writes=writes, transfers=io,
                   read_bytes=read_bytes, write_bytes=write_bytes, bytes=read_bytes + write_bytes,
                   read_ms=read_ms, write_ms=write_ms, transfer_ms=(read_ms * reads + write_ms * writes) / io)
        up = ~((minutes[None, :] >= self.down[:, :1]) & (minutes[None, :] < self.down[:, 1:]))
        return minutes, out, up

    def _columns(self, kinds: np.ndarray, rows: np.ndarray, machines: np.ndarray, values: dict, up: np.ndarray):
        """(series index, sample index, value) of every series' samples while its machine is up."""
        s, j = len(kinds), up.shape[1]
        v = np.empty((s, j))
        for kind in np.unique(kinds):
            sel = kinds == kind
            v[sel] = values[str(kind)][rows[sel]]
        ok = up[machines]
        series, sample = np.nonzero(ok)
        return series, sample, v[series, sample]

    def frames(self, m0: int, width: int) -> dict[str, dict]:
        """{table: frame} of the minutes [m0, m0 + width) (empty tables left out)."""
        minutes, values, up = self.values(m0, width)
        start = np.datetime64(self.env.start.replace(tzinfo=None), "s")
        times = start + (minutes * 60).astype("timedelta64[s]")
        out = {}
        series, sample, val = self._columns(self.im_kind, self.im_row, self.im_machine, values, up)
        frame = _take(self.bases["InsightsMetrics"], series, dict(TimeGenerated=times[sample], Val=val))
        tags = frame["Tags"].copy()
        for k in np.nonzero(np.isin(series, self.net_rows))[0]:
            s = int(series[k])
            key = "bytesReceived" if self.im_kind[s] == "net_read" else "bytesSent"
            tags[k] = f'{self.net_prefix[s]},"{TAG}{key}":{int(round(val[k] * 60))}}}'
        frame["Tags"] = tags
        out["InsightsMetrics"] = frame
        series, sample, val = self._columns(self.perf_kind, self.perf_row, self.perf_machine, values, up)
        out["Perf"] = _take(self.bases["Perf"], series, dict(TimeGenerated=times[sample], CounterValue=val,
                                                             Min=val, Max=val))
        machine, sample = np.nonzero(up)
        out["Heartbeat"] = _take(self.bases["Heartbeat"], machine, dict(TimeGenerated=times[sample]))
        return {t: f for t, f in out.items() if len(f["TimeGenerated"])}

    def records(self, m0: int, width: int) -> dict[str, list[dict]]:
        """The same records as ``frames``, as dicts (the live producer posts them)."""
        from ..catalogue import Catalogue
        from ..kql import types as T
        out = {}
        for table, frame in self.frames(m0, width).items():
            names = list(frame)
            types = Catalogue.load().get(table).column_types
            cols = [_plain(frame[c], types[c] == T.DYNAMIC) for c in names]
            out[table] = [{c: v for c, v in zip(names, row) if v is not None} for row in zip(*cols)]
        return out


MACHINE_METRICS_KIND = {(ns, name): kind for ns, name, kind in MACHINE_METRICS}
DISK_KIND = dict(DISK_METRICS)          # Name -> series kind
DISK_KINDS = frozenset(DISK_KIND.values())


def _tags(tags: dict) -> str:
    return json.dumps({TAG + k: v for k, v in tags.items()}, separators=(",", ":"))


def _plain(column: np.ndarray, dynamic: bool = False) -> list:
    """A frame column as JSON-ready values (times as ISO 8601 text, masked as None, dynamic parsed)."""
    if np.issubdtype(column.dtype, np.datetime64):
        return [str(t) + "Z" for t in column.astype("datetime64[s]")]
    mask = np.ma.getmaskarray(column) if isinstance(column, np.ma.MaskedArray) else None
    values = column.tolist() if column.dtype != object else list(column)
    if mask is not None and mask.any():
        values = [None if m else v for v, m in zip(values, mask)]
    if dynamic:
        values = [None if v is None else json.loads(v) for v in values]
    return values
