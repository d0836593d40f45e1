"""Custom tables: the ``_CL`` tables a workspace creates itself, as Log Analytics does, for the
HTTP Data Collector API (a new Log-Type or field on first sight) and for the output streams of
data collection rules (``Custom-<Name>_CL``).

A custom table is a name ending in ``_CL`` (a letter first; letters, digits and ``_``; at most
100 characters before the suffix) with ``TimeGenerated`` and typed columns (at most ``MAX_COLUMNS``,
names of letters, digits and ``_``, a letter or ``_`` first, at most ``MAX_NAME`` characters).
Columns are only ever added: a column's type never changes (the Data Collector API gives a field
of another type a column of another suffix instead). The definitions live in the workspace's
database (``TABLE``) and join its catalogue when it opens (``Workspace.define_table``).
"""
from __future__ import annotations

import json
import re

from .catalogue import Table
from .errors import IngestError
from .kql import types as T

TABLE = "_netatlas_custom_tables"
SETUP_SQL = f'CREATE TABLE IF NOT EXISTS {TABLE} (name VARCHAR PRIMARY KEY, columns VARCHAR NOT NULL)'
MAX_COLUMNS = 500
MAX_NAME = 45
TABLE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,99}_CL")
COLUMN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_name(name: str) -> str:
    if not isinstance(name, str) or not TABLE_NAME.fullmatch(name):
        raise IngestError(f"{str(name)[:120]!r} is not a custom table's name: a letter, then letters, digits and _, "
                          f"ending in _CL (at most 100 characters before it)", code="CUSTOM_TABLE_NAME")
    return name


def merged(name: str, old: Table | None, columns: list[tuple[str, str]]) -> Table:
    """The table ``old`` (None: a new one) with ``columns`` added where missing; TimeGenerated first."""
    have = dict(old.columns) if old is not None else {"TimeGenerated": T.DATETIME}
    out = list(old.columns) if old is not None else [("TimeGenerated", T.DATETIME)]
    for col, typ in columns:
        if typ not in T.ALL:
            raise IngestError(f"{name}.{col}: unknown type {typ!r}; the types are {', '.join(sorted(T.ALL))}",
                              code="CUSTOM_TABLE_TYPE", field=col)
        if not isinstance(col, str) or not COLUMN_NAME.fullmatch(col) or len(col) > MAX_NAME:
            raise IngestError(f"{name}: {str(col)[:80]!r} is not a column name: letters, digits and _, a letter or _ "
                              f"first, at most {MAX_NAME} characters", code="CUSTOM_TABLE_COLUMN", field=str(col)[:80])
        if col in have:
            if have[col] != typ:
                raise IngestError(f"{name}.{col} is {have[col]}, not {typ}: a column's type never changes",
                                  code="CUSTOM_TABLE_TYPE", field=col)
            continue
        have[col] = typ
        out.append((col, typ))
    if len(out) > MAX_COLUMNS:
        raise IngestError(f"{name} would have {len(out)} columns; a custom table has at most {MAX_COLUMNS}",
                          code="CUSTOM_TABLE_COLUMNS")
    return Table(name, tuple(out))


def load(con) -> dict[str, Table]:
    con.execute(SETUP_SQL)
    return {name: Table(name, tuple((c, t) for c, t in json.loads(cols)))
            for name, cols in con.execute(f"SELECT name, columns FROM {TABLE} ORDER BY name").fetchall()}


def save(con, table: Table) -> None:
    con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?)", [table.name, json.dumps([list(c) for c in table.columns])])


__all__ = ["MAX_COLUMNS", "MAX_NAME", "TABLE", "check_name", "load", "merged", "save"]
