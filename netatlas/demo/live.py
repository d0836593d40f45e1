"""The live demo: past its window, the simulated datacenter goes on, a minute at a time.

State: the marker file ``DIR/.demo-loaded`` (``Marker``): the environment (machines, days, seed,
the window's end), ``through`` (every demo record before this minute is stored), whether the demo
is live or removed, and which machines are simulated (ids and Computer names, for ``remove``).

    catch_up   at each start of ``netatlas up``, before the server opens the workspace: the minutes
               from ``through`` to now (at most ``catch_up_limit`` days: the demo's window, within
               retention) through the bulk path (``Workspace.ingest_frame``), after removing any
               record past ``through`` (left by a stop between a write and the marker's update),
               so a restart never stores a minute twice
    Producer   while the server runs: a thread that, once a minute is over, generates its records
               and posts them to the server's ``POST /api/ingest/{Table}`` like an agent (signed
               with the ingest key, a batch id per table and minute, so a retried batch is stored
               once), then moves ``through`` on

The server is reached over HTTP rather than through a hook into it: the live minutes take exactly
the path of an agent's (authentication, checks, enrichment, Usage, metrics), and the server needs
no knowledge of the demo.
"""
from __future__ import annotations

import http.client
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

import orjson

from ..errors import MarkerError

MARKER = ".demo-loaded"



# seconds between the producer's looks at the clock (NETATLAS_DEMO_TICK_SECONDS, for tests)
TICK = float(os.environ.get("NETATLAS_DEMO_TICK_SECONDS", "5"))
HORIZON = 24 * 60      # the producer plans new dependencies this many minutes ahead


@dataclass
class Marker:
    """``DIR/.demo-loaded``: what ``up`` loaded, how far it got, and which machines are simulated."""
    machines: int
    days: int
    seed: int
    end: str | None = None            # the end of the first window (ISO 8601); None: a marker from before the live demo
    through: str | None = None        # every demo record before this minute is stored
    live: bool = True
    removed: bool = False
    machine_ids: list = field(default_factory=list)
    computers: list = field(default_factory=list)
    records: dict = field(default_factory=dict)
    seconds: float = 0.0

    @staticmethod
    def path(data: Path) -> Path:
        return Path(data) / MARKER

    @classmethod
    def load(cls, data: Path) -> "Marker | None":
        p = cls.path(data)
        if not p.exists():
            return None
        try:
            raw = json.loads(p.read_text())
            known = {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
            return cls(**known)
        except (ValueError, TypeError, AttributeError) as e:
            raise MarkerError(f"{p} is not a demo marker ({e}); move it away to load the demo again") from None

    def save(self, data: Path) -> None:
        """Written to a temporary file and renamed: a stop mid-write leaves the old marker."""
        p = self.path(data)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=1))
        os.replace(tmp, p)

    @property
    def can_go_on(self) -> bool:
        return self.live and not self.removed and self.end is not None and self.through is not None

    def minute(self, t: str | datetime) -> int:
        """Minutes since the window's start."""
        start = _parse(self.end) - timedelta(days=self.days)
        return int(((_parse(t) if isinstance(t, str) else t) - start).total_seconds() // 60)

    def time(self, minute: int) -> datetime:
        return _parse(self.end) - timedelta(days=self.days) + timedelta(minutes=minute)


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(timezone.utc)


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def marker_for(env, counts: dict, seconds: float) -> Marker:
    """The marker of a freshly loaded window."""
    end = env.start + timedelta(minutes=env.minutes)
    return Marker(machines=len(env.machines), days=env.minutes // 1440, seed=env.seed, end=_iso(end), through=_iso(end),
                  machine_ids=[m.id for m in env.machines], computers=[m.name for m in env.machines],
                  records=counts, seconds=round(seconds, 1))


def upgrade(ws, marker: Marker) -> bool:
    """A marker written before the live demo (machines, days, seed only) completed from the
    workspace: the simulated machines (their ids come from the seed alone, whatever the window's
    end) and the window's end (the minute after their last connection record). False when the
    workspace holds none of their records."""
    from .pipeline import plan
    env = plan(marker.machines, marker.days, marker.seed, datetime.now(timezone.utc))
    ids = [m.id for m in env.machines]
    with ws._lock:
        last = ws.connection.execute('SELECT max(TimeGenerated) FROM "VMConnection" WHERE Machine IN '
                                     '(SELECT unnest(?::VARCHAR[]))', [ids]).fetchall()[0][0]
    marker.machine_ids, marker.computers = ids, [m.name for m in env.machines]
    if last is None:
        return False
    end = last.replace(second=0, microsecond=0, tzinfo=timezone.utc) + timedelta(minutes=1)
    marker.end = marker.through = _iso(end)
    return True


def simulation(marker: Marker, upto: int):
    """The marker's environment, with the new dependencies up to minute ``upto`` (pipeline.Simulation)."""
    from . import environment
    from .pipeline import Simulation, plan
    env = plan(marker.machines, marker.days, marker.seed, _parse(marker.end))
    environment.novelties(env, upto)
    return Simulation(env)


def now_minute(marker: Marker, now: datetime | None = None) -> int:
    """The first minute not yet over."""
    return marker.minute(now or datetime.now(timezone.utc))


def catch_up_limit(marker: Marker, retention_days: int) -> int:
    """Minutes a restart fills at most: the demo's window, within VMConnection's retention."""
    return min(marker.days, retention_days) * 1440


def catch_up(ws, data: Path, marker: Marker, *, now: datetime | None = None, progress_for: Callable | None = None,
             out=None) -> dict[str, int]:
    """Fill the minutes from ``marker.through`` to now into ``ws`` (bounded), moving ``through``
    on after each part; returns records written per table."""
    from .remove import delete_records
    through = marker.minute(marker.through)
    delete_records(ws, marker, since=marker.time(through))       # anything past through: a stop mid-write
    target = now_minute(marker, now)
    limit = catch_up_limit(marker, ws.retention().get("VMConnection", 30))
    lo = max(through, target - limit)
    if target <= lo:
        return {}
    if out is not None and lo > through:
        out.write(f"  the demo was stopped {(target - through) / 60:.0f} h; filling the last {(target - lo) / 60:.0f} h\n")
    sim = simulation(marker, target + HORIZON)
    progress = progress_for((target - lo) / 60) if progress_for else None

    def moved(m: int) -> None:
        marker.through = _iso(marker.time(m))
        marker.save(data)
    counts = sim.fill(ws, lo, target, progress=progress, after_part=moved)
    if progress is not None:
        progress.finish()
    return counts


class Producer(threading.Thread):
    """Posts each minute's records to the server once the minute is over (see the module's docstring)."""

    def __init__(self, data: Path, marker: Marker, url: str, workspace_id: str, key: str, *,
                 tick: float = TICK, clock: Callable[[], datetime] | None = None, log=None):
        super().__init__(name="netatlas-demo-live", daemon=True)
        self.data, self.marker, self.url = Path(data), marker, url
        self.workspace_id, self.key, self.tick = workspace_id, key, tick
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.log = log or (lambda _msg: None)
        self.stopping = threading.Event()
        self.minutes = 0              # minutes posted by this producer
        self.errors = 0
        self._sim = None
        self._planned_to = -1

    def stop(self, wait: float = 10.0) -> None:
        self.stopping.set()
        if self.is_alive():
            self.join(wait)

    def run(self) -> None:
        while not self.stopping.is_set() and not self._server_up():     # up starts it before the server
            self.stopping.wait(0.2)
        while not self.stopping.is_set():
            try:
                self.step()
            except (OSError, http.client.HTTPException, RuntimeError) as e:
                self.errors += 1
                self.log(f"demo: live minute not posted yet ({e}); trying again")
            self.stopping.wait(self.tick)

    def _server_up(self) -> bool:
        from urllib.parse import urlsplit
        u = urlsplit(self.url)
        try:
            c = _connection(self.url, 2)
            try:
                c.request("GET", "/healthz")
                return c.getresponse().status == 200
            finally:
                c.close()
        except (OSError, http.client.HTTPException):
            return False

    def step(self) -> int:
        """Post every minute that is over and not yet stored; returns how many."""
        target = now_minute(self.marker, self.clock())
        done = 0
        while self.marker.minute(self.marker.through) < target and not self.stopping.is_set():
            m = self.marker.minute(self.marker.through)
            self.post_minute(m)
            self.marker.through = _iso(self.marker.time(m + 1))
            self.marker.save(self.data)
            self.minutes += 1
            done += 1
        return done

    def simulation(self, m: int):
        if self._sim is None or m + 60 > self._planned_to:
            self._planned_to = m + HORIZON
            self._sim = simulation(self.marker, self._planned_to)
        return self._sim

    def post_minute(self, m: int) -> None:
        from ..auth import signed_headers
        batches = self.simulation(m).records(m, 1)
        for table, records in batches.items():
            body = orjson.dumps(records)
            path = f"/api/ingest/{table}"
            batch_id = f"demo-{self.marker.seed}-{m}-{table}"
            headers = signed_headers(self.workspace_id, self.key, body, path, batch_id=batch_id)
            status, answer = _post(self.url, path, body, headers)
            if status != 200:
                raise RuntimeError(f"POST {path} answered {status}: {answer[:300]!r}")


def _connection(url: str, timeout: float) -> http.client.HTTPConnection:
    """A connection to up's own server: over https (up with TLS settings) its certificate is not
    checked, the producer only ever talks to the server of its own process, on this host."""
    import ssl
    from urllib.parse import urlsplit
    u = urlsplit(url)
    if u.scheme == "https":
        return http.client.HTTPSConnection(u.hostname, u.port, timeout=timeout,
                                           context=ssl._create_unverified_context())
    return http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)


def _post(url: str, path: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    c = _connection(url, 30)
    try:
        c.request("POST", path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()
