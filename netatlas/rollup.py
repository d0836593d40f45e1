"""Rollup stage: VMConnection's hourly sums per connection key, kept beside its rows for the map.

The map folds a range's VMConnection records per (Process, Direction, RemoteIp, DestinationPort)
(``webmap.FOLD``); a busy fleet's day is 5M records, and summing them was most of the map's time.
``TABLE`` holds the same sums per hour: one row per hour and key (Machine, Computer, Process,
ProcessName, Direction, RemoteIp, DestinationPort: the fold's key and what the map filters and
names by) with the records' sums (``Links`` ... ``ResponseTime``), their count, the malicious
ones, the latest record's time and ``LinksLive``, and the greatest DNS name and country. A day of
the busy fleet is about 420,000 of them. The map reads the range's whole hours here and only its
partial first and last hours from VMConnection (``webmap.CONNECTIONS``).

The rollup always equals what VMConnection's rows give, because every change of VMConnection's
rows changes it in the same transaction:

- **ingestion** (``ingest.store``, ``commit.store_group``) adds each batch's sums per hour and key
  (``add``): rows only appended, so concurrent batches never conflict; and notes the hours
  touched in ``PENDING``;
- **compaction** (``compact``: the server's schedule, every ``COMPACT_SECONDS``) merges a closed
  hour's rows, one per key: in one transaction it deletes the rows it read and inserts their
  merge; a batch committed meanwhile added rows that transaction does not see, so they stay;
- **deletion** (retention, ``demo remove``) rebuilds the hours it touched from the rows left
  (``rebuild``): the hours' rollup rows are replaced by the sums of their remaining records.

A store other than DuckDB (ClickHouse) keeps no rollup: the map reads VMConnection there. A sum
past a long's range (only a hostile batch gets there: 9.2e18 bytes in an hour) is kept as null
rather than refusing the batch.
"""
from __future__ import annotations

import importlib.util
from datetime import datetime, timedelta, timezone

import numpy as np

from .store.duckdb import in_transaction

TABLE = "_netatlas_vmconnection_hourly"
PENDING = "_netatlas_vmconnection_pending"      # hours whose rollup rows may not be merged yet
SOURCE = "VMConnection"
COMPACT_SECONDS = 300                           # the server's compaction pass, every 5 minutes
COMPACT_HOURS = 48                              # at most this many hours merged a pass
HAVE_ARROW = importlib.util.find_spec("pyarrow") is not None     # optional (the clickhouse extra)

KEYS = (("Machine", "string"), ("Computer", "string"), ("Process", "string"), ("ProcessName", "string"),
        ("Direction", "string"), ("RemoteIp", "string"), ("DestinationPort", "int"))
# (column, KQL type, SQL over VMConnection's rows, SQL merging rollup rows, Arrow's aggregate of a
# batch: (its input column, the aggregate), ``summed``)
MEASURES = (
    ("Links", "long", "sum(LinksEstablished)", "sum(Links)", ("LinksEstablished", "sum")),
    ("Failed", "long", "sum(LinksFailed)", "sum(Failed)", ("LinksFailed", "sum")),
    ("Sent", "long", "sum(BytesSent)", "sum(Sent)", ("BytesSent", "sum")),
    ("Received", "long", "sum(BytesReceived)", "sum(Received)", ("BytesReceived", "sum")),
    ("Responses", "long", "sum(Responses)", "sum(Responses)", ("Responses", "sum")),
    ("ResponseTime", "long", "sum(ResponseTimeSum)", "sum(ResponseTime)", ("ResponseTimeSum", "sum")),
    ("Records", "long", "count(*)", "sum(Records)", ((), "count_all")),
    ("Malicious", "long", "count(*) FILTER (WHERE MaliciousIp <> '')", "sum(Malicious)", ("__malicious", "sum")),
    ("Last", "datetime", "max(TimeGenerated)", "max(Last)", ("TimeGenerated", "max")),
    ("LinksLive", "long", "arg_max_null(LinksLive, TimeGenerated)", "arg_max_null(LinksLive, Last)",
     ("LinksLive", "last")),          # of the rows sorted by time, nulls kept: the latest record's
    ("Dns", "string", "max(RemoteDnsQuestions)", "max(Dns)", ("RemoteDnsQuestions", "max")),
    ("Country", "string", "max(RemoteCountry)", "max(Country)", ("RemoteCountry", "max")),
)
COLUMNS = (("TimeGenerated", "datetime"),) + KEYS + tuple((c, t) for c, t, *_ in MEASURES)
# the VMConnection columns ``add`` reads from a batch's rows
READS = ("TimeGenerated", "Machine", "Computer", "Process", "ProcessName", "Direction", "RemoteIp",
         "DestinationPort", "LinksEstablished", "LinksFailed", "BytesSent", "BytesReceived", "Responses",
         "ResponseTimeSum", "MaliciousIp", "LinksLive", "RemoteDnsQuestions", "RemoteCountry")

_SQL_TYPES = {"string": "VARCHAR", "int": "INTEGER", "long": "BIGINT", "datetime": "TIMESTAMP"}
_KEYS = ", ".join(f'"{c}"' for c, _ in KEYS)


def _fit(sql: str, typ: str) -> str:
    """A sum as the column keeps it: a long past its range is null (see the module doc)."""
    return f"TRY_CAST({sql} AS BIGINT)" if typ == "long" and sql.startswith("sum(") else sql


SETUP_SQL = [
    f"CREATE TABLE IF NOT EXISTS {TABLE} ({', '.join(f'{chr(34)}{c}{chr(34)} {_SQL_TYPES[t]}' for c, t in COLUMNS)})",
    f"CREATE TABLE IF NOT EXISTS {PENDING} (hour TIMESTAMP)",
]


def _rolled(source: str, where: str = "") -> str:
    """SELECT of ``source``'s VMConnection rows summed per hour and key."""
    measures = ", ".join(f"{_fit(raw, t)} AS \"{c}\"" for c, t, raw, _, _ in MEASURES)
    return (f"SELECT date_trunc('hour', TimeGenerated) AS TimeGenerated, {_KEYS}, {measures} FROM {source}"
            f"{' WHERE ' + where if where else ''} GROUP BY ALL")


def _merged(where: str) -> str:
    """SELECT of the rollup's rows matching ``where`` merged, one per hour and key."""
    measures = ", ".join(f"{_fit(merge, t)} AS \"{c}\"" for c, t, _, merge, _ in MEASURES)
    return f"SELECT TimeGenerated, {_KEYS}, {measures} FROM {TABLE} WHERE {where} GROUP BY ALL"


def add(con, rows, name: str = "__rollup_batch") -> None:
    """In the caller's transaction: a batch's VMConnection rows as stored (``stored``: ``READS`` at
    least) summed per hour and key into the rollup, and their hours noted as pending compaction.
    With pyarrow the sums are made in Arrow (``summed``: a quarter of what planning the same GROUP
    BY in DuckDB costs a group commit), else by DuckDB over the numpy columns (``_rolled``)."""
    if not len(column(rows, "TimeGenerated")):
        return
    partial = None if isinstance(rows, dict) else summed(rows)
    if partial is not None:
        con.from_arrow(partial).insert_into(TABLE)          # its columns in COLUMNS' order
    else:
        con.register(name, rows)
        try:
            con.execute(f"INSERT INTO {TABLE} {_rolled(name)}")
        finally:
            con.unregister(name)
    times = np.asarray(column(rows, "TimeGenerated"), dtype="datetime64[us]")
    con.execute(f"INSERT INTO {PENDING} SELECT unnest(?::TIMESTAMP[])",
                [np.unique(times.astype("datetime64[h]")).tolist()])


def stored(result):
    """A ``RETURNING`` result's rows: an Arrow table where pyarrow is installed (the clickhouse
    extra), else numpy columns (a dict)."""
    return result.to_arrow_table() if HAVE_ARROW else result.fetchnumpy()


def column(rows, name: str) -> np.ndarray:
    """One column of ``stored``'s rows as numpy."""
    return rows[name] if isinstance(rows, dict) else rows.column(name).to_numpy()


# the batch's columns Arrow sums: no sum can pass a long while rows x the largest value stays below
SUMMED = tuple(source for _, _, _, _, (source, agg) in MEASURES if agg == "sum" and source in READS)
SAFE_SUM = 2.0 ** 62


def summed(rows):
    """A batch's rows summed per hour and key as ``MEASURES`` sums them in SQL (``_rolled``), in
    Arrow (each measure's aggregate of its input); None when a sum might pass a long's range (a
    hostile batch: DuckDB's TRY_CAST keeps it as null then)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    n = rows.num_rows
    for source in SUMMED:
        largest = pc.max(pc.abs(pc.cast(rows.column(source), pa.float64(), safe=False))).as_py()
        if largest is not None and largest * n >= SAFE_SUM:
            return None
    t = rows.select(list(READS)).sort_by("TimeGenerated")
    t = t.append_column("__hour", pc.floor_temporal(t.column("TimeGenerated"), unit="hour"))
    t = t.append_column("__malicious", pc.cast(pc.not_equal(t.column("MaliciousIp"), ""), pa.int64()))
    keys = ["__hour"] + [k for k, _ in KEYS]
    g = t.group_by(keys, use_threads=False).aggregate(
        [(list(source) if isinstance(source, tuple) else source, agg,
          pc.ScalarAggregateOptions(skip_nulls=False) if agg == "last" else None)
         for _, _, _, _, (source, agg) in MEASURES])
    named = {"TimeGenerated": "__hour", **{k: k for k, _ in KEYS},
             **{c: agg if isinstance(source, tuple) else f"{source}_{agg}"
                for c, _, _, _, (source, agg) in MEASURES}}
    return pa.table({c: g.column(named[c]) for c, _ in COLUMNS})


def returning() -> str:
    """The RETURNING list that gives ``add`` a batch's rows as stored (enriched)."""
    return ", ".join(f'"{c}"' for c in READS)


def rebuild(con, hours: list[datetime] | str | None = None) -> int:
    """In the caller's transaction: the rollup's rows of ``hours`` (a list, or the name of a table
    of them in a column ``hour``; all of them for None) replaced by the sums of VMConnection's rows
    in those hours (after a deletion, or to build it); returns the rows now in those hours."""
    if hours is None:
        con.execute(f"DELETE FROM {TABLE}")
        con.execute(f"DELETE FROM {PENDING}")
        return con.execute(f"INSERT INTO {TABLE} {_rolled(SOURCE)}").fetchone()[0]
    if isinstance(hours, str):
        listed, params = f"(SELECT hour FROM {hours})", []
    elif hours:
        listed, params = "(SELECT unnest(?::TIMESTAMP[]))", [sorted(hours)]
    else:
        return 0
    con.execute(f"DELETE FROM {TABLE} WHERE TimeGenerated IN {listed}", params)
    con.execute(f"DELETE FROM {PENDING} WHERE hour IN {listed}", params)
    # the range first, so the scan can skip the row groups outside it
    where = (f"TimeGenerated >= (SELECT min(hour) FROM {listed} AS h(hour)) "
             f"AND TimeGenerated < (SELECT max(hour) + INTERVAL 1 HOUR FROM {listed} AS h(hour)) "
             f"AND date_trunc('hour', TimeGenerated) IN {listed}")
    return con.execute(f"INSERT INTO {TABLE} {_rolled(SOURCE, where)}", params * 3).fetchone()[0]


HOURS = "__rollup_hours"        # the hours a deletion is about to touch (``note_hours``)


def note_hours(con, where: str, params: list) -> int:
    """Before VMConnection's rows matching ``where`` are deleted: their hours kept in the
    connection's temporary table ``HOURS`` (for ``rebuild(con, HOURS)`` after; never read into
    Python: a workspace from before the datetime checks may hold years past 9999); how many."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {HOURS} AS SELECT DISTINCT date_trunc('hour', TimeGenerated) AS hour "
                f"FROM {SOURCE} WHERE {where}", params)
    return con.execute(f"SELECT count(*) FROM {HOURS}").fetchone()[0]


def _merge(con, hour: datetime) -> None:
    """In the caller's transaction: one hour's rollup rows replaced by their merge, one per key."""
    con.execute("CREATE OR REPLACE TEMP TABLE __rollup_merged AS " + _merged("TimeGenerated = ?"), [hour])
    con.execute(f"DELETE FROM {TABLE} WHERE TimeGenerated = ?", [hour])
    con.execute(f"INSERT INTO {TABLE} SELECT * FROM __rollup_merged")
    con.execute(f"DELETE FROM {PENDING} WHERE hour = ?", [hour])
    con.execute("DROP TABLE __rollup_merged")


def compact(con, now: datetime, limit: int = COMPACT_HOURS) -> int:
    """Merge the rollup rows of up to ``limit`` closed hours (ended before ``now``) noted as
    pending, each hour in a transaction of its own (module doc); returns the hours merged."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    closed = now.replace(minute=0, second=0, microsecond=0)
    hours = [r[0] for r in con.execute(
        f"SELECT DISTINCT hour FROM {PENDING} WHERE hour < ? ORDER BY hour LIMIT {int(limit)}", [closed]).fetchall()]
    for hour in hours:
        in_transaction(con, _merge, hour)
    return len(hours)


def hour_bounds(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """The whole hours [lo, hi) inside [start, end); lo == hi == start when there are none."""
    lo = start.replace(minute=0, second=0, microsecond=0)
    if lo < start:
        lo += timedelta(hours=1)
    hi = end.replace(minute=0, second=0, microsecond=0)
    return (lo, hi) if lo < hi else (start, start)


def catalogue(base):
    """``base`` with the rollup as a table (``TABLE``, ``COLUMNS``), for the map's queries: the
    workspace's own catalogue does not list it (no user query, schema or retention sees it)."""
    from .catalogue import Catalogue, Table
    return Catalogue({**base.tables, TABLE: Table(TABLE, COLUMNS)})

