"""The workspace server run for real: https (tls_cert/tls_key), its TOML configuration file,
`netatlas workspace install` (the file, a systemd unit and the workspace), and the agent shipping
over https with the server's self-signed certificate as its ca_file.

Certificates are made by openssl(1) in a temporary directory; servers are real subprocesses on
loopback ports; the installed unit is run as systemd would run it (its ExecStart= and
Environment=, parsed from the file, working directory /).
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import ssl
import stat
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import pytest

import systemd_units
from netatlas import keys
from netatlas.agent import ship
from netatlas.agent.config import AgentConfig, ConfigError
from netatlas.server import install
from netatlas.server.settings import SETTINGS, Settings

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def clean_env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NETATLAS_")}
    env["PYTHONPATH"] = str(ROOT)
    return env | extra


def netatlas(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 60):
    return subprocess.run([sys.executable, "-m", "netatlas", *args], capture_output=True, text=True,
                          env=env or clean_env(), cwd=cwd, timeout=timeout)


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 and its key; another key; an encrypted key."""
    if shutil.which("openssl") is None:
        print("skipping: no openssl(1) to make a certificate (scripts/test.sh installs it)")
        pytest.skip("no openssl(1) to make a certificate")
    d = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=netatlas-test",
            "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(d / "server.key"), "-out", str(d / "server.crt"))
    openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(d / "other.key"))
    openssl("pkey", "-in", str(d / "server.key"), "-aes256", "-passout", "pass:secret", "-out", str(d / "locked.key"))
    return d


class Https:
    """A server's https endpoint, trusting the test certificate."""

    def __init__(self, port: int, cafile: Path, host: str = "127.0.0.1"):
        self.port, self.host = port, host
        self.context = ssl.create_default_context(cafile=str(cafile))

    def call(self, method: str, path: str, body: bytes | None = None, key: str | None = None):
        conn = http.client.HTTPSConnection(self.host, self.port, timeout=30, context=self.context)
        try:
            headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            return r.status, json.loads(r.read())
        finally:
            conn.close()

    def query(self, key: str, kql: str) -> list[dict]:
        status, body = self.call("POST", "/api/query", json.dumps({"query": kql, "timespan": "P1D"}).encode(), key)
        assert status == 200, body
        table = body["tables"][0]
        return [dict(zip([c["name"] for c in table["columns"]], row)) for row in table["rows"]]


def wait_healthy(proc: subprocess.Popen, endpoint: Https, log: Path, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited with {proc.returncode}:\n{log.read_text()}")
        try:
            status, body = endpoint.call("GET", "/healthz")
            if status == 200:
                return body
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"no answer on https://127.0.0.1:{endpoint.port}/healthz in {timeout} s:\n{log.read_text()}")


def stop(proc: subprocess.Popen) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise


# ---------------------------------------------------------------- TLS settings that cannot work

BAD_TLS = {
    "a certificate without its key": (["--tls-cert", "server.crt"], "tls_cert is set but tls_key is not"),
    "a key without its certificate": (["--tls-key", "server.key"], "tls_key is set but tls_cert is not"),
    "a certificate that is not there": (["--tls-cert", "missing.crt", "--tls-key", "server.key"],
                                        "tls_cert: cannot read missing.crt: No such file or directory"),
    "the two swapped": (["--tls-cert", "server.key", "--tls-key", "server.crt"],
                        "tls_cert: server.key is not a PEM certificate"),
    "another certificate's key": (["--tls-cert", "server.crt", "--tls-key", "other.key"],
                                  "tls_key: other.key is not the private key of tls_cert server.crt"),
    "an encrypted key": (["--tls-cert", "server.crt", "--tls-key", "locked.key"],
                         "tls_key: locked.key is encrypted; the server needs it without a passphrase"),
}


@pytest.mark.parametrize("case", BAD_TLS)
def test_tls_settings_that_cannot_work_are_refused_before_anything_starts(tls, tmp_path, case):
    argv, message = BAD_TLS[case]
    data = tmp_path / "data"
    p = netatlas("workspace", "serve", "--data", str(data), "--port", str(free_port()), *argv, cwd=tls)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert not data.exists(), "the workspace was created before the settings were checked"


# ---------------------------------------------------------------- https, and the agent shipping over it

@pytest.fixture(scope="module")
def https_server(tls, tmp_path_factory):
    d = tmp_path_factory.mktemp("https")
    port, log = free_port(), d / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "netatlas", "workspace", "serve", "--data", str(d / "data"),
                                 "--port", str(port), "--tls-cert", str(tls / "server.crt"),
                                 "--tls-key", str(tls / "server.key")],
                                stdout=out, stderr=subprocess.STDOUT, env=clean_env())
    try:
        endpoint = Https(port, tls / "server.crt")
        wait_healthy(proc, endpoint, log)
        yield endpoint, keys.load(d / "data"), log
    finally:
        stop(proc)


def agent_config(tmp: Path, url: str, identity: keys.Identity, **settings) -> AgentConfig:
    return AgentConfig(workspace_url=url, workspace_id=identity.workspace_id,
                       key=identity.by_role("ingest")[0].secret, spool=str(tmp / "spool"),
                       machine_id_file=str(tmp / "machine-id"), timeout=10, **settings)


def computer(name: str) -> list[dict]:
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return [{"TimeGenerated": now, "Computer": name, "Machine": f"m-{name}", "AgentId": name}]


def test_the_banner_and_the_urls_say_https(https_server):
    endpoint, identity, log = https_server
    text = log.read_text()
    assert f"health        GET  https://127.0.0.1:{endpoint.port}/healthz" in text, text
    assert "http://" not in text.split("INFO:")[0], text


def test_plain_http_gets_no_answer_from_the_https_port(https_server):
    endpoint = https_server[0]
    conn = http.client.HTTPConnection("127.0.0.1", endpoint.port, timeout=10)
    try:
        conn.request("GET", "/healthz")
        reply = conn.getresponse()
        assert reply.status == 400, reply.status      # uvicorn answers a TLS port's cleartext with 400 or a reset
    except (http.client.HTTPException, ConnectionError):
        pass
    finally:
        conn.close()


def test_the_agent_delivers_over_https_trusting_the_servers_certificate(https_server, tls, tmp_path):
    endpoint, identity, _ = https_server
    name = f"tls-{uuid.uuid4().hex[:8]}"
    url = f"https://127.0.0.1:{endpoint.port}"
    query_key = keys.create_key(https_server[2].parent / "data", "query").secret   # hashed on disk: a new one

    untrusting = ship.Shipper(agent_config(tmp_path, url, identity))          # the system's CAs only
    untrusting.enqueue("VMComputer", computer(name))
    report = untrusting.flush()
    untrusting.close(timeout=0)
    assert report.sent == 0 and report.remaining == 1
    assert "CERTIFICATE_VERIFY_FAILED" in report.error and "--ca-file" in report.error, report.error
    assert endpoint.query(query_key, f"VMComputer | where Computer == '{name}'") == []

    # the same spool, now trusting the certificate: the batch kept goes, once
    trusting = ship.Shipper(agent_config(tmp_path, url, identity, ca_file=str(tls / "server.crt")))
    report = trusting.flush()
    trusting.close()
    assert (report.sent, report.remaining, report.error) == (1, 0, None)
    rows = endpoint.query(query_key, f"VMComputer | where Computer == '{name}' | project Machine")
    assert rows == [{"Machine": f"m-{name}"}]


def test_a_certificate_for_another_name_is_refused_with_the_reason(https_server, tls, tmp_path):
    endpoint, identity, _ = https_server
    s = ship.Shipper(agent_config(tmp_path, f"https://localhost:{endpoint.port}", identity,
                                  ca_file=str(tls / "server.crt")))   # the certificate names 127.0.0.1 only
    s.enqueue("VMComputer", computer("by-name"))
    report = s.flush()
    s.close(timeout=0)
    assert report.sent == 0 and "does not name the host of workspace_url" in report.error, report.error


def test_a_ca_file_that_is_not_pem_is_refused_when_the_agent_starts(tls, tmp_path):
    config = agent_config(tmp_path, "https://127.0.0.1:9", keys.load_or_create(tmp_path / "ws"),
                          ca_file=str(tls / "server.key"))
    with pytest.raises(ConfigError, match=r"ca_file: cannot load .*server.key as PEM certificates"):
        ship.Shipper(config).sender
    p = netatlas("agent", "run", "--workspace-url", "https://127.0.0.1:9", "--workspace-id", "w", "--key", "a2V5",
                 "--ca-file", str(tmp_path / "missing.pem"), "--spool", str(tmp_path / "sp"),
                 "--machine-id-file", str(tmp_path / "mid"), "--collector", "netlink", "--no-dns")
    assert p.returncode != 0 and "ca_file: cannot load" in p.stderr and "No such file" in p.stderr, p.stderr
    assert "Traceback" not in p.stderr, p.stderr


# ---------------------------------------------------------------- the configuration file

def test_settings_come_from_flags_then_environment_then_file_then_defaults(tmp_path):
    conf = tmp_path / "workspace.toml"
    conf.write_text('port = 1111\nhost = "10.0.0.1"\nmax_rows = 5\nquery_timeout = 2\n')
    s = Settings.from_env({"NETATLAS_PORT": "2222", "NETATLAS_MAX_ROWS": "6"}, file=conf, port=3333)
    assert (s.port, s.max_rows, s.host, s.query_timeout, s.retention_days) == (3333, 6, "10.0.0.1", 2.0, 30)
    # the file named by NETATLAS_CONFIG when no --config is given
    s = Settings.from_env({"NETATLAS_CONFIG": str(conf)})
    assert (s.port, s.max_rows) == (1111, 5)


# file text -> the message, and whether it names the file (a value out of range is about the
# setting, wherever it came from)
FILE_MISTAKES = {
    'porrt = 80\n': ("unknown setting 'porrt'; did you mean 'port'?", True),
    'port = "eighty"\n': ("port: expected a whole number, got 'eighty'", True),
    'port = 80.5\n': ("port: expected a whole number, got 80.5", True),
    'max_rows = true\n': ("max_rows: expected a whole number, got True", True),
    'host = 1\n': ("host: expected a string, got 1", True),
    'port = \n': ("not valid TOML", True),
    'retention_days = 0\n': ("retention_days: expected 1 to 4383 (12 years), got 0", False),
    'port = 70000\n': ("port: expected 0 to 65535, got 70000", False),
}


@pytest.mark.parametrize("text", FILE_MISTAKES)
def test_a_mistake_in_the_configuration_file_is_named_and_exits_2(tmp_path, text):
    message, names_file = FILE_MISTAKES[text]
    conf = tmp_path / "workspace.toml"
    conf.write_text(text)
    data = tmp_path / "data"
    p = netatlas("workspace", "serve", "--config", str(conf), "--data", str(data))
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr
    assert (f"{conf}:" in p.stderr) == names_file, p.stderr
    assert not data.exists()


def test_a_configuration_file_that_cannot_be_read_exits_2(tmp_path):
    p = netatlas("workspace", "serve", "--config", str(tmp_path / "nope.toml"))
    assert p.returncode == 2 and f"cannot read the configuration file {tmp_path / 'nope.toml'}" in p.stderr


def test_every_setting_is_an_option_of_install_and_a_key_of_its_file(tmp_path):
    text = netatlas("workspace", "install", "--help").stdout
    settings = Settings(**{s.name: s.default for s in SETTINGS})
    config = install.config_text(settings)
    for s in SETTINGS:
        assert s.flag in text and s.env in text, s.name
        assert f"# {s.help} (env {s.env})" in config, s.name


# ---------------------------------------------------------------- netatlas workspace install

def test_install_dry_run_prints_both_files_and_creates_nothing(tmp_path):
    conf, unit, data = tmp_path / "etc" / "workspace.toml", tmp_path / "unit.service", tmp_path / "data"
    p = netatlas("workspace", "install", "--dry-run", "--data", str(data), "--host", "0.0.0.0",
                 "--config-out", str(conf), "--unit-out", str(unit))
    assert p.returncode == 0, p.stderr
    assert f"# ---- {conf} (mode 0644)" in p.stdout and f"# ---- {unit} (mode 0644)" in p.stdout
    assert f'data = "{data}"' in p.stdout and 'host = "0.0.0.0"' in p.stdout
    assert not conf.exists() and not unit.exists() and not data.exists()
    assert "warning: 0.0.0.0 is not a loopback address and there is no --tls-cert" in p.stderr


@pytest.fixture(scope="module")
def installed(tls, tmp_path_factory):
    """`netatlas workspace install` with https, a port and a retention, into a temporary root,
    run from another directory with relative certificate paths."""
    root = tmp_path_factory.mktemp("root")
    conf, unit, data = root / "etc/netatlas/workspace.toml", root / "etc/systemd/netatlas-workspace.service", \
        root / "var/lib/netatlas"
    port = free_port()
    argv = ["workspace", "install", "--data", str(data), "--host", "127.0.0.1", "--port", str(port),
            "--tls-cert", "server.crt", "--tls-key", "server.key", "--retention-days", "90",
            "--config-out", str(conf), "--unit-out", str(unit)]
    first = netatlas(*argv, cwd=tls)
    return argv, first, conf, unit, data, port


def test_install_writes_the_configuration_the_unit_and_the_workspace(installed, tls):
    argv, p, conf, unit, data, port = installed
    assert p.returncode == 0, p.stderr
    identity = keys.load(data)
    assert f"{conf}: created\n{unit}: created\n" in p.stdout
    assert f"{data}: workspace {identity.workspace_id} (created; its keys: netatlas keys list --data {data})" \
        in p.stdout
    assert "next: systemctl daemon-reload && systemctl enable --now netatlas-workspace" in p.stdout
    assert "warning" not in p.stdout + p.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "workspace.json").stat().st_mode) == 0o600
    assert stat.S_IMODE(conf.stat().st_mode) == 0o644
    loaded = Settings.from_env({}, file=conf)     # certificate paths made absolute: the service runs in /
    assert loaded == Settings(data=str(data), host="127.0.0.1", port=port, tls_cert=str(tls / "server.crt"),
                              tls_key=str(tls / "server.key"), retention_days=90)
    text = unit.read_text()
    argv_unit, env = systemd_units.command(text)
    assert argv_unit == [sys.executable, "-m", "netatlas", "workspace", "serve", "--config", str(conf)]
    service = systemd_units.sections(text)["Service"]
    assert service["Restart"] == ["on-failure"] and service["ReadWritePaths"] == [str(data)]
    assert service["ProtectSystem"] == ["strict"] and service["NoNewPrivileges"] == ["yes"]
    assert systemd_units.sections(text)["Install"]["WantedBy"] == ["multi-user.target"]


def test_install_again_changes_nothing_and_keeps_the_workspace(installed, tls):
    argv, first, conf, unit, data, port = installed
    identity = keys.load(data)
    again = netatlas(*argv, cwd=tls)
    assert again.returncode == 0, again.stderr
    assert f"{conf}: unchanged\n{unit}: unchanged\n" in again.stdout
    assert f"workspace {identity.workspace_id} (existing;" in again.stdout
    assert keys.load(data) == identity


def test_install_refuses_a_tls_file_it_cannot_read_and_writes_nothing(tmp_path):
    conf = tmp_path / "workspace.toml"
    p = netatlas("workspace", "install", "--data", str(tmp_path / "data"), "--tls-cert", str(tmp_path / "x.crt"),
                 "--tls-key", str(tmp_path / "x.key"), "--config-out", str(conf), "--unit-out",
                 str(tmp_path / "u.service"))
    assert p.returncode == 2 and "tls_cert: cannot read" in p.stderr and not conf.exists(), p.stderr


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_accepts_the_installed_unit(installed):
    unit = installed[3]
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert str(unit) not in r.stderr, r.stderr    # no warning about the unit's own lines


def test_the_installed_unit_serves_the_workspace_over_https(installed, tls, tmp_path):
    argv, _, conf, unit, data, port = installed
    command, env = systemd_units.command(unit.read_text())
    log = tmp_path / "service.log"
    with open(log, "wb") as out:      # as systemd runs it: its own environment, in /
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd="/",
                                env={"PATH": os.environ["PATH"], **env})
    try:
        endpoint = Https(port, tls / "server.crt")
        identity = keys.load(data)
        health = wait_healthy(proc, endpoint, log)
        assert health["workspace_id"] == identity.workspace_id
        query_key = keys.create_key(data, "admin").secret   # changing retention takes an admin key (hashed on disk)
        status, body = endpoint.call("PUT", "/api/retention/VMProcess", b'{"days": 7}', query_key)
        assert status == 200, body
        status, body = endpoint.call("GET", "/api/retention", key=query_key)
        assert status == 200 and body["tables"]["VMProcess"] == 7
        others = {t: d for t, d in body["tables"].items() if t != "VMProcess"}
        assert set(others.values()) == {90}, others     # retention_days: the tables not set
    finally:
        code = stop(proc)
    # a clean stop for systemd: uvicorn re-raises SIGTERM once it has shut down
    assert code in (0, -signal.SIGTERM), log.read_text()
    assert "Application shutdown complete" in log.read_text()
    assert f"https://127.0.0.1:{port}/healthz" in log.read_text()


def test_a_kept_alive_https_connection_closed_without_close_notify_is_reopened_not_failed(tls, tmp_path):
    """uvicorn closes an idle kept-alive connection after 5 s with TLS's close_notify, then waits
    30 s for the client's and closes the socket without more: an agent batching every 15 s or
    more sends its next batch into a connection that ends without close_notify (SSLEOFError).
    That is a stale connection to open again, not a failed send with a backoff. A TLS server that
    answers one request per connection and then closes it that way stands in for those 35 s."""
    import socket
    import threading
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tls / "server.crt", tls / "server.key")
    listener = socket.create_server(("127.0.0.1", 0))
    served = []

    def serve():
        while True:
            try:
                raw, _ = listener.accept()
            except OSError:
                return
            with ctx.wrap_socket(raw, server_side=True) as conn, conn.makefile("rb") as f:
                head = [line for line in iter(f.readline, b"\r\n")]
                length = next(int(h.split(b":")[1]) for h in head if h.lower().startswith(b"content-length"))
                f.read(length)
                served.append(head[0])
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
                time.sleep(0.2)
            # leaving the with: the socket closes without conn.unwrap(), i.e. without close_notify

    threading.Thread(target=serve, daemon=True).start()
    identity = keys.load_or_create(tmp_path / "ws")
    s = ship.Shipper(agent_config(tmp_path, f"https://127.0.0.1:{listener.getsockname()[1]}", identity,
                                  ca_file=str(tls / "server.crt")))
    try:
        s.enqueue("VMComputer", computer("keepalive-1"))
        assert s.flush().sent == 1
        time.sleep(0.5)                       # the server has closed the connection the sender keeps
        s.enqueue("VMComputer", computer("keepalive-2"))
        report = s.flush()
        assert (report.sent, report.error) == (1, None), report.error
        assert s.stats["send_failures"] == 0 and len(served) == 2
    finally:
        s.close()
        listener.close()
