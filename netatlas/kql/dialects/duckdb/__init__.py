"""DuckDB: the embedded default store. The planner's vocabulary is DuckDB's spelling, so nothing
is rewritten; the text comes from the fast printer (``printer.py`` here), which prints what
sqlglot's DuckDB generator would, and the runtime (``runtime.py``) is installed by
``store/duckdb.py``."""
from __future__ import annotations

from ..base import Dialect
from . import runtime
from .printer import to_sql

DUCKDB = Dialect("duckdb", "duckdb", printer=to_sql, runtime=runtime, flags={"materialized_cte": True})
