"""What VMConnection's hourly rollup (netatlas/rollup.py) costs ingestion, and what compaction costs.

    python bench/rollup.py [--batches 400] [--repeat 6]

Agent-sized batches (200 VMConnection records of JSON, 50 machines, 20 processes each) go through
``Workspace.ingest_json`` (the group committer, as the server stores them) from 8 threads at once,
in an in-process workspace on disk. Each round stores a slice of them twice, side by side in
alternating order: as netatlas does (the rows and their rollup in one transaction) and with the
rollup turned off for the bench (``ingest.rolls_up`` answering False). It prints the median CPU
and wall seconds per side and the rollup's share. Then it merges the hours those batches made
pending (``Workspace.compact_rollup``) and prints the rows before and after and the time.
"""
from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import netatlas  # noqa: E402
from netatlas import ingest, rollup  # noqa: E402

START = datetime(2026, 12, 1, 8, 0, tzinfo=timezone.utc)


def bodies(n: int, seed: int = 1) -> list[str]:
    """``n`` agent batches of 200 records: batch k is machine k % 50's minute k // 50."""
    rnd = random.Random(seed)
    out = []
    for k in range(n):
        machine, minute = k % 50, k // 50
        t = (START + timedelta(minutes=minute)).isoformat().replace("+00:00", "Z")
        out.append(json.dumps([{
            "TimeGenerated": t, "Computer": f"web-{machine:02}.lab", "Machine": f"m-{machine:02}",
            "Process": f"p-{machine:02}-{i % 20}", "ProcessName": f"svc{i % 20}",
            "Direction": "outbound" if i % 3 else "inbound", "SourceIp": f"10.0.0.{machine + 1}",
            "DestinationIp": f"10.0.{i % 5}.{i}", "RemoteIp": f"10.0.{i % 5}.{i}", "DestinationPort": 443 + i % 4,
            "Protocol": "tcp", "LinksEstablished": 1, "LinksFailed": int(i % 17 == 0), "LinksLive": 1,
            "LinksTerminated": 0, "BytesSent": rnd.randrange(10 ** 6), "BytesReceived": rnd.randrange(10 ** 5),
            "Responses": 3, "ResponseTimeSum": 40, "ResponseTimeMin": 1, "ResponseTimeMax": 30} for i in range(200)]))
    return out


def store(ws, batch: list[str], rolled: bool) -> tuple[float, float]:
    """(CPU, wall) seconds to store ``batch`` from 8 threads, with the rollup or without."""
    kept = ingest.rolls_up
    if not rolled:
        ingest.rolls_up = lambda table, outbox=None: False
    try:
        cpu, wall = time.process_time(), time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda body: ws.ingest_json("VMConnection", body), batch))
        return time.process_time() - cpu, time.perf_counter() - wall
    finally:
        ingest.rolls_up = kept


def main(argv=None, write=print) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=400, help="agent batches of 200 records per side (default 400)")
    p.add_argument("--repeat", type=int, default=6, help="rounds, each storing a slice on both sides (default 6)")
    args = p.parse_args(argv)
    all_bodies = bodies(2 * args.batches)
    size = max(1, args.batches // args.repeat)
    with tempfile.TemporaryDirectory(prefix="netatlas-bench-rollup-") as tmp:
        ws = netatlas.connect(tmp)
        try:
            ws.set_retention("VMConnection", 4000)
            store(ws, bodies(40, seed=2), True)            # warm-up: the committer, Arrow's kernels
            sides: dict[bool, list[tuple[float, float]]] = {True: [], False: []}
            for r in range(args.repeat):
                for rolled in ((True, False) if r % 2 else (False, True)):
                    at = (2 * r + rolled) * size
                    sides[rolled].append(store(ws, all_bodies[at:at + size], rolled))
            cpu = {k: statistics.median(c for c, _ in v) for k, v in sides.items()}
            wall = {k: statistics.median(w for _, w in v) for k, v in sides.items()}
            records = size * 200
            write(f"{size} agent batches of 200 VMConnection records a round, 8 threads, group commit; "
                  f"median of {args.repeat} rounds, sides alternating")
            write(f"{'side':<28} {'CPU s':>7} {'wall s':>7} {'records/s':>10}")
            for rolled, name in ((False, "rows only (rollup off)"), (True, "rows and rollup (netatlas)")):
                write(f"{name:<28} {cpu[rolled]:>7.3f} {wall[rolled]:>7.3f} {records / wall[rolled]:>10,.0f}")
            write(f"the rollup's share: {cpu[True] / cpu[False] - 1:+.0%} CPU, {wall[True] / wall[False] - 1:+.0%} wall")
            rows = ws.connection.execute(f"SELECT count(*) FROM {rollup.TABLE}").fetchone()[0]
            pending = ws.connection.execute(f"SELECT count(DISTINCT hour) FROM {rollup.PENDING}").fetchone()[0]
            t0 = time.perf_counter()
            merged = 0
            while n := ws.compact_rollup(now=START + timedelta(days=2)):
                merged += n
            seconds = time.perf_counter() - t0
            after = ws.connection.execute(f"SELECT count(*) FROM {rollup.TABLE}").fetchone()[0]
            records_in = ws.connection.execute("SELECT count(*) FROM VMConnection").fetchone()[0]
            write(f"compaction: {merged} of {pending} pending hours merged in {seconds:.2f} s: {rows:,} rollup rows -> "
                  f"{after:,} ({records_in:,} records)")
        finally:
            ws.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
