"""Dialects: how a Plan's SQL is rendered for a store.

A dialect is a few flags plus overrides. ``DIALECTS[name]`` gives the sqlglot dialect used to
render, and ``rewrite(sql_tree)`` for the small differences (function names, literal forms).
DuckDB is the default; ClickHouse comes as another small file.
"""
from __future__ import annotations

from .duckdb import DUCKDB

DIALECTS = {"duckdb": DUCKDB}
