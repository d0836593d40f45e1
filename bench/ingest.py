"""Ingestion throughput through the HTTP API, with and without enrichment, beside the same rows
loaded by hand-written DuckDB SQL.

    python bench/ingest.py [--batches 30] [--batch-size 10000] [--gzip]

Starts a real workspace server on loopback (``netatlas workspace serve``) in a fresh
directory, signs and POSTs batches of realistic VMConnection records to /api/ingest, and
reports records per second; a third of the records talk to one of 3,000 internet addresses.
It does so twice, side by side: with enrichment (the bundled GeoLite2-City database, and a
threat-intelligence feed of 20,000 addresses and 1,000 CIDR ranges, some of which match) and
with it off (``--geoip-db off``, no feed). The same batches are then loaded into a plain DuckDB
file with the shortest hand-written SQL (``INSERT INTO ... SELECT * FROM read_json(...,
columns=...)``, no validation, enrichment or accounting). Goals: >= 100,000 records/s with
batches of 10,000 (with enrichment), and enrichment costing under 20 % of the throughput.

Agent-sized batches (``--agent-batches N``, default 1500; 0 to skip): what agents really send,
200 records gzipped, from 8 senders at once, with enrichment on, against a server of its own.
The senders' work is kept out of the way: every request (headers signed, body gzipped) is built
before the clock starts and written on raw keep-alive sockets, so their CPU is a few percent of
a core (printed, with the server's, from /proc). Goal: >= 100,000 records/s; printed with it,
the number of one-minute agents the workspace holds at that rate (a busy server's agent: 2.5
batches of 200 records a minute, the issue's 33-42 batches/s per 1,000 servers).
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
from netatlas.keys import create_key, load_or_create  # noqa: E402

GOAL = 100_000
ENRICHMENT_GOAL = 0.20        # at most this share of the throughput lost to enrichment


def public_pool(n: int = 3000, seed: int = 7) -> list[str]:
    """Internet addresses (global unicast, from address blocks in the GeoIP database)."""
    import ipaddress
    rnd = random.Random(seed)
    firsts = [13, 20, 23, 31, 34, 35, 40, 45, 52, 54, 64, 66, 74, 77, 81, 85, 91, 104, 142, 151, 157, 172, 176,
              185, 188, 193, 195, 199, 203, 212, 213, 216, 217]
    out = set()
    while len(out) < n:
        ip = f"{rnd.choice(firsts)}.{rnd.randrange(256)}.{rnd.randrange(256)}.{rnd.randrange(1, 255)}"
        if ipaddress.ip_address(ip).is_global:
            out.add(ip)
    return sorted(out)


def feed(path: Path, pool: list[str], seed: int = 11) -> None:
    """A blocklist: 20,000 addresses and 1,000 /24 ranges; 3 % of the pool listed, some by range."""
    rnd = random.Random(seed)
    lines = ["# bench feed", "# Category : malware"]
    lines += [f"198.{rnd.randrange(18, 20)}.{rnd.randrange(256)}.{rnd.randrange(256)}" for _ in range(19_900)]
    lines += rnd.sample(pool, 100)
    lines += [f"{rnd.randrange(1, 224)}.{rnd.randrange(256)}.{rnd.randrange(256)}.0/24" for _ in range(990)]
    lines += [ip.rsplit(".", 1)[0] + ".0/24" for ip in rnd.sample(pool, 10)]
    path.write_text("\n".join(lines) + "\n")


# the minutes of the batches wrap within the last day: the workspace refuses a TimeGenerated more
# than a day ahead of its clock (or older than the table's retention)
WINDOW = 23 * 3600


def batch(seed: int, size: int, start: float, pool: list[str]) -> list[dict]:
    """Realistic one-minute VMConnection records: a few hundred machines and processes, a third of
    them with an internet address at the other end."""
    rnd = random.Random(seed)
    out = []
    for i in range(size):
        m = rnd.randrange(200)
        inbound = rnd.random() < 0.4
        remote = rnd.choice(pool) if rnd.random() < 0.33 else f"10.2.{rnd.randrange(4)}.{rnd.randrange(250)}"
        src, dst = f"10.1.{m // 250}.{m % 250}", remote
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


def start_server(data: Path, port: int, *options: str) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(data),
                          "--port", str(port), *options], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         cwd=ROOT)
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


def in_threads(fn, n: int, errors: list) -> None:
    """``fn(k)`` for k in 0..n-1, each on a thread of its own, until all end; the first error ends the run."""
    import threading
    threads = [threading.Thread(target=fn, args=(k,)) for k in range(n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    if errors:
        raise SystemExit(errors[0])


def post_all(port: int, ident, key, sent: list[bytes], use_gzip: bool, clients: int) -> None:
    """POST the batches from `clients` agents at once, each on its own keep-alive connection."""
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

    in_threads(agent, clients, errors)


def raw_requests(ident, key, bodies: list[bytes], path: str, tag: str) -> list[bytes]:
    """Each batch as the exact bytes of a signed, gzipped HTTP/1.1 request (built before timing)."""
    out = []
    for i, body in enumerate(bodies):
        headers = signed_headers(ident.workspace_id, key.secret, body, path, gzipped=True, batch_id=f"{tag}-{i}")
        headers = {k: v for k, v in headers.items() if k.lower() not in ("content-length", "host")}
        head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n" + "".join(
            f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        out.append(head.encode() + body)
    return out


def _answer(sock: socket.socket, buf: bytearray) -> tuple[int, bytes]:
    """Read one HTTP response from a keep-alive socket: (status, body)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise SystemExit("the server closed the connection")
        buf += chunk
    end = buf.index(b"\r\n\r\n") + 4
    head = bytes(buf[:end]).decode("latin-1")
    status = int(head.split(" ", 2)[1])
    length = int(next(line.split(":", 1)[1] for line in head.split("\r\n")
                      if line.lower().startswith("content-length:")))
    while len(buf) < end + length:
        buf += sock.recv(65536)
    body = bytes(buf[end:end + length])
    del buf[:end + length]
    return status, body


def post_raw(port: int, requests: list[bytes], clients: int) -> None:
    """Send the prepared requests from ``clients`` senders at once, each waiting for its answer
    before the next (as an agent does), on one keep-alive socket each."""
    errors = []

    def sender(k: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf = bytearray()
        try:
            for i in range(k, len(requests), clients):
                sock.sendall(requests[i])
                status, body = _answer(sock, buf)
                if status != 200:
                    errors.append(f"request {i}: HTTP {status}: {body[:500]!r}")
                    return
        finally:
            sock.close()

    in_threads(sender, clients, errors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (and its waited-for children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


AGENT_BATCH = 200               # records in an agent's batch
AGENT_SENDERS = 8
AGENT_BATCHES_PER_MINUTE = 2.5  # a busy server's agent (the issue: 33-42 batches/s per 1,000 servers)


def run_agents(batches: int, clients: int = AGENT_SENDERS) -> dict:
    """Agent-sized gzip batches from ``clients`` senders, enrichment on, prepared requests."""
    tmp = Path(tempfile.mkdtemp(prefix="netatlas-bench-agents-"))
    start = time.time() - 86400
    pool = public_pool()
    feed(tmp / "feed.txt", pool)
    bodies = [gzip.compress(json.dumps(batch(i, AGENT_BATCH, start + (i * 60) % WINDOW, pool)).encode(), 1)
              for i in range(batches)]
    data = tmp / "agents"
    ident = load_or_create(data)
    key = next(k for k in ident.keys if k.role == "ingest")
    query_key = next(k for k in ident.keys if k.role == "query").secret
    path = "/api/ingest/VMConnection"
    warm = raw_requests(ident, key, bodies[:40], path, "warm")     # stored too, under other batch ids
    timed = raw_requests(ident, key, bodies, path, "agent")
    port = free_port()
    server = start_server(data, port, "--threatintel-feeds", f"list:{tmp / 'feed.txt'}")
    try:
        deadline = time.monotonic() + 60
        while not indicators_loaded(port, query_key):
            if time.monotonic() > deadline:
                raise SystemExit("the feed was not imported within 60 s")
            time.sleep(0.2)
        post_raw(port, warm, clients)                 # the first batches open the GeoIP database
        cpu0, own0, t0 = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
        post_raw(port, timed, clients)
        seconds = time.perf_counter() - t0
        server_cpu, sender_cpu = cpu_seconds(server.pid) - cpu0, time.process_time() - own0
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        c.request("POST", "/api/query", body=json.dumps({"query": "VMConnection | summarize n = count(), "
                  "malicious = countif(MaliciousIp != ''), placed = countif(RemoteCountry != '')"}),
                  headers={"Authorization": f"Bearer {query_key}", "Content-Type": "application/json"})
        n, malicious, placed = json.loads(c.getresponse().read())["tables"][0]["rows"][0]
        c.request("GET", "/metrics")
        metrics = c.getresponse().read().decode()
        groups = next((float(line.split()[-1]) for line in metrics.splitlines()
                       if line.startswith("netatlas_commit_groups_total")), 0.0)    # 0: before group commit
    finally:
        server.terminate()
        server.wait(30)
    records = batches * AGENT_BATCH
    expected = records + len(warm) * AGENT_BATCH
    if n != expected or not (malicious and placed):
        raise SystemExit(f"stored {n} rows ({malicious} malicious, {placed} placed), expected {expected}")
    floor = duckdb_floor(bodies, clients)
    return {"records": records, "seconds": seconds, "rps": records / seconds, "server_cpu": server_cpu, "floor": floor,
            "sender_cpu": sender_cpu, "groups": groups, "batches": batches + len(warm), "placed": placed,
            "malicious": malicious, "sent_mb": sum(len(b) for b in bodies) / 1e6}


DUCKDB_TYPES = {"string": "VARCHAR", "long": "BIGINT", "int": "INTEGER", "real": "DOUBLE", "bool": "BOOLEAN",
                "datetime": "TIMESTAMP", "timespan": "BIGINT", "dynamic": "JSON", "guid": "UUID", "decimal": "DOUBLE"}


def duckdb_floor(bodies: list[bytes], group: int) -> float:
    """Records/s of DuckDB alone storing the same gzip batches ``group`` at a time, one
    transaction each (read_json of the group's files, INSERT, COMMIT): no HTTP, parsing, checks,
    enrichment or accounting. With ``group`` = the senders, each awaiting its answer, it is the
    most a store that acknowledges a batch only after its commit can reach."""
    tmp = Path(tempfile.mkdtemp(prefix="netatlas-bench-floor-"))
    table = Catalogue.load().get("VMConnection")
    con = duckdb.connect(str(tmp / "floor.duckdb"))
    from netatlas.store.duckdb import CHECKPOINT_THRESHOLD
    con.execute(f"SET checkpoint_threshold = '{CHECKPOINT_THRESHOLD}'")
    con.execute("CREATE TABLE VMConnection (" + ", ".join(f'"{c}" {DUCKDB_TYPES[t]}' for c, t in table.columns) + ")")
    spec = "{" + ", ".join(f"'{c}': '{DUCKDB_TYPES[t]}'" for c, t in table.columns) + "}"
    t0 = time.perf_counter()
    for g in range(0, len(bodies), group):
        files = []
        for i, body in enumerate(bodies[g:g + group]):      # receiving the body is counted: written to a file
            f = tmp / f"b{i}.json.gz"
            f.write_bytes(body)
            files.append(f"'{f}'")
        con.execute("BEGIN TRANSACTION")
        con.execute(f"INSERT INTO VMConnection SELECT * FROM read_json([{', '.join(files)}], format='array', "
                    f"compression='gzip', columns={spec})")
        con.execute("COMMIT")
    seconds = time.perf_counter() - t0
    stored = con.execute("SELECT count(*) FROM VMConnection").fetchone()[0]
    con.close()
    return stored / seconds


def indicators_loaded(port: int, key: str) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/api/threatintel", headers={"Authorization": f"Bearer {key}"})
    return json.loads(c.getresponse().read())["indicators"]["matching"]


def serve_and_post(tmp: Path, name: str, sent: list[bytes], use_gzip: bool, clients: int, *options: str) -> float:
    data = tmp / name
    ident = load_or_create(data)
    key = next(k for k in ident.keys if k.role == "ingest")
    query_key = create_key(data, "query").secret     # query secrets are stored hashed: a new key
    port = free_port()
    server = start_server(data, port, *options)
    try:
        if "--threatintel-feeds" in options:
            deadline = time.monotonic() + 60
            while not indicators_loaded(port, query_key):
                if time.monotonic() > deadline:
                    raise SystemExit("the feed was not imported within 60 s")
                time.sleep(0.2)
        t0 = time.perf_counter()
        post_all(port, ident, key, sent, use_gzip, clients)
        seconds = time.perf_counter() - t0
        if "--threatintel-feeds" in options:          # the enrichment happened: flagged and placed rows
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            c.request("POST", "/api/query", body=json.dumps({"query": "VMConnection | summarize "
                      "malicious = countif(MaliciousIp != ''), placed = countif(RemoteCountry != '')"}),
                      headers={"Authorization": f"Bearer {query_key}", "Content-Type": "application/json"})
            malicious, placed = json.loads(c.getresponse().read())["tables"][0]["rows"][0]
            if not (malicious and placed):
                raise SystemExit(f"enrichment did not happen: {malicious} malicious, {placed} placed")
            print(f"enriched: {placed:,} records placed by the GeoIP database, {malicious:,} flagged malicious")
        return seconds
    finally:
        server.terminate()
        server.wait(30)


def run(batches: int, size: int, use_gzip: bool, clients: int = 2) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="netatlas-bench-ingest-"))
    start = time.time() - 86400
    pool = public_pool()
    bodies = [json.dumps(batch(i, size, start + (i * 60 * (size // 500)) % WINDOW, pool)).encode() for i in range(batches)]
    sent = [gzip.compress(b, 1) if use_gzip else b for b in bodies]
    feed(tmp / "feed.txt", pool)

    # the workspace server, over HTTP: without enrichment, then with it, then without again (the
    # median of the two plain runs is the reference, so warm-up and drift do not favour either)
    plain_a = serve_and_post(tmp, "plain-a", sent, use_gzip, clients, "--geoip-db", "off")
    enriched_s = serve_and_post(tmp, "enriched", sent, use_gzip, clients,
                                "--threatintel-feeds", f"list:{tmp / 'feed.txt'}")
    plain_b = serve_and_post(tmp, "plain-b", sent, use_gzip, clients, "--geoip-db", "off")
    plain_s = (plain_a + plain_b) / 2
    http_s = enriched_s

    # the same rows by hand: DuckDB file, read_json with the column types, INSERT
    cat = Catalogue.load()
    table = cat.get("VMConnection")
    types = DUCKDB_TYPES
    con = duckdb.connect(str(tmp / "hand.duckdb"))
    from netatlas.store.duckdb import CHECKPOINT_THRESHOLD
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
            "plain_s": plain_s, "plain_rps": n / plain_s, "plain_runs": (plain_a, plain_b),
            "mb": sum(len(b) for b in bodies) / 1e6, "sent_mb": sum(len(b) for b in sent) / 1e6}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--batches", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--gzip", action="store_true", help="send the batches gzip-compressed, as agents do")
    ap.add_argument("--clients", type=int, default=2,
                    help="agents sending at once, each on its own connection (default 2, one per core)")
    ap.add_argument("--agent-batches", type=int, default=1500,
                    help=f"agent-sized batches ({AGENT_BATCH} records, gzip, {AGENT_SENDERS} senders) to time "
                         "(default 1500; 0: skip)")
    ap.add_argument("--agent-senders", type=int, default=AGENT_SENDERS,
                    help=f"senders of the agent-sized batches, each awaiting its answer (default {AGENT_SENDERS})")
    ap.add_argument("--check", action="store_true", help="exit 1 when the goal is missed")
    args = ap.parse_args(argv)
    ok = True
    if args.agent_batches:
        senders = args.agent_senders
        a = run_agents(args.agent_batches, senders)
        per_agent = AGENT_BATCH * AGENT_BATCHES_PER_MINUTE / 60
        print(f"agent batches: {a['records']:,} VMConnection records in {args.agent_batches:,} batches of "
              f"{AGENT_BATCH} (gzip, {a['sent_mb']:.1f} MB sent), {senders} senders at once, GeoIP + "
              f"threat intelligence, {os.cpu_count()} cores")
        print(f"  {a['seconds']:.2f} s: {a['rps']:,.0f} records/s, {a['batches'] / a['seconds']:,.0f} batches/s, "
              + (f"{a['batches'] / a['groups']:.1f} batches per commit ({a['groups']:.0f} group commits)" if a['groups']
                 else "one commit per batch"))
        print(f"  CPU: server {a['server_cpu']:.2f} s ({a['server_cpu'] / a['seconds']:.2f} cores), senders "
              f"{a['sender_cpu']:.2f} s ({a['sender_cpu'] / a['seconds']:.2f} cores; requests signed and gzipped "
              f"before the clock, raw keep-alive sockets)")
        print(f"  one-minute agents one workspace holds at this rate ({AGENT_BATCHES_PER_MINUTE} batches of "
              f"{AGENT_BATCH} a minute each): {a['rps'] / per_agent:,.0f} (half of it, leaving the rest for "
              f"queries: {a['rps'] / per_agent / 2:,.0f})")
        print(f"  beside it, DuckDB alone storing the same batches {senders} per transaction (read_json + INSERT + "
              f"COMMIT, nothing else; {senders} senders awaiting their answers put at most {senders} batches in a "
              f"commit): {a['floor']:,.0f} records/s ({a['rps'] / a['floor']:.0%} of it reached)")
        print(f"  goal >= {GOAL:,} records/s at agent batch sizes: {'PASS' if a['rps'] >= GOAL else 'MISS'}")
        ok = a["rps"] >= GOAL
        if not args.batches:
            return 1 if args.check and not ok else 0
    r = run(args.batches, args.batch_size, args.gzip, args.clients)
    print(f"{r['records']:,} VMConnection records in {args.batches} batches of {args.batch_size:,} "
          f"({r['mb']:.1f} MB of JSON, {r['sent_mb']:.1f} MB sent{' gzip' if args.gzip else ''}), "
          f"{args.clients} agents at once, {os.cpu_count()} cores")
    print(f"{'path':<52} {'seconds':>8} {'records/s':>12}")
    print(f"{'netatlas HTTP API, enrichment off (mean of 2 runs)':<52} {r['plain_s']:>8.2f} {r['plain_rps']:>12,.0f}")
    print(f"{'netatlas HTTP API, GeoIP + threat intelligence':<52} {r['http_s']:>8.2f} {r['http_rps']:>12,.0f}")
    print(f"{'hand-written DuckDB read_json + INSERT':<52} {r['hand_s']:>8.2f} {r['hand_rps']:>12,.0f}")
    cost = 1 - r["http_rps"] / r["plain_rps"]
    print(f"enrichment cost: {cost:.1%} of the throughput (plain runs: "
          f"{', '.join(f'{x:.2f} s' for x in r['plain_runs'])}); goal < {ENRICHMENT_GOAL:.0%}: "
          f"{'PASS' if cost < ENRICHMENT_GOAL else 'MISS'}")
    print(f"ratio (hand-written / netatlas time): {r['http_s'] / r['hand_s']:.2f}x slower through the API")
    ok = ok and r["http_rps"] >= GOAL and cost < ENRICHMENT_GOAL
    print(f"goal >= {GOAL:,} records/s through the API with enrichment: "
          f"{'PASS' if r['http_rps'] >= GOAL else 'MISS'}")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    raise SystemExit(main())
