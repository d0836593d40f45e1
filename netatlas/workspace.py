"""The workspace: a DuckDB database holding every catalogue table, with ingest and query."""
from __future__ import annotations

import os
import threading
import time
from datetime import datetime
from pathlib import Path

import duckdb

from . import kql
from .catalogue import Catalogue
from .errors import IngestError, KqlError, QueryExecutionError, QueryLimitError
from .ingest import validate
from .kql import runtime
from .kql import types as T
from .kql.values import convert_rows
from .result import Result

DB_FILE = "netatlas.duckdb"
DEFAULT_TIMEOUT = 60.0


class Workspace:
    def __init__(self, path: str | os.PathLike | None = None, catalogue: Catalogue | None = None):
        self.catalogue = catalogue or Catalogue.load()
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
            self.connection = duckdb.connect(str(self.path / DB_FILE))
        else:
            self.connection = duckdb.connect(":memory:")
        self._lock = threading.RLock()
        runtime.install(self.connection)
        self._create_tables()

    def _create_tables(self) -> None:
        with self._lock:
            for table in self.catalogue.tables.values():
                cols = ", ".join(f'"{c}" {T.storage_sql(t)}' for c, t in table.columns)
                self.connection.execute(f'CREATE TABLE IF NOT EXISTS "{table.name}" ({cols})')

    # ---- ingest -------------------------------------------------------------------------------
    def ingest(self, table: str, records: list[dict]) -> int:
        """Validate records against the table's schema and append them, all or nothing."""
        t = self.catalogue.get(table)
        if t is None:
            from .errors import did_you_mean
            hint = did_you_mean(table, self.catalogue.names())
            raise IngestError(f"unknown table '{table}'" + (f"; {hint}" if hint else ""), code="INGEST_UNKNOWN_TABLE")
        rows = validate(t, records)
        if not rows:
            return 0
        marks = ", ".join("?" for _ in t.columns)
        with self._lock:
            con = self.connection
            con.execute("BEGIN TRANSACTION")
            try:
                con.executemany(f'INSERT INTO "{t.name}" VALUES ({marks})', rows)
                con.execute("COMMIT")
            except Exception:
                con.execute("ROLLBACK")
                raise
        return len(rows)

    # ---- query --------------------------------------------------------------------------------
    def compile(self, text: str, *, params: dict | None = None, now: datetime | None = None,
                max_rows: int | None = kql.DEFAULT_MAX_ROWS) -> kql.Compiled:
        return kql.compile(text, self.catalogue, params=params, now=now, executor=self._run_helper,
                           max_rows=None if max_rows is None else max_rows + 1)

    def _run_helper(self, sql: str) -> list[tuple]:
        with self._lock:
            return self.connection.execute(sql).fetchall()

    def query(self, text: str, *, params: dict | None = None, now: datetime | None = None,
              timeout: float = DEFAULT_TIMEOUT, max_rows: int = kql.DEFAULT_MAX_ROWS) -> Result:
        """Run a KQL query; raises KqlError for mistakes in the text, QueryLimitError past the time limit."""
        t0 = time.perf_counter()
        compiled = self.compile(text, params=params, now=now, max_rows=max_rows)
        t1 = time.perf_counter()
        with self._lock:
            timer = threading.Timer(timeout, self.connection.interrupt)
            timer.start()
            try:
                raw = self.connection.execute(compiled.sql).fetchall()
            except duckdb.InterruptException:
                raise QueryLimitError(f"the query ran longer than its time limit of {timeout:g} s") from None
            except duckdb.Error as e:
                raise QueryExecutionError(f"the query could not run: {_clean(e)}") from None
            finally:
                timer.cancel()
        t2 = time.perf_counter()
        truncated = len(raw) > max_rows
        if truncated:
            raw = raw[:max_rows]
        rows = convert_rows(raw, compiled.types)
        t3 = time.perf_counter()
        timings = dict(compiled.timings, compile=t1 - t0, execute=t2 - t1, convert=t3 - t2)
        return Result(compiled.columns, compiled.types, rows, compiled.render, truncated, compiled.sql, timings)

    def close(self) -> None:
        with self._lock:
            self.connection.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _clean(e: Exception) -> str:
    msg = str(e).split("\n")[0]
    for prefix in ("Conversion Error: ", "Invalid Input Error: ", "Binder Error: ", "Out of Range Error: "):
        msg = msg.replace(prefix, "")
    return msg


def connect(path: str | os.PathLike | None = None) -> Workspace:
    """Open a workspace: in memory, or stored in a directory (DuckDB file inside)."""
    return Workspace(path)
