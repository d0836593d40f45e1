"""DuckDB, the embedded default store: everything that names DuckDB's Python package.

``DuckDBStore(path)`` opens ``DIR/netatlas.duckdb`` (or an in-memory database for None), sets a
session up (UTC, a 256 MB checkpoint threshold, the dialect's runtime: the macros and functions
of ``kql/dialects/duckdb/runtime.py``) and hands out cursors set up the same way. The exception
classes the rest of netatlas catches are re-exported here (``Error``, ``ConstraintException``,
``InterruptException``, ``STORAGE_ERRORS``: the store could not write, as opposed to a bad batch),
so no other module imports ``duckdb``. ``scratch()`` is a private in-memory database (exports,
RE2 checks); ``re2_error`` asks DuckDB's RE2 whether a pattern compiles; ``copy_database`` copies
the whole database in one transaction into a new file (backups).
"""
from __future__ import annotations

import functools
import threading
import uuid
from pathlib import Path

import duckdb

from . import StoreBusyError
from ..kql.dialects.duckdb import runtime

DB_FILE = "netatlas.duckdb"
CHECKPOINT_THRESHOLD = "256MB"
VERSION = duckdb.__version__

Error = duckdb.Error
ConstraintException = duckdb.ConstraintException
InterruptException = duckdb.InterruptException
CatalogException = duckdb.CatalogException
Connection = duckdb.DuckDBPyConnection
# the store could not write (disk, lock, memory): answered 503 and retried, not a bad batch
STORAGE_ERRORS = (duckdb.IOException, duckdb.TransactionException, duckdb.FatalException,
                  duckdb.OutOfMemoryException)


def install_runtime(con: Connection) -> None:
    """The DuckDB dialect's macros and functions on one connection."""
    for name, body in runtime.MACROS.items():
        con.execute(f"CREATE OR REPLACE TEMP MACRO {name}{body}")
    for name, func, args, ret in runtime.UDFS:
        try:
            con.create_function(name, func, args, ret, null_handling="special", side_effects=False)
        except duckdb.CatalogException:
            pass


def scratch() -> Connection:
    """A private in-memory database in UTC (the caller closes it)."""
    con = duckdb.connect(":memory:")
    con.execute("SET TimeZone = 'UTC'")
    return con


_re2_lock = threading.Lock()
_re2: Connection | None = None


@functools.lru_cache(maxsize=1024)
def re2_error(pattern: str) -> str | None:
    """Why RE2 (DuckDB's regular expressions) rejects the pattern, or None when it compiles."""
    global _re2
    with _re2_lock:
        if _re2 is None:
            _re2 = duckdb.connect(":memory:")
        try:
            _re2.execute("SELECT regexp_matches('', ?)", [pattern]).fetchall()
        except duckdb.Error as e:
            return str(e).split("\n")[0].removeprefix("Invalid Input Error: ")
    return None


def copy_database(con: Connection, dest: Path, catalogue) -> dict:
    """Copy the database on ``con`` (a cursor of its own) to a new DuckDB file ``dest`` in one
    transaction; the rows per table and the batch ids the copy holds."""
    alias = f"netatlas_backup_{uuid.uuid4().hex[:8]}"
    source = con.execute("SELECT current_database()").fetchone()[0]
    target = "'" + str(dest).replace("'", "''") + "'"
    con.execute(f"ATTACH {target} AS {alias}")
    try:
        in_transaction(con, lambda c: c.execute(f"COPY FROM DATABASE {source} TO {alias}"))
        tables = {r[0] for r in con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_catalog = ? AND table_type = 'BASE TABLE'",
            [alias]).fetchall()}
        rows = {t: con.execute(f'SELECT count(*) FROM {alias}."{t}"').fetchone()[0]
                for t in catalogue.names() if t in tables}
        batches = [r[0] for r in con.execute(f"SELECT batch_id FROM {alias}._netatlas_batches ORDER BY batch_id").fetchall()]
        version = con.execute(f"SELECT value FROM {alias}._netatlas_meta WHERE \"key\" = 'schema_version'").fetchone()
    finally:
        con.execute(f"DETACH {alias}")
    return {"rows": rows, "batches": batches, "schema_version": int(version[0]) if version else 1}


def read_table(con: Connection, table: str, batch_rows: int = 1_000_000):
    """The rows of a table as Arrow record batches (a pyarrow RecordBatchReader), for copying a
    workspace into another store."""
    return con.sql(f'SELECT * FROM "{table}"').to_arrow_reader(batch_rows)


def fetch_arrow(con: Connection, sql: str, params: list | None = None):
    """The rows of a query as one pyarrow Table."""
    return con.sql(sql, params=params).to_arrow_table()


class DuckDBStore:
    """One DuckDB database (a file in ``path``, or in memory) and its session setup."""

    name = "duckdb"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            try:
                self.connection = duckdb.connect(str(self.path / DB_FILE))
            except duckdb.IOException as e:
                if "lock" in str(e).lower():
                    raise StoreBusyError(
                        f"the workspace in {self.path} is held by another process (a running "
                        f"'netatlas workspace serve'?); query it through its HTTP API or stop it first") from None
                raise
        else:
            self.connection = duckdb.connect(":memory:")
        self._cursor_lock = threading.Lock()
        self.connection.execute("SET TimeZone = 'UTC'")
        # Checkpoint when the write-ahead log reaches 256 MB rather than DuckDB's 16 MB: under a
        # steady stream of batches the small default rewrites the database every second or two.
        self.connection.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
        install_runtime(self.connection)

    def cursor(self) -> Connection:
        """A connection of its own to the database, set up as the main one."""
        with self._cursor_lock:
            cur = self.connection.cursor()
        cur.execute("SET TimeZone = 'UTC'")
        install_runtime(cur)
        return cur

    def execute(self, sql: str, params: list | None = None):
        return self.connection.execute(sql, params) if params is not None else self.connection.execute(sql)

    def interrupt(self, cursor: Connection) -> None:
        cursor.interrupt()

    def close(self) -> None:
        self.connection.close()


__all__ = ["DuckDBStore", "copy_database", "read_table", "DB_FILE", "Error", "ConstraintException", "InterruptException", "CatalogException",
           "STORAGE_ERRORS", "install_runtime", "scratch", "re2_error", "VERSION", "in_transaction"]


def in_transaction(con: Connection, fn, *args):
    """``fn(con, *args)`` in one transaction on ``con``: committed, or rolled back on any error (a
    COMMIT that failed has ended the transaction already: that ROLLBACK's own error is not raised)."""
    con.execute("BEGIN TRANSACTION")
    try:
        out = fn(con, *args)
        con.execute("COMMIT")
    except BaseException:
        try:
            con.execute("ROLLBACK")
        except duckdb.Error:
            pass
        raise
    return out
