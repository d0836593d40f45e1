"""The performance stage: machines' counters and heartbeats for the web UI (docs/web-api.md).

The agent writes VM insights' counters to ``InsightsMetrics`` (Origin "vm.azm.ms"; Namespace, Name,
Val; ``Tags``: JSON text with ``vm.azm.ms/...`` keys naming the instance: ``mountId``,
``networkDeviceId``, and sizes: ``memorySizeMB``, ``diskSizeMB``) and one ``Heartbeat`` record a
minute. Two products, each from KQL through ``webmap.Source`` (the query texts are the constants
below and texts built from the ``COUNTERS`` table's constants; values only through
``declare query_parameters``):

| product | endpoint | queries | shaped by |
|---|---|---|---|
| one machine's charts over the range, binned to at most ``MAX_POINTS`` points, and its last heartbeat | ``GET /api/machines/{id}/performance`` (``machine_performance``) | ``MACHINE_METRICS``, ``webmap.last_heartbeats`` | the ``CHARTS`` table: each chart's lines (a counter, one series per instance or summed over them, a scale) |
| machines ranked by a statistic of a counter over the range (VM insights' "Top N"), each with its series | ``GET /api/performance`` (``top_machines``) | ``ranking_query``, ``series_query`` of a ``Counter``, ``webmap.last_heartbeats`` | the ``COUNTERS`` and ``STATS`` tables |

A machine's value of a counter at one time is its instances' values combined (``Counter.combine``:
summed for rates and memory, the largest for disk space used and latency); a statistic is then
taken over those values in the range. The map's heartbeat state (``webmap.heartbeat_state``:
stopped when the last heartbeat in the day before the range's end is older than ``webmap.STALE``)
is the same for the map, a machine's details and the ranking.

Not read yet: the Log Analytics agent's ``Perf`` records (a machine that sends only those has no
charts and is not ranked; its Heartbeat records count).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from .errors import WebMapError
from .limits import DEFAULT_TIMEOUT
from .webmap import (LATEST_MACHINES, LOOKBACK, Source, Span, heartbeat_state, inventory, iso, last_heartbeats,
                     machine_named)

MAX_POINTS = 120                     # bins of a series at most: the step grows with the range
STEPS = tuple(timedelta(minutes=m) for m in (1, 2, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440))
MAX_TOP = 100                        # machines of /api/performance at most
DEFAULT_TOP = 10


def step_of(span: Span) -> timedelta:
    """The bin of a series over the span: the first of ``STEPS`` giving at most MAX_POINTS bins, else whole days."""
    need = (span.end - span.start) / MAX_POINTS
    for s in STEPS:
        if s >= need:
            return s
    return timedelta(days=math.ceil(need / timedelta(days=1)))


def bins_of(span: Span, step: timedelta) -> list[datetime]:
    """The start of each bin: ``bin_at(TimeGenerated, width, start)``'s values over the span."""
    n = max(1, math.ceil((span.end - span.start) / step))
    return [span.start + k * step for k in range(n)]


def number(v) -> float | None:
    """A value JSON can carry (NaN and infinities are no number: null)."""
    if v is None:
        return None
    v = float(v)
    return round(v, 4) if math.isfinite(v) else None


# ---------------------------------------------------------------- the counters of the ranking

@dataclass(frozen=True)
class Counter:
    """A counter VM insights' Performance view ranks machines by: an InsightsMetrics (Namespace,
    Name), the KQL expression of one instance's value (over ``Val`` and ``tags``, the parsed Tags),
    how a machine's instances at one time combine (an aggregate), and which end is the worst
    (``order``: the ranking's first machines)."""
    id: str
    title: str
    unit: str
    namespace: str
    name: str
    value: str = "Val"
    combine: str = "sum"
    order: str = "desc"

    def json(self) -> dict:
        return {"id": self.id, "title": self.title, "unit": self.unit, "order": self.order}


COUNTERS = {c.id: c for c in (
    Counter("cpu", "CPU utilization", "%", "Processor", "UtilizationPercentage", combine="max"),
    Counter("memory_available_mb", "Available memory", "MB", "Memory", "AvailableMB", order="asc"),
    Counter("memory_available_percent", "Available memory %", "%", "Memory", "AvailableMB",
            'iff(todouble(tags["vm.azm.ms/memorySizeMB"]) > 0, '
            '100.0 * Val / todouble(tags["vm.azm.ms/memorySizeMB"]), real(null))', order="asc"),
    Counter("disk_used_percent", "Logical disk space used %", "%", "LogicalDisk", "FreeSpacePercentage",
            "100.0 - Val", combine="max"),
    Counter("disk_bytes", "Disk bytes per second", "B/s", "LogicalDisk", "BytesPerSecond"),
    Counter("disk_transfers", "Disk transfers per second", "/s", "LogicalDisk", "TransfersPerSecond"),
    Counter("disk_latency", "Disk transfer latency", "ms", "LogicalDisk", "TransferLatencyMs", combine="max"),
    Counter("network_sent", "Bytes sent rate", "B/s", "Network", "WriteBytesPerSecond"),
    Counter("network_received", "Bytes received rate", "B/s", "Network", "ReadBytesPerSecond"),
)}

# the statistic of /api/performance -> its KQL aggregate over a machine's values (V) in the range
STATS = {"avg": "avg(V)", "p50": "percentile(V, 50)", "p90": "percentile(V, 90)", "p95": "percentile(V, 95)",
         "max": "max(V)", "min": "min(V)"}
DEFAULT_STAT = "avg"

_VALUES = """InsightsMetrics
| where TimeGenerated >= start and TimeGenerated < stop and Origin == "vm.azm.ms"
    and Namespace == namespace and Name == name{only}
| extend tags = parse_json(Tags)
| extend V = todouble({value})
| where isnotnull(V) and not(isnan(V))
| summarize V = {combine}(V) by Computer, TimeGenerated"""


def ranking_query(counter: Counter, stat: str) -> str:
    """Every statistic of the counter per machine, ranked by ``stat`` (then by name), the first n."""
    stats = ", ".join(f"{name.upper()} = {agg}" for name, agg in STATS.items())
    return ("declare query_parameters(start:datetime, stop:datetime, namespace:string, name:string, n:long);\n"
            + _VALUES.format(only="", value=counter.value, combine=counter.combine)
            + f"\n| summarize {stats}, Samples = count() by Computer"
            + f"\n| order by {stat.upper()} {counter.order}, Computer asc\n| take n")


def series_query(counter: Counter) -> str:
    """The counter's machine values of the given machines, averaged per bin."""
    return ("declare query_parameters(start:datetime, stop:datetime, namespace:string, name:string, "
            "width:timespan, computers:dynamic);\n"
            + _VALUES.format(only="\n    and Computer in (computers)", value=counter.value, combine=counter.combine)
            + "\n| summarize V = avg(V) by Computer, T = bin_at(TimeGenerated, width, start)")


def _inventory_by_computer(src: Source) -> dict[str, object]:
    machines = inventory(src.kql("inventory", LATEST_MACHINES).to_dicts(), [])
    return {m.computer.lower(): m for m in sorted(machines.values(), key=lambda m: m.id)}


def _heartbeats(src: Source, span: Span, computers: list[str], now: datetime) -> dict[str, dict]:
    """lower-case Computer -> ``webmap.heartbeat_state``."""
    last = last_heartbeats(src, computers, span.end)
    return {c.lower(): heartbeat_state(last.get(c.lower()), span.end, now) for c in computers}


def top_machines(ws, counter_id: str, stat: str, top: int, span: Span, *, now: datetime | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> dict:
    """Machines ranked by a statistic of a counter over the range (``GET /api/performance``)."""
    counter = COUNTERS.get(counter_id)
    if counter is None:
        raise WebMapError(f"unknown counter {counter_id!r}; one of {', '.join(COUNTERS)}", field="counter")
    if stat not in STATS:
        raise WebMapError(f"unknown statistic {stat!r}; one of {', '.join(STATS)}", field="stat")
    if not 1 <= top <= MAX_TOP:
        raise WebMapError(f"top is from 1 to {MAX_TOP}, not {top}", field="top")
    now = now or datetime.now(timezone.utc)
    src = Source(ws, timeout)
    params = dict(start=span.start, stop=span.end, namespace=counter.namespace, name=counter.name)
    ranked = src.kql("ranking", ranking_query(counter, stat), n=top, **params).to_dicts()
    step = step_of(span)
    times = bins_of(span, step)
    index = {t: i for i, t in enumerate(times)}
    series: dict[str, list] = {r["Computer"]: [None] * len(times) for r in ranked}
    if ranked:
        for r in src.kql("series", series_query(counter), width=step, computers=sorted(series), **params).to_dicts():
            i = index.get(r["T"])
            if i is not None and r["Computer"] in series:
                series[r["Computer"]][i] = number(r["V"])
    machines = _inventory_by_computer(src) if ranked else {}
    beats = _heartbeats(src, span, list(series), now) if ranked else {}
    out = []
    for rank, r in enumerate(ranked, 1):
        m = machines.get(r["Computer"].lower())
        out.append({"rank": rank, "computer": r["Computer"], "id": m.id if m else None,
                    "value": number(r[stat.upper()]), **{name: number(r[name.upper()]) for name in STATS},
                    "samples": r["Samples"], "series": series[r["Computer"]], **beats[r["Computer"].lower()]})
    return {"range": span.json(), "counter": counter.json(), "stat": stat, "top": top,
            "step_seconds": int(step.total_seconds()), "times": [iso(t) for t in times], "machines": out,
            "counters": [c.json() for c in COUNTERS.values()], "stats": list(STATS)}


# ---------------------------------------------------------------- one machine's charts

@dataclass(frozen=True)
class Line:
    """A chart's line(s): an InsightsMetrics counter; ``label`` ({instance}: one series per instance,
    else one summed over the instances); ``percent_of``: the value as a percentage of that size tag."""
    namespace: str
    name: str
    label: str
    percent_of: str | None = None


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    unit: str
    lines: tuple[Line, ...]


CHARTS = (
    Chart("cpu", "CPU utilization", "%", (Line("Processor", "UtilizationPercentage", "CPU"),)),
    Chart("memory", "Available memory", "MB", (Line("Memory", "AvailableMB", "available"),)),
    Chart("memory_percent", "Available memory %", "%",
          (Line("Memory", "AvailableMB", "available", percent_of="memorySizeMB"),)),
    Chart("disk_free", "Logical disk free space %", "%", (Line("LogicalDisk", "FreeSpacePercentage", "{instance}"),)),
    Chart("disk_io", "Disk bytes per second", "B/s",
          (Line("LogicalDisk", "ReadBytesPerSecond", "read"), Line("LogicalDisk", "WriteBytesPerSecond", "write"))),
    Chart("disk_ops", "Disk operations per second", "/s",
          (Line("LogicalDisk", "ReadsPerSecond", "reads"), Line("LogicalDisk", "WritesPerSecond", "writes"))),
    Chart("network", "Network bytes per second", "B/s",
          (Line("Network", "ReadBytesPerSecond", "{instance} received"),
           Line("Network", "WriteBytesPerSecond", "{instance} sent"))),
)

MACHINE_METRICS = """declare query_parameters(start:datetime, stop:datetime, computer:string, width:timespan);
InsightsMetrics
| where TimeGenerated >= start and TimeGenerated < stop and Origin == "vm.azm.ms" and Computer =~ computer
    and Namespace != "Computer"
| extend tags = parse_json(Tags)
| extend Instance = tostring(coalesce(tags["vm.azm.ms/mountId"], tags["vm.azm.ms/networkDeviceId"])),
    MemorySizeMB = todouble(tags["vm.azm.ms/memorySizeMB"]), DiskSizeMB = todouble(tags["vm.azm.ms/diskSizeMB"])
| summarize V = avg(Val), MemorySizeMB = max(MemorySizeMB), DiskSizeMB = max(DiskSizeMB)
    by Namespace, Name, Instance, T = bin_at(TimeGenerated, width, start)"""

KNOWN = """declare query_parameters(since:datetime, stop:datetime, computer:string);
union (Heartbeat | where TimeGenerated >= since and TimeGenerated < stop | project Computer),
      (InsightsMetrics | where TimeGenerated >= since and TimeGenerated < stop | project Computer)
| where Computer =~ computer
| take 1"""

SIZE_TAGS = {"memorySizeMB": "MemorySizeMB", "diskSizeMB": "DiskSizeMB"}


def chart_json(chart: Chart, rows: list[dict], index: dict[datetime, int], n: int) -> dict:
    """A chart's series from the binned rows (one row per counter, instance and bin)."""
    series: dict[str, list] = {}
    for line in chart.lines:
        for r in rows:
            if (r["Namespace"], r["Name"]) != (line.namespace, line.name) or (i := index.get(r["T"])) is None:
                continue
            v = r["V"]
            if line.percent_of is not None:
                size = r[SIZE_TAGS[line.percent_of]]
                v = 100.0 * v / size if v is not None and size else None
            if v is None or not math.isfinite(v):
                continue
            name = line.label.format(instance=r["Instance"] or "total")
            values = series.setdefault(name, [None] * n)
            values[i] = (values[i] or 0.0) + v              # a summed line adds its instances
    return {"id": chart.id, "title": chart.title, "unit": chart.unit,
            "series": [{"name": name, "values": [number(v) for v in values]} for name, values in sorted(series.items())]}


def machine_performance(ws, key: str, span: Span, *, now: datetime | None = None,
                        timeout: float = DEFAULT_TIMEOUT) -> dict:
    """One machine's charts over the range and its last heartbeat (``GET /api/machines/{id}/performance``).
    ``key``: its Machine id, Computer name or an address (as /api/machines/{id}), or the Computer
    name of a machine that sends only counters or heartbeats."""
    now = now or datetime.now(timezone.utc)
    src = Source(ws, timeout)
    machines = inventory(src.kql("inventory", LATEST_MACHINES).to_dicts(), [])
    found = machine_named(machines, key)
    if found is not None:
        mid, computer = found.id, found.computer
    elif src.kql("known", KNOWN, since=span.start - LOOKBACK, stop=span.end, computer=key).rows:
        mid, computer = None, key
    else:
        raise WebMapError(f"no machine {key!r} (give its Machine id, its Computer name or one of its addresses)",
                          field="id", status=404, code="MACHINE_NOT_FOUND")
    step = step_of(span)
    times = bins_of(span, step)
    index = {t: i for i, t in enumerate(times)}
    rows = src.kql("metrics", MACHINE_METRICS, start=span.start, stop=span.end, computer=computer,
                   width=step).to_dicts()
    sizes = {}
    for r in rows:
        for tag, column in SIZE_TAGS.items():
            if r[column] is not None:
                sizes[tag] = max(sizes.get(tag, 0), r[column])
    beat = _heartbeats(src, span, [computer], now)[computer.lower()]
    return {"id": mid, "computer": computer, "range": span.json(), "step_seconds": int(step.total_seconds()),
            "times": [iso(t) for t in times], "charts": [chart_json(c, rows, index, len(times)) for c in CHARTS],
            "memory_mb": number(sizes.get("memorySizeMB")), **beat}
