"""The store stage: where a workspace's tables live, behind one seam.

A store holds the catalogue's tables and the workspace's side tables (batches, usage, senders,
retention, keys, settings) and runs the SQL the compiler renders for its dialect. What a store
offers the workspace (``Store``, below) is what the rest of netatlas may ask of one; everything
that names an engine (its Python package, its exceptions, its session settings, how its dialect's
runtime is installed) lives in the store's own module here (``store/duckdb.py``), and no module
outside this package imports an engine's package (``tests/test_store_seam.py`` checks it).

``parse_spec(spec)`` reads the ``--store`` text: ``duckdb:DIR`` (or a bare directory, or None for
an in-memory database) is DuckDB, embedded, the default; ``chdb:DIR`` (or ``chdb``: in the
workspace's directory) is ClickHouse embedded through the chdb package (``store/chdb.py``, the
``[clickhouse]`` extra), holding the catalogue's tables while the workspace's own DuckDB database
keeps the side tables and stages each batch on its way there (``store/outbox.py``). Other engines
(``clickhouse://`` among them) are refused, saying which ones this build has.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol

from ..errors import StoreBusyError, StoreError




class Store(Protocol):
    """What the workspace asks of a store (DuckDB's answers are in store/duckdb.py)."""

    name: str                          # the dialect its SQL is rendered in (kql/dialects)
    path: Path | None                  # its directory, None in memory

    def cursor(self) -> Any:
        """A connection of its own to the same database, set up as the main one (one per thread
        that ingests, a pool of them for queries)."""

    def execute(self, sql: str, params: list | None = None) -> Any:
        """A short statement on the main connection (side tables, settings)."""

    def interrupt(self, cursor: Any) -> None:
        """Stop what ``cursor`` runs now (a query past its time limit, a client gone)."""

    def close(self) -> None:
        ...


STORES = ("duckdb", "chdb")            # the engines a workspace opens on (--store)


def copy_tables(workspace, target, tables=None) -> dict[str, int]:
    """Copy a DuckDB workspace's catalogue tables (all, or ``tables``; Usage as its hourly bytes)
    into another store whose tables exist (``target.append``), a million rows at a time; rows
    copied per table."""
    import pyarrow as pa
    from .duckdb import read_table
    copied = {}
    cur = workspace._new_cursor()
    try:
        # Usage is a view over the hourly bytes (ingest.USAGE_RAW), copied in its place
        for name in tables or workspace.catalogue.names():
            if name == "Usage":
                name = "_netatlas_usage"
            n = 0
            for batch in read_table(cur, name):
                if batch.num_rows:
                    target.append(name, pa.Table.from_batches([batch]))
                    n += batch.num_rows
            copied[name] = n
    finally:
        cur.close()
    return copied


def parse_spec(spec: str | os.PathLike | None) -> tuple[str, Path | None]:
    """(engine, directory) of a ``--store`` text; a bare path is DuckDB's."""
    if spec is None:
        return "duckdb", None
    text = os.fspath(spec)
    engine, sep, rest = text.partition(":")
    if sep and engine in STORES:
        return engine, Path(rest) if rest else None
    if text in STORES:                                      # "chdb": in the workspace's directory
        return text, None
    if sep and engine.isalpha() and len(engine) > 1:        # "chdb:DIR", "clickhouse://..."
        raise StoreError(f"unknown store {engine!r} in {text!r}: this build has {', '.join(STORES)} "
                         f"(duckdb:DIR or a directory, chdb:DIR)")
    return "duckdb", Path(text)


def open_store(spec: str | os.PathLike | None):
    """The store a ``--store`` text names (see the module doc)."""
    engine, path = parse_spec(spec)
    from .duckdb import DuckDBStore
    return DuckDBStore(path)


__all__ = ["Store", "StoreError", "StoreBusyError", "STORES", "open_store", "parse_spec", "copy_tables"]
