"""ClickHouse embedded through chdb: everything that names the chdb package.

``ChdbStore(path)`` opens a chdb session in ``DIR/chdb`` (or in memory for None) with the session
settings that give Kusto's semantics (``SETTINGS``) and the ClickHouse dialect's runtime (SQL
functions, ``kql/dialects/clickhouse/runtime.py``). The catalogue's tables are MergeTree tables
(``table_ddl``): partitioned by day of TimeGenerated, ordered for the common filters
(``ORDER_BY``: a machine's rows over time), a TTL from the table's retention, LowCardinality for
the columns with few values (``LOW_CARDINALITY``); strings are never null in KQL, so string
columns are plain ``String`` with '' for a missing value, every other column Nullable.

``append(table, rows, batch_id)`` inserts a batch (an Arrow table of the table's columns) with
the batch id as ClickHouse's ``insert_deduplication_token``: the same batch sent again is stored
once (each table keeps the last ``DEDUP_WINDOW`` tokens). ``fetch(sql, timeout=)`` runs a query
(ClickHouse's ``max_execution_time`` stops it at the time limit) and returns its rows as the
Python values the DuckDB store gives.
"""
from __future__ import annotations

import re
import threading
import uuid
from datetime import timezone
from pathlib import Path

import chdb
import pyarrow as pa

from ..errors import QueryExecutionError, QueryLimitError, StoreBusyError
from ..kql import types as T
from ..kql.dialects.clickhouse import runtime
from ..kql.values import AS_IS

VERSION = chdb.__version__
Error = getattr(chdb, "ChdbError", RuntimeError)
DIR = "chdb"

# session settings every connection gets: Kusto's semantics where ClickHouse's default differs
SETTINGS = {
    "join_use_nulls": 1,            # an outer join's missing side is null, not the type's default
    "session_timezone": "'UTC'",
    "cast_keep_nullable": 1,
    "union_default_mode": "'ALL'",
    "allow_experimental_analyzer": 1,
    "prefer_column_name_to_alias": 1,           # GROUP BY bin(T, 1h) AS T groups by the column's bins
    "enable_named_columns_in_function_tuple": 1,  # tuple(x AS k): the planner's structs
}

# KQL type -> ClickHouse column type (strings are never null: '' instead)
COLUMN_TYPES = {T.STRING: "String", T.LONG: "Nullable(Int64)", T.INT: "Nullable(Int32)", T.REAL: "Nullable(Float64)",
                T.DECIMAL: "Nullable(Decimal(38, 18))", T.BOOL: "Nullable(Bool)",
                T.DATETIME: "Nullable(DateTime64(6, 'UTC'))", T.TIMESPAN: "Nullable(Int64)", T.GUID: "Nullable(UUID)",
                T.DYNAMIC: "Nullable(String)"}
# the sorting key of each table (what queries filter on first); TimeGenerated alone otherwise
ORDER_BY = {"VMConnection": ("Computer", "TimeGenerated"), "VMBoundPort": ("Computer", "TimeGenerated"),
            "VMComputer": ("Computer", "TimeGenerated"), "VMProcess": ("Computer", "TimeGenerated"),
            "ServiceMapComputer_CL": ("Computer", "TimeGenerated"),
            "ServiceMapProcess_CL": ("Computer", "TimeGenerated"), "VMComputerTags_CL": ("Computer", "TimeGenerated")}
# string columns with few distinct values: dictionary-encoded
LOW_CARDINALITY = {"Computer", "Direction", "Protocol", "ProcessName", "Type", "SourceSystem", "RemoteCountry",
                   "RemoteClassification", "Machine", "AgentId", "_ResourceId", "_SubscriptionId", "IsActive",
                   "_IsBillable", "Confidence", "TLPLevel", "IndicatorThreatType", "Severity", "OperatingSystemFamily",
                   "OperatingSystemFullName", "Ipv4DefaultGateways", "BootTime", "TimeZone", "VirtualizationState",
                   "HostingProvider", "ExecutableName", "DisplayName", "CompanyName", "ProductName", "UserName"}
USAGE, USAGE_RAW = "Usage", "_netatlas_usage"     # ingest.USAGE_RAW: the bytes per hour and table
# Usage as Log Analytics gives it: MB (10^6 bytes, ingest.MB) per hour, table and solution (the DuckDB store's view, ingest.USAGE_SQL)
USAGE_VIEW = f"""CREATE OR REPLACE VIEW "Usage" AS SELECT hour AS TimeGenerated, hour AS StartTime,
    hour + INTERVAL 1 HOUR AS EndTime, DataType, Solution, toFloat64(sum(bytes) / 1000000.0) AS Quantity,
    'MBytes' AS QuantityUnit, true AS IsBillable, 'OMS' AS SourceSystem, 'Usage' AS Type
    FROM {USAGE_RAW} GROUP BY hour, DataType, Solution"""
DEDUP_WINDOW = 10_000       # batch ids each table remembers (ClickHouse's non_replicated_deduplication_window)
DEFAULT_RETENTION_DAYS = 30


def install_runtime(con) -> None:
    for name, body in runtime.FUNCTIONS.items():
        con.query(f"CREATE OR REPLACE FUNCTION {name} AS {body}")


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def table_ddl(table, retention_days: int = DEFAULT_RETENTION_DAYS) -> str:
    """CREATE TABLE for a catalogue table: MergeTree by day, sorted by ORDER_BY, TTL its retention."""
    cols = []
    for name, typ in table.columns:
        ctype = COLUMN_TYPES[typ]
        if name == "TimeGenerated":
            ctype = "DateTime64(6, 'UTC')"            # the partition and sorting key: never null
        elif typ == T.STRING and name in LOW_CARDINALITY:
            ctype = "LowCardinality(String)"
        cols.append(f"{_q(name)} {ctype}")
    order = ", ".join(_q(c) for c in ORDER_BY.get(table.name, ("TimeGenerated",)))
    return (f"CREATE TABLE IF NOT EXISTS {_q(table.name)} ({', '.join(cols)}) ENGINE = MergeTree "
            f"PARTITION BY toYYYYMMDD(TimeGenerated) ORDER BY ({order}) "
            f"TTL toDateTime(TimeGenerated) + INTERVAL {int(retention_days)} DAY DELETE "
            f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}, index_granularity = 8192")


# ClickHouse's error codes that mean the query ran out of its time
_TIMEOUT = re.compile(r"Code: (159|160|394)\b|TIMEOUT_EXCEEDED|QUERY_WAS_CANCELLED")


class ChdbStore:
    """One chdb database (a directory, or in memory)."""

    name = "clickhouse"

    # the Result types its answers hold as Python's values already: not bool (a comparison's value
    # is a UInt8 0 or 1 in ClickHouse)
    AS_IS = frozenset(AS_IS - {T.BOOL})

    def __init__(self, path: str | Path | None = None, database: str | None = None):
        """``database``: the database in the engine (default: "netatlas" in a directory, a new one in
        memory); several stores of one directory share its engine, each in its own database."""
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        try:
            self.connection = chdb.connect(str(self.path / DIR) if self.path is not None else ":memory:")
        except RuntimeError as e:     # chdb runs one engine per process, on one directory
            raise StoreBusyError(f"cannot open the ClickHouse store in {self.path or 'memory'}: "
                                 f"{str(e).split('Exception: ')[-1]}") from None
        self._lock = threading.Lock()
        for k, v in SETTINGS.items():
            self.connection.query(f"SET {k} = {v}")
        # a store of its own in the process's engine: a directory's store is its database
        # "netatlas"; each store in memory a database of its own (the engine is shared)
        self.database = database or ("netatlas" if self.path is not None else f"netatlas_{uuid.uuid4().hex[:12]}")
        self.connection.query(f"CREATE DATABASE IF NOT EXISTS {self.database}")
        self.connection.query(f"USE {self.database}")
        install_runtime(self.connection)

    # ---- tables -----------------------------------------------------------------------------
    def create_tables(self, catalogue, retention: dict[str, int] | None = None) -> None:
        """Every catalogue table that is missing; Usage a view over the hourly bytes (USAGE_RAW)."""
        retention = retention or {}
        for table in catalogue.tables.values():
            if table.name == USAGE:
                continue
            self.execute(table_ddl(table, retention.get(table.name, DEFAULT_RETENTION_DAYS)))
        days = int(retention.get(USAGE, DEFAULT_RETENTION_DAYS))
        self.execute(f"CREATE TABLE IF NOT EXISTS {USAGE_RAW} (hour DateTime64(6, 'UTC'), "
                     f"DataType LowCardinality(String), Solution LowCardinality(String), bytes Int64) "
                     f"ENGINE = MergeTree PARTITION BY toYYYYMM(hour) ORDER BY (hour, DataType) "
                     f"TTL toDateTime(hour) + INTERVAL {days} DAY DELETE "
                     f"SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}")
        self.execute(USAGE_VIEW)

    def set_retention(self, table: str, days: int) -> None:
        """The table's rows expire ``days`` after their TimeGenerated (its TTL)."""
        name, column = (USAGE_RAW, "hour") if table == USAGE else (_q(table), "TimeGenerated")
        self.execute(f"ALTER TABLE {name} MODIFY TTL toDateTime({column}) + INTERVAL {int(days)} DAY DELETE")

    def append(self, table: str, rows, batch_id: str | None = None) -> None:
        """Insert ``rows`` (a pyarrow Table whose columns are the table's, by name) in one INSERT;
        with a ``batch_id`` a second insert of the same batch stores nothing."""
        token = " SETTINGS insert_deduplicate = 0"       # two equal batches without ids are two batches
        if batch_id is not None:
            token = " SETTINGS insert_deduplication_token = " + _lit(batch_id)
        names = ", ".join(_q(c) for c in rows.column_names)
        netatlas_batch = rows     # noqa: F841 -- chdb's Python() table function reads this local by name
        with self._lock:
            self._query(f"INSERT INTO {_q(table)} ({names}){token} SELECT {names} FROM Python(netatlas_batch)")

    @staticmethod
    def _rows_of(column: str, values: list[str], since=None) -> str:
        """The WHERE of the rows whose ``column`` is one of ``values`` (and TimeGenerated >= ``since``)."""
        where = f"{_q(column)} IN ({', '.join(_lit(v) for v in values)})"
        return where + (f" AND TimeGenerated >= {_datetime(since)}" if since is not None else "")

    def delete(self, table: str, column: str, values: list[str], since=None) -> int:
        """Delete the rows whose ``column`` is one of ``values`` (and TimeGenerated >= ``since``,
        when given); rows deleted."""
        where = self._rows_of(column, values, since)
        n = int(self.fetch(f"SELECT count() FROM {_q(table)} WHERE {where}")[0][0])
        if n:
            self.execute(f"DELETE FROM {_q(table)} WHERE {where}")
        return n

    def billed_hours(self, table: str, column: str, values: list[str], since=None) -> list[tuple]:
        """[(hour, bytes)]: what those rows (as ``delete`` picks them) were billed, by their _BilledSize."""
        return self.fetch(f"SELECT toDateTime64(toStartOfHour(TimeGenerated), 6, 'UTC') AS h, toInt64(sum(_BilledSize)) "
                          f"FROM {_q(table)} "
                          f"WHERE {self._rows_of(column, values, since)} GROUP BY h")

    def select(self, table: str, column: str, values: list[str], since=None):
        """Those rows (as ``delete`` picks them), as an Arrow table."""
        return self.fetch_arrow(f"SELECT * FROM {_q(table)} WHERE {self._rows_of(column, values, since)}")

    def unbill(self, data_type: str, hours: list[tuple]) -> None:
        """Take ``hours`` [(hour, bytes)] of a table (``data_type``) out of Usage's byte counts: each
        hour's rows are replaced by one holding what is left (none when nothing is)."""
        gone = {h: b for h, b in hours if b}
        if not gone:
            return
        which = f"DataType = {_lit(data_type)} AND hour IN ({', '.join(_datetime(h) for h in gone)})"
        now = self.fetch(f"SELECT hour, any(Solution), toInt64(sum(bytes)) FROM {USAGE_RAW} WHERE {which} GROUP BY hour")
        self.execute(f"DELETE FROM {USAGE_RAW} WHERE {which}")
        kept = [(h, solution, total - gone.get(h, 0)) for h, solution, total in now if total - gone.get(h, 0) > 0]
        if kept:
            self.append(USAGE_RAW, pa.table({
                "hour": pa.array([h for h, _, _ in kept], pa.timestamp("us", tz="UTC")),
                "DataType": [data_type] * len(kept), "Solution": [s for _, s, _ in kept],
                "bytes": pa.array([b for _, _, b in kept], pa.int64())}))

    def count(self, table: str) -> int:
        return int(self.fetch(f"SELECT count() FROM {_q(table)}")[0][0])

    def bytes_on_disk(self, table: str) -> int:
        """Bytes the table's active parts take on disk."""
        rows = self.fetch(f"SELECT sum(bytes_on_disk) FROM system.parts WHERE active AND table = '{table}' "
                          f"AND database = '{self.database}'")
        return int(rows[0][0] or 0)

    # ---- queries ----------------------------------------------------------------------------
    def fetch(self, sql: str, *, timeout: float | None = None) -> list[tuple]:
        """All rows of a query, as Python values in the shapes the DuckDB store gives; past
        ``timeout`` seconds QueryLimitError, any other refusal QueryExecutionError."""
        return self.rows_of(self.fetch_arrow(sql, timeout=timeout))

    @staticmethod
    def columns_of(table) -> list[list]:
        """An Arrow table's columns as lists of Python values; datetimes naive UTC, as DuckDB's
        (pyarrow builds a zone-aware datetime ~50x slower; values.convert_rows makes them aware)."""
        out = []
        for column in table.columns:
            if pa.types.is_timestamp(column.type) and column.type.tz is not None:
                column = column.cast(pa.timestamp(column.type.unit))
            out.append(column.to_pylist())
        return out

    @classmethod
    def rows_of(cls, table) -> list[tuple]:
        """An Arrow table's rows as tuples of Python values (``columns_of``)."""
        cols = cls.columns_of(table)
        return list(zip(*cols)) if cols else []

    def fetch_arrow(self, sql: str, *, timeout: float | None = None):
        """The answer of a query as an Arrow table (errors as ``fetch``)."""
        if timeout is not None:
            sql = f"{sql} SETTINGS max_execution_time = {max(timeout, 0.001):.3f}, timeout_overflow_mode = 'throw'"
        try:
            with self._lock:
                table = self._query(sql, "ArrowTable")
        except Exception as e:      # chdb raises its own error class (or RuntimeError) with the server's text
            msg = str(e).split("\n")[0]
            if _TIMEOUT.search(msg):
                raise QueryLimitError(f"the query ran past its time limit ({timeout:g} s)") from None
            raise QueryExecutionError(f"the query could not run: {msg}") from None
        return table

    def execute(self, sql: str):
        with self._lock:
            return self._query(sql)

    def _query(self, sql: str, fmt: str = "CSV"):
        """Run ``sql`` in the session. A statement that fails after it began to answer (a time
        limit reached, a throwIf) leaves part of its answer in chdb's session, and the next
        statement reads it (chdb 4.4: "Invalid flatbuffers message", "Old metadata version not
        supported"): after a failure the session is drained with a probe until it answers
        cleanly, so the failure is the failing statement's only."""
        try:
            return self.connection.query(sql, fmt)
        except Exception:
            self._drain()
            raise

    def _drain(self, tries: int = 3) -> None:
        for _ in range(tries):
            try:
                if self.connection.query("SELECT 1", "CSV").bytes() == b"1\n":
                    return
            except Exception:       # the leftover of the failed statement, read by the probe
                pass

    def close(self) -> None:
        if self.path is None:           # an in-memory store's database goes with it
            try:
                self.connection.query(f"DROP DATABASE IF EXISTS {self.database}")
            except Exception:          # closing must not fail on a store already broken
                pass
        self.connection.close()


def _datetime(d) -> str:
    """A datetime (naive: UTC) as a ClickHouse DateTime64 literal."""
    if d.tzinfo is not None:
        d = d.astimezone(timezone.utc)
    return f"toDateTime64('{d.strftime('%Y-%m-%d %H:%M:%S.%f')}', 6, 'UTC')"


__all__ = ["ChdbStore", "VERSION", "Error", "install_runtime", "table_ddl", "SETTINGS"]
