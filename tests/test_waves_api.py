"""GET /api/waves (server/views.py: waves.plan as JSON) against a real server on loopback, over the
simulated datacenter at its smallest (one machine of each kind, a day ending now)."""
from __future__ import annotations

import urllib.parse

import pytest

import netatlas
import netatlas.demo

from test_server import serve_filled


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_filled(tmp_path_factory, "waves-api", lambda ws: netatlas.demo.generate(
        ws, machines=netatlas.demo.MIN_MACHINES, days=1, seed=1))


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def report(client):
    r = client.call("GET", "/api/waves?range=1d")
    assert r.status == 200, r.body
    return r.body


def test_the_waves_of_the_demo_as_json(report):
    machines = [m["machine"] for w in report["waves"] for m in w["machines"]]
    assert len(machines) == len(set(machines)) >= 5
    assert [w["wave"] for w in report["waves"]] == list(range(1, len(report["waves"]) + 1))
    assert report["weight"] == "bytes" and report["max_wave_size"] is None
    wave_of = {m["machine"]: w["wave"] for w in report["waves"] for m in w["machines"]}
    for c in report["crossing"]:
        assert {"caller", "callee", "process", "port", "bytes", "connections", "last_seen"} <= set(c)
        assert (c["caller_wave"], c["callee_wave"]) == (wave_of[c["caller"]], wave_of[c["callee"]])
        assert c["caller_wave"] != c["callee_wave"]
    assert report["crossing_bytes"] == sum(c["bytes"] for c in report["crossing"])
    # every machine pair, crossing or not (what the network chart recomputes from): its crossing
    # pairs sum to the same traffic
    pairs = {(e["caller"], e["callee"]) for e in report["edges"]}
    assert len(pairs) == len(report["edges"]) and {(c["caller"], c["callee"]) for c in report["crossing"]} <= pairs
    assert sum(e["bytes"] for e in report["edges"] if e["caller_wave"] != e["callee_wave"]) == report["crossing_bytes"]
    assert any(e["caller_wave"] == e["callee_wave"] for e in report["edges"])


def test_a_cap_pins_weight_and_exclude(client, report):
    first = report["waves"][0]["machines"][0]
    q = urllib.parse.urlencode({"range": "1d", "max_wave_size": "2", "weight": "connections",
                                "pin": f"{first['computer']}=3", "exclude": "System,svchost.exe"})
    r = client.call("GET", f"/api/waves?{q}")
    assert r.status == 200, r.body
    assert r.body["weight"] == "connections" and r.body["max_wave_size"] == 2
    assert all(len(w["machines"]) <= 2 for w in r.body["waves"])
    assert first["machine"] in [m["machine"] for m in r.body["waves"][2]["machines"]]


def test_a_range_ending_at_to(client, report):
    until = report["range"]["until"]
    r = client.call("GET", f"/api/waves?range=1d&to={until}")
    assert r.status == 200, r.body
    assert r.body["range"]["until"] == until and r.body["waves"] == report["waves"]
    r = client.call("GET", "/api/waves?range=1d&to=2000-01-01T00:00:00Z")      # before the demo: no traffic
    assert r.status == 200 and r.body["crossing"] == [] and r.body["edges"] == []


@pytest.mark.parametrize("query,field", [
    ("range=7x", "range"), ("range=-1d", "range"), ("range=0d", "range"),
    ("max_wave_size=0", "max_wave_size"), ("max_wave_size=two", "max_wave_size"),
    ("weight=links", "weight"), ("pin=web", "pin"), ("pin=web%3D0", "pin"), ("pin=web%3Dx", "pin"),
    ("pin=no-such-machine%3D1", "pin"), ("to=yesterday", "to"), ("range=4000d&to=0010-01-01T00:00:00Z", "range"),
])
def test_each_bad_parameter_is_a_400_naming_it(client, query, field):
    r = client.call("GET", f"/api/waves?range=1d&{query}" if not query.startswith("range") else f"/api/waves?{query}")
    assert r.status == 400, r.body
    assert r.error["code"] == "BAD_PARAMETER" and r.error["field"] == field
    assert r.error["message"].startswith(f"{field}:"), r.error["message"]


def test_more_pins_to_a_wave_than_the_cap_is_a_400(client, report):
    names = [m["machine"] for w in report["waves"] for m in w["machines"]][:2]
    q = urllib.parse.urlencode({"range": "1d", "max_wave_size": "1", "pin": ",".join(f"{n}=1" for n in names)})
    r = client.call("GET", f"/api/waves?{q}")
    assert r.status == 400 and r.error["field"] == "pin", r.body
    assert "max_wave_size" in r.error["message"]


def test_waves_need_a_query_key(server, client):
    from test_server import request
    assert request(server.port, "GET", "/api/waves").status == 401
