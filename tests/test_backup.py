"""Backup and restore: a real server on loopback ingesting batches in a loop while
`netatlas workspace backup` asks it for a snapshot; the restored workspace holds every batch
acknowledged before the backup started, whole batches only, and the same keys."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import netatlas
from netatlas import keys, migrate
from netatlas.cli import main

from test_server import ROOT, Server, request

RECORDS_PER_BATCH = 50


def cli(*argv: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    env.pop("NETATLAS_QUERY_KEY", None)
    return subprocess.run([sys.executable, "-m", "netatlas", *argv], capture_output=True, text=True, env=env,
                          timeout=300)


class Loop(threading.Thread):
    """Ingests VMConnection batches (batch ids b-0, b-1, ...) until stopped; ``acked`` holds
    (batch id, monotonic time of the answer)."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.client, self.acked, self.stop, self.errors = client, [], threading.Event(), []

    def run(self):
        n = 0
        while not self.stop.is_set():
            recs = [{"TimeGenerated": "2026-12-01T10:00:00Z", "Computer": f"loop-{n}", "BytesSent": i}
                    for i in range(RECORDS_PER_BATCH)]
            r = self.client.ingest("VMConnection", recs, batch_id=f"b-{n}")
            if r.status != 200:
                self.errors.append(r.body)
                return
            self.acked.append((f"b-{n}", time.monotonic()))
            n += 1


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    data = tmp_path_factory.mktemp("backup") / "data"
    s = Server(data).start()
    (data / ".demo-loaded").write_text('{"machines": 3}')
    yield s
    s.kill()


@pytest.fixture(scope="module")
def taken(served, tmp_path_factory):
    """A backup taken through the server while batches arrive, and what was acknowledged when."""
    client = served.client()
    loop = Loop(client)
    loop.start()
    while len(loop.acked) < 20 and loop.is_alive():
        time.sleep(0.05)
    target = tmp_path_factory.mktemp("backups") / "snap"
    started = time.monotonic()
    out = cli("workspace", "backup", "--data", str(served.data), "--server", f"http://127.0.0.1:{served.port}",
              "--key", client.admin_key.secret, str(target))
    finished = time.monotonic()
    time.sleep(0.3)
    loop.stop.set()
    loop.join(30)
    assert not loop.errors, loop.errors
    return {"out": out, "target": target, "before": [b for b, t in loop.acked if t < started],
            "during": [b for b, t in loop.acked if started <= t <= finished], "client": client,
            "all": [b for b, _ in loop.acked]}


def test_the_backup_answers_and_lists_its_contents(taken):
    out, target = taken["out"], taken["target"]
    assert out.returncode == 0, out.stderr
    manifest = json.loads((target / "backup.json").read_text())
    assert out.stdout.startswith(f"backup of workspace {manifest['workspace_id']} in {target}: ")
    assert sorted(os.listdir(target)) == [".demo-loaded", "alerts.json", "backup.json", "netatlas.duckdb",
                                    "workspace.json"]   # alerts.json: the server writes its built-in rules
    assert (target / "workspace.json").stat().st_mode & 0o777 == 0o600
    assert manifest["schema_version"] == migrate.SCHEMA_VERSION
    assert taken["during"], "no batch was acknowledged while the backup ran: the test proves nothing"


def test_the_restored_workspace_has_every_batch_acknowledged_before_and_whole_batches_only(taken, tmp_path):
    restored = tmp_path / "restored"
    out = cli("workspace", "restore", "--data", str(restored), str(taken["target"]))
    assert out.returncode == 0, out.stderr
    assert f"into {restored}" in out.stdout
    with netatlas.connect(restored) as ws:
        stored = dict(ws.connection.execute("SELECT batch_id, records FROM _netatlas_batches").fetchall())
        assert set(taken["before"]) <= set(stored)
        assert set(stored) <= set(taken["all"])
        assert all(n == RECORDS_PER_BATCH for n in stored.values())
        rows = ws.query("VMConnection | count").rows[0][0]
        assert rows == RECORDS_PER_BATCH * len(stored)
        # every batch whole: each stored batch's Computer has all its records, no other Computer is there
        per = dict(ws.query("VMConnection | summarize count() by Computer").rows)
        assert per == {f"loop-{b[2:]}": RECORDS_PER_BATCH for b in stored}
        # the batch ids still deduplicate after the restore (primary key copied)
        assert ws.ingest("VMConnection", [{"TimeGenerated": "2026-12-01T10:00:00Z"}], batch_id="b-0").duplicate
    assert keys.load(restored).to_json() == keys.load(taken["target"]).to_json()
    assert keys.load(restored).to_json() == taken["client"].identity.to_json()
    assert (restored / ".demo-loaded").read_text() == '{"machines": 3}'


def test_backup_finds_the_server_through_server_json(served, tmp_path):
    """With DIR/server.json (url, pid) and no --server/--key, the backup goes through that server
    with the server's local token (admin keys are stored hashed)."""
    info = served.data / "server.json"
    original = info.read_text()
    token = json.loads(original)["token"]
    info.write_text(json.dumps({"url": f"http://127.0.0.1:{served.port}", "pid": served.proc.pid, "token": token}))
    try:
        out = cli("workspace", "backup", "--data", str(served.data), str(tmp_path / "b"))
    finally:
        info.write_text(original)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "b" / "netatlas.duckdb").exists()


def test_a_held_workspace_without_server_json_says_how(served, tmp_path):
    info = served.data / "server.json"
    original = info.read_text()
    info.unlink()
    try:
        out = cli("workspace", "backup", "--data", str(served.data), str(tmp_path / "b"))
    finally:
        info.write_text(original)
    assert out.returncode == 2
    assert "held by a running server" in out.stderr and "--server URL" in out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "b").exists()


def test_the_server_refuses_a_bad_target(served, tmp_path):
    c = served.client()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for target, says in ((str(tmp_path / "full"), "is not an empty directory"), ("relative/dir", "absolute path"),
                         (str(tmp_path / "no" / "such"), "parent directory")):
        r = c.admin("POST", "/api/backup", {"target": target})
        assert r.status == 400 and r.body["error"]["code"] == "BACKUP_INVALID", r.body
        assert says in r.body["error"]["message"]
    for key in (c.ingest_key, c.query_key):     # a backup takes an admin key
        r = c.call("POST", "/api/backup", {"target": str(tmp_path / "z")}, key=key.secret)
        assert r.status == 403 and r.body["error"]["code"] == "AUTH_WRONG_ROLE"
    assert request(served.port, "POST", "/api/backup", b"{}", {"Content-Type": "application/json"}).status == 401


def test_a_stopped_workspace_is_backed_up_directly_and_restore_refuses_to_overwrite(tmp_path, capsys):
    data = tmp_path / "data"
    keys.load_or_create(data)
    with netatlas.connect(data) as ws:
        ws.ingest("VMProcess", [{"TimeGenerated": "2026-12-01T10:00:00Z", "Computer": "a"}], batch_id="p-1")
    assert main(["workspace", "backup", "--data", str(data), str(tmp_path / "bk")]) == 0
    assert "1 rows in 1 tables, 1 batches" in capsys.readouterr().out
    # into a non-empty directory: refused, exit 2, nothing changed
    assert main(["workspace", "restore", "--data", str(data), str(tmp_path / "bk")]) == 2
    assert "is not empty" in capsys.readouterr().err
    with netatlas.connect(data) as ws:
        ws.ingest("VMProcess", [{"TimeGenerated": "2026-12-01T11:00:00Z", "Computer": "b"}], batch_id="p-2")
    assert main(["workspace", "restore", "--force", "--data", str(data), str(tmp_path / "bk")]) == 0
    with netatlas.connect(data) as ws:
        assert ws.query("VMProcess | project Computer").rows == [["a"]]
    # a backup made by a newer netatlas: refused before anything is copied
    manifest = json.loads((tmp_path / "bk" / "backup.json").read_text())
    (tmp_path / "future").mkdir()
    for name in manifest["files"]:
        (tmp_path / "future" / name).write_bytes((tmp_path / "bk" / name).read_bytes())
    (tmp_path / "future" / "backup.json").write_text(json.dumps(manifest | {"schema_version": 99}))
    assert main(["workspace", "restore", "--data", str(tmp_path / "r99"), str(tmp_path / "future")]) == 2
    assert "made by a newer netatlas" in capsys.readouterr().err and not (tmp_path / "r99").exists()
    # not a backup
    assert main(["workspace", "restore", "--data", str(tmp_path / "new"), str(tmp_path)]) == 2
    assert "is not a netatlas backup" in capsys.readouterr().err
    # a backup into an existing, non-empty target
    assert main(["workspace", "backup", "--data", str(data), str(tmp_path / "bk")]) == 2
    assert "not an empty directory" in capsys.readouterr().err


def test_restore_force_refuses_a_workspace_its_server_holds(served, tmp_path):
    assert main(["workspace", "backup", "--data", str(tmp_path / "none"), str(tmp_path / "b")]) == 2
    bk = tmp_path / "bk"
    out = cli("workspace", "backup", "--data", str(served.data), "--server", f"http://127.0.0.1:{served.port}",
              "--key", served.client().admin_key.secret, str(bk))
    assert out.returncode == 0, out.stderr
    out = cli("workspace", "restore", "--force", "--data", str(served.data), str(bk))
    assert out.returncode == 2 and "held by a running server" in out.stderr
    assert request(served.port, "GET", "/healthz").status == 200
