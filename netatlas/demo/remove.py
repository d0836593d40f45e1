"""``netatlas demo remove``: the simulated machines' records out of a workspace that holds real ones.

Every table with a machine column (``machine_column``: Machine, the ServiceMap tables' resource
names, else Computer) loses the rows of the marker's machines; their bytes leave ``Usage`` (the
hourly byte counts are rewritten without them) and VMConnection's hourly rollup is made again for
the hours they were in (rollup.py); the demo's threat-intelligence feed, its batch ids
and its NAT senders go too. Rows of other machines are not touched. The marker stays, saying the
demo was removed, so ``up`` neither loads it again nor goes on with it.
"""
from __future__ import annotations

from datetime import datetime

from .. import ingest, rollup
from ..catalogue import Table
from ..store.duckdb import in_transaction

# tables whose machine column is not Machine
MACHINE_COLUMN = {"ServiceMapComputer_CL": "ResourceName_s", "ServiceMapProcess_CL": "MachineResourceName_s"}


def machine_column(table: Table) -> tuple[str, str] | None:
    """(column, "id" or "name") naming a table's machine, or None for a table without one."""
    cols = table.column_types
    if table.name in MACHINE_COLUMN:
        return MACHINE_COLUMN[table.name], "id"
    if "Machine" in cols:
        return "Machine", "id"
    if "Computer" in cols:
        return "Computer", "name"
    return None


def delete_records(ws, marker, since: datetime | None = None) -> dict[str, int]:
    """Delete the marker's machines' rows (from ``since`` on, when given) from every table, with
    their Usage bytes, in one transaction; returns rows deleted per table."""
    ids, names = list(marker.machine_ids), list(marker.computers)
    if not ids:
        return {}
    if getattr(ws, "remote", None) is not None:
        return _delete_in_store(ws, ids, names, since)
    deleted = {}

    def delete(con):
        for table in ws.catalogue.tables.values():
            if table.name == ingest.USAGE or (which := machine_column(table)) is None:
                continue
            column, kind = which
            where = f'"{column}" IN (SELECT unnest(?::VARCHAR[]))'
            params: list = [ids if kind == "id" else names]
            if since is not None:
                where += ' AND "TimeGenerated" >= ?'
                params.append(since.replace(tzinfo=None))
            size = "_BilledSize" if "_BilledSize" in table.column_types else \
                ingest.record_size_sql(table, empty_strings_absent=True)
            hours = con.execute(f'SELECT date_trunc(\'hour\', TimeGenerated) AS h, CAST(sum({size}) AS BIGINT) '
                                f'FROM "{table.name}" WHERE {where} GROUP BY h', params).fetchall()
            if not hours:
                continue
            n = con.execute(f'DELETE FROM "{table.name}" WHERE {where}', params).fetchone()[0]
            deleted[table.name] = n
            _unbill(con, table.name, hours)
            if table.name == rollup.SOURCE:             # its hourly rollup, from the rows left
                rollup.rebuild(con, [h for h, _ in hours])
        con.execute("DELETE FROM _netatlas_senders WHERE Machine IN (SELECT unnest(?::VARCHAR[]))", [ids])
    with ws._lock, ws._rollup_lock:
        in_transaction(ws.connection, delete)
    return deleted


def _delete_in_store(ws, ids: list[str], names: list[str], since: datetime | None) -> dict[str, int]:
    """``delete_records`` where the tables live in another store (ClickHouse): the rows go, and
    the bytes they were billed leave Usage, as on DuckDB."""
    deleted = {}
    store = ws.remote.store
    for table in ws.catalogue.tables.values():
        if table.name == ingest.USAGE or (which := machine_column(table)) is None:
            continue
        column, kind = which
        values = ids if kind == "id" else names
        if "_BilledSize" in table.column_types:
            hours = store.billed_hours(table.name, column, values, since)
        else:                                   # sized as ingestion sized them, by DuckDB
            hours = _sized_hours(ws, table, store.select(table.name, column, values, since))
        if n := store.delete(table.name, column, values, since):
            deleted[table.name] = n
            store.unbill(table.name, hours)
    with ws._lock:
        ws.connection.execute("DELETE FROM _netatlas_senders WHERE Machine IN (SELECT unnest(?::VARCHAR[]))", [ids])
    return deleted


def _sized_hours(ws, table: Table, rows) -> list[tuple]:
    """[(hour, bytes)] of ``rows`` (Arrow, the table's columns) sized as ingestion sizes a record
    of a table without _BilledSize (``ingest.record_size_sql`` over the columns as DuckDB keeps them)."""
    if not rows.num_rows:
        return []
    from ..kql import types as T
    cols = ", ".join(f'CAST("{c}" AS {T.storage_sql(t)}) AS "{c}"' for c, t in table.columns if c in rows.column_names)
    size = ingest.record_size_sql(table, empty_strings_absent=True)
    with ws._lock:
        con = ws.connection
        con.register("__gone", rows)
        try:
            return con.execute(f"SELECT date_trunc('hour', TimeGenerated) AS h, CAST(sum({size}) AS BIGINT) "
                               f"FROM (SELECT {cols} FROM __gone) GROUP BY h").fetchall()
        finally:
            con.unregister("__gone")


def _unbill(con, table: str, hours: list[tuple]) -> None:
    """Take ``hours`` [(hour, bytes)] of a table out of Usage's byte counts: each hour's rows are
    replaced by one holding what is left (none when nothing is)."""
    raw = ingest.USAGE_RAW
    con.execute("CREATE OR REPLACE TEMP TABLE __unbill (hour TIMESTAMP, bytes BIGINT)")
    con.executemany("INSERT INTO __unbill VALUES (?, ?)", hours)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE __kept AS
        SELECT u.hour, u.DataType, any_value(u.Solution) AS Solution, sum(u.bytes) - any_value(x.bytes) AS bytes
        FROM {raw} u JOIN __unbill x ON u.hour = x.hour WHERE u.DataType = ? GROUP BY u.hour, u.DataType""", [table])
    con.execute(f"DELETE FROM {raw} WHERE DataType = ? AND hour IN (SELECT hour FROM __unbill)", [table])
    con.execute(f"INSERT INTO {raw} SELECT hour, DataType, Solution, bytes FROM __kept WHERE bytes > 0")
    con.execute("DROP TABLE __unbill")
    con.execute("DROP TABLE __kept")


def remove(ws, marker) -> dict[str, int]:
    """Everything of the demo (above); returns rows deleted per table."""
    from .pipeline import SAMPLE_SOURCE
    deleted = delete_records(ws, marker)
    ws.import_indicators([], SAMPLE_SOURCE)
    with ws._lock:
        ws.connection.execute(f"DELETE FROM {ingest.BATCHES} WHERE batch_id LIKE 'demo-%'")
    return deleted
