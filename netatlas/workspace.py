"""The workspace: a store (store/; DuckDB by default) holding every catalogue table, with ingest and query."""
from __future__ import annotations

import functools
import importlib.util
import os
import threading
import time
import warnings
import weakref
from operator import itemgetter
from datetime import datetime, timedelta, timezone
from pathlib import Path

from . import kql
from .catalogue import Catalogue, Table
from .errors import IngestError, KqlError, NetatlasError, QueryExecutionError, QueryLimitError
from . import custom, dcr, ingest, migrate, rollup
from .ingest import MAX_POST_BYTES
from .kql import types as T
from .kql.cache import CompileCache
from .kql.values import ARROW_TYPES, AS_IS, ArrowAnswer, convert_answer, convert_columns, convert_rows, to_json_value
from .limits import DEFAULT_MAX_RESULT_BYTES, DEFAULT_TIMEOUT, Deadline
from .pool import QueryPool
from .result import Result
from .store import StoreBusyError
from .store import duckdb as db
from .store.duckdb import DuckDBStore

# Workspace._fetch_arrow reads the rest of a large answer as Arrow from the DB-API result whose first
# vector it fetched as rows; DuckDB warns that this copies the rows (as its own fetch does)
warnings.filterwarnings("ignore", message="Arrow output on a DB-API result", category=UserWarning)

WorkspaceBusyError = StoreBusyError     # the store's files are another process's
STORE_KEY = "store"                     # _netatlas_meta: where the catalogue's tables live (--store)
# the hourly Usage bytes (ingest.USAGE_RAW) as the outbox stages them
USAGE_RAW_COLUMNS = [("hour", "TIMESTAMP"), ("DataType", "VARCHAR"), ("Solution", "VARCHAR"), ("bytes", "BIGINT")]

RETENTION_TABLE = "_netatlas_retention"
DEFAULT_RETENTION_DAYS = 30
RETENTION_STEP_ROWS = 50_000     # rows deleted per transaction by a retention pass
FETCH_ROWS = 2048                # rows fetched at a time from a query (a DuckDB vector)
HAVE_ARROW = importlib.util.find_spec("pyarrow") is not None   # optional (the clickhouse extra)
ARROW_OVER_READ = 2             # an answer read as Arrow may be estimated at up to this many times max_result_bytes
ARROW_BATCH_ROWS = 65_536        # rows per Arrow record batch of a large answer (Workspace._fetch_arrow)

# estimated bytes of a value in the JSON answer, by KQL type (strings and dynamic are measured)
VALUE_BYTES = {T.LONG: 10, T.INT: 8, T.REAL: 14, T.DECIMAL: 22, T.BOOL: 6, T.DATETIME: 31,
               T.TIMESPAN: 20, T.GUID: 39}
MEASURED = (T.STRING, T.DYNAMIC)


class Workspace:
    def __init__(self, path: str | os.PathLike | None = None, catalogue: Catalogue | None = None, *,
                 geoip: str | os.PathLike | bool | None = None, store: str | None = None):
        """``geoip``: the city database that places remote addresses (geoip.py): None for the
        bundled GeoLite2-City, a path for another mmdb, False for no geolocation. ``store``: where
        the catalogue's tables live (store.parse_spec: ``duckdb``, ``chdb[:DIR]``); None: where
        the workspace was created with (``STORE_KEY``), DuckDB for a new one."""
        # the workspace's own catalogue: the package's tables and the custom ones it created (custom.py)
        self.catalogue = Catalogue(dict((catalogue or Catalogue.load()).tables))
        self.compile_cache = CompileCache()       # queries run again skip compiling (kql/cache.py)
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
            self.store = DuckDBStore(self.path)
            # the database's lock is ours: batch files left in DIR/inflight are a stopped server's
            from .commit import clean_inflight
            self.inflight.mkdir(mode=0o700, exist_ok=True)
            clean_inflight(self.inflight)
        else:
            self.store = DuckDBStore(None)
        self.connection = self.store.connection
        # _lock serializes the short statements of the main connection (settings, retention
        # days, indicators); no query or ingestion holds it. Queries take a cursor of the pool;
        # ingestion a cursor per thread (_cursor_lock while one is made); the matcher and GeoIP
        # are built under _lookup_lock.
        self._lock = threading.RLock()
        self._cursor_lock = threading.Lock()
        self._lookup_lock = threading.Lock()
        self._rollup_lock = threading.Lock()      # compaction and rebuilds of rollup.py's hours
        self._local = threading.local()
        self._cursors: list[db.Connection] = []
        self.pool = QueryPool(self._new_cursor)
        # the schema this code uses: migrations from the stored version, missing tables and columns
        try:
            self.upgrade = migrate.upgrade(self.connection, self.catalogue, self._create_tables)
        except BaseException:
            self.connection.close()         # a refused or failed upgrade releases the file
            raise
        # the custom tables and data collection rules this workspace keeps, read once here
        self._custom = custom.load(self.connection)
        self.catalogue.tables.update(self._custom)
        self._rules = dcr.load(self.connection)
        self.id = self._workspace_id()
        # the catalogue's tables in another store: queries go there, batches through the outbox
        self.remote: StoreWorkspace | None = None
        self.outbox = None
        try:
            self._open_store(store)
        except BaseException:
            self.connection.close()
            raise

    def _open_store(self, spec: str | None) -> None:
        """The store of the catalogue's tables (see ``__init__``), recorded on first use."""
        from .store import StoreError, parse_spec
        recorded = self.connection.execute(f"SELECT value FROM {migrate.META} WHERE \"key\" = ?",
                                           [STORE_KEY]).fetchone()
        recorded = recorded[0] if recorded else "duckdb"
        if spec is None:
            spec = recorded
        engine, where = parse_spec(spec)
        if engine == "chdb":
            if where is None:
                if self.path is None:
                    raise StoreError("chdb needs a directory (chdb:DIR) for a workspace in memory")
                where = self.path
            spec = f"chdb:{Path(where).resolve()}"
        else:
            spec = "duckdb"
        if spec != recorded:
            if parse_spec(recorded)[0] != "duckdb" or self._holds_rows():
                raise StoreError(f"this workspace keeps its tables in {recorded}, not {spec}: open it without "
                                 f"--store, or give a new directory for a workspace in {spec}")
            with self._lock:
                self.connection.execute(f"INSERT OR REPLACE INTO {migrate.META} VALUES (?, ?)", [STORE_KEY, spec])
        if engine == "chdb":
            try:
                from .store.chdb import ChdbStore
            except ImportError as e:
                raise StoreError(f"the chdb store needs the chdb package ({e}): pip install 'netatlas[clickhouse]'"
                                 ) from None
            from .store.outbox import Outbox
            self.remote = StoreWorkspace(ChdbStore(where), self.catalogue, self.retention())
            self.remote.id = self.id
            tables = {t.name: [(c, T.storage_sql(typ)) for c, typ in t.columns]
                      for t in self.catalogue.tables.values() if t.name != ingest.USAGE}
            tables[ingest.USAGE_RAW] = USAGE_RAW_COLUMNS
            self.outbox = Outbox(self.remote.store, tables)
            with self._lock:
                self.outbox.open(self.connection)
            self._mirror_indicators()

    def _holds_rows(self) -> bool:
        """Whether any catalogue table of this DuckDB database holds a row."""
        with self._lock:
            return any(self.connection.execute(f'SELECT 1 FROM "{t.name}" LIMIT 1').fetchone()
                       for t in self.catalogue.tables.values() if t.name != ingest.USAGE)

    @property
    def store_name(self) -> str:
        """The engine of the catalogue's tables: duckdb or chdb."""
        return "chdb" if self.remote is not None else "duckdb"

    @property
    def store_description(self) -> str:
        """The store in words, for the server's banner."""
        if self.remote is None:
            return "duckdb (embedded)"
        from .store.chdb import VERSION
        return f"chdb {VERSION} (ClickHouse embedded) in {self.remote.store.path}"

    def _mirror_indicators(self) -> None:
        """The threat indicators (kept here, where the matcher reads them) copied to the store,
        so that KQL over ThreatIntelligenceIndicator sees them."""
        if self.remote is None:
            return
        from .store import copy_tables
        from .threatintel import TABLE
        self.remote.store.execute(f'TRUNCATE TABLE "{TABLE}"')
        copy_tables(self, self.remote.store, [TABLE])

    def _create_tables(self) -> None:
        """Every catalogue table and side table that is missing (migrate.upgrade calls it)."""
        with self._lock:
            for table in self.catalogue.tables.values():
                if table.name == ingest.USAGE:
                    continue   # a view over the ingest stage's byte counts (ingest.USAGE_SQL)
                cols = ", ".join(f'"{c}" {T.storage_sql(t)}' for c, t in table.columns)
                self.connection.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({cols})')
            for sql in ingest.SETUP_SQL + ingest.USAGE_SQL + rollup.SETUP_SQL:
                self.connection.execute(sql)
            self.connection.execute(f'CREATE TABLE IF NOT EXISTS {RETENTION_TABLE} ("table" VARCHAR PRIMARY KEY, days INTEGER)')

    def define_table(self, name: str, columns: list[tuple[str, str]]) -> Table:
        """Create the custom table ``name`` (custom.py) with ``columns``, or add those it lacks;
        returns the table as it now is. Built-in tables are not changed; a column's type never is."""
        custom.check_name(name)
        with self._lock:
            old = self.catalogue.get(name)
            if old is not None and name not in self._custom:
                raise IngestError(f"{name} is one of netatlas's own tables, not a custom table", code="CUSTOM_TABLE_NAME")
            table = custom.merged(name, old, columns)
            if old is not None and table.columns == old.columns:
                return old
            if self.remote is not None:
                raise IngestError("custom tables are made in workspaces on DuckDB; this one keeps its tables in chdb",
                                  code="CUSTOM_TABLE_STORE")

            def define(con):
                if old is None:
                    cols = ", ".join(f'"{c}" {T.storage_sql(t)}' for c, t in table.columns)
                    con.execute(f'CREATE TABLE "{name}" ({cols})')
                else:
                    for c, t in table.columns[len(old.columns):]:
                        con.execute(f'ALTER TABLE "{name}" ADD COLUMN "{c}" {T.storage_sql(t)}')
                custom.save(con, table)
            db.in_transaction(self.connection, define)
            self.catalogue.tables[name] = self._custom[name] = table
            return table

    # ---- data collection rules (dcr.py): the Logs Ingestion API's streams -----------------------
    def define_rule(self, rule_id: str, doc: dict) -> "dcr.Rule":
        """Check and keep a data collection rule (Azure's JSON); its custom output tables are made
        or widened from its transformations' columns. RuleError (an IngestError) says what is wrong."""
        rule = dcr.parse(rule_id, doc, self.catalogue)
        custom_outputs = []
        for flow in rule.flows:
            cols = dcr.output_columns(self, rule, flow)
            if flow.custom:
                custom_outputs.append((flow.table, cols))
            else:
                dcr.check_output(self.catalogue, flow, cols)
        for table, cols in custom_outputs:
            self.define_table(table, cols)
        with self._lock:
            dcr.save(self.connection, rule)
            self._rules[rule.id] = rule.definition
        return rule

    def rules(self) -> dict[str, dict]:
        """The data collection rules kept: id -> their JSON."""
        with self._lock:
            return dict(self._rules)

    def delete_rule(self, rule_id: str) -> bool:
        with self._lock:
            self._rules.pop(rule_id, None)
            return dcr.delete(self.connection, rule_id)

    def ingest_stream(self, rule_id: str, stream: str, records: list, *, batch_id: str | None = None) -> list:
        """A batch of a stream through its rule: each flow's transformation, then ingestion into
        its table (all checks, enrichment, Usage); the IngestReports, one per flow."""
        with self._lock:
            doc = self._rules.get(rule_id)
        if doc is None:
            raise IngestError(f"there is no data collection rule {rule_id!r} in this workspace", code="DCR_UNKNOWN")
        rule = dcr.parse(rule_id, doc, self.catalogue)
        if stream not in rule.streams:
            raise IngestError(f"the rule {rule_id} declares no stream {stream!r}; its streams are "
                              f"{', '.join(rule.streams)}", code="DCR_UNKNOWN_STREAM")
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise IngestError("a stream's batch is a JSON array of objects", code="INGEST_SHAPE")
        reports = []
        for i, flow in enumerate(rule.flows_of(stream)):
            text = dcr.source_query(rule.streams[stream]) + flow.transform
            try:
                res = self.query(text, params={dcr.ROWS: records}, max_rows=max(len(records), 1) * 10)
            except (KqlError, QueryExecutionError) as e:
                raise IngestError(f"the transformation of {stream} into {flow.table} failed: {e}",
                                  code="DCR_TRANSFORM") from None
            if res.truncated:
                raise IngestError(f"the transformation of {stream} into {flow.table} gave more than ten rows a record",
                                  code="DCR_TRANSFORM")
            out = [{c: to_json_value(v, t) for c, t, v in zip(res.columns, res.types, row) if v is not None}
                   for row in res.rows]
            reports.append(self.ingest(flow.table, out, batch_id=None if batch_id is None else f"{batch_id}/{i}"))
        return reports

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
    # concurrently. Queries take cursors of the pool (pool.py).
    def _new_cursor(self) -> db.Connection:
        """A connection of its own to the database, set up as the main one."""
        return self.store.cursor()

    def _ingest_cursor(self) -> db.Connection:
        cur = getattr(self._local, "cursor", None)
        if cur is None:
            cur = self._new_cursor()
            with self._cursor_lock:
                self._cursors.append(cur)
            self._local.cursor = cur
        return cur

    def _context(self, table: str) -> dict:
        """What the enrichers of a batch of ``table`` need (enrich.py's FILLS and LOOKUPS, the datetime window)."""
        ctx = {"workspace_id": self.id}
        if self.outbox is not None:
            ctx["outbox"] = self.outbox
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
            with self._lookup_lock:
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
            with self._lookup_lock:
                if self._matcher is None or self._matcher.stale():
                    self._matcher = Matcher.load(self._new_cursor())
        return self._matcher

    def import_indicators(self, indicators: list, source: str) -> int:
        """Replace the indicators of feed ``source`` (threatintel.store) and rebuild the matcher;
        batches ingested from now on are matched against them."""
        from .threatintel import Matcher, store
        with self._lock:
            n = store(self.connection, indicators, source)
        self._mirror_indicators()
        matcher = Matcher.load(self._new_cursor())
        with self._lookup_lock:
            self._matcher = matcher
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
                        cur = self._new_cursor()
                        with self._cursor_lock:
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
        if self.remote is not None:             # own addresses from the store, NAT senders from here
            from .machines import add_senders
            found = self.remote.resolve_addresses(addresses, lookback_days, now=now)
            with self.pool.cursor() as cur:
                return add_senders(cur, found, lookback_days, now=now)
        from .machines import resolve
        with self.pool.cursor() as cur:
            return resolve(cur, list(addresses), lookback_days, now=now)

    # ---- backup -------------------------------------------------------------------------------
    def snapshot(self, path: str | os.PathLike) -> dict:
        """Copy the database, in one transaction, to a new DuckDB file (for backup.py) while
        ingestion and queries go on; the rows per table and batch ids the copy holds."""
        if self.remote is not None:
            from .store import StoreError
            raise StoreError(f"backups of a workspace whose tables are in ClickHouse ({self.store_name}) "
                             f"are not made by netatlas yet: back up its directory with the server stopped")
        from .store.duckdb import copy_database
        cur = self._new_cursor()
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
        if self.remote is not None:
            self.remote.set_retention(table, days)

    def apply_retention(self, now: datetime | None = None) -> dict[str, int]:
        """Delete rows older than each table's retention, and rows dated beyond the datetime window
        (``expired_or_future``); returns rows deleted per table. Runs in small steps on a cursor of
        its own (``delete_in_steps``), holding no lock: ingestion and queries go on meanwhile."""
        now = now or datetime.now(timezone.utc)
        if now.tzinfo is not None:
            now = now.astimezone(timezone.utc).replace(tzinfo=None)
        deleted = {}
        cur = self._new_cursor()
        try:
            for table, days in self.retention().items():
                cutoff = now - timedelta(days=days)
                target, column = (ingest.USAGE_RAW, "hour") if table == ingest.USAGE else (f'"{table}"', "TimeGenerated")
                where, params = expired_or_future(column, cutoff, now)
                touched = rollup.note_hours(cur, where, params) if table == rollup.SOURCE else 0
                n = delete_in_steps(cur, target, where, params)
                if n:
                    deleted[table] = n
                if touched:               # the rollup of the hours it touched, from the rows left
                    with self._rollup_lock:
                        db.in_transaction(cur, rollup.rebuild, rollup.HOURS)
        finally:
            cur.close()
        self._matcher = None              # indicators may be gone
        return deleted

    def compact_rollup(self, now: datetime | None = None, limit: int = rollup.COMPACT_HOURS) -> int:
        """Merge the closed hours of VMConnection's rollup that batches added to (rollup.compact);
        returns the hours merged. Nothing where the tables are in another store."""
        if self.remote is not None:
            return 0
        cur = self._new_cursor()
        try:
            with self._rollup_lock:
                return rollup.compact(cur, now or datetime.now(timezone.utc), limit)
        finally:
            cur.close()

    # ---- query --------------------------------------------------------------------------------
    # Each query holds a cursor of the pool (pool.py) from its compile to its last row fetched;
    # the plugins' planning-time queries run on the same cursor.
    @functools.cached_property
    def rolled_catalogue(self) -> Catalogue | None:
        """The catalogue with VMConnection's hourly rollup (rollup.py) as a table, for the map's
        own queries (``query(catalogue=)``); None where the tables are in another store."""
        return None if self.remote is not None else rollup.catalogue(self.catalogue)

    def compile(self, text: str, *, params: dict | None = None, now: datetime | None = None,
                max_rows: int | None = kql.DEFAULT_MAX_ROWS, timespan=None,
                deadline: Deadline | None = None, catalogue: Catalogue | None = None) -> kql.Compiled:
        """Compile KQL text; with a ``deadline`` every stage, and the queries plugins run while
        planning (bag_unpack's keys, autocluster's rows), stop at it with QueryLimitError.
        ``catalogue``: another catalogue than the workspace's (``rolled_catalogue``)."""
        if self.remote is not None:
            return self.remote.compile(text, params=params, now=now, max_rows=max_rows, timespan=timespan,
                                       deadline=deadline)
        return self.compile_cache.compile(text, catalogue or self.catalogue, params=params, now=now,
                           executor=lambda sql: self._execute(sql, deadline),
                           max_rows=None if max_rows is None else max_rows + 1, timespan=timespan, deadline=deadline)

    def _run_helper(self, sql: str) -> list[tuple]:
        return self._execute(sql, None)

    def _execute(self, sql: str, deadline: Deadline | None) -> list[tuple]:
        """Run SQL on a cursor of the pool (this thread's, when it holds one); all its rows."""
        with self.pool.cursor(deadline) as cur:
            return self._fetch(cur, sql, deadline)[0]

    def _fetch(self, cur, sql: str, deadline: Deadline | None, *, max_rows: int | None = None,
               max_bytes: int | None = None, types: list[str] | None = None,
               arrow: bool = False, prepare: bool = False) -> tuple[list[tuple] | ArrowAnswer, str | None]:
        """Run SQL on ``cur`` and fetch its rows a vector at a time, stopping past ``max_rows``
        rows (one more is fetched, to know there were more) or ``max_bytes`` of the JSON answer
        (estimated by ``types``: ``result_bytes``); returns the rows and the limit that cut them
        (None, "max_rows" or "max_result_bytes"). With ``arrow``, an answer longer than one
        vector whose columns all convert alike from Arrow (``values.ARROW_TYPES``) is fetched
        after its first vector as Arrow record batches: an ``ArrowAnswer``. The watchdog
        interrupts it at the deadline. With ``prepare``, SQL the pool ran before runs as a
        statement prepared on ``cur`` (``QueryPool.execute``)."""
        token = None
        if deadline is not None:
            left = deadline.left()
            if left <= 0:
                raise deadline.error()
            token = self.pool.watchdog.arm(cur, left)
        try:
            res = self.pool.execute(cur, sql, prepare=prepare)
            rows, size, cut = [], 0, None
            sizer = row_sizer(types) if max_bytes is not None else None
            chunk = res.fetchmany(FETCH_ROWS)
            if (arrow and HAVE_ARROW and len(chunk) == FETCH_ROWS and max_rows is not None
                    and max_rows >= FETCH_ROWS):
                # a large answer: the rest in Arrow when its columns convert alike and, judged by
                # its first vector, the whole of it (max_rows at most) stays within ARROW_OVER_READ
                # times max_bytes, since DuckDB hands a DB-API result over to Arrow whole, not
                # streamed (what passes max_bytes is then cut, but was read)
                first = sizer(chunk) if sizer is not None else 0
                if ((sizer is None or (first <= max_bytes and
                                       first * (max_rows + 1) <= ARROW_OVER_READ * max_bytes * FETCH_ROWS))
                        and all(str(d[1]) in ARROW_TYPES for d in res.description)):
                    answer, cut = self._fetch_arrow(res, chunk, first, types, max_rows, max_bytes)
                    if cut is not None:
                        cur.execute("SELECT 1").fetchall()     # ends the result the cap left open
                    return answer, cut
            while True:
                if not chunk:
                    break
                if sizer is not None:
                    grown = size + sizer(chunk)
                    if grown > max_bytes:          # the row that passes the cap, and those before it
                        keep = 0
                        while keep < len(chunk) and size + sizer(chunk[keep:keep + 1]) <= max_bytes:
                            size += sizer(chunk[keep:keep + 1])
                            keep += 1
                        rows.extend(chunk[:keep])
                        cut = "max_result_bytes"
                        break
                    size = grown
                rows.extend(chunk)
                if max_rows is not None and len(rows) > max_rows:
                    del rows[max_rows:]
                    cut = "max_rows"
                    break
                chunk = res.fetchmany(FETCH_ROWS)
            if cut is not None:
                cur.execute("SELECT 1").fetchall()     # ends the streaming result the cap left open
            return rows, cut
        except db.InterruptException:
            raise (deadline.error() if deadline is not None else
                   QueryLimitError("the query was interrupted")) from None
        except db.Error as e:
            raise QueryExecutionError(f"the query could not run: {_clean(e)}") from None
        finally:
            if token is not None:
                self.pool.watchdog.disarm(token)

    @staticmethod
    def _fetch_arrow(res, first: list[tuple], size: int, types: list[str], max_rows: int,
                     max_bytes: int | None) -> tuple[ArrowAnswer, str | None]:
        """The rest of a large answer after its ``first`` vector (``size`` bytes by ``row_sizer``),
        as Arrow record batches, with ``_fetch``'s limits: rows counted, bytes measured a batch at
        a time (``arrow_bytes``, ``row_sizer``'s measure), the batch that passes a limit cut at the
        row that does."""
        n, batches, cut = len(first), [], None
        reader = res.to_arrow_reader(ARROW_BATCH_ROWS)
        try:
            for batch in reader:
                if max_rows is not None and n + batch.num_rows > max_rows:
                    batch, cut = batch.slice(0, max_rows - n), "max_rows"
                if max_bytes is not None:
                    grown = size + arrow_bytes(batch, types)
                    if grown > max_bytes:       # the row that passes the cap, and those before it
                        keep = 0
                        for width in arrow_row_bytes(batch, types):
                            if size + width > max_bytes:
                                break
                            size += width
                            keep += 1
                        batches.append(batch.slice(0, keep))
                        cut = "max_result_bytes"
                        break
                    size = grown
                batches.append(batch)
                n += batch.num_rows
                if cut is not None:
                    break
        finally:
            reader.close()
        return ArrowAnswer(first, batches), cut

    def query(self, text: str, *, params: dict | None = None, now: datetime | None = None,
              timeout: float = DEFAULT_TIMEOUT, max_rows: int = kql.DEFAULT_MAX_ROWS, timespan=None,
              max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES, catalogue: Catalogue | None = None) -> Result:
        """Run a KQL query (over ``catalogue``'s tables, the workspace's by default); raises
        KqlError for mistakes in the text, QueryLimitError past the time limit,
        pool.QueryBusyError when every query cursor is busy and the queue is full.

        The time limit covers every stage: waiting for a cursor, lex, parse, plan (with the
        queries plugins run while planning), generate and execute.
        The result stops at ``max_rows`` rows or ``max_result_bytes`` bytes (as Kusto's 500,000
        records and 64 MB), whichever comes first: ``Result.truncated`` and ``truncated_by``.
        timespan: (start, end) limits every table the query reads to TimeGenerated in [start, end),
        as the Log Analytics query API's timespan does."""
        if self.remote is not None:
            return self.remote.query(text, params=params, now=now, timeout=timeout, max_rows=max_rows,
                                     timespan=timespan, max_result_bytes=max_result_bytes)
        deadline = Deadline(timeout)
        t0 = time.perf_counter()
        with self.pool.cursor(deadline) as cur:
            t1 = time.perf_counter()
            compiled = self.compile(text, params=params, now=now, max_rows=max_rows, timespan=timespan,
                                    deadline=deadline, catalogue=catalogue)
            t2 = time.perf_counter()
            # a query of several tabular statements: each result under its own row limit and its
            # share of the byte limit (the answer stays within max_result_bytes), all of them under
            # the one time limit
            share = result_share(max_result_bytes, 1 + len(compiled.more))
            raw, cut = self._fetch(cur, compiled.sql, deadline, max_rows=max_rows,
                                   max_bytes=share, types=compiled.types, arrow=True, prepare=True)
            more = [(part, *self._fetch(cur, part.sql, deadline, max_rows=max_rows, max_bytes=share,
                                        types=part.types, arrow=True, prepare=True)) for part in compiled.more]
        t3 = time.perf_counter()
        rows = convert_answer(raw, compiled.types)
        more = [_result(part, convert_answer(r, part.types), c, max_rows, share) for part, r, c in more]
        t4 = time.perf_counter()
        timings = dict(compiled.timings, queue=t1 - t0, compile=t2 - t1, execute=t3 - t2, convert=t4 - t3)
        res = _result(compiled, rows, cut, max_rows, share, timings)
        res.more = more
        return res

    def close(self) -> None:
        if self._committer is not None:
            self._committer.close()
        if self.remote is not None:
            self.remote.close()
        self.pool.close()
        with self._lock:
            for cur in self._cursors:
                try:
                    cur.close()
                except db.Error:
                    pass
            self._cursors.clear()
            if self._geoip is not None:
                self._geoip.close()
            with self._cursor_lock:         # not while a cursor is being made (the pool's warm-up)
                self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class StoreWorkspace:
    """A workspace on a store that runs the SQL it is given (ClickHouse: store/chdb.py): the
    catalogue's tables, queries with the same limits as ``Workspace.query`` (time, rows, bytes),
    the map's address lookups (``machines.resolve_kql``) and the tables' retention. Ingestion
    over HTTP, Usage and the side tables are DuckDB's ``Workspace`` only so far (issue 13)."""

    def __init__(self, store, catalogue: Catalogue | None = None, retention: dict[str, int] | None = None):
        self.store = store
        self._as_is = getattr(store, "AS_IS", AS_IS)      # the types its answers hold as Result values
        self.catalogue = catalogue or Catalogue.load()
        self.compile_cache = CompileCache()
        self.default_retention_days = DEFAULT_RETENTION_DAYS
        self._retention = {t: (retention or {}).get(t, DEFAULT_RETENTION_DAYS) for t in self.catalogue.names()}
        self.id = "local"
        store.create_tables(self.catalogue, self._retention)

    def retention(self) -> dict[str, int]:
        return dict(self._retention)

    def set_retention(self, table: str, days: int) -> None:
        """The table's rows expire after ``days`` (the store's TTL)."""
        self._retention[table] = days
        self.store.set_retention(table, days)

    def compile(self, text: str, *, params: dict | None = None, now: datetime | None = None,
                max_rows: int | None = kql.DEFAULT_MAX_ROWS, timespan=None, deadline: Deadline | None = None):
        return self.compile_cache.compile(text, self.catalogue, dialect=self.store.name, params=params, now=now,
                           executor=lambda sql: self.store.fetch(sql, timeout=deadline.left() if deadline else None),
                           max_rows=None if max_rows is None else max_rows + 1, timespan=timespan, deadline=deadline)

    def query(self, text: str, *, params: dict | None = None, now: datetime | None = None,
              timeout: float = DEFAULT_TIMEOUT, max_rows: int = kql.DEFAULT_MAX_ROWS, timespan=None,
              max_result_bytes: int = DEFAULT_MAX_RESULT_BYTES) -> Result:
        """As ``Workspace.query``: the time limit covers compiling and running (ClickHouse's
        max_execution_time stops the SQL at what is left), the rows stop at ``max_rows`` or
        ``max_result_bytes``."""
        deadline = Deadline(timeout)
        t0 = time.perf_counter()
        compiled = self.compile(text, params=params, now=now, max_rows=max_rows, timespan=timespan, deadline=deadline)
        t1 = time.perf_counter()
        left = deadline.left()
        if left <= 0:
            raise deadline.error()
        share = result_share(max_result_bytes, 1 + len(compiled.more))
        t2, rows, cut = self._run(compiled, left, max_rows, share)
        t3 = time.perf_counter()
        timings = dict(compiled.timings, compile=t1 - t0, execute=t2 - t1, convert=t3 - t2)
        res = _result(compiled, rows, cut, max_rows, share, timings)
        for part in compiled.more:      # each further result: its own row limit, its share of the bytes, the one time limit
            left = deadline.left()
            if left <= 0:
                raise deadline.error()
            _, rows, cut = self._run(part, left, max_rows, share)
            res.more.append(_result(part, rows, cut, max_rows, share))
        return res

    def _run(self, compiled, left: float, max_rows: int | None, max_result_bytes: int | None):
        """Run one result's SQL within ``left`` seconds: (when it was fetched, its rows, the limit that cut them)."""
        fetch_arrow = getattr(self.store, "fetch_arrow", None)
        table = fetch_arrow(compiled.sql, timeout=left) if fetch_arrow is not None else None
        if table is not None and fits(table, compiled.types, max_rows, max_result_bytes):
            t2 = time.perf_counter()         # within the limits as a whole: converted column by column
            rows, cut = convert_columns(self.store.columns_of(table), compiled.types, self._as_is), None
        else:
            raw = self.store.rows_of(table) if table is not None else self.store.fetch(compiled.sql, timeout=left)
            t2 = time.perf_counter()
            raw, cut = cap_rows(raw, compiled.types, max_rows, max_result_bytes)
            rows = convert_rows(raw, compiled.types, self._as_is)
        return t2, rows, cut

    def resolve_addresses(self, addresses, lookback_days: float = 1.0, *,
                          now: datetime | None = None) -> dict[str, list[dict]]:
        from .machines import resolve_kql
        return resolve_kql(lambda text, params: self.query(text, params=params), list(addresses), lookback_days, now=now)

    def close(self) -> None:
        self.store.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def result_share(max_result_bytes: int | None, tables: int) -> int | None:
    """The bytes each of a query's ``tables`` result tables may take: an equal share of
    ``max_result_bytes``, so that a query of several results (at most limits.MAX_RESULTS) answers
    within the one limit, as a query of one does."""
    return None if max_result_bytes is None else max(1, max_result_bytes // tables)


def _result(compiled, rows: list, cut: str | None, max_rows, max_result_bytes, timings: dict | None = None) -> Result:
    """The Result of one compiled result (a Compiled or one of its ``more`` parts) and its rows."""
    limit = {"max_rows": max_rows, "max_result_bytes": max_result_bytes}.get(cut)
    return Result(compiled.columns, compiled.types, rows, compiled.render, cut is not None, compiled.sql,
                  timings or {}, truncated_by=cut, limit=limit)


def cap_rows(rows: list[tuple], types: list[str], max_rows: int | None, max_bytes: int | None):
    """The rows up to ``max_rows`` or ``max_bytes`` of the JSON answer (``row_sizer``), and the limit
    that cut them (None, "max_rows" or "max_result_bytes")."""
    cut = None
    if max_rows is not None and len(rows) > max_rows:
        rows, cut = rows[:max_rows], "max_rows"
    if max_bytes is not None and rows:
        sizer, size = row_sizer(types), 0
        for i in range(0, len(rows), FETCH_ROWS):
            chunk = rows[i:i + FETCH_ROWS]
            grown = size + sizer(chunk)
            if grown > max_bytes:
                keep = i
                for r in chunk:
                    size += sizer([r])
                    if size > max_bytes:
                        break
                    keep += 1
                return rows[:keep], "max_result_bytes"
            size = grown
    return rows, cut


def fits(table, types: list[str], max_rows: int | None, max_bytes: int | None) -> bool:
    """Whether an Arrow answer is within both limits as a whole, by ``row_sizer``'s measure
    summed over the columns at once (then ``cap_rows`` has nothing to cut, and is not needed)."""
    import pyarrow.compute as pc
    n = table.num_rows
    if max_rows is not None and n > max_rows:
        return False
    if max_bytes is None or not n:
        return True
    fixed, measured = _row_widths(types)
    texts = _text_lengths(table.columns, types)
    if any(lengths is None for lengths in texts):
        return False                           # not text in Arrow: measured row by row (cap_rows)
    size = n * (fixed + 4 * len(measured)) + sum(pc.sum(lengths).as_py() or 0 for lengths in texts)
    return size <= max_bytes


def delete_in_steps(cur, target: str, where: str, params: list, step: int = RETENTION_STEP_ROWS) -> int:
    """Delete the rows of ``target`` that match ``where``, ``step`` rows per transaction, so no
    transaction of retention lasts long; returns how many were deleted."""
    total = 0
    while True:
        n = cur.execute(f"DELETE FROM {target} WHERE rowid IN "
                        f"(SELECT rowid FROM {target} WHERE {where} LIMIT {step})", params).fetchone()[0]
        total += n
        if n < step:
            return total


def _row_widths(types: list[str]) -> tuple[int, list[int]]:
    """A row's fixed bytes in the JSON answer (brackets, separators, the fixed-width values), and
    the columns whose values are measured (strings, dynamic)."""
    return (2 + sum(VALUE_BYTES.get(t, 8) + 1 for t in types if t not in MEASURED),
            [i for i, t in enumerate(types) if t in MEASURED])


def row_sizer(types: list[str]):
    """A function of some rows -> their estimated bytes in the JSON answer: strings and dynamic
    values measured (their characters), the other types at a fixed width (``VALUE_BYTES``)."""
    fixed, measured = _row_widths(types)

    def size(rows: list[tuple]) -> int:
        n = len(rows) * (fixed + 4 * len(measured))
        for i in measured:
            values = filter(None, map(itemgetter(i), rows))     # nulls and "" add nothing
            try:
                n += sum(map(len, values))
            except TypeError:       # not only text: the strings alone, as below
                n += sum(len(v) for r in rows if isinstance(v := r[i], str))
        return n
    return size


def _text_lengths(columns, types: list[str]) -> list:
    """The characters of each measured column (``MEASURED``: strings, dynamic) of an Arrow answer,
    as Arrow counts them (nulls 0); None for a measured column that is not text in Arrow."""
    import pyarrow as pa
    import pyarrow.compute as pc
    return [pc.fill_null(pc.utf8_length(c), 0) if pa.types.is_string(c.type) or pa.types.is_large_string(c.type)
            else None for c, t in zip(columns, types) if t in MEASURED]


def arrow_row_bytes(batch, types: list[str]) -> list[int]:
    """``row_sizer``'s estimate of each row of an Arrow record batch."""
    fixed, measured = _row_widths(types)
    widths = [fixed + 4 * len(measured)] * batch.num_rows
    for lengths in _text_lengths(batch.columns, types):
        if lengths is not None:
            widths = [w + n for w, n in zip(widths, lengths.to_pylist())]
    return widths


def arrow_bytes(batch, types: list[str]) -> int:
    """``row_sizer``'s estimate for an Arrow record batch: the fixed widths by its row count, the
    characters of its text columns (JSON text included) counted by Arrow."""
    import pyarrow.compute as pc
    fixed, measured = _row_widths(types)
    return batch.num_rows * (fixed + 4 * len(measured)) + sum(
        pc.sum(lengths).as_py() or 0 for lengths in _text_lengths(batch.columns, types) if lengths is not None)


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


def connect(path: str | os.PathLike | None = None, *, geoip: str | os.PathLike | bool | None = None,
            store: str | None = None) -> Workspace:
    """Open a workspace: in memory, or stored in a directory (DuckDB file inside). ``geoip``,
    ``store``: see ``Workspace``."""
    return Workspace(path, geoip=geoip, store=store)


def geoip_setting(value: str | None):
    """--geoip-db text -> Workspace's ``geoip``: "" the bundled database, "off" none, else a path."""
    if not value:
        return None
    return False if value.strip().lower() in ("off", "none", "false", "0") else value


def open_workspace(path: str | None, geoip: str | None = None, store: str | None = None) -> Workspace:
    """The workspace a command names (``--workspace``, ``--geoip-db``, ``--store`` text), or a
    NetatlasError saying why it cannot be opened."""
    from .geoip import GeoIPError
    try:
        return connect(path, geoip=geoip_setting(geoip), store=store or None)
    except GeoIPError as e:
        raise NetatlasError(str(e)) from None
    except (OSError, db.Error) as e:
        raise NetatlasError(f"cannot open the workspace in {path!r}: {str(e).splitlines()[0]}") from None
