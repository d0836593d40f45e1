"""The web UI's sign-in session cookie and read-only share links (netatlas/server/sessions.py,
issue 17) against a real server: the cookie's flags, what it opens, logout, expiry, a refused
cross-site request; share links read only, expiring, revocable."""
from __future__ import annotations

import json
import stat
import time

import pytest

from netatlas import keys
from test_server import Server, assert_error_shape, request

TTL = 3          # seconds a session lasts on this server (setting session_ttl)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    data = tmp_path_factory.mktemp("sessions") / "data"
    s = Server(data, "--session-ttl", str(TTL), "--trusted-proxies", "127.0.0.1").start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def call(client, method, path, payload=None, headers=None):
    body = json.dumps(payload).encode() if payload is not None else b""
    h = {"Content-Type": "application/json"} if payload is not None else {}
    return request(client.port, method, path, body, {**h, **(headers or {})})


def sign_in(client, key=None, headers=None):
    """The reply of POST /api/session and its cookie header ("netatlas_session=...")."""
    r = call(client, "POST", "/api/session", {"key": key or client.query_key.secret},
             {"X-Netatlas-CSRF": "1", **(headers or {})})
    cookie = r.headers.get("set-cookie", "").split(";")[0]
    return r, cookie


def test_sign_in_sets_an_httponly_strict_cookie_that_opens_the_api(client):
    r, cookie = sign_in(client)
    assert r.status == 200 and r.body["role"] == "query" and r.body["key_id"] == client.query_key.id
    flags = [p.strip() for p in r.headers["set-cookie"].split(";")]
    assert cookie.startswith("netatlas_session=") and len(cookie) > 40
    assert {"HttpOnly", "SameSite=Strict", "Path=/", f"Max-Age={TTL}"} <= set(flags)
    assert "Secure" not in flags                      # plain http
    q = call(client, "POST", "/api/query", {"query": "print x = 1"}, {"Cookie": cookie, "X-Netatlas-CSRF": "1"})
    assert q.status == 200 and q.body["tables"][0]["rows"] == [[1]]
    assert call(client, "GET", "/api/schema", headers={"Cookie": cookie}).status == 200
    who = call(client, "GET", "/api/session", headers={"Cookie": cookie})
    assert who.status == 200 and who.body["kind"] == "session" and who.body["read_only"] is False
    # a query key's session is no admin
    assert_error_shape(call(client, "POST", "/api/retention/apply", None, {"Cookie": cookie, "X-Netatlas-CSRF": "1"}),
                       403, "AUTH_WRONG_ROLE")


def test_the_cookie_is_secure_over_https(client):
    r, cookie = sign_in(client, headers={"X-Forwarded-Proto": "https"})
    assert r.status == 200 and "Secure" in [p.strip() for p in r.headers["set-cookie"].split(";")]
    assert cookie.startswith("__Host-netatlas_session=")       # bound to this host by the browser
    assert call(client, "GET", "/api/schema", headers={"Cookie": cookie}).status == 200


def test_a_wrong_key_gets_no_session(client):
    r, cookie = sign_in(client, key="not-a-key")
    assert_error_shape(r, 403, "AUTH_BAD_KEY")
    assert not cookie
    assert_error_shape(call(client, "POST", "/api/session", {"key": client.ingest_key.secret}, {"X-Netatlas-CSRF": "1"}),
                       403, "AUTH_WRONG_ROLE")


def test_logout_ends_the_session_on_the_server(client):
    _, cookie = sign_in(client)
    out = call(client, "DELETE", "/api/session", headers={"Cookie": cookie, "X-Netatlas-CSRF": "1"})
    assert out.status == 200 and out.body["ended"] is True
    assert "Max-Age=0" in out.headers["set-cookie"]
    # the old cookie, replayed, is dead
    assert_error_shape(call(client, "GET", "/api/schema", headers={"Cookie": cookie}), 401, "AUTH_SESSION_EXPIRED")
    who = call(client, "GET", "/api/session", headers={"Cookie": cookie})
    assert who.status == 200 and who.body == {"signed_in": False, "reason": "AUTH_SESSION_EXPIRED",
                                              "message": "the session expired or ended; sign in again"}
    assert call(client, "GET", "/api/session").body == {"signed_in": False, "reason": "AUTH_MISSING"}


def test_a_session_expires(client):
    _, cookie = sign_in(client)
    assert call(client, "GET", "/api/schema", headers={"Cookie": cookie}).status == 200
    time.sleep(TTL + 0.3)
    assert_error_shape(call(client, "GET", "/api/schema", headers={"Cookie": cookie}), 401, "AUTH_SESSION_EXPIRED")


def test_a_session_ends_when_its_key_is_revoked(server, client):
    key = keys.create_key(server.data, "query")
    _, cookie = sign_in(client, key=key.secret)
    assert call(client, "GET", "/api/schema", headers={"Cookie": cookie}).status == 200
    keys.revoke_key(server.data, key.id)
    time.sleep(0.05)
    assert_error_shape(call(client, "GET", "/api/schema", headers={"Cookie": cookie}), 401, "AUTH_SESSION_EXPIRED")


def test_cookie_requests_that_change_state_must_not_be_cross_site(client):
    _, cookie = sign_in(client, key=client.admin_key.secret)
    body = {"days": 5}
    port = client.port
    same = f"http://127.0.0.1:{port}"
    # no custom header (a form post from another site), a foreign Origin, a cross-site fetch
    for headers in ({"Cookie": cookie},
                    {"Cookie": cookie, "X-Netatlas-CSRF": "1", "Origin": "https://evil.example"},
                    {"Cookie": cookie, "X-Netatlas-CSRF": "1", "Sec-Fetch-Site": "cross-site"}):
        assert_error_shape(call(client, "PUT", "/api/retention/VMBoundPort", body, headers), 403, "CSRF_REFUSED")
    ok = call(client, "PUT", "/api/retention/VMBoundPort", body,
              {"Cookie": cookie, "X-Netatlas-CSRF": "1", "Origin": same, "Host": f"127.0.0.1:{port}"})
    assert ok.status == 200, ok.body
    proxied = call(client, "PUT", "/api/retention/VMBoundPort", body,      # behind a proxy that rewrote Host
                   {"Cookie": cookie, "X-Netatlas-CSRF": "1", "Origin": "https://atlas.example", "X-Forwarded-Host": "atlas.example"})
    assert proxied.status == 200, proxied.body
    # reading needs no header; logging in from another site is refused too
    assert call(client, "GET", "/api/retention", headers={"Cookie": cookie}).status == 200
    assert_error_shape(call(client, "POST", "/api/session", {"key": client.query_key.secret}), 403, "CSRF_REFUSED")


def test_a_share_link_gives_read_only_access_until_revoked(server, client):
    made = client.admin("POST", "/api/shares", {"expires_in": "1h", "label": "for the network team"})
    assert made.status == 201 and made.body["token"].startswith("s_") and made.body["path"] == f"/?share={made.body['token']}"
    token = made.body["token"]
    assert token not in (server.data / "shares.json").read_text()          # hashed on disk
    assert stat.S_IMODE((server.data / "shares.json").stat().st_mode) == 0o600
    share = {"X-Netatlas-Share": token}
    q = call(client, "POST", "/api/query", {"query": "print y = 2"}, share)
    assert q.status == 200 and q.body["tables"][0]["rows"] == [[2]]
    assert call(client, "GET", "/api/machines", headers=share).status == 200
    who = call(client, "GET", "/api/session", headers=share)
    assert who.body["kind"] == "share" and who.body["read_only"] is True
    for method, path, payload in (("PUT", "/api/retention/VMBoundPort", {"days": 3}), ("POST", "/api/retention/apply", None),
                                  ("POST", "/api/shares", {"expires_in": "1d"}), ("GET", "/api/shares", None)):
        assert_error_shape(call(client, method, path, payload, share), 403, "AUTH_READ_ONLY")
    listed = client.admin("GET", "/api/shares").body["shares"]
    mine = next(s for s in listed if s["id"] == made.body["id"])
    assert mine["label"] == "for the network team" and mine["expired"] is False and "token" not in mine
    assert client.call("GET", "/api/shares").status == 403                 # a query key cannot list them
    assert client.admin("DELETE", f"/api/shares/{made.body['id']}").status == 200
    assert_error_shape(call(client, "GET", "/api/machines", headers=share), 401, "AUTH_SHARE_UNKNOWN")
    assert_error_shape(client.admin("DELETE", f"/api/shares/{made.body['id']}"), 404)
    # the page opened from the link: its token is not in the server's access log
    assert request(client.port, "GET", made.body["path"]).status == 200
    time.sleep(0.1)
    log = server.log.read_text()
    assert "GET /?share=… HTTP" in log and token not in log


def test_a_share_link_ends_with_the_admin_key_that_made_it(server, client):
    admin = keys.create_key(server.data, "admin")
    made = client.call("POST", "/api/shares", {"expires_in": "1h"}, key=admin.secret)
    assert made.status == 201 and made.body["created_by"] == admin.id
    share = {"X-Netatlas-Share": made.body["token"]}
    assert call(client, "GET", "/api/machines", headers=share).status == 200
    keys.revoke_key(server.data, admin.id)
    time.sleep(0.05)
    assert_error_shape(call(client, "GET", "/api/machines", headers=share), 401, "AUTH_SHARE_UNKNOWN")


def test_a_share_link_expires(client):
    made = client.admin("POST", "/api/shares", {"expires_in": 1})
    share = {"X-Netatlas-Share": made.body["token"]}
    assert call(client, "GET", "/api/machines", headers=share).status == 200
    time.sleep(1.2)
    assert_error_shape(call(client, "GET", "/api/machines", headers=share), 401, "AUTH_SHARE_EXPIRED")
    assert client.admin("GET", "/api/shares").body["shares"][-1]["expired"] is True
    assert_error_shape(client.admin("POST", "/api/shares", {"expires_in": "400d"}), 400, "BAD_PARAMETER")
