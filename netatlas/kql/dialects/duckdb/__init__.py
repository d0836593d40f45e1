"""DuckDB: the embedded default store. Nothing is rewritten: the planner's typed nodes print as
sqlglot's DuckDB generator prints them, and its vocabulary's calls are DuckDB functions of other
names (``spellings.py``). The text comes from the fast printer (``printer.py`` here), which spells
them and prints what sqlglot's DuckDB generator would; the runtime (``runtime.py``) is installed by
``store/duckdb.py``."""
from __future__ import annotations

from ..base import Dialect
from . import runtime
from .printer import to_sql
from .spellings import SPELLINGS

DUCKDB = Dialect("duckdb", "duckdb", spellings=SPELLINGS, printer=to_sql, runtime=runtime, flags={"materialized_cte": True, "row_id": "rowid"})
