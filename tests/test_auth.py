"""The SharedKey scheme (ingestion, with the signed body digest), bearer keys (query, admin) and
the replay cache, without a server."""
import base64
import hashlib
import hmac
from datetime import datetime, timedelta, timezone

import pytest

from netatlas import auth
from netatlas import keys
from netatlas.keys import Identity, Key

NOW = datetime(2024, 5, 7, 10, 0, 0, tzinfo=timezone.utc)
DATE = "Tue, 07 May 2024 10:00:00 GMT"
PATH = "/api/ingest/VMConnection"


def _key(role, n):
    return Key(id=f"k_{role}{n}", role=role, secret=base64.b64encode(bytes([n]) * 32).decode(), created="x")


INGEST, QUERY, ADMIN = _key("ingest", 1), _key("query", 2), _key("admin", 3)
IDENT = Identity("6f1c2d4e-0000-4000-8000-000000000001", "x", (INGEST, QUERY, ADMIN))


def headers(key=INGEST, workspace=IDENT.workspace_id, length=17, date=DATE, path=PATH,
            content_type="application/json"):
    return {"authorization": auth.sign(workspace, key.signing_key, "POST", length, content_type, date, path),
            "x-ms-date": date, "content-type": content_type}


def verify(h, length=17, path=PATH, now=NOW):
    return auth.verify_shared_key(IDENT, h, method="POST", path=path, content_length=length, now=now)


def test_signature_is_hmac_sha256_of_the_documented_string():
    text = f"POST\n17\napplication/json\nx-ms-date:{DATE}\n{PATH}"
    expected = base64.b64encode(hmac.new(bytes([1]) * 32, text.encode(), hashlib.sha256).digest()).decode()
    assert auth.sign(IDENT.workspace_id, INGEST.secret, "post", 17, "application/json", DATE, PATH) == \
        f"SharedKey {IDENT.workspace_id}:{expected}"


def test_a_correctly_signed_request_names_its_key():
    assert verify(headers()) == INGEST


def test_the_body_digest_is_a_line_of_the_string_to_sign():
    body = b'[{"Computer": "a"}]'
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    assert auth.body_digest(body) == digest
    text = f"POST\n{len(body)}\napplication/json\nx-ms-date:{DATE}\nx-ms-content-sha256:{digest}\n{PATH}"
    expected = base64.b64encode(hmac.new(bytes([1]) * 32, text.encode(), hashlib.sha256).digest()).decode()
    h = auth.signed_headers(IDENT.workspace_id, INGEST.secret, body, PATH, date=NOW)
    assert h["x-ms-content-sha256"] == digest
    assert h["Authorization"] == f"SharedKey {IDENT.workspace_id}:{expected}"
    lower = {k.lower(): v for k, v in h.items()}
    assert verify(lower, length=len(body)) == INGEST
    changed = dict(lower, **{"x-ms-content-sha256": auth.body_digest(b'[{"Computer": "b"}]')})
    with pytest.raises(auth.AuthError) as e:     # another digest: the signature no longer matches
        verify(changed, length=len(body))
    assert e.value.code == "AUTH_BAD_SIGNATURE"


def test_body_digest_checks_the_body_as_received():
    good = auth.BodyDigest(auth.body_digest(b"abcdef"))
    good.update(b"abc")
    good.update(b"def")
    good.check()
    bad = auth.BodyDigest(auth.body_digest(b"abcdef"))
    bad.update(b"abcdeg")
    with pytest.raises(auth.AuthError) as e:
        bad.check()
    assert (e.value.status, e.value.code) == (401, "AUTH_BAD_DIGEST")
    auth.BodyDigest(None).check()     # no digest signed (an Azure-style client): nothing to check


def test_a_netatlas_agent_must_sign_the_digest_an_azure_client_need_not():
    azure = headers() | {"user-agent": "curl/8.0"}
    assert verify(azure) == INGEST
    with pytest.raises(auth.AuthError) as e:
        verify(headers() | {"user-agent": "netatlas-agent/0.9"})
    assert (e.value.status, e.value.code) == (401, "AUTH_DIGEST_REQUIRED")
    with pytest.raises(auth.AuthError) as e:
        verify(headers() | {"x-ms-content-sha256": "not-a-digest"})
    assert (e.value.status, e.value.code) == (401, "AUTH_MALFORMED")


def test_table_roles_decide_who_may_ingest():
    admin_only = dict(roles=("admin",), table="ThreatIntelligenceIndicator")
    with pytest.raises(auth.AuthError) as e:
        auth.verify_shared_key(IDENT, headers(), method="POST", path=PATH, content_length=17, now=NOW, **admin_only)
    assert (e.value.status, e.value.code) == (403, "AUTH_WRONG_ROLE")
    assert "ThreatIntelligenceIndicator needs an admin key" in str(e.value)
    assert auth.verify_shared_key(IDENT, headers(key=ADMIN), method="POST", path=PATH, content_length=17,
                                  now=NOW, **admin_only) == ADMIN


def test_replay_cache_remembers_within_its_window_and_its_size():
    cache = auth.ReplayCache(window=60, size=2)
    cache.add(b"a", {"records": 1})
    assert cache.get(b"a") == {"records": 1} and cache.get(b"b") is None
    cache.add(b"b", {})
    cache.add(b"c", {})
    assert cache.get(b"a") is None and cache.get(b"c") == {}     # the oldest went first
    assert auth.ReplayCache(window=0).get(b"a") is None
    gone = auth.ReplayCache(window=-1)
    gone.add(b"a", {})
    assert gone.get(b"a") is None       # past its window


def test_signed_headers_carry_everything_a_request_needs():
    body = b'[{"TimeGenerated": "2024-05-07T10:00:00Z"}]'
    h = auth.signed_headers(IDENT.workspace_id, INGEST.secret, body, PATH, gzipped=True, batch_id="b-1", date=NOW)
    assert h["x-ms-date"] == DATE and h["Content-Length"] == str(len(body))
    assert h["Content-Encoding"] == "gzip" and h["x-ms-batch-id"] == "b-1"
    assert verify({k.lower(): v for k, v in h.items()}, length=len(body)) == INGEST


@pytest.mark.parametrize("change, status, code", [
    (lambda h: h.pop("authorization"), 401, "AUTH_MISSING"),
    (lambda h: h.pop("x-ms-date"), 401, "AUTH_MISSING"),
    (lambda h: h.update(authorization="Basic abc"), 401, "AUTH_MALFORMED"),
    (lambda h: h.update(authorization="SharedKey nocolon"), 401, "AUTH_MALFORMED"),
    (lambda h: h.update(authorization=f"SharedKey {IDENT.workspace_id}:***"), 401, "AUTH_MALFORMED"),
    (lambda h: h.update({"x-ms-date": "yesterday"}), 401, "AUTH_MALFORMED"),
])
def test_missing_or_malformed_credentials_are_401(change, status, code):
    h = headers()
    change(h)
    with pytest.raises(auth.AuthError) as e:
        verify(h)
    assert (e.value.status, e.value.code) == (status, code)


@pytest.mark.parametrize("skew", [timedelta(minutes=16), -timedelta(minutes=16)])
def test_a_stale_or_future_date_is_401(skew):
    with pytest.raises(auth.AuthError) as e:
        verify(headers(), now=NOW + skew)
    assert (e.value.status, e.value.code) == (401, "AUTH_STALE_DATE")
    assert "stale or future date" in str(e.value)


def test_a_date_within_the_skew_is_accepted():
    assert verify(headers(), now=NOW + timedelta(minutes=14)) == INGEST


@pytest.mark.parametrize("h, kwargs, code", [
    (dict(workspace="00000000-0000-4000-8000-000000000000"), {}, "AUTH_UNKNOWN_WORKSPACE"),
    (dict(key=_key("ingest", 9)), {}, "AUTH_BAD_SIGNATURE"),
    ({}, dict(length=18), "AUTH_BAD_SIGNATURE"),                      # body changed after signing
    ({}, dict(path="/api/ingest/VMProcess"), "AUTH_BAD_SIGNATURE"),   # sent to another table
    (dict(content_type="text/plain"), {}, "AUTH_BAD_SIGNATURE"),
    (dict(key=QUERY), {}, "AUTH_WRONG_ROLE"),
])
def test_a_wrong_workspace_key_or_signed_string_is_403(h, kwargs, code):
    signed = headers(**h)
    if "content_type" in h:
        signed["content-type"] = "application/json"
    with pytest.raises(auth.AuthError) as e:
        verify(signed, **kwargs)
    assert (e.value.status, e.value.code) == (403, code)


def test_bearer_and_api_key_headers_name_the_query_key():
    assert auth.verify_bearer(IDENT, {"authorization": f"Bearer {QUERY.secret}"}) == QUERY
    assert auth.verify_bearer(IDENT, {"x-api-key": QUERY.secret}) == QUERY


def test_an_admin_key_can_query_a_query_key_cannot_administer():
    assert auth.verify_bearer(IDENT, {"authorization": f"Bearer {ADMIN.secret}"}) == ADMIN
    assert auth.verify_bearer(IDENT, {"authorization": f"Bearer {ADMIN.secret}"}, role="admin") == ADMIN
    for key in (QUERY, INGEST):
        with pytest.raises(auth.AuthError) as e:
            auth.verify_bearer(IDENT, {"authorization": f"Bearer {key.secret}"}, role="admin")
        assert (e.value.status, e.value.code) == (403, "AUTH_WRONG_ROLE")


def test_hashed_keys_are_checked_against_their_hash():
    import dataclasses
    stored = Identity(IDENT.workspace_id, "x", tuple(
        dataclasses.replace(k, secret="") if k.hash else k for k in
        (dataclasses.replace(QUERY, hash=keys.secret_hash(QUERY.secret)), INGEST)))
    assert auth.verify_bearer(stored, {"x-api-key": QUERY.secret}).id == QUERY.id
    with pytest.raises(auth.AuthError):
        auth.verify_bearer(stored, {"x-api-key": keys.secret_hash(QUERY.secret)})   # the hash is no key


def test_the_local_token_is_accepted_where_the_server_passes_it():
    assert auth.verify_bearer(IDENT, {"x-api-key": "local_tok"}, local_token="local_tok") is None
    with pytest.raises(auth.AuthError):
        auth.verify_bearer(IDENT, {"x-api-key": "local_tok"}, role="admin")
    with pytest.raises(auth.AuthError):
        auth.verify_bearer(IDENT, {"x-api-key": "local_other"}, local_token="local_tok")


@pytest.mark.parametrize("h, status, code", [
    ({}, 401, "AUTH_MISSING"),
    ({"authorization": "Bearer"}, 401, "AUTH_MALFORMED"),
    ({"authorization": f"SharedKey {QUERY.secret}"}, 401, "AUTH_MALFORMED"),
    ({"authorization": "Bearer nothing-like-a-key"}, 403, "AUTH_BAD_KEY"),
    ({"authorization": f"Bearer {INGEST.secret}"}, 403, "AUTH_WRONG_ROLE"),
])
def test_query_auth_failures(h, status, code):
    with pytest.raises(auth.AuthError) as e:
        auth.verify_bearer(IDENT, h)
    assert (e.value.status, e.value.code) == (status, code)


def test_rfc1123_dates():
    assert auth.rfc1123(NOW) == DATE
    assert auth.rfc1123(NOW.astimezone(timezone(timedelta(hours=2)))) == DATE
