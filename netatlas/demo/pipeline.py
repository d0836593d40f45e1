"""The demo's stages, in order: plan -> (inventory, traffic) a part of PART minutes at a time ->
``ws.ingest_frame`` (columns; the bulk path) or ``ws.ingest`` (records) of each part."""
from __future__ import annotations

import gc
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from . import environment, inventory
from .performance import Performance
from .traffic import PART, Traffic

BATCH = 25_000          # records per ws.ingest call
FLUSH_PARTS = 4         # parts per ws.ingest_frame call (a day: fewer, larger transactions)
TABLES = ("ServiceMapComputer_CL", "VMComputer", "ServiceMapProcess_CL", "VMProcess", "VMConnection", "VMBoundPort",
          "InsightsMetrics", "Perf", "Heartbeat")


def silent_agent(env: environment.Environment) -> tuple[str, str] | None:
    """(Computer, ISO time) of the machine whose agent stops reporting (``catalog.AGENT_STOPS``)."""
    from . import catalog as C
    tier, before = C.AGENT_STOPS
    samples = {s.get("guid") for s in C.SAMPLES}
    m = next((m for m in env.machines if m.tier == tier and m.guid not in samples and not m.reboot), None)
    if m is None or env.minutes <= before:
        return None
    return m.name, env.time(env.minutes - before).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_end() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


SAMPLE_FEED = Path(__file__).with_name("threatintel.stix.json")
SAMPLE_SOURCE = "netatlas-demo-feed"


def import_sample_feed(ws) -> int:
    """The demo's STIX feed (its indicators cover SUSPICIOUS_IPS: one address by a CIDR range) into
    ThreatIntelligenceIndicator, before any connection is ingested, so enrichment flags them."""
    from dataclasses import replace
    from datetime import timedelta

    from ..threatintel import parse
    indicators, _ = parse(SAMPLE_FEED.read_bytes(), "stix", source=SAMPLE_SOURCE)
    # valid for a year from the import (Sentinel's rules keep only indicators with ExpirationDateTime > now())
    until = datetime.now(timezone.utc) + timedelta(days=365)
    indicators = [i if i.expires else replace(i, expires=until) for i in indicators]
    return ws.import_indicators(indicators, SAMPLE_SOURCE)


LIVE = 0x11FE            # the random streams of minutes past the window: [seed, LIVE, first minute]


class Simulation:
    """One environment's records for any minutes: the window's (``fill(ws, 0, env.minutes)``) and,
    past its end, the live ones (the same machines, processes and flows; the payment API keeps
    failing; environment.novelties adds the dependencies that appear)."""

    def __init__(self, env: environment.Environment):
        self.env = env
        self.traffic = Traffic(env)
        self.performance = Performance(env)
        self._inventory = None
        self.silent = silent_agent(env)

    @property
    def inventory(self) -> inventory.Frames:
        if self._inventory is None:
            self._inventory = inventory.Frames(self.env)
        return self._inventory

    def key(self, m0: int):
        """The random stream of the part starting at m0: its number within the window, (LIVE, m0) past it."""
        if m0 < self.env.minutes and m0 % PART == 0:
            return m0 // PART
        return (LIVE, m0)

    def parts(self, lo: int, hi: int):
        """[lo, hi) in parts: PART minutes each, aligned on the window's parts within it."""
        m0 = lo
        while m0 < hi:
            step = PART - m0 % PART if m0 < self.env.minutes else PART
            yield m0, min(step, hi - m0)
            m0 += step

    def frames(self, m0: int, width: int) -> dict[str, dict]:
        """{table: frame} of the minutes [m0, m0 + width) (empty tables left out)."""
        out = self.inventory.window(m0, m0 + width)
        connections, ports = self.traffic.part_frames(self.key(m0), m0, width)
        out["VMConnection"], out["VMBoundPort"] = connections, ports
        out.update(self.performance.frames(m0, width))
        out = {t: self._quiet_frame(out[t]) for t in TABLES if t in out}
        return {t: f for t, f in out.items() if len(f["TimeGenerated"])}

    def records(self, m0: int, width: int) -> dict[str, list[dict]]:
        """{table: records} of the minutes [m0, m0 + width), as dicts (the same records as ``frames``)."""
        out: dict[str, list[dict]] = {t: [] for t in TABLES}
        for table, record in inventory.computers(self.env, m0, m0 + width):
            out[table].append(record)
        for table, record in inventory.processes(self.env, m0, m0 + width):
            out[table].append(record)
        out["VMConnection"], out["VMBoundPort"] = self.traffic.part(self.key(m0), m0, width)
        out.update(self.performance.records(m0, width))
        if self.silent is not None:
            name, since = self.silent
            out = {t: [r for r in v if r.get("Computer") != name or r["TimeGenerated"][:19] < since[:19]]
                   for t, v in out.items()}
        return {t: v for t, v in out.items() if v}

    def _quiet_frame(self, frame: dict) -> dict:
        """A frame without the silent agent's rows from the minute it stopped (``silent_agent``)."""
        if self.silent is None or "Computer" not in frame:
            return frame
        name, since = self.silent
        drop = (frame["Computer"] == name) & (frame["TimeGenerated"] >= np.datetime64(since[:19], "s"))
        if not drop.any():
            return frame
        keep = ~np.asarray(drop)
        return {c: v[keep] for c, v in frame.items()}

    def fill(self, ws, lo: int, hi: int, *, progress=None, after_part: Callable[[int], None] | None = None,
             columnar: bool | None = None) -> dict[str, int]:
        """Write the records of the minutes [lo, hi) into ``ws``: as frames (``ws.ingest_frame``, one
        batch per table and FLUSH_PARTS parts) when it takes them, else as records (``ws.ingest``,
        BATCH at a time). ``progress``: a progress.Progress counting hours; ``after_part(m)``:
        called once every record before minute m is stored."""
        from ..ingest import concat_frames
        columnar = hasattr(ws, "ingest_frame") if columnar is None else columnar
        counts = {t: 0 for t in TABLES}
        pending: dict[str, list] = {t: [] for t in TABLES}

        def flush() -> None:
            for table, frames in pending.items():
                if frames:
                    ws.ingest_frame(table, concat_frames(frames))
                    frames.clear()
        parts = list(self.parts(lo, hi))
        ahead = _Ahead(self.frames, parts) if columnar else None
        try:
            for i, (m0, width) in enumerate(parts):
                last = i == len(parts) - 1 or (i + 1) % FLUSH_PARTS == 0
                if columnar:
                    for table, frame in ahead.next().items():
                        pending[table].append(frame)
                        counts[table] += len(frame["TimeGenerated"])
                    if last:
                        flush()
                else:
                    for table, records in self.records(m0, width).items():
                        for j in range(0, len(records), BATCH):
                            ws.ingest(table, records[j:j + BATCH])
                        counts[table] += len(records)
                if after_part is not None and (last or not columnar):
                    after_part(m0 + width)
                if progress is not None:
                    progress.update((m0 + width - lo) / 60, records=sum(counts.values()))
        finally:
            if ahead is not None:
                ahead.close()
        return counts


class _Ahead:
    """Generates the parts' frames in a thread, one part ahead of their ingestion: numpy and DuckDB
    both release the GIL for most of their work, so on two cores the two overlap."""

    def __init__(self, make: Callable, parts: list):
        import queue
        import threading
        self.queue: queue.Queue = queue.Queue(maxsize=1)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(make, parts), name="netatlas-demo-generate",
                                       daemon=True)
        self.thread.start()

    def _run(self, make, parts) -> None:
        import queue
        for m0, width in parts:
            try:
                item = make(m0, width)
            except BaseException as e:     # handed to the consumer, which raises it
                item = e
            while not self.stopping.is_set():
                try:
                    self.queue.put(item, timeout=0.2)
                    break
                except queue.Full:
                    continue
            if isinstance(item, BaseException) or self.stopping.is_set():
                return

    def next(self) -> dict:
        item = self.queue.get()
        if isinstance(item, BaseException):
            raise item
        return item

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)


def generate(ws, *, machines: int = 200, days: int = 7, seed: int = 1, end: datetime | None = None,
             progress=None, columnar: bool | None = None) -> dict[str, int]:
    """``progress``: a progress.Progress (its total is set here: the window's hours)."""
    # Millions of short-lived, cycle-free objects: reference counting frees them; the cyclic
    # collector would only rescan the growing heap over and over.
    enabled = gc.isenabled()
    gc.disable()
    try:
        env = plan(machines, days, seed, end)
        return load(ws, env, progress=progress, columnar=columnar)
    finally:
        if enabled:
            gc.enable()


def plan(machines: int, days: int, seed: int, end: datetime | None) -> environment.Environment:
    end = default_end() if end is None else end
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    end = end.astimezone(timezone.utc).replace(second=0, microsecond=0)
    return environment.plan(machines, days, seed, end)


def load(ws, env: environment.Environment, *, progress=None, columnar: bool | None = None) -> dict[str, int]:
    """The demo feed, then the window's records (``Simulation.fill``)."""
    note = progress.note if progress is not None else (lambda _text: None)
    note(f"  plan: {len(env.machines)} machines, {sum(len(m.processes) for m in env.machines)} processes, "
         f"{len(env.ports)} bound addresses, {len(env.flows)} logical connections")
    stored = import_sample_feed(ws)
    note(f"  threat intelligence: {stored} indicators of the demo feed ({SAMPLE_FEED.name})")
    if progress is not None:
        progress.total = env.minutes / 60
    return Simulation(env).fill(ws, 0, env.minutes, progress=progress, columnar=columnar)


class NullWorkspace:
    """Counts what it is given and keeps nothing: times the generation alone."""

    def __init__(self):
        self.counts: dict[str, int] = {}

    def ingest(self, table: str, records: list[dict]) -> int:
        self.counts[table] = self.counts.get(table, 0) + len(records)
        return len(records)

    def import_indicators(self, indicators: list, source: str) -> int:
        return len(indicators)


class TimedWorkspace:
    """Passes batches to a workspace and adds up the time spent ingesting them."""

    def __init__(self, ws):
        self.ws = ws
        self.seconds = 0.0

    def ingest(self, table: str, records: list[dict]):
        t = time.perf_counter()
        try:
            return self.ws.ingest(table, records)
        finally:
            self.seconds += time.perf_counter() - t

    def ingest_frame(self, table: str, frame: dict):
        t = time.perf_counter()
        try:
            return self.ws.ingest_frame(table, frame)
        finally:
            self.seconds += time.perf_counter() - t

    def import_indicators(self, indicators: list, source: str) -> int:
        return self.ws.import_indicators(indicators, source)
