"""The outbox: batches on their way from the workspace's DuckDB database to the store that holds
the catalogue's tables elsewhere (ClickHouse: ``--store chdb``).

With another store, the workspace's DuckDB database still does everything ingestion does in one
transaction (the batch ids that make a retry a duplicate, the hourly Usage bytes, the senders,
the enrichment's SQL), but the rows go to an outbox table beside each catalogue table
(``_outbox_T``: T's columns and ``__group``, the id of the transaction that wrote them), and the
Usage bytes to ``_outbox__netatlas_usage``. Once that transaction commits, the batch is
acknowledged only after ``forward`` has moved the group: its rows read as Arrow, appended to the
store with the group id as the store's deduplication token (``append(..., batch_id=group)``),
then deleted from the outbox. So a batch is never lost and never stored twice:

- killed before the commit: nothing of the batch was acknowledged; the agent sends it again;
- killed after the commit, before or during the append: the rows wait in the outbox, and the
  next open of the workspace (``Outbox.open``), or the next forward of any group, sends them;
- killed after the append, before the delete: sent again with the same token, which the store
  stores once (ClickHouse's ``insert_deduplication_token``);
- a store that refuses the append (down, full): the rows stay, the batch is acknowledged (its
  rows are durable here), and the next batch's forward sends them too (``behind``, ``flush``).
"""
from __future__ import annotations

import logging
import threading
import uuid

from . import duckdb as db

log = logging.getLogger("netatlas.outbox")

PREFIX = "_outbox_"
GROUP = "__group"
USAGE_RAW = "_netatlas_usage"       # ingest.USAGE_RAW: the hourly bytes behind the Usage view


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class Outbox:
    """The outbox tables of one workspace's DuckDB database and the store they drain into."""

    def __init__(self, target, tables: dict[str, list[tuple[str, str]]]):
        """``target``: the store (``append(table, arrow, batch_id)``); ``tables``: name -> its columns
        as (name, SQL type) in DuckDB's types, the Usage bytes table among them."""
        self.target = target
        self.tables = tables
        self._lock = threading.Lock()          # one flush at a time (forwards of one group run beside it)
        self.behind = False                    # a forward failed: groups wait for the next one

    @staticmethod
    def group() -> str:
        """The id of a new group (one ingestion transaction)."""
        return uuid.uuid4().hex

    def insert(self, table: str, select: str, group: str) -> str:
        """The INSERT that stages ``select`` (the table's columns in order) as ``group``'s rows."""
        return f"INSERT INTO {_q(PREFIX + table)} SELECT *, '{group}' FROM ({select})"

    def open(self, con) -> int:
        """At the workspace's open: every group a stopped process left is forwarded, then the
        outbox tables are made anew with the catalogue's columns of today; rows forwarded."""
        existing = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                              "WHERE table_name LIKE '\\_outbox\\_%' ESCAPE '\\'").fetchall()}
        sent = self.flush(con, [t for t in self.tables if PREFIX + t in existing])
        for name, cols in self.tables.items():
            if PREFIX + name in existing:
                con.execute(f"DROP TABLE {_q(PREFIX + name)}")
            body = ", ".join(f"{_q(c)} {t}" for c, t in cols)
            con.execute(f"CREATE TABLE {_q(PREFIX + name)} ({body}, {_q(GROUP)} VARCHAR)")
        return sent

    def forward(self, con, group: str, tables=None) -> int:
        """Move one group's rows (of ``tables``, default all) to the store; rows sent."""
        sent = 0
        for name in tables or self.tables:
            box = _q(PREFIX + name)
            rows = db.fetch_arrow(con, f"SELECT * EXCLUDE ({_q(GROUP)}) FROM {box} WHERE {_q(GROUP)} = ?", [group])
            if rows.num_rows:
                self.target.append(name, rows, batch_id=group)
                con.execute(f"DELETE FROM {box} WHERE {_q(GROUP)} = ?", [group])
                sent += rows.num_rows
        return sent

    def forward_quietly(self, con, group: str, tables=None) -> int:
        """``forward``, logging a store's refusal instead of raising it: the rows are durable here
        and ``flush`` sends them later."""
        try:
            sent = self.forward(con, group, tables)
        except Exception as e:                  # the store is down or refused: keep them, say so
            self.behind = True
            log.warning("STORE_UNAVAILABLE: group %s waits in the outbox: %s", group, str(e).split("\n")[0])
            return 0
        if self.behind:                         # the store is back: what waits goes now
            self.behind = False
            try:
                sent += self.flush(con)
            except Exception as e:
                self.behind = True
                log.warning("STORE_UNAVAILABLE: the outbox still waits: %s", str(e).split("\n")[0])
        return sent

    def flush(self, con, tables=None) -> int:
        """Forward every group waiting (of ``tables``, default all); rows sent."""
        sent = 0
        with self._lock:
            for name in tables if tables is not None else self.tables:
                groups = [r[0] for r in con.execute(f"SELECT DISTINCT {_q(GROUP)} FROM {_q(PREFIX + name)}").fetchall()]
                for g in groups:
                    sent += self.forward(con, g, [name])
        return sent

    def waiting(self, con) -> int:
        """Rows in the outbox now."""
        return sum(con.execute(f"SELECT count(*) FROM {_q(PREFIX + name)}").fetchone()[0] for name in self.tables)


__all__ = ["Outbox", "PREFIX", "GROUP"]
