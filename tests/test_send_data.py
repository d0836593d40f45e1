"""README's "Sending your own data": the shell (openssl + curl) and Python examples, taken from
the README as they are written (fenced blocks marked `send-data`), run against a real server on
loopback; their records must arrive."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from test_server import ROOT, Server

BLOCK = re.compile(r"^```(\w+) send-data\n(.*?)^```", re.MULTILINE | re.DOTALL)
RUNNERS = {"sh": ["sh", "-e", "-c"], "python": [sys.executable, "-c"]}


def examples() -> dict[str, str]:
    found = {lang: text for lang, text in BLOCK.findall((ROOT / "README.md").read_text())}
    assert set(found) == set(RUNNERS), f"README's send-data blocks: {sorted(found)}"
    return found


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("send") / "data").start()
    yield s
    s.kill()


def run(served, lang: str) -> subprocess.CompletedProcess:
    c = served.client()
    env = dict(os.environ, NETATLAS_URL=f"http://127.0.0.1:{served.port}",
               NETATLAS_WORKSPACE_ID=c.identity.workspace_id, NETATLAS_INGEST_KEY=c.ingest_key.secret)
    return subprocess.run(RUNNERS[lang] + [examples()[lang]], capture_output=True, text=True, env=env, timeout=60)


def test_the_shell_example_sends_a_record(served):
    out = run(served, "sh")
    assert out.returncode == 0, out.stderr + out.stdout
    assert '"records":1' in out.stdout and '"duplicate":false' in out.stdout
    c = served.client()
    r = c.query('VMConnection | where Computer == "script-sh-01" | project ProcessName, DestinationPort, '
                'BytesSent, RemoteIp')
    assert r.body["tables"][0]["rows"] == [["backup.sh", 5432, 1200, "10.0.0.9"]]


def test_the_python_example_sends_records(served):
    out = run(served, "python")
    assert out.returncode == 0, out.stderr
    assert "'records': 1" in out.stdout
    c = served.client()
    assert c.count("VMComputer", "script-py-01") == 1
    r = c.query('VMConnection | where Computer == "script-py-01" | project RemoteIp, BytesReceived')
    assert r.body["tables"][0]["rows"] == [["10.0.0.4", 5120]]
    again = run(served, "python")         # the batch id: the VMConnection batch is not stored twice
    assert again.returncode == 0 and "'duplicate': True" in again.stdout
    assert c.count("VMConnection", "script-py-01") == 1
