"""The workspace: a DuckDB database holding every catalogue table, with ingest and query."""
from __future__ import annotations

import os
import threading
import time
import weakref
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from . import kql
from .catalogue import Catalogue
from .errors import IngestError, NetatlasError, QueryExecutionError, QueryLimitError
from . import ingest, migrate
from .ingest import MAX_POST_BYTES
from .kql import runtime
from .kql import types as T
from .kql.values import convert_rows
from .limits import DEFAULT_TIMEOUT, Deadline
from .result import Result

DB_FILE = "netatlas.duckdb"


class WorkspaceBusyError(NetatlasError):
    code = "WORKSPACE_BUSY"


CHECKPOINT_THRESHOLD = "256MB"

RETENTION_TABLE = "_netatlas_retention"
DEFAULT_RETENTION_DAYS = 30


class Workspace:
    def __init__(self, path: str | os.PathLike | None = None, catalogue: Catalogue | None = None, *,
                 geoip: str | os.PathLike | bool | None = None):
        """``geoip``: the city database that places remote addresses (geoip.py): None for the
        bundled GeoLite2-City, a path for another mmdb, False for no geolocation."""
        self.catalogue = catalogue or Catalogue.load()
        self._geoip_setting = geoip
        self._geoip = None
        self._matcher = None
        self.default_retention_days = DEFAULT_RETENTION_DAYS   # a table's days until set_retention
        self.refuse_expired = False     # refuse a TimeGenerated older than the table's retention (the server)
        self._retention_cache: dict[str, int] = {}
        if geoip not in (None, True, False):          # a database named: open it now, fail now
            from .geoip import GeoIP
            self._geoip = GeoIP(geoip)
        self.path = Path(path) if path is not None else None
        self.inflight = None              # DIR/inflight: batch files being stored (commit.py)
        self._committer = None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            from .commit import INFLIGHT
            self.inflight = self.path / INFLIGHT
            try:
                self.connection = duckdb.connect(str(self.path / DB_FILE))
            except duckdb.IOException as e:
                if "lock" in str(e).lower():
                    raise WorkspaceBusyError(
                        f"the workspace in {self.path} is held by another process (a running "
                        f"'netatlas workspace serve'?); query it through its HTTP API or stop it first") from None
                raise
            # the database's lock is ours: batch files left in DIR/inflight are a stopped server's
            from .commit import clean_inflight
            self.inflight.mkdir(mode=0o700, exist_ok=True)
            clean_inflight(self.inflight)
        else:
            self.connection = duckdb.connect(":memory:")
        self._lock = threading.RLock()
        self._local = threading.local()
        self._watchdog = Watchdog(self.connection)
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self.connection.execute("SET TimeZone = 'UTC'")
        # Checkpoint when the write-ahead log reaches 256 MB rather than DuckDB's 16 MB: under a
        # steady stream of batches the small default rewrites the database every second or two.
        self.connection.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        runtime.install(self.connection)
        # the schema this code uses: migrations from the stored version, missing tables and columns
        try:
            self.upgrade = migrate.upgrade(self.connection, self.catalogue, self._create_tables)
        except BaseException:
            self.connection.close()         # a refused or failed upgrade releases the file
            raise
        self.id = self._workspace_id()

    def _create_tables(self) -> None:
        """Every catalogue table and side table that is missing (migrate.upgrade calls it)."""
        with self._lock:
            for table in self.catalogue.tables.values():
                if table.name == ingest.USAGE:
                    continue   # a view over the ingest stage's byte counts (ingest.USAGE_SQL)
                cols = ", ".join(f'"{c}" {T.storage_sql(t)}' for c, t in table.columns)
                self.connection.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({cols})')
            for sql in ingest.SETUP_SQL + ingest.USAGE_SQL:
                self.connection.execute(sql)
            self.connection.execute(f'CREATE TABLE IF NOT EXISTS {RETENTION_TABLE} ("table" VARCHAR PRIMARY KEY, days INTEGER)')

    def _workspace_id(self) -> str:
        if self.path is not None and (self.path / "workspace.json").exists():
            import json
            try:
                return json.loads((self.path / "workspace.json").read_text())["id"]
            except (ValueError, KeyError):
                pass
        return "local"

    # ---- ingest -------------------------------------------------------------------------------
    # Batches from several agents are ingested side by side: each thread has its own DuckDB
    # cursor (a connection to the same database) and its own transaction; DuckDB appends
    # concurrently. Queries keep the main connection.
    def _ingest_cursor(self) -> duckdb.DuckDBPyConnection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            with self._lock:
                cur = self.connection.cursor()
                cur.execute("SET TimeZone = 'UTC'")
                runtime.install(cur)
                self._cursors.append(cur)
            self._local.cursor = cur
        return cur

    def _context(self, table: str) -> dict:
        """What the enrichers of a batch of ``table`` need (ingest.ENRICHERS, ingest.LOOKUPS)."""
        ctx = {"workspace_id": self.id}
        if (t := self.catalogue.get(table)) is not None:
            days = self._retention_days(table) if self.refuse_expired else None
            ctx["datetime_window"] = ingest.datetime_window(t, datetime.now(timezone.utc), days)
        if table == "VMConnection":
            ctx["geoip"] = self.geoip
            ctx["threatintel"] = self.threat_matcher()
        return ctx

    @property
    def geoip(self):
        """The GeoIP database (opened on first use), or None when geolocation is off."""
        if self._geoip is None and self._geoip_setting is not False:
            from .geoip import GeoIP
            with self._lock:
                if self._geoip is None:
                    setting = self._geoip_setting
                    self._geoip = GeoIP(None if setting in (None, True) else setting)
        return self._geoip

    def threat_matcher(self):
        """The active, unexpired indicators of ThreatIntelligenceIndicator as a matcher
        (threatintel.py), built on first use and again after each import, retention pass, and
        expiry of an indicator it holds."""
        if self._matcher is None or self._matcher.stale():     # built, or an indicator expired since
            from .threatintel import Matcher
            with self._lock:
                if self._matcher is None or self._matcher.stale():
                    self._matcher = Matcher.load(self.connection.cursor())
        return self._matcher

    def import_indicators(self, indicators: list, source: str) -> int:
        """Replace the indicators of feed ``source`` (threatintel.store) and rebuild the matcher;
        batches ingested from now on are matched against them."""
        from .threatintel import Matcher, store
        with self._lock:
            n = store(self.connection, indicators, source)
            self._matcher = Matcher.load(self.connection.cursor())
        return n

    def threat_summary(self) -> dict:
        """Indicators stored (in all, active, per source) and how many the matcher holds."""
        from .threatintel import summary
        with self._lock:
            out = summary(self.connection)
        out["matching"] = len(self.threat_matcher())
        return out

    def ingest(self, table: str, records: list[dict], *, batch_id: str | None = None) -> ingest.IngestReport:
        """Validate records against the table's schema, enrich and append them, all or nothing."""
        return ingest.ingest_records(self._ingest_cursor(), self.catalogue, table, records, batch_id=batch_id,
                                     context=self._context(table), inflight=self.inflight)

    def ingest_frame(self, table: str, frame: dict, *, batch_id: str | None = None) -> ingest.IngestReport:
        """Ingest a batch given as columns ({column: numpy array}; ingest.py, "records as columns"):
        the same checks, enrichment, Usage and stored rows as ``ingest`` of the same records."""
        return ingest.ingest_frame(self._ingest_cursor(), self.catalogue, table, frame, batch_id=batch_id,
                                   context=self._context(table))

    def ingest_json(self, table: str, body: bytes | str, *, batch_id: str | None = None,
                    content_encoding: str | None = None, sender: str | None = None,
                    limit: int | None = MAX_POST_BYTES) -> ingest.IngestReport:
        """Ingest a JSON array of records (optionally gzip-compressed), as the HTTP API does.
        ``sender``: the address the batch came from (``machines.note_senders`` learns the
        machines seen behind a NAT from VMComputer batches). ``limit``: the most bytes the body may
        inflate to (ingest.decode)."""
        ctx = self._context(table)
        if sender:
            ctx["sender"] = sender
        return self.committer().ingest(self.catalogue, table, body, batch_id=batch_id, context=ctx,
                                       content_encoding=content_encoding, limit=limit)

    def committer(self):
        """The group committers (commit.py) that store ``ingest_json``'s batches, started on first use."""
        if self._committer is None:
            from .commit import COMMITTERS, Committers
            with self._lock:
                if self._committer is None:
                    cursors = []
                    for _ in range(COMMITTERS):
                        cur = self.connection.cursor()
                        cur.execute("SET TimeZone = 'UTC'")
                        runtime.install(cur)
                        self._cursors.append(cur)
                        cursors.append(cur)
                    self._committer = Committers(cursors, self.inflight)
                    # a workspace dropped without close() stops its committers' threads too
                    weakref.finalize(self, self._committer.stop)
        return self._committer

    def resolve_addresses(self, addresses, lookback_days: float = 1.0, *,
                          now: datetime | None = None) -> dict[str, list[dict]]:
        """Which monitored machines each address belongs to (machines.resolve); ``now``: the end of
        the lookback (default: the clock)."""
        from .machines import resolve
        with self._lock:
            return resolve(self.connection, list(addresses), lookback_days, now=now)

    # ---- backup -------------------------------------------------------------------------------
    def snapshot(self, path: str | os.PathLike) -> dict:
        """Copy the database, in one transaction, to a new DuckDB file (backup.py) while ingestion
        and queries go on; the rows per table and batch ids the copy holds."""
        from .backup import copy_database
        with self._lock:
            cur = self.connection.cursor()
        try:
            return copy_database(cur, Path(path), self.catalogue)
        finally:
            cur.close()

    # ---- retention ----------------------------------------------------------------------------
    def retention(self) -> dict[str, int]:
        """Days of data kept per table (``default_retention_days`` where not set: 30 unless the
        server's retention_days setting says otherwise)."""
        with self._lock:
            set_ = dict(self.connection.execute(f'SELECT "table", days FROM {RETENTION_TABLE}').fetchall())
        return {t: set_.get(t, self.default_retention_days) for t in self.catalogue.names()}

    def _retention_days(self, table: str) -> int:
        """The table's retention in days, cached until set_retention."""
        days = self._retention_cache.get(table)
        if days is None:
            days = self._retention_cache[table] = self.retention()[table]
        return days

    def set_retention(self, table: str, days: int) -> None:
        if table not in self.catalogue:
            raise IngestError(f"unknown table '{table}'", code="INGEST_UNKNOWN_TABLE")
        if not isinstance(days, int) or isinstance(days, bool) or not 1 <= days <= 4383:
            raise IngestError("retention is a whole number of days from 1 to 4383 (12 years)",
                              code="RETENTION_INVALID")
        with self._lock:
            self.connection.execute(f'INSERT OR REPLACE INTO {RETENTION_TABLE} VALUES (?, ?)', [table, days])
        self._retention_cache.clear()

    def apply_retention(self, now: datetime | None = None) -> dict[str, int]:
        """Delete rows older than each table's retention, and rows dated beyond the datetime window
        (``expired_or_future``); returns rows deleted per table."""
        now = now or datetime.now(timezone.utc)
        if now.tzinfo is not None:
            now = now.astimezone(timezone.utc).replace(tzinfo=None)
        deleted = {}
        for table, days in self.retention().items():
            cutoff = now - timedelta(days=days)
            target, column = (ingest.USAGE_RAW, "hour") if table == ingest.USAGE else (f'"{table}"', "TimeGenerated")
            where, params = expired_or_future(column, cutoff, now)
            with self._lock:
                n = self.connection.execute(f'DELETE FROM {target} WHERE {where}', params).fetchone()[0]
            if n:
                deleted[table] = n
        self._matcher = None              # indicators may be gone
        return deleted

    # ---- query --------------------------------------------------------------------------------
    def compile(self, text: str, *, params: dict | None = None, now: datetime | None = None,
                max_rows: int | None = kql.DEFAULT_MAX_ROWS, timespan=None,
                deadline: Deadline | None = None) -> kql.Compiled:
        """Compile KQL text; with a ``deadline`` every stage, and the queries plugins run while
        planning (bag_unpack's keys, autocluster's rows), stop at it with QueryLimitError."""
        return kql.compile(text, self.catalogue, params=params, now=now,
                           executor=lambda sql: self._execute(sql, deadline),
                           max_rows=None if max_rows is None else max_rows + 1, timespan=timespan, deadline=deadline)

    def _run_helper(self, sql: str) -> list[tuple]:
        return self._execute(sql, None)

    def _execute(self, sql: str, deadline: Deadline | None) -> list[tuple]:
        """Run SQL on the main connection. With a deadline, waiting for the connection counts
        against it and the watchdog interrupts the statement at it (releasing the connection)."""
        if deadline is None:
            self._lock.acquire()
        elif not self._lock.acquire(timeout=max(deadline.left(), 0)):
            raise deadline.error()
        try:
            if deadline is not None:
                left = deadline.left()
                if left <= 0:
                    raise deadline.error()
                self._watchdog.arm(left)
            try:
                return self.connection.execute(sql).fetchall()
            except duckdb.InterruptException:
                raise (deadline.error() if deadline is not None else
                       QueryLimitError("the query was interrupted")) from None
            except duckdb.Error as e:
                raise QueryExecutionError(f"the query could not run: {_clean(e)}") from None
            finally:
                if deadline is not None:
                    self._watchdog.disarm()
        finally:
            self._lock.release()

    def query(self, text: str, *, params: dict | None = None, now: datetime | None = None,
              timeout: float = DEFAULT_TIMEOUT, max_rows: int = kql.DEFAULT_MAX_ROWS, timespan=None) -> Result:
        """Run a KQL query; raises KqlError for mistakes in the text, QueryLimitError past the time limit.

        The time limit covers every stage: lex, parse, plan (with the queries plugins run while
        planning), generate and execute.
        timespan: (start, end) limits every table the query reads to TimeGenerated in [start, end),
        as the Log Analytics query API's timespan does."""
        deadline = Deadline(timeout)
        t0 = time.perf_counter()
        compiled = self.compile(text, params=params, now=now, max_rows=max_rows, timespan=timespan,
                                deadline=deadline)
        t1 = time.perf_counter()
        raw = self._execute(compiled.sql, deadline)
        t2 = time.perf_counter()
        truncated = len(raw) > max_rows
        if truncated:
            raw = raw[:max_rows]
        rows = convert_rows(raw, compiled.types)
        t3 = time.perf_counter()
        timings = dict(compiled.timings, compile=t1 - t0, execute=t2 - t1, convert=t3 - t2)
        return Result(compiled.columns, compiled.types, rows, compiled.render, truncated, compiled.sql, timings)

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        with self._lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except duckdb.Error:
                    pass
            self._cursors.clear()
            self._watchdog.stop()
            if self._geoip is not None:
                self._geoip.close()
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Watchdog:
    """Interrupts the running query at its deadline: one thread per workspace, started on first use
    (a timer thread per query cost a visible share of a 10 ms query). It holds the connection only
    through a weak reference, so it never keeps a workspace alive."""

    def __init__(self, connection):
        self._connection = weakref.ref(connection)
        self._cond = threading.Condition()
        self._deadline: float | None = None
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self, timeout: float) -> None:
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="netatlas-query-watchdog", daemon=True)
                self._thread.start()
            self._deadline = time.monotonic() + timeout
            self._cond.notify()

    def disarm(self) -> None:
        with self._cond:
            self._deadline = None

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if self._deadline is None:
                    self._cond.wait()
                    continue
                left = self._deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                self._deadline = None
                con = self._connection()
                if con is None:
                    return
                try:
                    con.interrupt()
                except Exception:
                    pass
                del con


# DuckDB messages -> what they mean for the query's author
_STORE_MESSAGES = {
    "Max expression depth limit": "the query's expressions nest deeper than the store allows (1000 levels); "
                                  "split long chains of terms or lists with extend",
}


def _clean(e: Exception) -> str:
    msg = str(e).split("\n")[0]
    for marker, better in _STORE_MESSAGES.items():
        if marker in msg:
            return better
    for prefix in ("Conversion Error: ", "Invalid Input Error: ", "Binder Error: ", "Out of Range Error: "):
        msg = msg.replace(prefix, "")
    return msg


def expired_or_future(column: str, cutoff: datetime, now: datetime) -> tuple[str, list]:
    """The condition (SQL, parameters) of the rows a retention pass deletes: older than ``cutoff``,
    or more than ingest.FUTURE ahead of ``now`` (refused at ingestion since; a workspace from
    before may hold them, and they would never expire)."""
    return f"({column} < ? OR {column} > ?)", [cutoff, now + ingest.FUTURE]


def connect(path: str | os.PathLike | None = None, *, geoip: str | os.PathLike | bool | None = None) -> Workspace:
    """Open a workspace: in memory, or stored in a directory (DuckDB file inside). ``geoip``: see
    ``Workspace``."""
    return Workspace(path, geoip=geoip)
