"""Headers a client chooses (issue 11, item 12) against the real server on loopback:

* ``X-Forwarded-For`` is believed only from the proxies of ``trusted_proxies`` (none by default):
  otherwise any program on the workspace's machine could make an agent's batch seem to come from
  any address, and the workspace would record it as that machine's NAT address;
* no redirect reflects the ``Host`` header (``/ui`` and ``/ui/`` -> ``/``, the UI's page, is
  relative; no trailing-slash redirects).
"""
from __future__ import annotations

import json
import uuid

import pytest

from netatlas import auth

from test_server import Server, now, request, unique

SPOOFED = "203.0.113.77"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("headers") / "data").start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def behind_proxy(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("proxied") / "data", "--trusted-proxies", "127.0.0.0/8, ::1").start()
    yield s
    s.kill()


def send_computer(client, forwarded_for: str) -> str:
    """A VMComputer batch (a machine with address 10.9.0.5) sent with X-Forwarded-For; its Machine id."""
    machine = f"m-{uuid.uuid4().hex[:12]}"
    body = json.dumps([{"TimeGenerated": now(), "Computer": unique(), "Machine": machine,
                        "Ipv4Addresses": ["10.9.0.5"]}]).encode()
    headers = auth.signed_headers(client.identity.workspace_id, client.ingest_key.secret, body,
                                  "/api/ingest/VMComputer")
    headers["X-Forwarded-For"] = forwarded_for
    r = request(client.port, "POST", "/api/ingest/VMComputer", body, headers)
    assert r.status == 200, r.body
    return machine


def machines_at(client, address: str) -> list[str]:
    r = client.call("GET", f"/api/machines/resolve?ip={address}")
    assert r.status == 200, r.body
    return [m["machine"] for m in r.body["addresses"][address]]


def test_x_forwarded_for_from_an_untrusted_sender_is_ignored(server):
    client = server.client()
    machine = send_computer(client, SPOOFED)
    assert machine not in machines_at(client, SPOOFED)


def test_x_forwarded_for_from_a_trusted_proxy_names_the_sender(behind_proxy):
    client = behind_proxy.client()
    machine = send_computer(client, "198.51.100.23")
    assert machines_at(client, "198.51.100.23") == [machine]


def test_a_trusted_proxy_that_is_not_an_address_stops_the_server(tmp_path):
    with pytest.raises(RuntimeError, match=r"trusted_proxies: 'proxy\.example' is not an IP address"):
        Server(tmp_path / "data", "--trusted-proxies", "10.0.0.1,proxy.example").start(timeout=15)


@pytest.mark.parametrize("path", ["/ui", "/ui?x=1", "/ui/"])
def test_the_ui_redirect_is_relative_whatever_the_host(server, path):
    r = request(server.port, "GET", path, headers={"Host": "evil.example"})
    assert r.status == 307 and r.headers["location"] == "/", r.headers
    page = request(server.port, "GET", "/", headers={"Host": "evil.example"})
    assert page.status == 200 and 'src="/ui/app.js"' in page.body


@pytest.mark.parametrize("path", ["/healthz/", "/api/query/", "/api/map/"])
def test_no_trailing_slash_redirect_reflects_the_host(server, path):
    r = request(server.port, "GET", path, headers={"Host": "evil.example"})
    assert "evil.example" not in r.headers.get("location", ""), r.headers
    assert r.status == 404, (r.status, r.headers)
