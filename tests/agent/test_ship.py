"""The shipper (netatlas/agent/ship.py) against a real workspace server on loopback
(`netatlas workspace serve` in a subprocess), killed and restarted on the same port to play an
outage. Each test writes records with its own Computer name, so tests do not see each other's rows."""
from __future__ import annotations

import http.client
import http.server
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

from netatlas import keys
from netatlas.agent import ship
from netatlas.agent.config import AgentConfig

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Workspace:
    """`netatlas workspace serve --data DIR --port P`; kill() and start() again on the same port."""

    def __init__(self, data: Path):
        self.data, self.port, self.proc = data, free_port(), None
        self.identity = keys.load_or_create(data)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = data.parent / "server.log"

    def up(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> "Workspace":
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data",
                                          str(self.data), "--port", str(self.port)],
                                         stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"no /healthz in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.up():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def query(self, kql: str) -> list[list]:
        secret = self.identity.by_role("query")[0].secret
        status, body = self.request("POST", "/api/query", json.dumps({"query": kql}).encode(),
                                    {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"})
        assert status == 200, body
        return json.loads(body)["tables"][0]["rows"]

    def sent(self, computer: str) -> list[int]:
        """BytesSent of the computer's VMConnection rows, in ascending order."""
        rows = self.query(f'VMConnection | where Computer == "{computer}" | project BytesSent | order by BytesSent asc')
        return [r[0] for r in rows]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws") / "data").start()
    yield ws
    ws.kill()


@pytest.fixture
def workspace(server) -> Workspace:
    """The module's workspace, up (a test before may have left it down)."""
    if not server.up():
        server.start()
    return server


def agent_config(tmp_path: Path, ws: Workspace, **settings) -> AgentConfig:
    return AgentConfig(**{"workspace_url": ws.url, "workspace_id": ws.identity.workspace_id,
                          "key": ws.identity.by_role("ingest")[0].secret, "spool": str(tmp_path / "spool"),
                          "machine_id_file": str(tmp_path / "machine-id"), "timeout": 5, **settings})


def records(computer: str, values) -> list[dict]:
    now = datetime.now(timezone.utc)
    return [{"TimeGenerated": now, "Computer": computer, "BytesSent": v} for v in values]


def unique() -> str:
    return f"host-{uuid.uuid4().hex[:10]}"


class Recording:
    """A send that records the batch ids it was given, then sends with the real sender."""

    def __init__(self, config: AgentConfig):
        self.real, self.ids = ship.HttpSender(config), []

    def __call__(self, table, body, batch_id):
        self.ids.append(batch_id)
        return self.real(table, body, batch_id)


def seq(batch_id: str) -> int:
    return int(batch_id.rsplit(".", 1)[1])


# ---------------------------------------------------------------- delivery

def test_records_shipped_arrive_and_are_queryable(tmp_path, workspace):
    host = unique()
    s = ship.Shipper(agent_config(tmp_path, workspace, batch_max_records=10))
    ids = s.enqueue("VMConnection", records(host, range(25)))
    assert len(ids) == 3 and [seq(i) for i in ids] == [0, 1, 2]
    assert all(i.startswith(f"{s.agent_id}.{s.spool_id}.") for i in ids)
    assert sorted(p.name.split(".")[2] for p in s.dir.glob("*.gz")) == ["10", "10", "5"]   # spooled before any send
    report = s.flush()
    assert (report.sent, report.error, report.remaining) == (3, None, 0)
    assert workspace.sent(host) == list(range(25))
    assert list(s.dir.glob("*.gz")) == []
    assert {k: s.stats[k] for k in ("enqueued_batches", "sent_batches", "sent_records", "spool_batches")} == \
        {"enqueued_batches": 3, "sent_batches": 3, "sent_records": 25, "spool_batches": 0}
    assert s.sender.conn is not None   # kept alive for the next flush
    s.close()


def test_while_the_workspace_is_down_batches_wait_in_the_spool_then_go_in_order(tmp_path, workspace):
    host, cfg = unique(), agent_config(tmp_path, workspace)
    workspace.kill()
    s = ship.Shipper(cfg)
    for i in range(4):
        s.enqueue("VMConnection", records(host, [i * 10, i * 10 + 1]))
    report = s.flush()
    assert report.sent == 0 and report.remaining == 4 and "ConnectionRefusedError" in report.error
    assert report.retry_in > 0 and s.retry_at > time.monotonic() and s.stats["send_failures"] == 1
    s.enqueue("VMConnection", records(host, [40]))
    s.close(timeout=0)
    waiting = [e.batch_id for e in s.pending()]
    assert len(waiting) == 5

    again = ship.Shipper(cfg, send=(recording := Recording(cfg)))   # the agent restarted meanwhile
    assert [e.batch_id for e in again.pending()] == waiting
    workspace.start()
    report = again.flush()
    assert (report.sent, report.remaining, report.duplicates) == (5, 0, 0)
    assert recording.ids == waiting and [seq(i) for i in waiting] == sorted(seq(i) for i in waiting)
    assert workspace.sent(host) == [0, 1, 10, 11, 20, 21, 30, 31, 40]
    assert seq(again.enqueue("VMConnection", records(host, [50]))[0]) == seq(waiting[-1]) + 1
    again.close()


def test_a_batch_delivered_whose_answer_was_lost_is_stored_once(tmp_path, workspace):
    host, cfg = unique(), agent_config(tmp_path, workspace)
    real = ship.HttpSender(cfg)

    def answer_lost(table, body, batch_id):
        reply = real(table, body, batch_id)
        assert reply.status == 200
        workspace.kill()   # the workspace stored it, answered, and died before the answer counted
        raise ConnectionResetError("connection reset by peer")

    s = ship.Shipper(cfg, send=answer_lost)
    s.enqueue("VMConnection", records(host, [1, 2, 3]))
    s.enqueue("VMConnection", records(host, [4]))
    assert s.flush().remaining == 2
    workspace.start()
    s._send = real   # the same connection, now stale: the sender reconnects once
    report = s.flush()
    assert (report.sent, report.duplicates, report.remaining) == (2, 1, 0)
    assert s.stats["duplicate_batches"] == 1
    assert workspace.sent(host) == [1, 2, 3, 4]
    s.close()


def test_a_refused_batch_goes_to_rejected_and_does_not_block_the_others(tmp_path, workspace):
    host = unique()
    s = ship.Shipper(agent_config(tmp_path, workspace))
    s.enqueue("VMConnection", records(host, [1]))
    bad = s.enqueue("VMConnection", records(host, [2]) + [{"TimeGenerated": "2024-01-01T00:00:00Z", "Bogus": 1}])[0]
    unknown_table = s.enqueue("NoSuchTable", records(host, [3]))[0]
    s.enqueue("VMConnection", records(host, [4]))
    report = s.flush()
    assert (report.sent, report.rejected, report.remaining, report.error) == (2, 2, 0, None)
    assert workspace.sent(host) == [1, 4]
    kept = sorted(p.name for p in s.rejected_dir.iterdir())
    assert [n for n in kept if n.endswith(".gz")] == [n[:-len(".reply.json")] for n in kept if n.endswith(".json")]
    replies = {json.loads(p.read_text())["batch_id"]: json.loads(p.read_text())
               for p in s.rejected_dir.glob("*.reply.json")}
    assert replies[bad]["status"] == 400 and replies[bad]["error"]["code"] == "INGEST_UNKNOWN_COLUMN"
    assert replies[bad]["error"]["field"] == "Bogus" and replies[bad]["records"] == 2
    assert replies[unknown_table]["status"] == 404
    assert (s.stats["rejected_batches"], s.stats["rejected_records"]) == (2, 3)
    assert seq(s.enqueue("VMConnection", records(host, [5]))[0]) == 4
    s.close()
    assert seq(ship.Shipper(s.config).enqueue("VMConnection", records(host, [6]))[0]) == 5


def test_a_wrong_key_keeps_the_batch_until_the_key_is_fixed(tmp_path, workspace):
    host, good = unique(), agent_config(tmp_path, workspace)
    wrong = AgentConfig(**{**{f: getattr(good, f) for f in good.__dataclass_fields__}, "key": "d3Jvbmcta2V5"})
    s = ship.Shipper(wrong)
    s.enqueue("VMConnection", records(host, [7]))
    report = s.flush()
    assert report.remaining == 1 and report.error.startswith("403 AUTH_BAD_SIGNATURE")
    assert s.stats["rejected_batches"] == 0
    s.close(timeout=0)
    fixed = ship.Shipper(good)
    assert fixed.flush().sent == 1 and workspace.sent(host) == [7]
    fixed.close()


# ---------------------------------------------------------------- the spool

def test_at_the_cap_the_oldest_batches_are_dropped_and_counted(tmp_path, workspace, caplog):
    host = unique()
    cfg = agent_config(tmp_path, workspace)
    probe = ship.encode(records(host, range(100, 150)))
    cap = int(len(probe) * 3.5)
    cfg = AgentConfig(**{**{f: getattr(cfg, f) for f in cfg.__dataclass_fields__}, "spool_max_bytes": cap})
    workspace.kill()
    s = ship.Shipper(cfg)
    with caplog.at_level(logging.WARNING, logger="netatlas.agent.ship"):
        ids = [s.enqueue("VMConnection", records(host, range(i * 100, i * 100 + 50)))[0] for i in range(8)]
    kept = [e.batch_id for e in s.pending()]
    assert kept == ids[-len(kept):] and 2 <= len(kept) <= 4   # the newest, oldest first
    assert s.stats["spool_bytes"] <= cap
    assert s.stats["dropped_batches"] == 8 - len(kept) and s.stats["dropped_records"] == 50 * (8 - len(kept))
    assert "dropped the 1 oldest batches (50 records" in caplog.text
    assert f"{s.stats['dropped_batches']} batches ({s.stats['dropped_records']} records) dropped since start" in caplog.text
    workspace.start()
    assert s.flush().sent == len(kept)
    first = 8 - len(kept)
    assert workspace.sent(host) == [v for i in range(first, 8) for v in range(i * 100, i * 100 + 50)]
    s.close()


def test_half_written_batches_are_removed_and_an_emptied_spool_gets_new_ids(tmp_path, workspace):
    cfg = agent_config(tmp_path, workspace)
    s = ship.Shipper(cfg, send=lambda *a: ship.Reply(503))
    first = s.enqueue("VMConnection", records("h", [1]))[0]
    assert [p.name for p in s.dir.glob(".*")] == []   # no temp file left behind
    (s.dir / f".000000000009.VMConnection.1.{s.batch_id(9)}.gz.tmp").write_bytes(b"\x1f\x8b half")
    again = ship.Shipper(cfg)
    assert [p.name for p in again.dir.glob(".*")] == [] and [e.batch_id for e in again.pending()] == [first]
    assert again.spool_id == s.spool_id and again.agent_id == s.agent_id
    shutil.rmtree(cfg.spool)
    fresh = ship.Shipper(cfg)
    assert fresh.spool_id != s.spool_id and fresh.enqueue("VMConnection", records("h", [1]))[0] != first


def test_a_silent_workspace_times_out_and_the_batch_stays(tmp_path, workspace):
    with socket.socket() as silent:   # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        cfg = agent_config(tmp_path, workspace, timeout=0.5,
                           workspace_url=f"http://127.0.0.1:{silent.getsockname()[1]}")
        s = ship.Shipper(cfg)
        s.enqueue("VMConnection", records("h", [1]))
        started = time.monotonic()
        report = s.flush()
    assert time.monotonic() - started < 3
    assert report.remaining == 1 and "timed out" in report.error


# ---------------------------------------------------------------- the loop

def wait_for(condition, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_the_shipper_thread_backs_off_and_retries_without_new_records(tmp_path, workspace, monkeypatch):
    monkeypatch.setattr(ship, "BACKOFF_FIRST", 0.05)
    host = unique()
    workspace.kill()
    s = ship.Shipper(agent_config(tmp_path, workspace, backoff_max=0.4))
    s.enqueue("VMConnection", records(host, [1]))
    s.start()
    wait_for(lambda: s.stats["send_failures"] >= 3)   # 0.05, 0.1, 0.2 s apart (with jitter)
    workspace.start()
    wait_for(lambda: s.stats["sent_batches"] == 1)
    s.close()
    assert workspace.sent(host) == [1] and s.pending() == []


def test_run_collects_every_interval_and_ships_on_its_own_thread(tmp_path, workspace):
    host, calls, stop = unique(), [], threading.Event()

    def collect():
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("a collector bug")
        return {"VMConnection": records(host, [len(calls)])}

    cfg = agent_config(tmp_path, workspace, interval=0.1)
    t = threading.Thread(target=lambda: result.append(ship.run(cfg, collect, stop=stop)))
    result: list = []
    t.start()
    deadline = time.monotonic() + 10
    while len(workspace.sent(host)) < 3 and time.monotonic() < deadline:
        time.sleep(0.1)
    stop.set()
    t.join(10)
    stats = result[0]
    assert stats["collect_errors"] == 1 and stats["sent_batches"] == stats["enqueued_batches"] >= 3
    assert workspace.sent(host)[:3] == [1, 3, 4]


FAKE_COLLECTOR = """
import logging
from datetime import datetime, timezone
log = logging.getLogger("netatlas.agent.collect")
def collector(config):
    log.info("collector: fake (said while starting)")
    calls = []
    def collect():
        calls.append(1)
        if len(calls) > 1:
            raise KeyboardInterrupt          # ends `agent run` as Ctrl-C does
        return {"VMConnection": [{"TimeGenerated": datetime.now(timezone.utc), "Computer": COMPUTER,
                                  "BytesSent": 7}]}
    return collect
"""


def test_agent_run_logs_the_collector_starting_and_its_counters_when_it_stops(tmp_path, workspace):
    # `agent run` configured logging only after building the collector, so what the collector said
    # while starting (which one runs, why not the other) was lost; and the counters (drops,
    # refusals) were never reported
    host = unique()
    (tmp_path / "fakecollector.py").write_text(f"COMPUTER = {host!r}\n" + FAKE_COLLECTOR)
    script = ("import sys; from netatlas.agent import ship; ship.COLLECTOR = ('fakecollector', 'collector'); "
              "from netatlas.cli import main; sys.exit(main(sys.argv[1:]))")
    ingest = workspace.identity.by_role("ingest")[0].secret
    r = subprocess.run([sys.executable, "-c", script, "agent", "run", "--workspace-url", workspace.url,
                        "--workspace-id", workspace.identity.workspace_id, "--key", ingest, "--interval", "0.2",
                        "--spool", str(tmp_path / "spool"), "--machine-id-file", str(tmp_path / "machine-id")],
                       capture_output=True, text=True, timeout=60, cwd=tmp_path,
                       env=dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(tmp_path)])))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    started = [i for i, line in enumerate(lines) if "collector: fake (said while starting)" in line]
    shipping = [i for i, line in enumerate(lines) if "netatlas agent: shipping to" in line]
    assert started and shipping and started[0] < shipping[0], r.stderr
    stopped = [line for line in lines if "netatlas agent: stopped; " in line]
    assert len(stopped) == 1, r.stderr
    stats = dict(kv.split("=") for kv in stopped[0].split("stopped; ", 1)[1].split())
    assert set(ship.STATS) <= set(stats)
    assert stats["enqueued_batches"] == stats["sent_batches"] == "1", stopped[0]
    assert stats["dropped_batches"] == stats["rejected_batches"] == stats["spool_batches"] == "0", stopped[0]
    assert workspace.sent(host) == [7]


# ---------------------------------------------------------------- https

class Ingest(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive
    seen: list = []

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((self.client_address, self.path, dict(self.headers)))
        body = b'{"duplicate": false}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs openssl to make a certificate")
def test_https_with_a_self_signed_certificate(tmp_path, workspace):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    Ingest.seen = []
    url = f"https://127.0.0.1:{httpd.server_address[1]}/prefix"
    try:
        verified = ship.Shipper(agent_config(tmp_path / "a", workspace, workspace_url=url))
        verified.enqueue("VMConnection", records("h", [1]))
        report = verified.flush()
        assert report.remaining == 1 and "CERTIFICATE_VERIFY_FAILED" in report.error
        for settings in ({"verify_tls": False}, {"ca_file": str(cert)}):
            s = ship.Shipper(agent_config(tmp_path / str(settings), workspace, workspace_url=url,
                                          batch_max_records=1, **settings))
            s.enqueue("VMConnection", records("h", [1, 2, 3]))
            assert s.flush().sent == 3
        assert len({client for client, _, _ in Ingest.seen}) == 2   # one kept-alive connection per shipper
        path, headers = Ingest.seen[0][1], Ingest.seen[0][2]
        assert path == "/prefix/api/ingest/VMConnection" and headers["Content-Encoding"] == "gzip"
        assert headers["Authorization"].startswith(f"SharedKey {workspace.identity.workspace_id}:")
        assert headers["x-ms-batch-id"].endswith(".0") and headers["User-Agent"].startswith("netatlas-agent/")
    finally:
        httpd.shutdown()
