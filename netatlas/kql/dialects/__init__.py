"""Dialects: how a Plan's SQL is rendered for a store (``base.py`` says what one is).

``DIALECTS[name]`` is the dialect a store's SQL is rendered in: ``duckdb`` (the embedded
default; ``duckdb/``) and ``clickhouse`` (``clickhouse/``: chdb and ClickHouse servers).
"""
from __future__ import annotations

from .base import Dialect
from .clickhouse import CLICKHOUSE
from .duckdb import DUCKDB

DIALECTS: dict[str, Dialect] = {"duckdb": DUCKDB, "clickhouse": CLICKHOUSE}

__all__ = ["DIALECTS", "Dialect"]
