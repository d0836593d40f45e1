"""ClickHouse embedded through chdb: everything that names the chdb package."""
from __future__ import annotations

import threading
from pathlib import Path

import chdb

from ..kql.dialects.clickhouse import runtime

VERSION = chdb.__version__
ENGINE_VERSION = getattr(chdb, "engine_version", "")
Error = chdb.ChdbError if hasattr(chdb, "ChdbError") else RuntimeError

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


def install_runtime(con) -> None:
    for name, body in runtime.FUNCTIONS.items():
        con.query(f"CREATE OR REPLACE FUNCTION {name} AS {body}")


class ChdbStore:
    """One chdb database (a directory, or in memory)."""

    name = "clickhouse"

    def __init__(self, path: str | Path | None = None):
        self.path = Path(path) if path is not None else None
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        self.connection = chdb.connect(str(self.path / "chdb") if self.path is not None else ":memory:")
        self._lock = threading.Lock()
        for k, v in SETTINGS.items():
            self.connection.query(f"SET {k} = {v}")
        install_runtime(self.connection)

    def fetch(self, sql: str) -> list[tuple]:
        """All rows of a query, as Python values in the shapes the DuckDB store gives."""
        with self._lock:
            table = self.connection.query(sql, "ArrowTable")
        cols = [c.to_pylist() for c in table.columns]
        return list(zip(*cols)) if cols else []

    def execute(self, sql: str):
        with self._lock:
            return self.connection.query(sql)

    def close(self) -> None:
        self.connection.close()


__all__ = ["ChdbStore", "VERSION", "Error", "install_runtime"]
