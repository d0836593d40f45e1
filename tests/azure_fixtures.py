"""What the Azure protocol tests share: a workspace with known rows, served over http or https
(its self-signed certificate, which names 127.0.0.1: the clients verify it through
REQUESTS_CA_BUNDLE, as a team would point them at their own CA), a query key, and the reference
answer of ``netatlas query`` (``POST /api/query``) to compare each client's rows with."""
from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import http.client
from datetime import datetime, timedelta, timezone
from pathlib import Path

import netatlas
from netatlas import keys

ROOT = Path(__file__).resolve().parents[1]
NOW = datetime.now(timezone.utc).replace(microsecond=0)
COMPUTERS = ["web-1", "web-2", "db-1"]


class Key:
    """A credential giving a query key as its token: what an SDK's static token credential does."""

    def __init__(self, key: str):
        self.key = key

    def get_token(self, *scopes, **kwargs):
        from azure.core.credentials import AccessToken
        return AccessToken(self.key, int(time.time()) + 3600)


def minutes_ago(i: int) -> int:
    """Row i's age: 20 rows in each of the last hour (1-20 min), the one before (71-90) and the third
    hour back (151-170), far from the hours' edges, so windows relative to the server's clock (PT1H)
    count the same for half an hour after the rows are made: 20, 40, 60."""
    return (0, 70, 150)[i // 20] + 1 + i % 20


def records() -> list[dict]:
    """VMConnection rows over the last three hours: three machines, every column kind a client reads."""
    out = []
    for i in range(60):
        t = NOW - timedelta(minutes=minutes_ago(i))
        out.append({"TimeGenerated": t.isoformat().replace("+00:00", "Z"), "Computer": COMPUTERS[i % 3],
                    "Direction": "outbound" if i % 2 else "inbound", "ProcessName": f"p{i % 4}",
                    "SourceIp": f"10.0.0.{i % 3 + 1}", "DestinationIp": f"10.0.1.{i % 5 + 1}",
                    "DestinationPort": 443 if i % 2 else 5432, "Protocol": "tcp",
                    "BytesSent": 1000 * i, "BytesReceived": 10 * i, "LinksEstablished": i % 3,
                    "LinksFailed": int(i % 7 == 0), "ResponseTimeSum": 5 * i, "Responses": i % 4})
    return out


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """A workspace served on loopback by ``netatlas workspace serve`` in a process of its own."""

    def __init__(self, data: Path, https: bool, *options: str):
        self.data, self.https, self.options = data, https, options
        self.port = free_port()
        self.log = data.parent / f"{data.name}-{'https' if https else 'http'}.log"
        self.proc = None
        self.query_key = None

    @property
    def url(self) -> str:
        return f"{'https' if self.https else 'http'}://127.0.0.1:{self.port}"

    @property
    def cert(self) -> Path:
        return self.data / "tls" / "server.crt"

    def start(self, timeout: float = 60) -> "Served":
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        args = [sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(self.data),
                "--port", str(self.port), *self.options] + (["--tls", "self-signed"] if self.https else [])
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}:\n{self.log.read_text()}")
            try:
                if self.request("GET", "/healthz")[0] == 200:
                    self.query_key = keys.create_key(self.data, "query").secret
                    self.workspace_id = keys.load(self.data).workspace_id
                    return self
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the server did not answer in {timeout} s:\n{self.log.read_text()}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        """(status, headers, parsed JSON or text) of a plain request."""
        if self.https:
            ctx = ssl.create_default_context(cafile=str(self.cert)) if self.cert.exists() else ssl._create_unverified_context()
            conn = http.client.HTTPSConnection("127.0.0.1", self.port, timeout=60, context=ctx)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            raw = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
            try:
                parsed = json.loads(raw) if raw else None
            except ValueError:
                parsed = raw.decode(errors="replace")
            return r.status, hdrs, parsed
        finally:
            conn.close()

    def reference(self, query: str, timespan: str | None = None) -> dict:
        """``netatlas query``'s answer (POST /api/query): {"columns": [(name, type)], "rows": [...]}."""
        payload = {"query": query} | ({"timespan": timespan} if timespan else {})
        status, _, body = self.request("POST", "/api/query", json.dumps(payload).encode(),
                                       {"Authorization": f"Bearer {self.query_key}", "Content-Type": "application/json"})
        assert status == 200, body
        table = body["tables"][0]
        return {"columns": [(c["name"], c["type"]) for c in table["columns"]], "rows": table["rows"]}


def filled(tmp_path_factory, name: str) -> Path:
    data = tmp_path_factory.mktemp(name) / "data"
    ws = netatlas.connect(data)
    try:
        ws.ingest("VMConnection", records())
    finally:
        ws.close()
    return data


def serve(tmp_path_factory, name: str, https: bool, *options: str):
    """For a module fixture (``yield from``): the filled workspace served, stopped afterwards."""
    s = Served(filled(tmp_path_factory, name), https, *options).start()
    try:
        yield s
    finally:
        s.stop()
