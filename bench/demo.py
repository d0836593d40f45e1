"""Demo-load benchmark: how long `netatlas up` takes to load the simulated datacenter on first start.

    python bench/demo.py [--machines 200] [--days 7] [--records] [--data-dir DIR]

Loads the datacenter (seed 1, ending 2024-05-02 12:00 UTC) into a new workspace directory, as
`up` does, and reports the records per table, the wall time, the CPU time of the process (all
threads: numpy, DuckDB) and the load average before and after (the CPU time is the figure to
compare on a shared machine: the wall time grows with what else runs). ``--records`` loads the
same records through ``Workspace.ingest`` of dicts, the path the demo took before it generated
columns (``Workspace.ingest_frame``). Goal: the 200 machines x 7 days in under 60 s on two cores.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

END = datetime(2024, 5, 2, 12, 0, tzinfo=timezone.utc)
GOAL_SECONDS = 60.0


def run(machines: int = 200, days: int = 7, records: bool = False, data_dir: Path | None = None,
        write=print) -> dict:
    import netatlas
    from netatlas.demo import generate
    from netatlas.progress import Progress
    owned = data_dir is None
    data_dir = Path(data_dir or tempfile.mkdtemp(prefix="netatlas-bench-demo-"))
    target = data_dir / f"demo-{machines}x{days}"
    shutil.rmtree(target, ignore_errors=True)
    before = os.getloadavg()
    ws = netatlas.connect(target)
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        progress = Progress("  loading", days * 24, "h", out=sys.stderr)
        counts = generate(ws, machines=machines, days=days, seed=1, end=END, progress=progress,
                          columnar=not records)
        progress.finish()
    finally:
        ws.close()             # the final checkpoint belongs to the load
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    after = os.getloadavg()
    total = sum(counts.values())
    width = max(len(t) for t in counts)
    for table, n in counts.items():
        write(f"{table:<{width}}  {n:>10,}")
    write(f"{'total':<{width}}  {total:>10,}")
    write(f"path: {'records (Workspace.ingest)' if records else 'frames (Workspace.ingest_frame)'}; "
          f"{os.cpu_count()} CPUs; load average {before[0]:.2f} before, {after[0]:.2f} after")
    write(f"wall {wall:.1f} s, CPU {cpu:.1f} s (all threads), {total / wall:,.0f} records/s")
    if machines == 200 and days == 7:
        write(f"goal: under {GOAL_SECONDS:.0f} s on two cores  {'PASS' if wall < GOAL_SECONDS else 'MISS'} (wall)")
    if owned:
        shutil.rmtree(data_dir, ignore_errors=True)
    return dict(counts=counts, wall=wall, cpu=cpu, load=(before, after))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--machines", type=int, default=200)
    p.add_argument("--days", type=int, default=7)
    p.add_argument("--records", action="store_true", help="through Workspace.ingest of dicts (the path before)")
    p.add_argument("--data-dir", type=Path, help="where to put the workspace (default: a temporary directory)")
    a = p.parse_args()
    run(a.machines, a.days, a.records, a.data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
