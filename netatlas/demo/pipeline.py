"""The demo's stages, in order: plan -> inventory -> traffic (a day at a time) -> ws.ingest in batches."""
from __future__ import annotations

import gc
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from . import environment, inventory
from .traffic import Traffic

BATCH = 25_000          # records per ws.ingest call
TABLES = ("ServiceMapComputer_CL", "VMComputer", "ServiceMapProcess_CL", "VMProcess", "VMConnection", "VMBoundPort")


class _Sink:
    """Buffers records per table and hands them to ws.ingest in batches of BATCH."""

    def __init__(self, ws):
        self.ws = ws
        self.buffers: dict[str, list] = {t: [] for t in TABLES}
        self.counts: dict[str, int] = {t: 0 for t in TABLES}

    def add(self, table: str, record: dict) -> None:
        buf = self.buffers[table]
        buf.append(record)
        if len(buf) >= BATCH:
            self.flush(table)

    def extend(self, table: str, records: list[dict]) -> None:
        for i in range(0, len(records), BATCH):
            self.buffers[table].extend(records[i:i + BATCH])
            if len(self.buffers[table]) >= BATCH:
                self.flush(table)

    def flush(self, table: str | None = None) -> None:
        for t in ([table] if table else TABLES):
            buf = self.buffers[t]
            while buf:
                batch, rest = buf[:BATCH], buf[BATCH:]
                self.ws.ingest(t, batch)
                self.counts[t] += len(batch)
                buf[:] = rest


def default_end() -> datetime:
    return datetime.now(timezone.utc).replace(second=0, microsecond=0)


SAMPLE_FEED = Path(__file__).with_name("threatintel.stix.json")
SAMPLE_SOURCE = "netatlas-demo-feed"


def import_sample_feed(ws) -> int:
    """The demo's STIX feed (its indicators cover SUSPICIOUS_IPS: one address by a CIDR range) into
    ThreatIntelligenceIndicator, before any connection is ingested, so enrichment flags them."""
    from ..threatintel import parse
    indicators, _ = parse(SAMPLE_FEED.read_bytes(), "stix", source=SAMPLE_SOURCE)
    return ws.import_indicators(indicators, SAMPLE_SOURCE)


def generate(ws, *, machines: int = 200, days: int = 7, seed: int = 1, end: datetime | None = None,
             progress: Callable[[str], None] | None = None) -> dict[str, int]:
    # Millions of short-lived, cycle-free dicts: reference counting frees them; the cyclic
    # collector would only rescan the growing heap over and over (15-40% of the time).
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _generate(ws, machines, days, seed, end, progress)
    finally:
        if enabled:
            gc.enable()


def _generate(ws, machines: int, days: int, seed: int, end: datetime | None,
              progress: Callable[[str], None] | None) -> dict[str, int]:
    say = progress or (lambda _msg: None)
    end = default_end() if end is None else end
    if end.tzinfo is None:
        end = end.replace(tzinfo=timezone.utc)
    end = end.astimezone(timezone.utc).replace(second=0, microsecond=0)
    t0 = time.perf_counter()
    env = environment.plan(machines, days, seed, end)
    say(f"plan: {len(env.machines)} machines, {sum(len(m.processes) for m in env.machines)} processes, "
        f"{len(env.ports)} bound addresses, {len(env.flows)} logical connections "
        f"({time.perf_counter() - t0:.1f} s)")
    stored = import_sample_feed(ws)
    say(f"threat intelligence: {stored} indicators of the demo feed ({SAMPLE_FEED.name})")
    sink = _Sink(ws)
    for table, record in inventory.computers(env):
        sink.add(table, record)
    for table, record in inventory.processes(env):
        sink.add(table, record)
    sink.flush()
    say(f"inventory: {sink.counts['ServiceMapComputer_CL']} machine and "
        f"{sink.counts['ServiceMapProcess_CL']} process records per table ({time.perf_counter() - t0:.1f} s)")
    traffic = Traffic(env)
    for i, m0, width in traffic.parts():
        connections, ports = traffic.part(i, m0, width)
        sink.extend("VMConnection", connections)
        sink.extend("VMBoundPort", ports)
        del connections, ports
        if (m0 + width) % 1440 == 0 or m0 + width == env.minutes:
            say(f"day {(m0 + width + 1439) // 1440}/{days}: "
                f"{sink.counts['VMConnection'] + len(sink.buffers['VMConnection'])} connection records so far "
                f"({time.perf_counter() - t0:.1f} s)")
    sink.flush()
    return dict(sink.counts)


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

    def import_indicators(self, indicators: list, source: str) -> int:
        return self.ws.import_indicators(indicators, source)
