"""Graph benchmark: graph-match of a 3-hop pattern over the simulated datacenter's last 24 hours.

    python bench/graph.py [--repeat 5] [--machines 200] [--days 7] [--data-dir DIR]

The data is the `netatlas demo` workspace that bench/seeds.py uses (200 machines, the 7 days up
to 2026-11-25 00:00 UTC, seed 1; made once in bench/.data/ and reused). The query builds the
machine graph of the last 24 hours (outbound connections, remote addresses resolved to machines
through VMComputer) with make-graph and answers every 3-hop trail (a -> b -> c -> d, no edge twice:
graph-match's default cycles=unique_edges) with its four machines and bytes, end to end as
Workspace.query returns it. The number of trails is checked against the same trails counted in
Python from the graph's edges. Goal: under 2 s (issue 16); the exit code is 1 past it with
--check, or when the counts differ.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import seeds  # noqa: E402

GOAL_S = 2.0

EDGES = """
let ips = VMComputer | summarize arg_max(TimeGenerated, Ipv4Addresses, Computer) by Machine
    | mv-expand Ip = Ipv4Addresses to typeof(string) | project Ip, Remote = Computer;
VMConnection
| where TimeGenerated > ago(24h) and Direction == "outbound"
| summarize Bytes = sum(BytesSent + BytesReceived) by Computer, RemoteIp
| join kind=inner (ips) on $left.RemoteIp == $right.Ip
| where Computer != Remote
"""

MATCH = EDGES + """
| make-graph Computer --> Remote with (VMComputer | summarize arg_max(TimeGenerated, Computer) by Machine
                                       | project Computer, Machine) on Computer
| graph-match (a)-[e1]->(b)-[e2]->(c)-[e3]->(d)
  project A = a.Computer, B = b.Computer, C = c.Computer, D = d.Computer, Bytes = e1.Bytes + e2.Bytes + e3.Bytes
"""


def trails(edges: list[tuple[str, str]]) -> int:
    """3-edge trails of the edge list, no edge used twice: the reference count."""
    out = defaultdict(list)
    for i, (a, b) in enumerate(edges):
        out[a].append((i, b))
    n = 0
    for i, (_, b) in enumerate(edges):
        for j, c in out[b]:
            if j != i:
                n += sum(1 for k, _ in out[c] if k not in (i, j))
    return n


def main(argv=None, write=print) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="timed runs after one warm-up (default 5)")
    ap.add_argument("--machines", type=int, default=seeds.MACHINES)
    ap.add_argument("--days", type=int, default=seeds.DAYS)
    ap.add_argument("--data-dir", type=Path, default=None, help="workspace directory (default bench/.data/demo-<m>x<d>)")
    ap.add_argument("--in-process", action="store_true", help="generate the demo in this process")
    ap.add_argument("--check", action="store_true", help="exit 1 past the goal or when the counts differ")
    args = ap.parse_args(argv)
    import netatlas
    data_dir = args.data_dir or seeds.DATA_DIR / f"demo-{args.machines}x{args.days}"
    data = seeds.ensure_data(data_dir, machines=args.machines, days=args.days, in_process=args.in_process,
                             write=write)
    ws = netatlas.connect(data.path)
    try:
        edges = [(r[0], r[-1]) for r in ws.query(EDGES + "| project Computer, Remote", now=seeds.END).rows]
        want = trails(edges)
        got = len(ws.query(MATCH, now=seeds.END, timeout=600).rows)     # warm-up
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            ws.query(MATCH, now=seeds.END, timeout=600)
            times.append(time.perf_counter() - t0)
    finally:
        ws.close()
    median = statistics.median(times) if times else float("nan")
    write(f"demo workspace: {args.machines} machines x {args.days} days; the last 24 hours: {len(edges):,} machine "
          f"edges")
    write(f"graph-match (a)-->(b)-->(c)-->(d): {got:,} trails ({'ok' if got == want else f'MISMATCH: Python counts {want:,}'})")
    write(f"time: median {median:.3f} s of {args.repeat} after a warm-up  goal < {GOAL_S:g} s  "
          f"{'PASS' if median < GOAL_S else 'MISS'}")
    return 1 if args.check and (got != want or not median < GOAL_S) else 0


if __name__ == "__main__":
    sys.exit(main())
