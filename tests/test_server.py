"""The workspace server over real sockets: `netatlas workspace serve` in a subprocess on loopback.

One server (small limits: --max-rows 5, --max-body-bytes 64 KiB, a retention pass every 0.5 s)
serves most tests; each test writes records with its own Computer name so tests do not see each
other's rows. The restart and shutdown tests run servers of their own.
"""
from __future__ import annotations

import gzip
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import netatlas
from netatlas import auth, keys

ROOT = Path(__file__).resolve().parent.parent
BODY_LIMIT = 64 * 1024
MAX_ROWS = 5


# ---------------------------------------------------------------- a server in a subprocess

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data: Path, *options: str):
        self.data, self.options = data, options
        self.proc = None
        self.log = data.parent / f"{data.name}-server.log"
        self.test_keys = None     # (query, admin): made once; their secrets are not on disk (hashed)

    def start(self, timeout: float = 30) -> "Server":
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(self.data),
                 "--port", str(self.port), *self.options], stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if request(self.port, "GET", "/healthz").status == 200:
                    return self
            except OSError:
                time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"the server did not answer /healthz in {timeout} s:\n{self.log.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 20) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def client(self) -> "Client":
        if self.test_keys is None:
            self.test_keys = (keys.create_key(self.data, "query"), keys.create_key(self.data, "admin"))
        return Client(self.port, keys.load(self.data), *self.test_keys)


def serve_filled(tmp_path_factory, name: str, fill):
    """For a module-scoped fixture (``yield from``): a workspace directory filled by ``fill(ws)``,
    then served by a Server of its own, killed afterwards."""
    data = tmp_path_factory.mktemp(name) / "data"
    ws = netatlas.connect(data)
    try:
        fill(ws)
    finally:
        ws.close()
    s = Server(data).start()
    yield s
    s.kill()


@dataclass
class Reply:
    status: int
    headers: dict
    body: object

    @property
    def error(self) -> dict:
        return self.body["error"]


def request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, body=body if body or method in ("POST", "PUT") else None, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        parsed = json.loads(raw) if hdrs.get("content-type", "").startswith("application/json") else raw.decode()
        return Reply(r.status, hdrs, parsed)
    finally:
        conn.close()


class Client:
    def __init__(self, port: int, identity: keys.Identity, query_key: keys.Key | None = None,
                 admin_key: keys.Key | None = None):
        self.port, self.identity = port, identity
        self.ingest_key = identity.by_role("ingest")[0]
        self.query_key = query_key or identity.by_role("query")[0]
        self.admin_key = admin_key or identity.by_role("admin")[0]

    def ingest(self, table: str, records=None, *, body: bytes | None = None, key: keys.Key | None = None,
               workspace_id: str | None = None, batch_id: str | None = None, gzipped: bool = False,
               date: datetime | None = None, drop: tuple = (), path: str | None = None) -> Reply:
        body = json.dumps(records).encode() if body is None else body
        if gzipped:
            body = gzip.compress(body)
        path = path or f"/api/ingest/{table}"
        h = auth.signed_headers(workspace_id or self.identity.workspace_id, (key or self.ingest_key).signing_key,
                                body, path, gzipped=gzipped, batch_id=batch_id, date=date)
        for name in drop:
            h.pop(name)
        return request(self.port, "POST", f"/api/ingest/{table}", body, h)

    def call(self, method: str, path: str, payload=None, key: str | None = None) -> Reply:
        h = {"Authorization": f"Bearer {key or self.query_key.secret}"}
        body = b""
        if payload is not None:
            body = json.dumps(payload).encode()
            h["Content-Type"] = "application/json"
        return request(self.port, method, path, body, h)

    def admin(self, method: str, path: str, payload=None) -> Reply:
        return self.call(method, path, payload, self.admin_key.secret)

    def query(self, text: str, timespan: str | None = None, key: str | None = None) -> Reply:
        payload = {"query": text} | ({"timespan": timespan} if timespan else {})
        return self.call("POST", "/api/query", payload, key)

    def count(self, table: str, computer: str) -> int:
        r = self.query(f'{table} | where Computer == "{computer}" | count')
        assert r.status == 200, r.body
        return r.body["tables"][0]["rows"][0][0]


def now(delta: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


def records(computer: str, n: int, age: timedelta = timedelta(minutes=1)) -> list[dict]:
    return [{"TimeGenerated": now(-age), "Computer": computer, "BytesSent": i} for i in range(n)]


def unique() -> str:
    return f"host-{uuid.uuid4().hex[:10]}"


def assert_error_shape(reply: Reply, status: int, code: str | None = None) -> dict:
    assert reply.status == status, reply.body
    assert reply.headers["content-type"].startswith("application/json")
    assert isinstance(reply.body, dict) and set(reply.body) == {"error"}, reply.body
    err = reply.body["error"]
    assert isinstance(err["code"], str) and re.fullmatch(r"[A-Z][A-Z0-9_]*", err["code"]), err
    assert isinstance(err["message"], str) and err["message"], err
    if code is not None:
        assert err["code"] == code, err
    return err


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("served") / "data"
    s = Server(data, "--max-rows", str(MAX_ROWS), "--max-body-bytes", str(BODY_LIMIT),
               "--retention-interval", "0.5").start()
    yield s
    s.kill()


@pytest.fixture
def client(server) -> Client:
    return server.client()


# ---------------------------------------------------------------- start, health

def test_first_start_prints_the_workspace_id_keys_and_urls(server, client):
    log = server.log.read_text()
    assert client.identity.workspace_id in log
    assert client.ingest_key.secret in log
    printed = dict(re.findall(r"^    (query|admin)\s+k_\w+\s+(\S+)$", log, re.M))   # shown once: hashed on disk
    for role in ("query", "admin"):
        assert client.identity.by_role(role)[0].matches(printed[role])
        assert printed[role] not in (server.data / "workspace.json").read_text()
    assert f"http://127.0.0.1:{server.port}/api/ingest/{{Table}}" in log
    r = request(server.port, "GET", "/healthz")
    assert r.status == 200 and r.body["status"] == "ok"
    assert r.body["workspace_id"] == client.identity.workspace_id


# ---------------------------------------------------------------- authentication

SIGNATURE_CASES = {
    "no Authorization": (dict(drop=("Authorization",)), 401, "AUTH_MISSING"),
    "no x-ms-date": (dict(drop=("x-ms-date",)), 401, "AUTH_MISSING"),
    "wrong key": (dict(key=keys.new_key("ingest")), 403, "AUTH_BAD_SIGNATURE"),
    "stale date": (dict(date=-timedelta(minutes=20)), 401, "AUTH_STALE_DATE"),
    "future date": (dict(date=timedelta(minutes=20)), 401, "AUTH_STALE_DATE"),
    "wrong workspace id": (dict(workspace_id=str(uuid.uuid4())), 403, "AUTH_UNKNOWN_WORKSPACE"),
    "signed for another table": (dict(path="/api/ingest/VMProcess"), 403, "AUTH_BAD_SIGNATURE"),
    "query key signing": ("query key", 403, "AUTH_WRONG_ROLE"),
}


@pytest.mark.parametrize("case", list(SIGNATURE_CASES))
def test_bad_signatures_are_refused_and_nothing_is_stored(client, case):
    options, status, code = SIGNATURE_CASES[case]
    if options == "query key":
        options = dict(key=client.query_key)
    if "date" in options:   # relative to when the test runs: the suite is collected minutes earlier
        options = options | {"date": datetime.now(timezone.utc) + options["date"]}
    computer = unique()
    err = assert_error_shape(client.ingest("VMConnection", records(computer, 2), **options), status, code)
    if code == "AUTH_STALE_DATE":
        assert "stale or future date" in err["message"]
    assert client.count("VMConnection", computer) == 0


def test_a_401_names_the_scheme_to_use(client):
    r = client.ingest("VMConnection", records(unique(), 1), drop=("Authorization",))
    assert r.headers["www-authenticate"].startswith("SharedKey")


def test_query_keys_and_ingest_keys_do_not_cross(client):
    assert_error_shape(client.query("VMConnection | count", key=client.ingest_key.secret), 403, "AUTH_WRONG_ROLE")
    assert_error_shape(client.query("VMConnection | count", key="not-a-key"), 403, "AUTH_BAD_KEY")
    r = request(client.port, "POST", "/api/query", b'{"query": "print 1"}', {"Content-Type": "application/json"})
    assert_error_shape(r, 401, "AUTH_MISSING")
    assert r.headers["www-authenticate"].startswith("Bearer")
    r = request(client.port, "POST", "/api/query", b'{"query": "print x = 1"}',
                {"Content-Type": "application/json", "x-api-key": client.query_key.secret})
    assert r.status == 200 and r.body["tables"][0]["rows"] == [[1]]


def test_a_key_created_with_the_cli_works_without_a_restart(server, client):
    out = subprocess.run([sys.executable, "-m", "netatlas", "keys", "create", "--data", str(server.data),
                          "--role", "ingest", "--format", "json"], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT))).stdout
    new = json.loads(out)["keys"][0]
    listed = subprocess.run([sys.executable, "-m", "netatlas", "keys", "list", "--data", str(server.data)],
                            capture_output=True, text=True, check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert new["secret"] in listed.stdout and client.identity.workspace_id in listed.stdout
    computer = unique()
    key = keys.Key(new["id"], new["role"], new["secret"], new["created"])
    assert client.ingest("VMConnection", records(computer, 1), key=key).status == 200
    assert client.count("VMConnection", computer) == 1


# ---------------------------------------------------------------- schema validation

SCHEMA_CASES = {
    "unknown column": ({"Computr": "x"}, "INGEST_UNKNOWN_COLUMN", "Computr"),
    "wrong type": ({"BytesSent": "lots"}, "INGEST_TYPE", "BytesSent"),
    "missing TimeGenerated": ({"TimeGenerated": None}, "INGEST_MISSING_FIELD", "TimeGenerated"),
}


@pytest.mark.parametrize("case", list(SCHEMA_CASES))
def test_a_bad_record_names_record_and_field_and_nothing_of_the_batch_is_stored(client, case):
    change, code, field = SCHEMA_CASES[case]
    computer = unique()
    batch = records(computer, 3)
    batch[2].update(change)
    if change.get("TimeGenerated", "") is None:
        del batch[2]["TimeGenerated"]
    err = assert_error_shape(client.ingest("VMConnection", batch), 400)
    assert (err["code"], err["record"], err["field"]) == (code, 2, field), err
    assert field in err["message"]
    assert client.count("VMConnection", computer) == 0


def test_an_unknown_table_is_404(client):
    err = assert_error_shape(client.ingest("VMConnections", records(unique(), 1)), 404, "INGEST_UNKNOWN_TABLE")
    assert "VMConnection" in err["message"]


def test_a_body_that_is_not_a_json_array_is_400(client):
    assert_error_shape(client.ingest("VMConnection", body=b'{"not": "an array"'), 400)


# ---------------------------------------------------------------- batches: duplicates, gzip, size

def test_a_batch_sent_twice_is_stored_once(client):
    computer, batch_id = unique(), f"batch-{uuid.uuid4()}"
    batch = records(computer, 4)
    first = client.ingest("VMConnection", batch, batch_id=batch_id)
    assert first.status == 200 and first.body["records"] == 4 and first.body["duplicate"] is False
    again = client.ingest("VMConnection", batch, batch_id=batch_id)
    assert again.status == 200 and again.body["duplicate"] is True and again.body["batch_id"] == batch_id
    assert client.count("VMConnection", computer) == 4
    assert client.ingest("VMConnection", batch, batch_id=f"batch-{uuid.uuid4()}").body["duplicate"] is False
    assert client.ingest("VMConnection", batch).body["duplicate"] is False   # no id: not deduplicated
    assert client.count("VMConnection", computer) == 12


def test_a_malformed_batch_id_is_400(client):
    assert_error_shape(client.ingest("VMConnection", records(unique(), 1), batch_id="a b/c"), 400,
                       "INGEST_BAD_BATCH_ID")


def test_a_gzip_body_is_stored(client):
    computer = unique()
    r = client.ingest("VMConnection", records(computer, 3), gzipped=True)
    assert r.status == 200 and r.body["records"] == 3
    assert client.count("VMConnection", computer) == 3


def test_a_body_over_the_limit_is_413(client):
    computer = unique()
    big = records(computer, 1)
    big[0]["ProcessName"] = "x" * (BODY_LIMIT + 1)
    err = assert_error_shape(client.ingest("VMConnection", big), 413, "BODY_TOO_LARGE")
    assert err["limit"] == BODY_LIMIT
    assert client.count("VMConnection", computer) == 0


def test_a_decompression_bomb_is_413(client):
    computer = unique()
    bomb = json.dumps(records(computer, 1) + [{"Computer": computer, "ProcessName": " " * (4 * BODY_LIMIT)}])
    r = client.ingest("VMConnection", body=bomb.encode(), gzipped=True)
    assert len(gzip.compress(bomb.encode())) < BODY_LIMIT // 10
    assert_error_shape(r, 413, "BODY_TOO_LARGE")
    assert client.count("VMConnection", computer) == 0


def test_bad_gzip_and_content_types_are_refused(client):
    body = b'[{"TimeGenerated": "2024-05-01T00:00:00Z"}]'
    h = auth.signed_headers(client.identity.workspace_id, client.ingest_key.secret, body,
                            "/api/ingest/VMConnection", gzipped=True)
    assert_error_shape(request(client.port, "POST", "/api/ingest/VMConnection", body, h), 400, "BAD_GZIP")
    h = auth.signed_headers(client.identity.workspace_id, client.ingest_key.secret, body,
                            "/api/ingest/VMConnection", content_type="text/csv")
    assert_error_shape(request(client.port, "POST", "/api/ingest/VMConnection", body, h), 415)


# ---------------------------------------------------------------- query

def test_a_query_answers_tables_render_and_statistics(client):
    computer = unique()
    client.ingest("VMConnection", records(computer, 3))
    r = client.query(f'VMConnection | where Computer == "{computer}" | summarize Sent = sum(BytesSent) by Computer '
                     f'| render barchart', timespan="P1D")
    assert r.status == 200, r.body
    table = r.body["tables"][0]
    assert table["columns"] == [{"name": "Computer", "type": "string"}, {"name": "Sent", "type": "long"}]
    assert table["rows"] == [[computer, 3]]
    assert r.body["render"]["visualization"] == "barchart"
    assert r.body["statistics"]["truncated"] is False


def test_the_result_is_cut_at_max_rows_and_says_so(client):
    computer = unique()
    client.ingest("VMConnection", records(computer, MAX_ROWS + 3))
    r = client.query(f'VMConnection | where Computer == "{computer}"')
    assert r.status == 200
    assert len(r.body["tables"][0]["rows"]) == MAX_ROWS
    assert r.body["statistics"]["truncated"] is True and r.body["statistics"]["max_rows"] == MAX_ROWS
    assert metric(request(client.port, "GET", "/metrics").body, "netatlas_queries_truncated_total") >= 1
    r = client.query(f'VMConnection | where Computer == "{computer}" | take {MAX_ROWS}')
    assert r.body["statistics"]["truncated"] is False
    assert client.count("VMConnection", computer) == MAX_ROWS + 3


def test_timespan_limits_what_the_query_reads(client):
    computer = unique()
    client.ingest("VMConnection", records(computer, 1, age=timedelta(hours=3))
                  + records(computer, 2, age=timedelta(minutes=5)))
    q = f'VMConnection | where Computer == "{computer}" | count'
    assert client.query(q, timespan="PT1H").body["tables"][0]["rows"] == [[2]]
    assert client.query(q, timespan="P1D").body["tables"][0]["rows"] == [[3]]
    start, end = now(-timedelta(hours=4)), now(-timedelta(hours=2))
    assert client.query(q, timespan=f"{start}/{end}").body["tables"][0]["rows"] == [[1]]


def test_query_parameters_fill_declared_names(client):
    r = client.call("POST", "/api/query", {"query": "declare query_parameters(n:long); print m = n + 1",
                                           "parameters": {"n": 41}})
    assert r.status == 200 and r.body["tables"][0]["rows"] == [[42]]
    err = assert_error_shape(client.call("POST", "/api/query", {"query": "declare query_parameters(n:long); print n",
                                                                "parameters": {"n": [1]}}), 400, "KQL_TYPE")
    assert err["line"] == 1


def test_a_query_of_several_statements_answers_every_table(client, server):
    r = client.query(f"range x from 1 to {MAX_ROWS + 3} step 1; print b = 'x' | render table")
    assert r.status == 200
    first, second = r.body["tables"]
    assert (first["name"], len(first["rows"]), r.body["statistics"]["truncated"]) == ("PrimaryResult", MAX_ROWS, True)
    assert (second["name"], second["rows"], second["render"]) == ("Table_1", [["x"]], {"visualization": "table"})
    assert second["statistics"] == {"rows": 1, "truncated": False}
    # the remote workspace (netatlas query on a held workspace) reads every table back
    from netatlas.remote import through_server
    with through_server(server.data) as remote:
        res = remote.query("print a = 1; print b = 2")
    assert [(t.columns, t.rows) for t in res.tables()] == [(["a"], [[1]]), (["b"], [[2]])]
    err = assert_error_shape(client.query("; ".join(["print 1"] * 17)), 400, "KQL_QUERY_TOO_COMPLEX")
    assert err["column"] == 1 + len("print 1; ") * 16


def test_query_mistakes_are_400_with_line_column_and_hint(client):
    err = assert_error_shape(client.query('VMConnection\n| where Computr == "x"'), 400, "KQL_UNKNOWN_COLUMN")
    assert (err["line"], err["column"]) == (2, 9)
    assert "Computer" in err["hint"]
    assert_error_shape(client.query("VMConnection | count", timespan="P1M"), 400, "BAD_TIMESPAN")
    assert_error_shape(client.call("POST", "/api/query", {"kql": "print 1"}), 400, "BAD_REQUEST")
    assert_error_shape(client.call("POST", "/api/query", {"query": ""}), 400, "BAD_REQUEST")


# ---------------------------------------------------------------- retention

def test_retention_is_visible_changeable_and_applied_on_schedule(client):
    shown = client.call("GET", "/api/retention")
    assert shown.status == 200 and shown.body["tables"]["VMBoundPort"] == 30
    assert shown.body["interval_seconds"] == 0.5
    computer = unique()
    old = records(computer, 2, age=timedelta(days=3))
    new = records(computer, 1, age=timedelta(hours=1))
    assert client.ingest("VMBoundPort", old + new).status == 200    # within 30 days: accepted
    r = client.admin("PUT", "/api/retention/VMBoundPort", {"days": 1})
    assert r.status == 200 and r.body == {"table": "VMBoundPort", "days": 1}
    assert client.call("GET", "/api/retention").body["tables"]["VMBoundPort"] == 1
    deadline = time.monotonic() + 10
    while client.count("VMBoundPort", computer) != 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert client.count("VMBoundPort", computer) == 1
    left = client.query(f'VMBoundPort | where Computer == "{computer}" | project BytesSent').body
    assert left["tables"][0]["rows"] == [[new[0]["BytesSent"]]]
    assert client.call("GET", "/api/retention").body["last_run"]["at"]


def test_retention_settings_are_checked(client):
    assert_error_shape(client.admin("PUT", "/api/retention/VMBoundPort", {"days": 0}), 400, "RETENTION_INVALID")
    assert_error_shape(client.admin("PUT", "/api/retention/VMBoundPort", {"days": "7"}), 400, "RETENTION_INVALID")
    assert_error_shape(client.admin("PUT", "/api/retention/Nope", {"days": 7}), 404, "UNKNOWN_TABLE")
    for key in (client.ingest_key, client.query_key):     # changing retention takes an admin key
        assert_error_shape(client.call("PUT", "/api/retention/VMBoundPort", {"days": 7}, key=key.secret),
                           403, "AUTH_WRONG_ROLE")
        assert_error_shape(client.call("POST", "/api/retention/apply", key=key.secret), 403, "AUTH_WRONG_ROLE")
    r = client.admin("POST", "/api/retention/apply")
    assert r.status == 200 and isinstance(r.body["deleted"], dict)


# ---------------------------------------------------------------- one JSON error shape everywhere

def test_every_endpoint_answers_errors_in_one_json_shape(client):
    port, q = client.port, {"Authorization": f"Bearer {client.query_key.secret}", "Content-Type": "application/json"}
    cases = [
        (request(port, "POST", "/api/ingest/VMConnection", b"[]", {"Content-Type": "application/json"}), 401),
        (client.ingest("Nope", []), 404),
        (client.ingest("VMConnection", [{"Computr": 1}]), 400),
        (request(port, "POST", "/api/query", b"[]", q), 400),
        (request(port, "POST", "/api/query", b"{not json", q), 400),
        (request(port, "POST", "/api/query", b'{"query": "print 1"}', {**q, "Content-Type": "text/plain"}), 415),
        (client.query("VMConnection | where"), 400),
        (request(port, "GET", "/api/retention"), 401),
        (request(port, "PUT", "/api/retention/VMConnection", b"{}",
                 {**q, "Authorization": f"Bearer {client.admin_key.secret}"}), 400),
        (request(port, "POST", "/api/retention/apply"), 401),
        (request(port, "GET", "/api/ingest/VMConnection"), 405),
        (request(port, "POST", "/healthz"), 405),
        (request(port, "DELETE", "/metrics"), 405),
        (request(port, "GET", "/no/such/page"), 404),
    ]
    for reply, status in cases:
        assert_error_shape(reply, status)


# ---------------------------------------------------------------- metrics

def metric(text: str, name: str, **labels) -> float:
    sel = ",".join(f'{k}="{v}"' for k, v in labels.items())
    m = re.search(rf"^{re.escape(name)}{re.escape('{' + sel + '}') if sel else ''} (\S+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def test_metrics_count_records_rejections_duplicates_and_query_latency(client):
    before = request(client.port, "GET", "/metrics").body
    batch_id, batch = f"m-{uuid.uuid4()}", [{"TimeGenerated": now(), "Computer": unique()} for _ in range(4)]
    assert client.ingest("VMProcess", batch, batch_id=batch_id).status == 200
    assert client.ingest("VMProcess", batch, batch_id=batch_id).body["duplicate"] is True
    assert client.ingest("VMProcess", [{"Computr": "x", "TimeGenerated": now()}]).status == 400
    assert client.ingest("VMProcess", batch, key=keys.new_key("ingest")).status == 403
    assert client.query("VMProcess | count").status == 200
    r = request(client.port, "GET", "/metrics")
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    after = r.body

    def delta(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("netatlas_records_ingested_total", table="VMProcess") == 4
    assert delta("netatlas_batches_ingested_total", table="VMProcess") == 1
    assert delta("netatlas_duplicate_batches_total") == 1
    assert delta("netatlas_batches_rejected_total", reason="INGEST_UNKNOWN_COLUMN") == 1
    assert delta("netatlas_batches_rejected_total", reason="AUTH_BAD_SIGNATURE") == 1
    assert delta("netatlas_query_seconds_count") == 1
    assert delta("netatlas_queries_total", outcome="ok") == 1
    assert "# TYPE netatlas_query_seconds histogram" in after


# ---------------------------------------------------------------- restart and shutdown

def test_a_kill_after_the_200_loses_no_acknowledged_batch(tmp_path):
    data = tmp_path / "data"
    srv = Server(data)
    sent: list[tuple[str, list[dict]]] = []
    for i in range(3):
        c = srv.start().client()
        if sent:   # everything acknowledged before the previous kill is there
            assert c.count("VMConnection", "restart") == sum(len(b) for _, b in sent)
        batch = [{"TimeGenerated": now(), "Computer": "restart", "BytesSent": i * 100 + j} for j in range(5)]
        batch_id = f"restart-{i}"
        r = c.ingest("VMConnection", batch, batch_id=batch_id)
        assert r.status == 200 and r.body["records"] == 5
        srv.kill()   # SIGKILL right after the acknowledgement
        sent.append((batch_id, batch))
    c = srv.start().client()
    try:
        res = c.query('VMConnection | where Computer == "restart" | project BytesSent | order by BytesSent asc')
        assert [row[0] for row in res.body["tables"][0]["rows"]] == sorted(r["BytesSent"] for _, b in sent for r in b)
        again = c.ingest("VMConnection", sent[0][1], batch_id=sent[0][0])   # an agent's retry after the restart
        assert again.status == 200 and again.body["duplicate"] is True
        assert c.count("VMConnection", "restart") == 15
    finally:
        srv.kill()


def test_sigterm_closes_the_workspace_and_releases_it(tmp_path):
    data = tmp_path / "data"
    srv = Server(data).start()
    c = srv.client()
    try:
        assert c.ingest("VMConnection", records("term", 2)).status == 200
        with pytest.raises(netatlas.NetatlasError):
            netatlas.connect(data)   # held by the server
    finally:
        code = srv.terminate()
    assert code in (0, -signal.SIGTERM), srv.log.read_text()
    assert "Application shutdown complete" in srv.log.read_text()
    with netatlas.connect(data) as ws:
        assert ws.query('VMConnection | where Computer == "term" | count').rows == [[2]]
