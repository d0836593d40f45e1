"""Stores side by side: DuckDB (embedded, the default) and ClickHouse (chdb) on the same rows.

    python bench/stores.py [--rows 10000000] [--big 100000000] [--repeat 3] [--no-big | --big-only]

1. The same ``--rows`` VMConnection records (bench/kql.py's synthetic table, cached in
   bench/.data/vmconnection-<rows>/) in DuckDB and, copied, in chdb (bench/.data/chdb/, database
   ``rows_<rows>``). Each bench/kql.py query through ``Workspace.query`` on DuckDB and through the
   same planner on chdb (``StoreWorkspace``): median time of --repeat runs after a warm-up, the
   ratio chdb / DuckDB, and whether both return the same rows.
2. Ingestion, records/s into each: the server's path (``Workspace.ingest_json``: JSON batches of
   500 records from 4 threads through the group committer, validated, enriched, Usage billed;
   with chdb the rows go on through the outbox) into a new workspace of each kind; and the
   store's own bulk append of 1M rows from Arrow (DuckDB ``INSERT ... SELECT`` from Arrow,
   chdb ``append``).
3. Bytes on disk per million VMConnection records in each.
4. ``--big`` VMConnection rows in chdb (database ``fleet_<big>``): the simulated datacenter of
   1,000 machines over one day (bench/.data/demo-1000x1/, every table: 1.7M connection records)
   copied onto the days before it inside ClickHouse, as many days as make --big rows (59 for
   100M): a fleet of 1,000 machines over two months. Then the web map of all 1,000 machines over
   the last 24 h (``webmap.build_map``; goal < 2 s), every seed query of
   netatlas/seed-queries.kql (goal < 5 s each), and a full scan's rate (rows/s) for the cluster
   arithmetic in bench/README.md.
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kql as kql_bench  # noqa: E402
import seeds as seeds_bench  # noqa: E402
from common import _same, _sort_key, _value  # noqa: E402

DATA_DIR = kql_bench.DATA_DIR
CHDB_DIR = DATA_DIR / "chdb"
MAP_GOAL_S = 2.0
SEED_GOAL_S = 5.0
BATCH = 500
THREADS = 4


def timed(fn, repeat: int):
    """(median seconds of ``repeat`` runs after one warm-up, the warm-up's value)."""
    first = fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), first


def open_chdb(database: str):
    from netatlas.store.chdb import ChdbStore
    return ChdbStore(CHDB_DIR, database=database)


def chdb_workspace(store, catalogue):
    from netatlas.workspace import StoreWorkspace
    return StoreWorkspace(store, catalogue, retention={t: 4383 for t in catalogue.names()})   # dated data


# ---------------------------------------------------------------- 1. the same rows, both stores

def same_rows(a: list, b: list) -> bool:
    """The same rows, in any order (ties of an order by may come out either way), reals to 1e-9."""
    norm = lambda rows: sorted((tuple(_value(v) for v in r) for r in rows), key=_sort_key)
    a, b = norm(a), norm(b)
    return len(a) == len(b) and all(len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y))
                                    for x, y in zip(a, b))


def side_by_side(duck, ch, end, repeat: int, write) -> list[tuple]:
    write(f"{'query':<24}{'DuckDB s':>10}{'chdb s':>10}{'ratio':>9}{'rows':>9}  result")
    out = []
    for q in kql_bench.bench_queries(end):
        d_s, d_res = timed(lambda: duck.query(q.kql, max_rows=10_000_000), repeat)
        c_s, c_res = timed(lambda: ch.query(q.kql, max_rows=10_000_000), repeat)
        ok = d_res.columns == c_res.columns and same_rows(d_res.rows, c_res.rows)
        out.append((q.name, d_s, c_s, ok))
        write(f"{q.name:<24}{d_s:>10.4f}{c_s:>10.4f}{c_s / d_s:>8.2f}x{len(d_res.rows):>9}  "
              f"{'same rows' if ok else 'DIFFERENT'}")
    return out


# ---------------------------------------------------------------- 2. ingestion

def sample_batches(duck, n_batches: int) -> list[bytes]:
    """JSON batches of BATCH records taken from the bench rows, dated within the last hour."""
    import orjson
    rows = duck.connection.execute(f'SELECT * EXCLUDE (TimeGenerated, _BilledSize, _ResourceId, _SubscriptionId, '
                                   f'_IsBillable) FROM "VMConnection" LIMIT {n_batches * BATCH}').fetchall()
    cols = [d[0] for d in duck.connection.description]
    from datetime import datetime, timezone
    now = datetime.now(timezone.utc)
    batches = []
    for b in range(n_batches):
        recs = []
        for i, r in enumerate(rows[b * BATCH:(b + 1) * BATCH]):
            rec = {k: v for k, v in zip(cols, r) if v is not None and v != ""}
            rec["TimeGenerated"] = (now - timedelta(seconds=i)).isoformat()
            recs.append(rec)
        batches.append(orjson.dumps(recs, default=str))
    return batches


def ingest_rate(ws, batches: list[bytes]) -> float:
    """Records/s of ``ws.ingest_json`` over the batches, from THREADS threads."""
    it = iter(enumerate(batches))
    lock = threading.Lock()
    errors = []

    def work():
        while True:
            with lock:
                nxt = next(it, None)
            if nxt is None:
                return
            i, body = nxt
            try:
                ws.ingest_json("VMConnection", body, batch_id=f"bench-{i}")
            except Exception as e:       # a benchmark that stored less must say so
                errors.append(e)
    t0 = time.perf_counter()
    threads = [threading.Thread(target=work) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"ingestion failed: {errors[0]}")
    stored = ws.query("VMConnection | count").rows[0][0]
    if stored != len(batches) * BATCH:
        raise SystemExit(f"ingestion stored {stored} of {len(batches) * BATCH} records")
    return len(batches) * BATCH / seconds


def bulk_rates(duck, rows: int = 1_000_000) -> tuple[float, float]:
    """Records/s of one bulk append of ``rows`` rows from Arrow: into DuckDB, into chdb."""
    import netatlas
    from netatlas.store.duckdb import fetch_arrow
    arrow = fetch_arrow(duck.connection, f'SELECT * FROM "VMConnection" LIMIT {rows}')
    with tempfile.TemporaryDirectory() as tmp:
        target = netatlas.connect(tmp)
        try:
            t0 = time.perf_counter()
            target.connection.register("bench_arrow", arrow)
            target.connection.execute('INSERT INTO "VMConnection" BY NAME SELECT * FROM bench_arrow')
            target.connection.execute("CHECKPOINT")
            duck_rate = rows / (time.perf_counter() - t0)
        finally:
            target.close()
    store = open_chdb("bulk")
    try:
        store.create_tables(duck.catalogue, {t: 4383 for t in duck.catalogue.names()})
        store.execute('TRUNCATE TABLE "VMConnection"')
        t0 = time.perf_counter()
        store.append("VMConnection", arrow)
        ch_rate = rows / (time.perf_counter() - t0)
        store.execute("DROP DATABASE bulk")
    finally:
        store.connection.close()
    return duck_rate, ch_rate


# ---------------------------------------------------------------- 4. the big store

def ensure_big(big, big_rows: int, demo, write) -> int:
    """``big`` holds the 1,000-machine demo day (every table) copied onto the days before it, as
    many days as make ``big_rows`` VMConnection rows: a fleet's month or two, each day as dense as
    the simulated one. Returns the days."""
    import netatlas
    from netatlas.store import copy_tables
    per_day = demo.counts["VMConnection"]
    days = -(-big_rows // per_day)
    want = days * per_day
    if big.count("VMConnection") == want:
        write(f"  reused: {want:,} VMConnection rows ({days} days) in chdb database {big.database}")
        settle(big, write)
        return days
    write(f"  building {days} days of the {per_day:,}-row demo day in chdb database {big.database} ...")
    t0 = time.perf_counter()
    day = open_chdb("demo_day")
    try:
        catalogue = big_catalogue()
        day.create_tables(catalogue, {t: 4383 for t in catalogue.names()})
        for (t,) in day.fetch("SELECT name FROM system.tables WHERE database = 'demo_day' AND engine LIKE '%MergeTree'"):
            day.execute(f'TRUNCATE TABLE "{t}"')
        ws = netatlas.connect(demo.path)
        try:
            copy_tables(ws, day)
        finally:
            ws.close()
        for table in catalogue.tables.values():
            if table.name == "Usage" or not day.count(table.name):
                continue
            big.execute(f'TRUNCATE TABLE "{table.name}"')
            cols = [c for c, _ in table.columns]
            select = ", ".join("TimeGenerated - toIntervalDay(k) AS TimeGenerated" if c == "TimeGenerated" else f'"{c}"'
                               for c in cols)
            big.execute(f'INSERT INTO {big.database}."{table.name}" SETTINGS insert_deduplicate = 0 '
                        f'SELECT {select} FROM demo_day."{table.name}" ARRAY JOIN range({days}) AS k')
            write(f"    {table.name}: {big.count(table.name):,} rows, {time.perf_counter() - t0:.0f} s")
    finally:
        day.execute("DROP DATABASE demo_day")
    settle(big, write)
    return days


def settle(store, write, limit: float = 900) -> None:
    """Wait for ClickHouse's background merges of the new parts to end: a query measured while
    they run shares the cores with them."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < limit:
        (running,), = store.fetch(f"SELECT count() FROM system.merges WHERE database = '{store.database}'")
        if not running:
            break
        time.sleep(2)
    write(f"  background merges done after {time.perf_counter() - t0:.0f} s")


@functools.lru_cache(maxsize=1)
def big_catalogue():
    from netatlas.catalogue import Catalogue
    return Catalogue.load()


def big_store(big_ws, demo, repeat: int, write) -> dict:
    from netatlas import webmap
    span = webmap.Span(demo.end - timedelta(hours=24), demo.end)
    out = {}
    m_s, answer = timed(lambda: webmap.build_map(big_ws, webmap.Selection("all"), span), repeat)
    machines = len(answer["machines"])
    ok = m_s < MAP_GOAL_S
    write(f"  map of all machines, last 24 h: {m_s:.2f} s ({machines} machines, {len(answer['edges'])} "
          f"edges)  goal < {MAP_GOAL_S:g} s  {'PASS' if ok else 'MISS'}")
    out["map"] = (m_s, ok)
    worst = 0.0
    for q in seeds_bench.seed_queries():
        try:
            s, res = timed(lambda: big_ws.query(q.kql, now=demo.end, max_rows=10_000), repeat)
            worst = max(worst, s)
            write(f"  seed {q.name:<44}{s:>8.3f} s {len(res.rows):>7} rows  {'PASS' if s < SEED_GOAL_S else 'MISS'}")
        except Exception as e:
            write(f"  seed {q.name:<44} FAILED: {str(e).splitlines()[0]}")
            worst = float("inf")
    out["seeds"] = (worst, worst < SEED_GOAL_S)
    write(f"  slowest seed query: {worst:.3f} s  goal < {SEED_GOAL_S:g} s  {'PASS' if worst < SEED_GOAL_S else 'MISS'}")
    return out


def scan_rate(store, repeat: int) -> float:
    """Rows/s of a full scan that reads three columns of every VMConnection row and groups them."""
    n = store.count("VMConnection")
    s, _ = timed(lambda: store.fetch('SELECT Computer, sum(BytesSent), max(TimeGenerated) FROM "VMConnection" '
                                     'GROUP BY Computer'), repeat)
    return n / s


# ---------------------------------------------------------------- run

def run(rows: int, big_rows: int | None, repeat: int, write=print, parts=(1, 2, 3, 4)) -> dict:
    import chdb
    from netatlas.store.duckdb import VERSION as DUCKDB
    write(f"DuckDB {DUCKDB} and chdb {chdb.__version__} (ClickHouse {chdb.engine_version}), {os.cpu_count()} cores")
    results = run_small(rows, repeat, write) if 1 in parts else {}
    if big_rows and 4 in parts:
        results.update(run_big(big_rows, repeat, write))
    return results


def run_small(rows: int, repeat: int, write) -> dict:
    import netatlas
    from netatlas.store import copy_tables

    duck_dir = DATA_DIR / f"vmconnection-{rows}"
    duck_dir.mkdir(parents=True, exist_ok=True)
    duck = netatlas.connect(str(duck_dir))
    data = kql_bench.ensure_data(duck.connection, duck_dir, rows)
    small = open_chdb(f"rows_{rows}")
    ch = chdb_workspace(small, duck.catalogue)
    if small.count("VMConnection") != rows:
        small.execute('TRUNCATE TABLE "VMConnection"')
        t0 = time.perf_counter()
        copy_tables(duck, small, ["VMConnection"])
        write(f"copied {rows:,} rows into chdb in {time.perf_counter() - t0:.1f} s")
    write(f"VMConnection: {rows:,} rows over the 7 days to {data.end:%Y-%m-%d %H:%M} UTC")
    write(f"\n1. the bench/kql.py queries, median of {repeat} after a warm-up")
    results = {"queries": side_by_side(duck, ch, data.end, repeat, write)}

    write("\n2. ingestion, records/s")
    batches = sample_batches(duck, 200)
    with tempfile.TemporaryDirectory() as tmp:
        target = netatlas.connect(Path(tmp) / "duck")
        try:
            d_rate = ingest_rate(target, batches)
        finally:
            target.close()
        target = netatlas.connect(Path(tmp) / "ch", store=f"chdb:{CHDB_DIR}")
        try:
            c_rate = ingest_rate(target, batches)
            target.remote.store.execute("DROP DATABASE netatlas")
        finally:
            target.close()
    write(f"  server path (ingest_json, {len(batches)} batches of {BATCH}, {THREADS} threads): "
          f"DuckDB {d_rate:,.0f}  chdb {c_rate:,.0f}  ({c_rate / d_rate:.2f}x)")
    bd, bc = bulk_rates(duck)
    write(f"  bulk append of 1M rows from Arrow: DuckDB {bd:,.0f}  chdb {bc:,.0f}  ({bc / bd:.2f}x)")
    results["ingest"] = {"server_duckdb": d_rate, "server_chdb": c_rate, "bulk_duckdb": bd, "bulk_chdb": bc}

    write("\n3. bytes on disk per million VMConnection records")
    duck.connection.execute("CHECKPOINT")
    d_bytes = (duck_dir / "netatlas.duckdb").stat().st_size / (rows / 1e6)
    small.execute('OPTIMIZE TABLE "VMConnection" FINAL')
    c_bytes = small.bytes_on_disk("VMConnection") / (rows / 1e6)
    write(f"  DuckDB {d_bytes / 1e6:.1f} MB (the whole file)  chdb {c_bytes / 1e6:.1f} MB  ({c_bytes / d_bytes:.2f}x)")
    results["bytes_per_million"] = {"duckdb": d_bytes, "chdb": c_bytes}
    duck.close()
    return results


def run_big(big_rows: int, repeat: int, write) -> dict:
    results = {}
    write(f"\n4. {big_rows:,} VMConnection rows in chdb")
    demo = seeds_bench.ensure_data(DATA_DIR / "demo-1000x1", machines=1000, days=1, write=write)
    big = open_chdb(f"fleet_{big_rows}")
    big_ws = chdb_workspace(big, big_catalogue())
    results["days"] = ensure_big(big, big_rows, demo, write)
    results["big"] = big_store(big_ws, demo, repeat, write)
    tables = {t.name: big.bytes_on_disk(t.name) for t in big_catalogue().tables.values()}
    vmc_rows = big.count("VMConnection")
    write(f"  bytes on disk: VMConnection {tables['VMConnection'] / vmc_rows:.1f} MB per million rows; "
          f"every table {sum(tables.values()) / 1e9:.2f} GB, {sum(tables.values()) / vmc_rows:.1f} MB "
          f"per million VMConnection rows")
    results["big_bytes"] = {"tables": tables, "vmconnection_rows": vmc_rows}
    rate = scan_rate(big, repeat)
    write(f"  full scan (3 columns, grouped): {rate / 1e6:,.0f} M rows/s on {os.cpu_count()} cores "
          f"({rate / 1e6 / os.cpu_count():,.0f} M rows/s per core)")
    results["scan_rows_per_s"] = rate
    return results


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000_000)
    p.add_argument("--big", type=int, default=100_000_000)
    p.add_argument("--no-big", action="store_true", help="skip part 4")
    p.add_argument("--big-only", action="store_true", help="part 4 only")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", metavar="PATH", help="also write the numbers as JSON")
    args = p.parse_args(argv)
    results = run(args.rows, None if args.no_big else args.big, args.repeat,
                  parts=(4,) if args.big_only else (1, 2, 3, 4))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
