"""Migration waves at datacenter size: 2,000 machines and 50,000 machine pairs in planted communities.

    python bench/waves.py                       # 2,000 machines, 50,000 pairs, waves of at most 40
    python bench/waves.py --machines 200 --pairs 2000 --max-wave-size 10   # quick
    python bench/waves.py --compare             # also Leiden (igraph + leidenalg) against networkx's Louvain

The connections are written into a workspace in a temporary directory (VMComputer for every machine,
an outbound and an inbound VMConnection row per pair), then timed: the whole ``waves.plan`` (the
KQL over VMConnection and VMComputer, address resolution, communities, cap, order, report) and its
graph part alone (``waves_of``). The planted communities are checked to be recovered exactly.
"""
from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netatlas.waves import Graph, Options, communities, dependencies, flows, plan, waves_of  # noqa: E402
from netatlas.workspace import open_workspace  # noqa: E402


def ip(i: int) -> str:
    return f"10.{i // 250 + 1}.{i % 250 + 1}.1"


def planted(machines: int, pairs: int, size: int, seed: int) -> tuple[dict[tuple[int, int], int], list[set[int]]]:
    """pair -> bytes: 97 % of the pairs inside a community of ``size`` machines (heavy), the rest
    between any two machines (light)."""
    rnd = random.Random(seed)
    k = max(machines // size, 1)
    members = [[i for i in range(machines) if i % k == c] for c in range(k)]
    out: dict[tuple[int, int], int] = {}
    limit = sum(len(m) * (len(m) - 1) for m in members) + machines * (machines - 1)
    while len(out) < min(pairs, limit // 2):
        if rnd.random() < 0.97:
            a, b = rnd.sample(members[rnd.randrange(k)], 2)
            out[(a, b)] = rnd.randint(100_000, 10_000_000)
        else:
            a, b = rnd.sample(range(machines), 2)
            out.setdefault((a, b), rnd.randint(10, 1000))
    return out, [set(m) for m in members]


def fill(ws, machines: int, traffic: dict[tuple[int, int], int], now: datetime) -> None:
    t = (now - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    ws.ingest("VMComputer", [dict(TimeGenerated=t, Computer=f"host-{i}", Machine=f"m-{i:05d}", Ipv4Addresses=[ip(i)])
                             for i in range(machines)])
    rows = []
    for (a, b), n in traffic.items():
        base = dict(TimeGenerated=t, SourceIp=ip(a), DestinationIp=ip(b), DestinationPort=8000 + b % 100,
                    BytesSent=n // 3, BytesReceived=n - n // 3, LinksEstablished=1 + n % 7)
        rows.append(dict(base, Computer=f"host-{a}", Machine=f"m-{a:05d}", Direction="outbound", ProcessName="client"))
        rows.append(dict(base, Computer=f"host-{b}", Machine=f"m-{b:05d}", Direction="inbound", ProcessName="server"))
        if len(rows) >= 50_000:
            ws.ingest("VMConnection", rows)
            rows = []
    if rows:
        ws.ingest("VMConnection", rows)


def compare(traffic: dict[tuple[int, int], int], machines: int, truth: list[set[int]], seed: int) -> None:
    import igraph
    import leidenalg
    import networkx as nx
    from networkx.algorithms.community import louvain_communities
    want = sorted(sorted(c) for c in truth)
    undirected: dict[tuple[int, int], int] = {}
    for (a, b), n in traffic.items():
        key = (min(a, b), max(a, b))
        undirected[key] = undirected.get(key, 0) + n
    for name, run in (
        ("leiden (igraph + leidenalg)", lambda: leidenalg.find_partition(
            igraph.Graph(n=machines, edges=list(undirected), edge_attrs={"weight": list(undirected.values())}),
            leidenalg.ModularityVertexPartition, weights="weight", seed=seed)),
        ("louvain (networkx)", lambda: louvain_communities(
            _nx(nx, machines, undirected), weight="weight", seed=seed))):
        best = []
        for _ in range(3):
            t0 = time.perf_counter()
            found = run()
            best.append(time.perf_counter() - t0)
        exact = sorted(sorted(c) for c in found) == want
        print(f"  {name:30} {min(best):7.3f} s (best of 3, graph built inside)  {len(list(found))} communities  "
              f"recovered exactly: {exact}")


def _nx(nx, machines, undirected):
    g = nx.Graph()
    g.add_nodes_from(range(machines))
    g.add_weighted_edges_from((a, b, w) for (a, b), w in undirected.items())
    return g


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--machines", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=50_000)
    p.add_argument("--community", type=int, default=50, help="machines per planted community (default 50)")
    p.add_argument("--max-wave-size", type=int, default=40)
    p.add_argument("--seed", type=int, default=16)
    p.add_argument("--compare", action="store_true", help="time Leiden against networkx's Louvain too")
    args = p.parse_args(argv)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    traffic, truth = planted(args.machines, args.pairs, args.community, args.seed)
    with tempfile.TemporaryDirectory(prefix="netatlas-bench-waves-") as tmp:
        with open_workspace(tmp) as ws:
            t0 = time.perf_counter()
            fill(ws, args.machines, traffic, now)
            print(f"{args.machines:,} machines, {len(traffic):,} machine pairs ({2 * len(traffic):,} VMConnection rows) "
                  f"written in {time.perf_counter() - t0:.1f} s")
            options = Options(max_wave_size=args.max_wave_size, now=now, range=timedelta(days=1))
            t0 = time.perf_counter()
            report = plan(ws, options)
            whole = time.perf_counter() - t0
            until = now.replace(tzinfo=None)
            rows = flows(ws, until - timedelta(days=1), until)
            resolved = ws.resolve_addresses(sorted({r["RemoteIp"] for r in rows}), 1.0, now=until)
            deps, machines = dependencies(rows, resolved, frozenset())
            t0 = time.perf_counter()
            again = waves_of(deps, machines, options)
            graph_part = time.perf_counter() - t0
    found = sorted(sorted(int(m[2:]) for m in c) for c in report["communities"])
    exact = found == sorted(sorted(c) for c in truth)
    biggest = max(len(w["machines"]) for w in report["waves"])
    print(f"library: {report['library']}")
    print(f"waves: {len(report['waves'])} (largest {biggest}, cap {args.max_wave_size}), "
          f"{len(report['communities'])} communities, recovered exactly: {exact}")
    print(f"crossing: {len(report['crossing']):,} dependencies, {report['crossing_bytes']:,} bytes, "
          f"{report['backward']} backward")
    print(f"waves.plan (KQL + resolution + graph + report): {whole:.2f} s   goal < 10 s  "
          f"{'PASS' if whole < 10 else 'MISS'}")
    print(f"waves_of (graph, communities, cap, order, report): {graph_part:.2f} s   "
          f"same waves: {again['waves'] == report['waves']}")
    if args.compare:
        compare(traffic, args.machines, truth, 1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
