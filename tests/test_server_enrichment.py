"""Enrichment through the real server on loopback: batches POSTed to /api/ingest are placed and
matched like those of ``Workspace.ingest``; feeds imported over HTTP and on the server's schedule;
/api/geoip; /api/machines/resolve (own addresses, and the address an agent sends from: a NAT).
"""
from __future__ import annotations

import json
import time

import pytest

from test_server import Server, assert_error_shape, now, request, unique

FEED = "# Category : malware\n198.18.10.0/24\n198.18.11.1\n"


@pytest.fixture(scope="module")
def feed_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("feeds") / "blocklist.txt"
    path.write_text(FEED)
    return path


@pytest.fixture(scope="module")
def server(tmp_path_factory, feed_file):
    data = tmp_path_factory.mktemp("served-enrichment") / "data"
    s = Server(data, "--threatintel-feeds", f"list:{feed_file}", "--threatintel-interval", "0.5").start()
    yield s
    s.kill()


@pytest.fixture
def client(server):
    return server.client()


def conn(computer: str, remote: str, direction: str = "outbound") -> dict:
    src, dst = ("10.9.0.1", remote) if direction == "outbound" else (remote, "10.9.0.1")
    return {"TimeGenerated": now(), "Computer": computer, "Direction": direction, "SourceIp": src,
            "DestinationIp": dst, "DestinationPort": 443}


def rows(client, kql: str) -> list[dict]:
    r = client.query(kql)
    assert r.status == 200, r.body
    t = r.body["tables"][0]
    return [dict(zip([c["name"] for c in t["columns"]], row)) for row in t["rows"]]


def wait_for(check, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_the_scheduled_feed_flags_batches_posted_over_http(client):
    assert wait_for(lambda: client.call("GET", "/api/threatintel").body["indicators"]["matching"] == 2)
    host = unique()
    assert client.ingest("VMConnection", [conn(host, "198.18.10.77"), conn(host, "198.18.11.1", "inbound"),
                                          conn(host, "151.101.64.223"), conn(host, "10.0.0.3")]).status == 200
    got = {r["RemoteIp"]: r for r in rows(client, f"VMConnection | where Computer == '{host}'")}
    assert (got["198.18.10.77"]["MaliciousIp"], got["198.18.10.77"]["IndicatorThreatType"]) == ("198.18.10.77", "Malware")
    assert got["198.18.11.1"]["MaliciousIp"] == "198.18.11.1"                 # inbound: SourceIp
    assert (got["151.101.64.223"]["RemoteCountry"], got["151.101.64.223"]["MaliciousIp"]) == ("United States", "")
    assert (got["10.0.0.3"]["RemoteCountry"], got["10.0.0.3"]["RemoteLatitude"]) == ("", None)
    status = client.call("GET", "/api/threatintel").body
    [feed] = status["feeds"]
    assert feed["feed"].endswith("blocklist.txt") and feed["result"]["stored"] == 2 and status["next_run"]


def test_the_schedule_picks_up_a_changed_feed(client, feed_file):
    feed_file.write_text(FEED + "198.18.12.12\n")
    try:
        assert wait_for(lambda: client.call("GET", "/api/threatintel").body["indicators"]["matching"] == 3)
        host = unique()
        client.ingest("VMConnection", [conn(host, "198.18.12.12")])
        assert rows(client, f"VMConnection | where Computer == '{host}'")[0]["MaliciousIp"] == "198.18.12.12"
    finally:
        feed_file.write_text(FEED)


def test_import_over_http_replaces_its_source_and_refuses_a_bad_feed(client):
    stix = {"type": "bundle", "objects": [
        {"type": "indicator", "id": "indicator--h1", "name": "phishing kit", "labels": ["phishing"],
         "pattern": "[ipv4-addr:value = '198.18.20.20']", "pattern_type": "stix",
         "valid_from": "2026-01-01T00:00:00Z", "created": "2026-01-01T00:00:00Z", "modified": "2026-01-02T00:00:00Z"}]}
    path = "/api/threatintel/import?source=partner&format=stix"
    key = client.admin_key.secret     # importing threat intelligence takes an admin key
    r = request(client.port, "POST", path, json.dumps(stix).encode(), {"Authorization": f"Bearer {key}"})
    assert r.status == 200 and r.body["stored"] == 1 and r.body["format"] == "stix", r.body
    bad = request(client.port, "POST", path, b'{"type": "bundle", "objects": [', {"Authorization": f"Bearer {key}"})
    err = assert_error_shape(bad, 400, "THREATINTEL_FEED")
    assert err["message"].startswith("partner: not a STIX bundle: invalid JSON at line 1")
    assert client.call("GET", "/api/threatintel").body["indicators"]["by_source"]["partner"] == 1   # kept
    host = unique()
    client.ingest("VMConnection", [conn(host, "198.18.20.20")])
    assert rows(client, f"VMConnection | where Computer == '{host}'")[0]["IndicatorThreatType"] == "Phishing"
    no_source = request(client.port, "POST", "/api/threatintel/import", b"1.2.3.4\n", {"Authorization": f"Bearer {key}"})
    assert assert_error_shape(no_source, 400, "THREATINTEL_SOURCE")["field"] == "source"


def test_threat_and_geoip_endpoints_need_a_query_key(client):
    ingest_key = client.ingest_key.secret
    for method, path in (("GET", "/api/threatintel"), ("GET", "/api/geoip"), ("POST", "/api/threatintel/import?source=x"),
                         ("GET", "/api/machines/resolve?ip=10.0.0.1")):
        assert request(client.port, method, path).status == 401
        assert request(client.port, method, path, b"", {"Authorization": f"Bearer {ingest_key}"}).status == 403


def test_geoip_says_which_database_and_how_old(client):
    info = client.call("GET", "/api/geoip").body
    assert info["enabled"] and info["databaseType"] == "GeoLite2-City" and info["bundled"]
    assert info["built"] == "2018-07-03" and info["ageDays"] > 3000 and "MaxMind" in info["attribution"]


def test_a_geoip_database_that_does_not_open_stops_the_server_with_its_reason(tmp_path):
    bad = tmp_path / "bad.mmdb"
    bad.write_text("nope")
    s = Server(tmp_path / "data", "--geoip-db", str(bad))
    with pytest.raises(RuntimeError, match=r"cannot open the GeoIP database .*bad\.mmdb"):
        s.start(timeout=30)


def test_resolve_addresses_to_machines_own_and_behind_a_nat(client):
    host = unique()
    machine = f"m-{host}"
    computer = {"TimeGenerated": now(), "Computer": host, "Machine": machine,
                "Ipv4Addresses": ["10.77.0.5"], "Ipv6Addresses": ["fd77::5"]}
    assert client.ingest("VMComputer", [computer]).status == 200
    r = client.call("GET", "/api/machines/resolve?ip=10.77.0.5&ip=fd77::5&ip=8.8.8.8")
    assert r.status == 200, r.body
    assert r.body["addresses"] == {"10.77.0.5": [{"machine": machine, "computer": host, "via": "address"}],
                                   "fd77::5": [{"machine": machine, "computer": host, "via": "address"}],
                                   "8.8.8.8": []}
    assert_error_shape(client.call("GET", "/api/machines/resolve"), 400, "RESOLVE_NO_ADDRESS")


def test_a_feed_from_a_url_and_a_feed_that_fails(tmp_path):
    """A feed fetched over HTTP (a real server on loopback) is imported; one that cannot be fetched
    is reported by /api/threatintel and does not stop the others."""
    import http.server
    import threading
    (tmp_path / "www").mkdir()
    (tmp_path / "www" / "feodo.csv").write_text('"first_seen_utc","dst_ip","dst_port","c2_status","last_online",'
                                                 '"malware"\n"2026-10-01 07:44:46","198.18.30.3","443","online",'
                                                 '"2026-11-24","QakBot"\n')
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(tmp_path / "www"))  # noqa: E731
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=web.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{web.server_address[1]}"
    s = Server(tmp_path / "data", "--threatintel-feeds", f"{base}/feodo.csv,{base}/missing.csv").start()
    try:
        c = s.client()
        status = wait_for(lambda: (b := c.call("GET", "/api/threatintel").body)["feeds"] and b)
        ok, missing = status["feeds"]
        assert ok["feed"] == f"{base}/feodo.csv" and ok["result"]["stored"] == 1 and ok["result"]["format"] == "csv"
        assert missing["feed"] == f"{base}/missing.csv" and "404" in missing["error"]
        host = unique()
        c.ingest("VMConnection", [conn(host, "198.18.30.3")])
        assert rows(c, f"VMConnection | where Computer == '{host}'")[0]["IndicatorThreatType"] == "C2"
    finally:
        s.kill()
        web.shutdown()
