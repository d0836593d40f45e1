"""Migrate stage: bring a workspace's database to the schema this code uses, when it opens.

The database records its schema version in ``_netatlas_meta`` (key ``schema_version``). A
database without that table but with netatlas's tables is version 1: the schema of the releases
before versions were recorded. ``upgrade`` runs, in one transaction, every step of
``MIGRATIONS`` from the stored version to ``SCHEMA_VERSION``, then creates the catalogue's
tables and side tables that are missing (``create``), adds catalogue columns missing from tables
that exist (a newer release's columns: strings as '', the rest null, for the rows already
there), and stores the version. Every step is idempotent; a failure rolls all of it back and
leaves the file as it was. A database of a newer version than this code knows is refused
(``SchemaVersionError``): opening it could lose what the newer release stores.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .catalogue import Catalogue
from .errors import SchemaVersionError
from .kql import types as T
from .store.duckdb import in_transaction

SCHEMA_VERSION = 3
META = "_netatlas_meta"
# a table every version of the schema has: its presence tells an old database from a new file
V1_MARKER = "_netatlas_batches"


@dataclass(frozen=True)
class Migration:
    """One step: from version ``source`` to ``source + 1``."""
    source: int
    does: str
    run: Callable[[object, Catalogue], None]


def _create_meta(con) -> None:
    con.execute(f'CREATE TABLE IF NOT EXISTS {META} ("key" VARCHAR PRIMARY KEY, value VARCHAR)')


def _v1_to_v2(con, catalogue: Catalogue) -> None:
    _create_meta(con)
    # workspaces from before Usage became a view held it as a table of derived data
    kind = con.execute("SELECT table_type FROM information_schema.tables WHERE table_name = 'Usage' "
                       "AND table_schema = 'main'").fetchone()
    if kind and kind[0] == "BASE TABLE":
        con.execute('DROP TABLE "Usage"')


def _v2_to_v3(con, catalogue: Catalogue) -> None:
    from . import rollup
    for sql in rollup.SETUP_SQL:
        con.execute(sql)
    if con.execute("SELECT 1 FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'",
                   [rollup.SOURCE]).fetchone():
        rollup.rebuild(con)


# stored version -> the step to the next one
MIGRATIONS: dict[int, Migration] = {
    1: Migration(1, "record the schema version in _netatlas_meta; Usage becomes a view", _v1_to_v2),
    2: Migration(2, "VMConnection's hourly rollup for the map (rollup.py), built from its rows", _v2_to_v3),
}


@dataclass
class Upgrade:
    """What ``upgrade`` found and did."""
    found: int | None            # the stored version; None for a new database
    version: int                 # the version now
    steps: list[str]             # the migrations run, in order
    added_columns: list[str]     # "Table.Column" added from the catalogue

    @property
    def changed(self) -> bool:
        return bool(self.steps or self.added_columns)


def stored_version(con) -> int | None:
    """The database's schema version; 1 for a database of the releases before versions were
    recorded; None for a new, empty one."""
    tables = {r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
    if META in tables:
        row = con.execute(f"SELECT value FROM {META} WHERE \"key\" = 'schema_version'").fetchone()
        if row is not None:
            try:
                return int(row[0])
            except ValueError:
                raise SchemaVersionError(f"the workspace's schema version is not a number: {row[0]!r}") from None
    return 1 if V1_MARKER in tables else None


def add_missing_columns(con, catalogue: Catalogue) -> list[str]:
    """ALTER TABLE ADD COLUMN for every catalogue column missing from a table that exists."""
    have: dict[str, set[str]] = {}
    for table, column in con.execute("SELECT table_name, column_name FROM information_schema.columns "
                                     "WHERE table_schema = 'main'").fetchall():
        have.setdefault(table, set()).add(column)
    added = []
    for table in catalogue.tables.values():
        if table.name not in have or table.name == "Usage":
            continue
        for column, typ in table.columns:
            if column in have[table.name]:
                continue
            default = " DEFAULT ''" if typ == T.STRING else ""      # KQL strings are never null
            con.execute(f'ALTER TABLE "{table.name}" ADD COLUMN "{column}" {T.storage_sql(typ)}{default}')
            added.append(f"{table.name}.{column}")
    return added


def upgrade(con, catalogue: Catalogue, create: Callable[[], None]) -> Upgrade:
    """Migrate the database on ``con`` to SCHEMA_VERSION in one transaction; ``create`` makes
    every table the workspace needs that is missing (CREATE ... IF NOT EXISTS)."""
    found = stored_version(con)
    if found is not None and found > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the workspace was written by a newer netatlas (schema version {found}; this netatlas knows "
            f"versions up to {SCHEMA_VERSION}): upgrade netatlas, or restore a backup made by this version")

    def run(con):
        steps = []
        version = found or SCHEMA_VERSION
        while version < SCHEMA_VERSION:
            step = MIGRATIONS[version]
            step.run(con, catalogue)
            steps.append(f"{version} -> {version + 1}: {step.does}")
            version += 1
        _create_meta(con)               # a new database has none yet
        create()
        added = add_missing_columns(con, catalogue)
        con.execute(f"INSERT OR REPLACE INTO {META} VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
        return Upgrade(found, SCHEMA_VERSION, steps, added)
    return in_transaction(con, run)
