"""Ingestion throughput through the HTTP API, beside the same rows loaded by hand-written DuckDB SQL.

    python bench/ingest.py [--batches 30] [--batch-size 10000] [--gzip]

Starts a real workspace server on loopback (``netatlas workspace serve``) in a fresh
directory, signs and POSTs batches of realistic VMConnection records to /api/ingest, and
reports records per second. The same batches are then loaded into a plain DuckDB file with the
shortest hand-written SQL (``INSERT INTO ... SELECT * FROM read_json(..., columns=...)``, no
validation, enrichment or accounting): the ratio shows what the workspace's checking,
enrichment, Usage accounting and HTTP cost. Goal: >= 100,000 records/s with batches of 10,000.
"""
from __future__ import annotations

import argparse
import gzip
import http.client
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netatlas.auth import signed_headers  # noqa: E402
from netatlas.catalogue import Catalogue  # noqa: E402
from netatlas.keys import load_or_create  # noqa: E402

GOAL = 100_000


def batch(seed: int, size: int, start: float) -> list[dict]:
    """Realistic one-minute VMConnection records: a few hundred machines and processes."""
    rnd = random.Random(seed)
    out = []
    for i in range(size):
        m = rnd.randrange(200)
        inbound = rnd.random() < 0.4
        src, dst = f"10.1.{m // 250}.{m % 250}", f"10.2.{rnd.randrange(4)}.{rnd.randrange(250)}"
        if inbound:
            src, dst = dst, src
        port = rnd.choice((443, 8080, 1433, 5432, 6379, 5672, 389, 53, 22))
        proc = f"p-{(m * 7 + port) % 4096:012x}"
        est = rnd.randrange(0, 6)
        t = start + 60 * (i // 500)
        out.append({
            "TimeGenerated": time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(t)),
            "Computer": f"host-{m:03d}.contoso.local", "AgentId": f"00000000-0000-4000-8000-{m:012d}",
            "Machine": f"m-00000000-0000-4000-8000-{m:012d}", "Process": proc,
            "ProcessName": rnd.choice(("nginx", "java", "postgres", "sqlservr", "redis-server", "svchost")),
            "Direction": "inbound" if inbound else "outbound", "SourceIp": src, "DestinationIp": dst,
            "DestinationPort": port, "Protocol": "tcp", "ConnectionId": f"U({src}-{dst}:{port})/{proc}",
            "LinksEstablished": est, "LinksTerminated": est, "LinksLive": rnd.randrange(0, 3),
            "LinksFailed": 1 if rnd.random() < 0.02 else 0,
            "BytesSent": int(rnd.paretovariate(1.2) * 800), "BytesReceived": int(rnd.paretovariate(1.2) * 2400),
            "Responses": est * 3, "ResponseTimeMin": 1, "ResponseTimeMax": 40, "ResponseTimeSum": est * 45,
        })
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(data: Path, port: int) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(data),
                          "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            c.request("GET", "/healthz")
            if c.getresponse().status == 200:
                return p
        except OSError:
            time.sleep(0.1)
    p.kill()
    raise SystemExit(f"the server did not start: {p.stderr.read().decode()[-2000:]}")


def post_all(port: int, ident, key, sent: list[bytes], use_gzip: bool, clients: int) -> None:
    """POST the batches from `clients` agents at once, each on its own keep-alive connection."""
    import threading
    path = "/api/ingest/VMConnection"
    errors = []

    def agent(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for i in range(k, len(sent), clients):
            body = sent[i]
            headers = signed_headers(ident.workspace_id, key.secret, body, path, gzipped=use_gzip,
                                     batch_id=f"bench-{i}")
            conn.request("POST", path, body=body, headers=headers)
            resp = conn.getresponse()
            answer = resp.read()
            if resp.status != 200:
                errors.append(f"batch {i}: HTTP {resp.status}: {answer[:500]!r}")
                return

    threads = [threading.Thread(target=agent, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise SystemExit(errors[0])


def run(batches: int, size: int, use_gzip: bool, clients: int = 2) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="netatlas-bench-ingest-"))
    start = time.time() - 86400
    bodies = [json.dumps(batch(i, size, start + i * 60 * (size // 500))).encode() for i in range(batches)]
    sent = [gzip.compress(b, 1) if use_gzip else b for b in bodies]

    # the workspace server, over HTTP
    data = tmp / "ws"
    ident = load_or_create(data)
    key = next(k for k in ident.keys if k.role == "ingest")
    port = free_port()
    server = start_server(data, port)
    try:
        t0 = time.perf_counter()
        post_all(port, ident, key, sent, use_gzip, clients)
        http_s = time.perf_counter() - t0
    finally:
        server.terminate()
        server.wait(30)

    # the same rows by hand: DuckDB file, read_json with the column types, INSERT
    cat = Catalogue.load()
    table = cat.get("VMConnection")
    types = {"string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "real": "DOUBLE", "bool": "BOOLEAN",
             "datetime": "TIMESTAMP", "timespan": "BIGINT", "dynamic": "JSON", "guid": "UUID", "decimal": "DOUBLE"}
    con = duckdb.connect(str(tmp / "hand.duckdb"))
    from netatlas.workspace import CHECKPOINT_THRESHOLD
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")   # the workspace's own setting
    con.execute("CREATE TABLE VMConnection (" + ", ".join(f'"{c}" {types[t]}' for c, t in table.columns) + ")")
    spec = "{" + ", ".join(f"'{c}': '{types[t]}'" for c, t in table.columns) + "}"
    files = []
    for i, body in enumerate(bodies):
        f = tmp / f"b{i}.json"
        f.write_bytes(body)
        files.append(f)
    t0 = time.perf_counter()
    for i, f in enumerate(files):
        # the hand-written path also has to receive the body: writing it to the file is counted
        f.write_bytes(bodies[i])
        con.execute(f"INSERT INTO VMConnection SELECT * FROM read_json('{f}', format='array', columns={spec})")
    hand_s = time.perf_counter() - t0
    stored = con.execute("SELECT count(*) FROM VMConnection").fetchone()[0]
    con.close()
    n = batches * size
    assert stored == n
    return {"records": n, "http_s": http_s, "hand_s": hand_s, "http_rps": n / http_s, "hand_rps": n / hand_s,
            "mb": sum(len(b) for b in bodies) / 1e6, "sent_mb": sum(len(b) for b in sent) / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--gzip", action="store_true", help="send the batches gzip-compressed, as agents do")
    ap.add_argument("--clients", type=int, default=2,
                    help="agents sending at once, each on its own connection (default 2, one per core)")
    ap.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = ap.parse_args(argv)
    r = run(args.batches, args.batch_size, args.gzip, args.clients)
    print(f"{r['records']:,} VMConnection records in {args.batches} batches of {args.batch_size:,} "
          f"({r['mb']:.1f} MB of JSON, {r['sent_mb']:.1f} MB sent{' gzip' if args.gzip else ''}), "
          f"{args.clients} agents at once, {os.cpu_count()} cores")
    print(f"{'path':<44} {'seconds':>8} {'records/s':>12}")
    print(f"{'netatlas HTTP API (sign, check, enrich, Usage)':<44} {r['http_s']:>8.2f} {r['http_rps']:>12,.0f}")
    print(f"{'hand-written DuckDB read_json + INSERT':<44} {r['hand_s']:>8.2f} {r['hand_rps']:>12,.0f}")
    print(f"ratio (hand-written / netatlas time): {r['http_s'] / r['hand_s']:.2f}x slower through the API")
    ok = r["http_rps"] >= GOAL
    print(f"goal >= {GOAL:,} records/s through the API: {'PASS' if ok else 'MISS'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
