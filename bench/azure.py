"""Azure protocols benchmark: the per-query overhead of the Kusto v2 REST path (POST /v2/rest/query)
and of the Log Analytics query API (POST /v1/workspaces/{id}/query) against netatlas's own
POST /api/query, on the same queries, over one served workspace.

    python bench/azure.py [--rows 1000000] [--repeat 7] [--check]

The workspace is bench/kql.py's generated VMConnection (cached in bench/.data/vmconnection-<rows>),
served by `netatlas workspace serve` on loopback; the queries are bench/kql.py's. For each query
each path is timed end to end from a client on one kept-alive connection (request, answer, JSON
parsed), median of --repeat interleaved runs after one warm-up each; the rows of each path are
checked against /api/query's. Goal: v2 / api <= 1.2x for every query (and the geometric mean).
The Kusto Python SDK's own time (azure-kusto-data parsing the v2 frames into typed rows) is shown
beside it, when the SDK is installed, for what a client sees.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
import kql as bench_kql  # noqa: E402
import seeds  # noqa: E402
from common import _same, _sort_key  # noqa: E402
# this file's own name would hide Azure's ``azure`` namespace package from the SDK: bench/ leaves the path
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != BENCH]
sys.modules.pop("azure", None)

ROOT = Path(__file__).resolve().parent.parent
GOAL = 1.2


class Client:
    """One kept-alive HTTP connection to the server, JSON in and out."""

    def __init__(self, port: int, key: str):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=seeds.HTTP_TIMEOUT)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def post(self, path: str, body: dict):
        self.conn.request("POST", path, json.dumps(body).encode(), self.headers)
        r = self.conn.getresponse()
        data = r.read()
        if r.status != 200:
            raise RuntimeError(f"{path}: HTTP {r.status}: {data[:500]!r}")
        return json.loads(data)


def _rows_api(answer: dict) -> list:
    return answer["tables"][0]["rows"]


def _rows_v2(frames: list) -> list:
    return next(f["Rows"] for f in frames if f.get("TableKind") == "PrimaryResult")


def _rows_la(answer: dict, types: list[str]) -> list:
    # dynamic values travel as JSON text in Log Analytics' answers
    return [[json.loads(v) if t == "dynamic" and isinstance(v, str) else v for v, t in zip(r, types)]
            for r in answer["tables"][0]["rows"]]


def _timed(fn):
    t0 = time.perf_counter()
    value = fn()
    return time.perf_counter() - t0, value


def measure(client: Client, workspace_id: str, query: str, repeat: int, sdk=None) -> dict:
    sides = {
        "api": lambda: client.post("/api/query", {"query": query}),
        "v2": lambda: client.post("/v2/rest/query", {"db": "netatlas", "csl": query}),
        "la": lambda: client.post(f"/v1/workspaces/{workspace_id}/query", {"query": query}),
    }
    if sdk is not None:
        sides["sdk"] = lambda: sdk.execute("netatlas", query)
    answers = {name: fn() for name, fn in sides.items()}          # the warm-ups, kept to compare
    times = {name: [] for name in sides}
    for _ in range(repeat):
        for name, fn in sides.items():
            times[name].append(_timed(fn)[0])
    api = _rows_api(answers["api"])
    types = [c["type"] for c in answers["api"]["tables"][0]["columns"]]
    paths = [_rows_v2(answers["v2"]), _rows_la(answers["la"], types)]
    if sdk is not None:
        paths.append(answers["sdk"].primary_results[0].raw_rows)
    same = all(_alike(rows, api) for rows in paths)
    return {"rows": len(api), "same": same, **{name: statistics.median(t) for name, t in times.items()}}


def _alike(a: list, b: list) -> bool:
    """The same rows in any order (an unsorted query's), reals within 1e-9 (each path is its own
    run, and a parallel sum of reals may differ in its last digits)."""
    if len(a) != len(b):
        return False
    a, b = sorted(a, key=_sort_key), sorted(b, key=_sort_key)
    return all(len(x) == len(y) and all(_same(u, v) for u, v in zip(x, y)) for x, y in zip(a, b))


def run(rows: int, repeat: int, data_dir: Path | None = None, only: list[str] | None = None, write=print) -> list:
    import netatlas
    from netatlas.keys import create_key, load
    data_dir = Path(data_dir) if data_dir else bench_kql.DATA_DIR / f"vmconnection-{rows}"
    data_dir.mkdir(parents=True, exist_ok=True)
    ws = netatlas.connect(str(data_dir))
    try:
        data = bench_kql.ensure_data(ws.connection, data_dir, rows)
    finally:
        ws.close()
    queries = [q for q in bench_kql.bench_queries(data.end) if not only or q.name in only]
    key = create_key(data_dir, "query").secret
    workspace_id = load(data_dir).workspace_id
    how = f"generated in {data.seconds:.1f} s" if data.seconds is not None else "reused"
    write(f"VMConnection: {rows:,} rows ({how}, {data_dir}); median of {repeat} interleaved runs after one warm-up")
    out = []
    with seeds.Server(data_dir, data_dir / "bench-azure-serve.log") as server:
        sdk = None
        try:
            from azure.kusto.data import KustoClient, KustoConnectionStringBuilder
            sdk = KustoClient(KustoConnectionStringBuilder.with_aad_application_token_authentication(server.url, key))
        except ImportError:
            write("(azure-kusto-data is not installed: the SDK column is left out)")
        write(f"HTTP: {server.url} (netatlas workspace serve, pid {server.proc.pid})")
        write("")
        write(f"{'query':<26} {'rows':>8} {'/api/query':>11} {'/v2/rest':>10} {'v2/api':>7} {'/v1/ws/query':>13} "
              f"{'la/api':>7} {'SDK v2':>9} {'same':>5}")
        client = Client(server.port, key)
        for q in queries:
            m = measure(client, workspace_id, q.kql, repeat, sdk)
            m["name"] = q.name
            out.append(m)
            sdk_ms = f"{m['sdk'] * 1000:9.2f}" if "sdk" in m else f"{'-':>9}"
            write(f"{q.name:<26} {m['rows']:>8,} {m['api'] * 1000:9.2f}ms {m['v2'] * 1000:8.2f}ms "
                  f"{m['v2'] / m['api']:6.2f}x {m['la'] * 1000:11.2f}ms {m['la'] / m['api']:6.2f}x {sdk_ms} "
                  f"{'yes' if m['same'] else 'NO':>5}")
    ratios = [m["v2"] / m["api"] for m in out]
    la = [m["la"] / m["api"] for m in out]
    geo = math.exp(statistics.mean(math.log(r) for r in ratios))
    write("")
    write(f"v2 / api: geometric mean {geo:.2f}x, max {max(ratios):.2f}x (goal <= {GOAL}x): "
          f"{'met' if max(ratios) <= GOAL else 'MISSED'}")
    write(f"Log Analytics / api: geometric mean {math.exp(statistics.mean(math.log(r) for r in la)):.2f}x, "
          f"max {max(la):.2f}x")
    write(f"same rows on every path: {'yes' if all(m['same'] for m in out) else 'NO'}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=1_000_000, help="VMConnection rows (default 1,000,000)")
    p.add_argument("--repeat", type=int, default=7, help="timed runs per query and path (default 7)")
    p.add_argument("--data-dir", type=Path, help="workspace directory (default bench/.data/vmconnection-<rows>)")
    p.add_argument("--query", action="append", dest="only", metavar="NAME", help="run only this query (repeatable)")
    p.add_argument("--check", action="store_true", help="exit 1 when the goal is missed or rows differ")
    args = p.parse_args(argv)
    if args.rows < 1 or args.repeat < 1:
        p.error("--rows and --repeat must be at least 1")
    out = run(args.rows, args.repeat, args.data_dir, args.only)
    ok = all(m["same"] for m in out) and max(m["v2"] / m["api"] for m in out) <= GOAL
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # run as a script from a checkout: import netatlas from it
    sys.exit(main())
