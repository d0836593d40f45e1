"""Issue 11, items 10-12 (auth): against a real server on loopback.

Per-table ingest roles (an ingest key cannot write ThreatIntelligenceIndicator), admin-only
endpoints, the signed body digest, replays without a batch id, a self-signed certificate with a
fingerprint agents pin, a private data directory, hashed keys revoked and rotated through the CLI,
and the local token that `netatlas query` uses instead of a stored query secret.
"""
from __future__ import annotations

import json
import os
import re
import socket
import ssl
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from netatlas import auth, discovery, keys, tlscert
from test_server import ROOT, Server, assert_error_shape, free_port, request

TI = "ThreatIntelligenceIndicator"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("hardening") / "data").start()
    yield s
    s.kill()


@pytest.fixture
def client(server):
    return server.client()


def records(computer: str, n: int = 2) -> list[dict]:
    when = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    return [{"TimeGenerated": when, "Computer": computer, "BytesSent": i} for i in range(n)]


def indicator(ip: str) -> list[dict]:
    when = (datetime.now(timezone.utc) - timedelta(minutes=1)).isoformat()
    return [{"TimeGenerated": when, "IndicatorId": f"x-{ip}", "NetworkIP": ip, "Active": True,
             "ThreatType": "botnet", "SourceSystem": "test"}]


def post(port, table, body, headers):
    return request(port, "POST", f"/api/ingest/{table}", body, headers)


def signed(client, table, body, key=None, **options):
    return auth.signed_headers(client.identity.workspace_id, (key or client.ingest_key).signing_key, body,
                               f"/api/ingest/{table}", **options)


def host() -> str:
    return f"host-{uuid.uuid4().hex[:10]}"


# ---------------------------------------------------------------- item 10: roles

def test_an_ingest_key_cannot_write_threat_intelligence_an_admin_key_can(client):
    ip = "203.0.113.77"
    refused = client.ingest(TI, indicator(ip))
    err = assert_error_shape(refused, 403, "AUTH_WRONG_ROLE")
    assert f"ingestion into {TI} needs an admin key" in err["message"]
    assert client.query(f'{TI} | where NetworkIP == "{ip}" | count').body["tables"][0]["rows"][0][0] == 0
    assert client.ingest(TI, indicator(ip), key=client.admin_key).status == 200
    assert client.query(f'{TI} | where NetworkIP == "{ip}" | count').body["tables"][0]["rows"][0][0] == 1
    assert client.ingest("VMConnection", records(host())).status == 200        # agent tables: ingest key


def test_admin_work_needs_an_admin_key_which_can_also_query(client, tmp_path):
    feed = b"198.51.100.9\n"
    path = "/api/threatintel/import?source=hardening&format=list"
    for key in (client.query_key, client.ingest_key):
        r = request(client.port, "POST", path, feed, {"Authorization": f"Bearer {key.secret}"})
        assert_error_shape(r, 403, "AUTH_WRONG_ROLE")
        assert_error_shape(client.call("POST", "/api/backup", {"target": str(tmp_path / "b")}, key=key.secret),
                           403, "AUTH_WRONG_ROLE")
    r = request(client.port, "POST", path, feed, {"Authorization": f"Bearer {client.admin_key.secret}"})
    assert r.status == 200, r.body
    assert client.call("GET", "/api/retention").status == 200                  # reads stay on the query key
    assert client.query("print 1", key=client.admin_key.secret).status == 200  # an admin key queries too


# ---------------------------------------------------------------- item 11: digest, replay

def test_a_captured_request_cannot_carry_another_body_of_the_same_length(client):
    computer, other = host(), host()
    body = json.dumps(records(computer)).encode()
    forged = body.replace(computer.encode(), other.encode())
    assert len(forged) == len(body) and forged != body
    h = signed(client, "VMConnection", body)
    err = assert_error_shape(post(client.port, "VMConnection", forged, h), 401, "AUTH_BAD_DIGEST")
    assert "does not match its signed x-ms-content-sha256" in err["message"]
    assert client.count("VMConnection", other) == 0
    assert post(client.port, "VMConnection", body, h).status == 200
    assert client.count("VMConnection", computer) == 2


def test_the_digest_covers_the_gzip_body_as_sent(client):
    import gzip
    computer = host()
    body = gzip.compress(json.dumps(records(computer)).encode())
    h = signed(client, "VMConnection", body, gzipped=True)
    tampered = body[:-5] + bytes([body[-5] ^ 1]) + body[-4:]
    assert_error_shape(post(client.port, "VMConnection", tampered, h), 401, "AUTH_BAD_DIGEST")
    assert post(client.port, "VMConnection", body, h).status == 200
    assert client.count("VMConnection", computer) == 2


def test_a_netatlas_agent_without_a_digest_is_refused(client):
    computer = host()
    body = json.dumps(records(computer)).encode()
    h = signed(client, "VMConnection", body, digest=False) | {"User-Agent": "netatlas-agent/1.0"}
    assert_error_shape(post(client.port, "VMConnection", body, h), 401, "AUTH_DIGEST_REQUIRED")
    assert client.count("VMConnection", computer) == 0


def test_an_azure_style_client_without_a_digest_still_works(client):
    computer = host()
    body = json.dumps(records(computer)).encode()
    h = signed(client, "VMConnection", body, digest=False) | {"User-Agent": "python-requests/2.31"}
    assert "x-ms-content-sha256" not in h
    assert post(client.port, "VMConnection", body, h).status == 200
    assert client.count("VMConnection", computer) == 2


@pytest.mark.parametrize("digest", [True, False])
def test_a_verbatim_replay_without_a_batch_id_is_stored_once(client, digest):
    computer = host()
    body = json.dumps(records(computer, 3)).encode()
    h = signed(client, "VMConnection", body, digest=digest)
    first = post(client.port, "VMConnection", body, h)
    again = post(client.port, "VMConnection", body, h)
    assert first.status == 200 and first.body["duplicate"] is False
    assert again.status == 200 and again.body["duplicate"] is True and again.body["records"] == 3
    assert client.count("VMConnection", computer) == 3
    fresh = signed(client, "VMConnection", body, digest=digest, date=datetime.now(timezone.utc) + timedelta(seconds=1))
    assert post(client.port, "VMConnection", body, fresh).body["duplicate"] is False   # a new signing is new


# ---------------------------------------------------------------- item 12: modes, hashed keys, local token

def test_the_data_directory_is_0700_and_its_files_0600(server, client):
    assert client.ingest("VMConnection", records(host())).status == 200
    data = server.data
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = [p for p in data.iterdir() if p.is_file()]
    assert {"workspace.json", "server.json"} <= {p.name for p in files} and any(p.suffix == ".duckdb" for p in files)
    loose = {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files if stat.S_IMODE(p.stat().st_mode) & 0o077}
    assert loose == {}


def test_query_and_admin_secrets_are_not_on_disk(server, client):
    text = (server.data / "workspace.json").read_text()
    assert client.query_key.secret not in text and client.admin_key.secret not in text
    stored = {k["id"]: k for k in json.loads(text)["keys"]}
    assert "secret" not in stored[client.query_key.id] and stored[client.query_key.id]["hash"].startswith("sha256:")
    assert client.ingest_key.secret in text       # HMAC needs the ingest secret


def cli(*args, check=True):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    r = subprocess.run([sys.executable, "-m", "netatlas", *args], capture_output=True, text=True, env=env, timeout=60)
    if check:
        assert r.returncode == 0, r.stderr
    return r


def test_revoke_and_rotate_through_the_cli_take_effect_on_the_running_server(server, client):
    data = str(server.data)
    secret = cli("keys", "create", "--data", data, "--role", "query", "--format", "secret").stdout.strip()
    assert client.query("print 1", key=secret).status == 200
    key_id = next(k.id for k in keys.load(data).keys if k.matches(secret))
    listed = cli("keys", "list", "--data", data).stdout
    assert secret not in listed and f"{secret[:6]}… (hashed)" in listed

    rotated = json.loads(cli("keys", "rotate", "--data", data, key_id, "--format", "json").stdout)["keys"][0]
    time.sleep(0.05)
    assert_error_shape(client.query("print 1", key=secret), 403, "AUTH_BAD_KEY")
    assert client.query("print 1", key=rotated["secret"]).status == 200

    assert "revoked query key" in cli("keys", "revoke", "--data", data, key_id).stdout
    time.sleep(0.05)
    assert_error_shape(client.query("print 1", key=rotated["secret"]), 403, "AUTH_BAD_KEY")
    bad = cli("keys", "revoke", "--data", data, "k_nothing", check=False)
    assert bad.returncode == 1 and "no key 'k_nothing'" in bad.stderr


def test_netatlas_query_reaches_the_server_with_its_local_token(server, client):
    published = discovery.read(server.data)
    assert published.token and stat.S_IMODE(published.path.stat().st_mode) == 0o600
    assert client.query("print 1", key=published.token).status == 200
    assert client.call("POST", "/api/retention/apply", key=published.token).status == 200   # DIR's owner
    out = cli("query", "--data", str(server.data), "print x = 41 + 1").stdout
    assert "42" in out


# ---------------------------------------------------------------- item 11: self-signed TLS

@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    data = tmp_path_factory.mktemp("tls") / "data"
    port = free_port()
    log = data.parent / "tls-server.log"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(data),
                                 "--port", str(port), "--tls", "self-signed"], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    yield data, port, log
    proc.kill()
    proc.wait()


def test_self_signed_fingerprint_printed_matches_the_served_certificate(tls_server):
    data, port, log = tls_server
    printed = re.search(r"fingerprint\s+SHA-256 ([0-9A-F:]{95})", log.read_text())
    assert printed, log.read_text()
    served = ssl.get_server_certificate(("127.0.0.1", port))
    assert tlscert.fingerprint_of_der(ssl.PEM_cert_to_DER_cert(served)) == printed.group(1)
    assert stat.S_IMODE((data / "tls" / "server.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((data / "tls").stat().st_mode) == 0o700


def test_a_pinning_client_connects_and_a_wrong_pin_is_refused(tls_server):
    import http.client
    data, port, log = tls_server
    fp = tlscert.fingerprint(data / "tls" / "server.crt")
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tlscert.pinned_context(fp))
    conn.request("GET", "/healthz")
    assert conn.getresponse().status == 200
    conn.close()
    wrong = "AA" * 32
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=tlscert.pinned_context(wrong))
    with pytest.raises(ssl.SSLCertVerificationError, match="not the pinned"):
        conn.request("GET", "/healthz")
    conn.close()


def test_the_agent_ships_to_a_pinned_self_signed_server_with_a_signed_digest(tls_server):
    import gzip
    from netatlas.agent import config as agent_config
    from netatlas.agent.ship import HttpSender
    data, port, _ = tls_server
    fp = tlscert.fingerprint(data / "tls" / "server.crt")
    ident = keys.load(data)
    flags = {"workspace_url": f"https://127.0.0.1:{port}", "workspace_id": ident.workspace_id,
             "key": ident.by_role("ingest")[0].secret, "tls_fingerprint": fp}
    sender = HttpSender(agent_config.load(flags, environ={}))
    try:
        reply = sender("VMConnection", gzip.compress(json.dumps(records(host())).encode()), "pinned-1")
    finally:
        sender.close()
    assert reply.status == 200 and json.loads(reply.body)["records"] == 2, reply
    wrong = HttpSender(agent_config.load(flags | {"tls_fingerprint": "AB" * 32}, environ={}))
    with pytest.raises(ssl.SSLCertVerificationError, match="not the pinned"):
        wrong("VMConnection", gzip.compress(b"[]"), "pinned-2")


def test_a_second_start_keeps_the_certificate(tmp_path):
    cert, key, created = tlscert.self_signed(tmp_path)
    fp = tlscert.fingerprint(cert)
    assert created and tlscert.self_signed(tmp_path)[2] is False and tlscert.fingerprint(cert) == fp
    assert tlscert.normalize(fp.replace(":", "").lower()) == fp
    with pytest.raises(ValueError, match="64 hex digits"):
        tlscert.normalize("abc")


def test_up_makes_a_query_key_per_start_and_revokes_the_previous_one(tmp_path):
    from netatlas.up import UP_KEY_FILE, ui_query_key
    keys.load_or_create(tmp_path)
    first = ui_query_key(tmp_path)
    second = ui_query_key(tmp_path)
    stored = keys.load(tmp_path)
    assert first.secret and second.secret and first.id != second.id
    assert first.id not in [k.id for k in stored.keys]
    assert any(k.matches(second.secret) for k in stored.by_role("query"))
    assert stat.S_IMODE((tmp_path / UP_KEY_FILE).stat().st_mode) == 0o600
