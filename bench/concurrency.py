"""Latency of a quick query and of a small ingest batch while heavy queries run, against the
same with nothing running.

    python bench/concurrency.py [--samples 200] [--heavy 2] [--batch-size 20] [--check]

Starts a real workspace server on loopback (``netatlas workspace serve``) in a fresh directory
and times, one request after another, ``print 1`` (POST /api/query) and a batch of small
VMConnection records (POST /api/ingest/VMConnection, signed as an agent signs): with nothing
else running (idle), and while ``--heavy`` threads keep a heavy query running (a huge range
summed, each stopped by its own time limit and started again). The two alternate in
``--rounds`` rounds, so that whatever else the machine runs weighs on both sides alike. Prints
p50 and p99 of each, side by side. Goal: every p99 under 3x its idle figure (issue 11, item 7).
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netatlas.auth import signed_headers  # noqa: E402
from netatlas.keys import load_or_create  # noqa: E402

GOAL = 3.0                      # loaded p99 / idle p99 at most
HEAVY = "range i from 1 to 100000000000 step 1 | summarize s = sum(i % 7)"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int) -> subprocess.Popen:
    log = open(data.parent / "server.log", "ab")
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(data),
                          "--port", str(port)], stdout=log, stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if p.poll() is not None:
            raise RuntimeError(f"the server exited with {p.returncode}; see {data.parent / 'server.log'}")
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return p
        except OSError:
            time.sleep(0.05)
    p.kill()
    raise RuntimeError("the server did not start in 60 s")


class Client:
    """One kept-alive connection; ``query`` and ``ingest`` return (status, seconds)."""

    def __init__(self, port: int, ident):
        self.port, self.ident = port, ident
        self.query_key = ident.by_role("query")[0].secret
        self.ingest_key = ident.by_role("ingest")[0].secret
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

    def post(self, path: str, body: bytes, headers: dict) -> tuple[int, float]:
        t0 = time.perf_counter()
        self.conn.request("POST", path, body=body, headers=headers)
        r = self.conn.getresponse()
        r.read()
        return r.status, time.perf_counter() - t0

    def query(self, text: str, timeout: float | None = None) -> tuple[int, float]:
        payload = {"query": text} | ({"timeout": timeout} if timeout else {})
        return self.post("/api/query", json.dumps(payload).encode(),
                         {"Authorization": f"Bearer {self.query_key}", "Content-Type": "application/json"})

    def ingest(self, records: list[dict]) -> tuple[int, float]:
        body = json.dumps(records).encode()
        path = "/api/ingest/VMConnection"
        return self.post(path, body, signed_headers(self.ident.workspace_id, self.ingest_key, body, path))


def batch(n: int, seq: int) -> list[dict]:
    now = datetime.now(timezone.utc).isoformat()
    return [{"TimeGenerated": now, "Computer": f"bench-{i % 5}", "Machine": f"m-{i % 5}",
             "RemoteIp": f"10.3.{seq % 250}.{i % 250}", "DestinationPort": 443, "BytesSent": i,
             "LinksEstablished": 1} for i in range(n)]


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def sample(client: Client, samples: int, batch_size: int) -> dict[str, list[float]]:
    """``samples`` timings of each request, alternating; a failed request is an error."""
    out = {"print 1": [], f"ingest {batch_size} records": []}
    for i in range(samples):
        status, took = client.query("print 1")
        if status != 200:
            raise RuntimeError(f"print 1 answered {status}")
        out["print 1"].append(took)
        status, took = client.ingest(batch(batch_size, i))
        if status != 200:
            raise RuntimeError(f"an ingest batch answered {status}")
        out[f"ingest {batch_size} records"].append(took)
        time.sleep(0.005)
    return out


class HeavyLoad:
    """``n`` threads each running HEAVY again and again (stopped by its time limit) until stopped."""

    def __init__(self, port: int, ident, n: int, timeout: float):
        self.stop = threading.Event()
        self.outcomes: list[int] = []
        self.threads = [threading.Thread(target=self._run, args=(Client(port, ident), timeout), daemon=True)
                        for _ in range(n)]

    def _run(self, client: Client, timeout: float) -> None:
        while not self.stop.is_set():
            status, _ = client.query(HEAVY, timeout)
            self.outcomes.append(status)

    def __enter__(self):
        for t in self.threads:
            t.start()
        time.sleep(1.0)             # they run now
        return self

    def stopped(self) -> int:
        return sum(1 for s in self.outcomes if s == 504)

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(120)


def run(samples: int = 200, heavy: int = 2, batch_size: int = 20, heavy_timeout: float = 10.0,
        rounds: int = 4, write=print) -> dict:
    with tempfile.TemporaryDirectory(prefix="netatlas-bench-concurrency-") as tmp:
        data = Path(tmp) / "data"
        ident = load_or_create(data)
        port = free_port()
        server = start_server(data, port)
        try:
            client = Client(port, ident)
            sample(client, 10, batch_size)                       # warm-up: cursors, caches
            idle: dict[str, list[float]] = {}
            loaded: dict[str, list[float]] = {}
            runs = stopped = 0
            per_round = max(1, samples // rounds)
            for _ in range(rounds):
                for name, values in sample(client, per_round, batch_size).items():
                    idle.setdefault(name, []).extend(values)
                with HeavyLoad(port, ident, heavy, heavy_timeout) as load:
                    for name, values in sample(client, per_round, batch_size).items():
                        loaded.setdefault(name, []).extend(values)
                runs, stopped = runs + len(load.outcomes), stopped + load.stopped()
        finally:
            server.kill()
            server.wait()
    write(f"{per_round * rounds} samples of each request, one after another, in {rounds} rounds of idle then "
          f"loaded: {heavy} heavy queries running ({runs} run, {stopped} stopped at their {heavy_timeout:g} s "
          f"limit); {os.cpu_count()} cores")
    write(f"{'request':<22}{'idle p50':>10}{'idle p99':>10}{'loaded p50':>12}{'loaded p99':>12}"
          f"{'p99 ratio':>11}  goal < {GOAL:g}x")
    rows = {}
    ok = True
    for name in idle:
        i50, i99 = percentile(idle[name], 0.5), percentile(idle[name], 0.99)
        l50, l99 = percentile(loaded[name], 0.5), percentile(loaded[name], 0.99)
        ratio = l99 / i99
        ok &= ratio < GOAL
        rows[name] = {"idle_p50": i50, "idle_p99": i99, "loaded_p50": l50, "loaded_p99": l99, "ratio": ratio}
        write(f"{name:<22}{i50 * 1000:>8.1f}ms{i99 * 1000:>8.1f}ms{l50 * 1000:>10.1f}ms{l99 * 1000:>10.1f}ms"
              f"{ratio:>10.2f}x  {'PASS' if ratio < GOAL else 'MISS'}")
    return {"rows": rows, "pass": ok, "heavy_runs": runs, "heavy_stopped": stopped}


def main(argv=None, write=print) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=200, help="timings of each request, idle and loaded")
    ap.add_argument("--heavy", type=int, default=2, help="heavy queries running at once in the loaded half")
    ap.add_argument("--batch-size", type=int, default=20, help="records per ingest batch")
    ap.add_argument("--heavy-timeout", type=float, default=10.0, help="each heavy query's time limit (s)")
    ap.add_argument("--rounds", type=int, default=4, help="rounds of idle then loaded samples")
    ap.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = ap.parse_args(argv)
    if args.samples < 1 or args.heavy < 0 or args.batch_size < 1 or args.rounds < 1:
        write("error: --samples, --batch-size and --rounds must be at least 1, --heavy at least 0")
        return 2
    out = run(args.samples, args.heavy, args.batch_size, args.heavy_timeout, args.rounds, write)
    return 1 if args.check and not out["pass"] else 0


if __name__ == "__main__":
    sys.exit(main())
