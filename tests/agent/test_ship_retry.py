"""Issue 11, items 1 and 2 on the agent's side: which answers keep a batch for a retry (5xx, 429,
408, 401/403, no answer; Retry-After honoured) and which quarantine it (a 4xx naming a record or the
batch); the quarantine capped in bytes, never silently; `netatlas agent spool list|resend`; and one
agent per spool. Against a real workspace server and a small real http.server answering chosen
statuses, both on loopback."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import time

import pytest

from netatlas.agent import ship
from netatlas.agent.config import AgentConfig

from .test_ship import ROOT, Workspace, agent_config, records, unique


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws") / "data").start()
    yield ws
    ws.kill()


class Scripted:
    """A real HTTP server on loopback answering POSTs with the (status, headers, body) given in
    ``script``, in order, then 200 ``{}``; it counts the requests."""

    def __init__(self):
        self.script, self.requests = [], 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.requests += 1
                status, headers, body = outer.script.pop(0) if outer.script else (200, {}, b"{}")
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted():
    s = Scripted()
    yield s
    s.close()


def scripted_config(tmp_path, url, **settings) -> AgentConfig:
    return AgentConfig(workspace_url=url, workspace_id="ws", key="a2V5", spool=str(tmp_path / "spool"),
                       machine_id_file=str(tmp_path / "machine-id"), timeout=5, **settings)


def err(code, **fields) -> bytes:
    return json.dumps({"error": {"code": code, "message": "m", **fields}}).encode()


RETRIED = [
    (500, {}, err("INTERNAL")),
    (503, {"Retry-After": "7"}, err("STORAGE_UNAVAILABLE")),
    (507, {"Retry-After": "3"}, err("STORAGE_FULL")),
    (429, {}, b"too many"),
    (408, {}, b""),
    (502, {}, b"<html>bad gateway</html>"),
    (400, {}, b"<html>a proxy's 400</html>"),     # no code, no record: not the batch's fault
    (404, {}, b"not found"),                       # a wrong URL, not an unknown table
    (401, {}, err("AUTH_MISSING")),
    (403, {}, err("AUTH_BAD_SIGNATURE")),
]


def test_5xx_429_408_401_403_and_codeless_4xx_keep_the_batch_and_it_goes_when_accepted(tmp_path, scripted):
    s = ship.Shipper(scripted_config(tmp_path, scripted.url))
    [batch] = s.enqueue("VMConnection", records(unique(), [1, 2]))
    scripted.script = list(RETRIED)
    for status, headers, _ in RETRIED:
        report = s.flush()
        assert report.error and report.error.startswith(str(status)), (status, report)
        assert report.remaining == 1 and report.rejected == 0
        if "Retry-After" in headers:   # the workspace said when: not sooner
            assert report.retry_in >= float(headers["Retry-After"])
    assert list(s.rejected_dir.iterdir()) == [] and s.stats["rejected_batches"] == 0
    report = s.flush()
    assert (report.sent, report.remaining, report.error) == (1, 0, None)
    assert scripted.requests == len(RETRIED) + 1 and s.stats["send_failures"] == len(RETRIED)
    s.close()


def test_no_answer_keeps_the_batch(tmp_path, scripted):
    url = scripted.url
    scripted.close()   # nothing listens there any more
    s = ship.Shipper(scripted_config(tmp_path, url))
    s.enqueue("VMConnection", records(unique(), [1]))
    report = s.flush()
    assert report.error.startswith("ConnectionRefusedError") and report.remaining == 1
    assert s.stats["rejected_batches"] == 0
    s.close(timeout=0)


def test_retry_after_is_capped_and_read_as_a_date():
    assert ship.retry_after("86400") == ship.RETRY_AFTER_MAX
    assert ship.retry_after("2") == 2.0
    assert ship.retry_after("nonsense") is None and ship.retry_after(None) is None
    from email.utils import formatdate
    assert 25 <= ship.retry_after(formatdate(time.time() + 30, usegmt=True)) <= 31


@pytest.mark.parametrize("status, body", [
    (400, err("INGEST_TYPE", record=3, field="BytesSent")),
    (400, err("INGEST_BAD_BODY")),
    (404, err("INGEST_UNKNOWN_TABLE")),
    (413, err("INGEST_TOO_LARGE")),
])
def test_a_4xx_naming_a_record_or_the_batch_quarantines_it(tmp_path, scripted, status, body):
    s = ship.Shipper(scripted_config(tmp_path, scripted.url))
    [batch] = s.enqueue("VMConnection", records(unique(), [1]))
    scripted.script = [(status, {}, body)]
    report = s.flush()
    assert (report.rejected, report.remaining, report.error) == (1, 0, None)
    [row] = ship.spool_rows(s.dir)
    assert (row["state"], row["id"], row["records"]) == ("quarantined", batch, 1)
    assert row["why"].startswith(f"{status} {json.loads(body)['error']['code']}")
    s.close()


def test_quarantine_keeps_every_batch_under_its_byte_cap_and_counts_what_it_deletes(tmp_path, server, caplog):
    # before: only the newest 100 refused batches were kept, the rest deleted without a word
    host = unique()
    s = ship.Shipper(agent_config(tmp_path, server))
    bad = [{"TimeGenerated": "2024-01-01T00:00:00Z", "Bogus": 1}]
    for _ in range(105):
        s.enqueue("VMConnection", bad)
    assert s.flush().rejected == 105
    assert len(ship.quarantined(s.dir)) == 105 == s.stats["quarantine_batches"]
    assert s.stats["quarantine_dropped_batches"] == 0
    s.close()
    size = ship.quarantined(s.dir)[0].size
    small = ship.Shipper(agent_config(tmp_path, server, quarantine_max_bytes=10 * size + size // 2))
    kept = ship.quarantined(small.dir)
    assert len(kept) == 10 and small.stats["quarantine_dropped_batches"] == 95
    assert small.stats["quarantine_dropped_records"] == 95 and small.stats["quarantine_bytes"] <= 10.5 * size
    assert "quarantine_max_bytes" in caplog.text and "deleted the 95 oldest" in caplog.text
    assert [e.seq for e in kept] == list(range(95, 105))   # the newest kept
    small.close()
    assert server.sent(host) == []


def netatlas(*args, **kw) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "netatlas", *args], capture_output=True, text=True, env=env,
                          timeout=60, **kw)


def test_spool_list_and_resend_bring_a_quarantined_batch_back_and_it_is_stored(tmp_path, scripted, server):
    host = unique()
    s = ship.Shipper(scripted_config(tmp_path, scripted.url))
    [first, second, pending] = [s.enqueue("VMConnection", records(host, [v]))[0] for v in (1, 2, 3)]
    # the old server's answer to a storage failure, a refusal naming a record, then a 503 that keeps the third
    scripted.script = [(400, {}, err("INGEST_BAD_BODY")), (400, {}, err("INGEST_TYPE", record=0, field="BytesSent")),
                       (503, {}, b"")]
    assert s.flush().rejected == 2
    s.close(timeout=0)
    out = netatlas("agent", "spool", "list", "--spool", s.config.spool)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == list(ship.SPOOL_COLUMNS)
    assert lines[1].split()[:4] == ["pending", pending, "VMConnection", "1"]
    assert lines[2].split()[:4] == ["quarantined", first, "VMConnection", "1"] and "400 INGEST_BAD_BODY" in lines[2]
    assert "record=0 field=BytesSent" in lines[3]

    bad = netatlas("agent", "spool", "resend", "nope", "--spool", s.config.spool)
    assert bad.returncode == 2 and "not quarantined" in bad.stderr and "nope" in bad.stderr
    # while an agent holds the spool, resend refuses, naming it
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from netatlas.agent.ship import SpoolLock; "
                               "SpoolLock(sys.argv[1]).acquire(); print('held', flush=True); time.sleep(60)",
                               s.config.spool], stdout=subprocess.PIPE, text=True,
                              env=dict(os.environ, PYTHONPATH=str(ROOT)))
    try:
        assert holder.stdout.readline() == "held\n"
        busy = netatlas("agent", "spool", "resend", "--all", "--spool", s.config.spool)
        assert busy.returncode == 2 and f"pid {holder.pid}" in busy.stderr, busy.stderr
    finally:
        holder.kill()
        holder.wait()
    moved = netatlas("agent", "spool", "resend", first, str(ship.quarantined(s.dir)[1].seq), "--spool", s.config.spool)
    assert moved.returncode == 0 and "2 quarantined batches" in moved.stdout, moved.stderr
    assert ship.quarantined(s.dir) == [] and len(ship.pending(s.dir)) == 3
    again = ship.Shipper(agent_config(tmp_path, server))   # the same spool, now to a workspace that takes them
    report = again.flush()
    assert (report.sent, report.rejected, report.remaining) == (3, 0, 0), report
    assert sorted(server.sent(host)) == [1, 2, 3]
    again.close()


def test_a_second_agent_on_the_same_spool_refuses_naming_the_first(tmp_path, server):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NETATLAS_AGENT_KEY=server.identity.by_role("ingest")[0].secret)
    argv = [sys.executable, "-m", "netatlas", "agent", "run", "--workspace-url", server.url, "--workspace-id",
            server.identity.workspace_id, "--spool", str(tmp_path / "spool"),
            "--machine-id-file", str(tmp_path / "machine-id"), "--collector", "netlink", "--no-dns"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True)
    try:
        deadline = time.monotonic() + 30
        while "shipping to" not in (line := first.stdout.readline()):
            assert line and time.monotonic() < deadline, "the first agent did not start"
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 2
        assert f"another agent (pid {first.pid}) holds it" in second.stderr, second.stderr
        assert "Traceback" not in second.stderr
        assert first.poll() is None
    finally:
        first.terminate()
        first.wait(30)
    # once the first has stopped, the spool is free again
    assert ship.SpoolLock(tmp_path / "spool").acquire().fd is not None
