"""The web UI's JSON endpoints (docs/web-api.md) through a real server on loopback.

The workspace is the simulated datacenter at its smallest (one machine of each kind, two days up
to END, seed 1) plus two VMComputerTags_CL records; every table keeps its rows for the longest
retention so the server's retention pass at start leaves the dated demo alone. The facts checked
come from the demo's design (the payment API that fails from the start of the last day, the
internet clients of the web tier, the Tor exit one worker beacons to, the SMTP relay without an
agent) and from independent KQL over /api/query.
"""
from __future__ import annotations

import ipaddress
import json
import urllib.parse
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import netatlas
import netatlas.demo
from netatlas import server as server_pkg, webmap
from netatlas.catalogue import Catalogue

from test_server import assert_error_shape, request, serve_filled

ROOT = Path(__file__).resolve().parent.parent
END = datetime(2026, 11, 20, tzinfo=timezone.utc)
DAY = timedelta(days=1)
LAST_DAY = {"from": "2026-11-19T00:00:00Z", "to": "2026-11-20T00:00:00Z"}
STRIPE = "g-internet-api.stripe.com"
TAGS = {"web-01.contoso.local": {"tier": "web", "env": "prod"}, "web-02.contoso.local": {"tier": "web", "env": "test"}}
STATUSES = {"ok", "failed", "used_to_work", "new"}


# ---------------------------------------------------------------- without a server

def test_samples_are_the_seed_blocks_in_order():
    text = (ROOT / "netatlas" / "seed-queries.kql").read_text(encoding="utf-8")
    titles = [line.split("====", 1)[1].strip() for line in text.splitlines() if line.startswith("// ====")]
    got = webmap.samples()
    assert [s["title"] for s in got] == titles and len(got) > 20
    assert all(s["query"] and not s["query"].startswith("// ====") and s["query"] == s["query"].strip() for s in got)
    first = got[0]["query"].splitlines()
    assert first[0] == "VMConnection" and first[-1] == "| order by Computer asc, count_ desc"


def test_every_web_route_is_in_the_endpoint_table_and_the_doc():
    from netatlas.server import app, views
    doc = (ROOT / "docs" / "web-api.md").read_text()
    paths = [r.path for r in app.ROUTES if getattr(getattr(r, "endpoint", None), "__module__", "") == views.__name__]
    assert len(paths) == 12     # issue 17: /api/problems
    for path in paths:
        assert f"GET {path}" in server_pkg.__doc__, path
        assert f"`GET {path}" in doc or f"`{path}" in doc, path


def test_selections_and_their_mistakes():
    assert webmap.Selection.parse(None, "all") == webmap.Selection("all")
    assert webmap.Selection.parse(None, "tag:tier=web") == webmap.Selection("tag", ("tier", "web"))
    assert webmap.Selection.parse("web-01", None) == webmap.Selection("machine", "web-01")
    for machine, group, field in ((None, None, "machine"), ("a", "all", "group"), (None, "tag:tier", "group"),
                                  (None, "subnet:10.0.0.0/99", "group"), (None, "all:x", "group"),
                                  (None, "rack:1", "group")):
        with pytest.raises(webmap.WebMapError) as e:
            webmap.Selection.parse(machine, group)
        assert e.value.field == field


def test_status_rules():
    def edge(links, failed):
        return webmap.Edge("p-a", "p-b", 1, links=links, failed=failed)
    assert webmap.status(edge(0, 3), edge(5, 0)) == "used_to_work"
    assert webmap.status(edge(0, 3), edge(5, 1)) == "failed"
    assert webmap.status(edge(0, 3), edge(0, 0)) == "failed"      # no established links before: not "worked"
    assert webmap.status(edge(0, 3), None) == "new"
    assert webmap.status(edge(4, 0), None) == "new"
    assert webmap.status(edge(4, 0), edge(1, 0)) == "ok"


def test_remote_addresses_are_classified():
    assert webmap.remote_kind("127.0.0.1", None) == "loopback"
    assert webmap.remote_kind("::ffff:127.0.0.1", None) == "loopback"
    assert webmap.remote_kind("10.1.1.4", [{"machine": "m-1"}]) == "monitored"
    assert webmap.remote_kind("10.1.1.4", []) == "private"
    assert webmap.remote_kind("54.187.174.169", []) == "public"
    assert webmap.remote_kind("", None) == "private"
    assert webmap.dns_name('["api.stripe.com","x"]') == "api.stripe.com" and webmap.dns_name("") == ""


# ---------------------------------------------------------------- the served demo

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    def fill(ws):
        netatlas.demo.generate(ws, machines=netatlas.demo.MIN_MACHINES, days=2, end=END)
        ids = dict(ws.connection.execute("SELECT DISTINCT Computer, Machine FROM VMComputer").fetchall())
        ws.ingest("VMComputerTags_CL", [{"TimeGenerated": (END - timedelta(minutes=30)).isoformat(), "Computer": c,
                                         "Machine": ids[c], "Tags": tags} for c, tags in TAGS.items()])
        for table in ws.catalogue.names():
            ws.set_retention(table, 4383)
    yield from serve_filled(tmp_path_factory, "web-api", fill)


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def get(client, path: str, key: str | None = None, **params):
    query = urllib.parse.urlencode(params, doseq=True)
    return client.call("GET", path + (f"?{query}" if query else ""), key=key)


def ok(client, path: str, **params) -> dict:
    r = get(client, path, **params)
    assert r.status == 200, r.body
    return r.body


def kql(client, text: str) -> list[dict]:
    r = client.query(text)
    assert r.status == 200, r.body
    t = r.body["tables"][0]
    return [dict(zip([c["name"] for c in t["columns"]], row)) for row in t["rows"]]


@pytest.fixture(scope="module")
def inventory(client) -> dict[str, dict]:
    """Computer -> {Machine, ip} from VMComputer, by KQL."""
    rows = kql(client, "VMComputer | summarize arg_max(TimeGenerated, Machine, Ipv4Addresses) by Computer")
    return {r["Computer"]: {"id": r["Machine"], "ip": r["Ipv4Addresses"][0]} for r in rows}


@pytest.fixture(scope="module")
def full_map(client) -> dict:
    return ok(client, "/api/map", group="all", **LAST_DAY)


def processes(m: dict) -> dict[str, dict]:
    return {p["id"]: dict(p, machine=mm["id"], computer=mm["computer"]) for mm in m["machines"] for p in mm["processes"]}


def in_range(frm: str, to: str) -> str:
    return f"TimeGenerated >= datetime({frm}) and TimeGenerated < datetime({to})"


ENDPOINTS = ["/api/map?group=all", "/api/machines", "/api/machines/m-x", "/api/edges?source=p-a&target=p-b&port=1",
             "/api/network", "/api/usage", "/api/schema", "/api/samples"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_every_endpoint_needs_a_query_key(client, path):
    assert_error_shape(request(client.port, "GET", path), 401)
    assert_error_shape(request(client.port, "GET", path, headers={"Authorization": "Bearer nope"}), 403)
    assert_error_shape(client.call("GET", path, key=client.ingest_key.secret), 403, "AUTH_WRONG_ROLE")


@pytest.mark.parametrize("path, field", [
    ("/api/map", "machine"),
    ("/api/map?group=racks", "group"),
    ("/api/map?group=subnet:10.1.0.0/99", "group"),
    ("/api/map?group=tag:tier", "group"),
    ("/api/map?group=all&machine=web-01", "group"),
    ("/api/map?group=all&from=yesterday", "from"),
    ("/api/map?group=all&to=2026-13-01T00:00:00Z", "to"),
    ("/api/map?group=all&from=2026-11-20T00:00:00Z&to=2026-11-19T00:00:00Z", "from"),
    ("/api/map?group=all&only_failures=maybe", "only_failures"),
    ("/api/map?group=all&hide_loopback=2", "hide_loopback"),
    ("/api/edges?target=p-b&port=1", "source"),
    ("/api/edges?source=p-a&port=1", "target"),
    ("/api/edges?source=p-a&target=p-b", "port"),
    ("/api/edges?source=p-a&target=p-b&port=http", "port"),
    ("/api/edges?source=p-a&target=p-b&port=70000", "port"),
    ("/api/edges?source=m-a&target=p-b&port=1", "source"),
    ("/api/edges?source=g-clients-m-a-1&target=g-servers-1&port=1", "target"),
    ("/api/network?weight=mass", "weight"),
    ("/api/network?subnet=10.1.0.0/99", "subnet"),
    ("/api/usage?days=0", "days"),
    ("/api/usage?days=many", "days"),
])
def test_bad_parameters_are_400_naming_the_parameter(client, path, field):
    err = assert_error_shape(client.call("GET", path), 400, "BAD_PARAMETER")
    assert err["field"] == field and field in err["message"], err


def test_an_unknown_machine_is_404(client):
    err = assert_error_shape(get(client, "/api/map", machine="no-such-host", **LAST_DAY), 404, "MACHINE_NOT_FOUND")
    assert err["field"] == "machine"
    assert_error_shape(client.call("GET", "/api/machines/m-no-such-machine"), 404, "MACHINE_NOT_FOUND")


def test_the_map_of_all_machines_has_the_documented_shape(full_map, inventory):
    m = full_map
    assert set(m) == {"range", "focus", "machines", "groups", "edges", "loopback_hidden", "failure_rate"}
    assert m["failure_rate"] == webmap.FAILURE_RATE
    assert m["range"] == LAST_DAY
    assert sorted(m["focus"]) == sorted(v["id"] for v in inventory.values())
    for mm in m["machines"]:
        assert set(mm) == {"id", "computer", "os", "ips", "tags", "focus", "processes", "last_heartbeat",
                           "heartbeat_stopped"}
        assert mm["heartbeat_stopped"] in (True, False) and (mm["last_heartbeat"] is None) <= (not mm["heartbeat_stopped"])
        assert mm["focus"] is True and mm["os"] and inventory[mm["computer"]]["ip"] in mm["ips"]
        for p in mm["processes"]:
            assert set(p) == {"id", "name", "display", "ports"} and p["id"].startswith("p-") and p["name"]
            assert all(isinstance(port, int) for port in p["ports"])
    assert {mm["computer"]: mm["tags"] for mm in m["machines"] if mm["tags"]} == TAGS
    procs, groups = processes(m), {g["id"]: g for g in m["groups"]}
    kinds = {"clients": {"id", "kind", "label", "ips", "count", "malicious"},
             "servers": {"id", "kind", "label", "ips", "count", "malicious"},
             "internet": {"id", "kind", "label", "ips", "country", "malicious"}}
    assert {g["kind"] for g in m["groups"]} == set(kinds)
    for g in m["groups"]:
        assert set(g) == kinds[g["kind"]] and g["id"].startswith(f"g-{g['kind']}-") and g["ips"], g
    assert len({e["id"] for e in m["edges"]}) == len(m["edges"])
    for e in m["edges"]:
        assert set(e) == {"id", "source", "target", "port", "links", "failed", "live", "bytes_sent",
                          "bytes_received", "response_ms", "status", "failing", "records"}
        assert e["status"] in STATUSES and e["records"] > 0
        # failing: at least 5 % of the link attempts failed (not one failure among many)
        assert e["failing"] == (e["failed"] > 0 and e["failed"] >= 0.05 * (e["links"] + e["failed"]))
        assert e["source"] in procs or groups[e["source"]]["kind"] == "clients", e
        assert e["target"] in procs or groups[e["target"]]["kind"] in ("servers", "internet"), e
    used = {n for e in m["edges"] for n in (e["source"], e["target"])}
    assert set(groups) <= used and set(procs) <= used


def test_the_payment_api_callers_have_a_red_edge_in_the_last_day(client, inventory):
    m = ok(client, "/api/map", machine="admdemo-appsvr", **LAST_DAY)
    procs = processes(m)
    [edge] = [e for e in m["edges"] if e["target"] == STRIPE]
    assert procs[edge["source"]]["computer"] == "admdemo-appsvr" and procs[edge["source"]]["name"] == "java"
    assert edge["status"] in ("failed", "used_to_work") and edge["failed"] > 0 and edge["links"] == 0
    assert edge["port"] == 443 and edge["bytes_sent"] == 0
    # the day before, the same edge carried traffic and had no record the day before that: "new"
    before = ok(client, "/api/map", machine="admdemo-appsvr", **{"from": "2026-11-18T00:00:00Z",
                                                                 "to": "2026-11-19T00:00:00Z"})
    [earlier] = [e for e in before["edges"] if e["target"] == STRIPE]
    assert earlier["id"] == edge["id"] and earlier["links"] > 0 and earlier["status"] == "new"
    # every caller of the payment API (the shop and billing app servers) is red in the map of all machines
    everyone = ok(client, "/api/map", group="all", only_failures=1, **LAST_DAY)
    callers = {processes(everyone)[e["source"]]["computer"] for e in everyone["edges"] if e["target"] == STRIPE}
    assert callers == {"admdemo-appsvr", "acme-demo"}
    assert all(e["status"] in ("failed", "used_to_work") for e in everyone["edges"] if e["target"] == STRIPE)


def test_a_machine_is_named_by_id_name_first_label_or_address(client, inventory):
    web = inventory["web-01.contoso.local"]
    for name in (web["id"], "web-01.contoso.local", "WEB-01", web["ip"]):
        m = ok(client, "/api/map", machine=name, **LAST_DAY)
        assert m["focus"] == [web["id"]], name
        assert [mm["id"] for mm in m["machines"] if mm["focus"]] == [web["id"]]
    # web-01's map: its internet clients, its calls to the app tier (machines shown, not focused)
    procs = processes(m)
    targets = {procs[e["target"]]["computer"] for e in m["edges"] if e["target"] in procs and e["source"] in procs
               and procs[e["source"]]["machine"] == web["id"] and e["port"] == 8080}
    assert targets and all(t.startswith("app-") or t in ("acme-demo", "admdemo-appsvr") for t in targets)
    clients = [g for g in m["groups"] if g["kind"] == "clients"]
    assert {g["label"] for g in clients} >= {"Clients of web-01:443"}
    g443 = next(g for g in clients if g["label"] == "Clients of web-01:443")
    assert g443["id"] == f"g-clients-{web['id']}-443" and g443["count"] == len(g443["ips"]) > 10
    assert all(ipaddress.ip_address(a).is_global for a in g443["ips"])


def test_edges_aggregate_the_records_like_kql(client, full_map):
    m, procs = full_map, processes(full_map)
    rng = in_range(LAST_DAY["from"], LAST_DAY["to"])
    # every edge into the internet group api.stripe.com, against a count by caller process
    expect = {r["Process"]: r for r in kql(client, f"""VMConnection | where {rng}
        | where RemoteIp == "54.187.174.169" and Direction == "outbound"
        | summarize links = sum(LinksEstablished), failed = sum(LinksFailed), sent = sum(BytesSent),
            received = sum(BytesReceived), records = count() by Process""")}
    got = {e["source"]: e for e in m["edges"] if e["target"] == STRIPE}
    assert set(got) == set(expect)
    for p, e in got.items():
        x = expect[p]
        assert (e["links"], e["failed"], e["bytes_sent"], e["bytes_received"], e["records"]) == (
            x["links"], x["failed"], x["sent"], x["received"], x["records"])
    # process -> process: the outbound records of the callers of each app server's Tomcat on 8080
    ips = {mm["id"]: mm["ips"] for mm in m["machines"]}
    tomcat = [e for e in m["edges"] if e["port"] == 8080 and e["target"] in procs
              and procs[e["target"]]["name"] == "java" and procs[e["source"]]["machine"] != procs[e["target"]]["machine"]]
    assert tomcat
    for e in tomcat[:4]:
        [x] = kql(client, f"""VMConnection | where {rng} | where Process == "{e['source']}" and Direction == "outbound"
            and DestinationPort == 8080 and RemoteIp in ({', '.join(json.dumps(a) for a in ips[procs[e['target']]['machine']])})
            | summarize links = sum(LinksEstablished), sent = sum(BytesSent), received = sum(BytesReceived),
                responses = sum(Responses), rt = sum(ResponseTimeSum), records = count()""")
        assert (e["links"], e["bytes_sent"], e["bytes_received"], e["records"]) == (
            x["links"], x["sent"], x["received"], x["records"])
        assert e["response_ms"] == pytest.approx(x["rt"] / x["responses"], abs=1e-3)
    # a clients group -> process: the inbound records from unmonitored addresses, bytes seen from the client
    g = next(g for g in m["groups"] if g["kind"] == "clients" and g["label"].endswith(":443"))
    [e] = [e for e in m["edges"] if e["source"] == g["id"]]
    [x] = kql(client, f"""VMConnection | where {rng} | where Process == "{e['target']}" and Direction == "inbound"
        and DestinationPort == 443 | summarize links = sum(LinksEstablished), sent = sum(BytesSent),
        received = sum(BytesReceived), records = count(), clients = dcount(RemoteIp)""")
    assert (e["links"], e["bytes_sent"], e["bytes_received"], e["records"], g["count"]) == (
        x["links"], x["received"], x["sent"], x["records"], x["clients"])


def test_edge_records_are_the_records_under_the_edge(client, full_map):
    groups = {g["id"]: g for g in full_map["groups"]}
    edge = next(e for e in full_map["edges"] if e["target"] == "g-internet-qagpublic.qg2.apps.qualys.eu")
    r = ok(client, "/api/edges", source=edge["source"], target=edge["target"], port=edge["port"], **LAST_DAY)
    assert set(r) == {"columns", "rows", "truncated"}
    names = [c["name"] for c in r["columns"]]
    assert names[:2] == ["TimeGenerated", "AgentId"] and {"name", "type"} == set(r["columns"][0])
    rows = [dict(zip(names, row)) for row in r["rows"]]
    assert len(rows) == edge["records"] <= 1000 and not r["truncated"]
    assert sum(x["LinksEstablished"] for x in rows) == edge["links"] and sum(x["BytesSent"] for x in rows) == edge["bytes_sent"]
    assert {(x["Process"], x["RemoteIp"], x["DestinationPort"]) for x in rows} == {
        (edge["source"], ip, 443) for ip in groups[edge["target"]]["ips"]}
    assert [x["TimeGenerated"] for x in rows] == sorted((x["TimeGenerated"] for x in rows), reverse=True)
    # a clients group's edge: inbound records of the process; a busy one is cut at 1,000
    g = max((e for e in full_map["edges"] if e["source"].startswith("g-clients-")), key=lambda e: e["records"])
    assert g["records"] > 1000
    r = ok(client, "/api/edges", source=g["source"], target=g["target"], port=g["port"], **LAST_DAY)
    assert len(r["rows"]) == min(1000, g["records"]) and r["truncated"] == (g["records"] > 1000)
    assert {row[[c["name"] for c in r["columns"]].index("Direction")] for row in r["rows"]} == {"inbound"}


def test_groups_for_clients_servers_and_the_internet(full_map):
    groups = {g["id"]: g for g in full_map["groups"]}
    stripe = groups[STRIPE]
    assert (stripe["label"], stripe["ips"], stripe["country"], stripe["malicious"]) == (
        "api.stripe.com", ["54.187.174.169"], "United States", False)
    assert groups["g-servers-25"]["ips"] == ["10.229.240.25"] and groups["g-servers-25"]["label"] == "Port 25 (1 server)"
    tor = [g for g in full_map["groups"] if "185.220.101.47" in g["ips"]]
    assert [(g["kind"], g["label"], g["malicious"]) for g in tor] == [("internet", "Germany", True)]
    clients = [g for g in full_map["groups"] if g["kind"] == "clients"]
    assert any("45.155.205.233" in g["ips"] and g["label"].endswith(":3389") for g in clients)   # RDP brute force
    # a client group holding a malicious address is flagged; one holding none is not
    bad = {g["id"] for g in clients if set(g["ips"]) & {"45.155.205.233", "218.92.0.107"}}
    assert bad and all(groups[i]["malicious"] for i in bad)
    assert not any(g["malicious"] for g in clients if g["id"] not in bad)


def test_only_failures_exclude_and_hide_loopback(client, full_map):
    failed = ok(client, "/api/map", group="all", only_failures=1, **LAST_DAY)
    # only failures keeps the failing edges (by the failure rate) and their ends, no other machine
    assert failed["edges"] and all(e["failing"] for e in failed["edges"])
    assert {e["id"] for e in failed["edges"]} == {e["id"] for e in full_map["edges"] if e["failing"]}
    owners = {p["id"]: mm["id"] for mm in failed["machines"] for p in mm["processes"]}
    ends = {owners.get(n, n) for e in failed["edges"] for n in (e["source"], e["target"])}
    assert {mm["id"] for mm in failed["machines"]} <= ends
    # exclude: neither end of any edge is one of the processes left out (comma-separated or repeated)
    for exclude in ({"exclude": "java,W3WP.EXE"}, {"exclude": ["java", "w3wp.exe"]}):
        m = ok(client, "/api/map", group="all", **exclude, **LAST_DAY)
        names = {p["name"] for p in processes(m).values()}
        assert not names & {"java", "w3wp.exe"} and "nginx" in names
        assert not any(e["target"] == STRIPE for e in m["edges"])
    # loopback: curl's health checks of Tomcat on 127.0.0.1:8080 appear only with hide_loopback=0
    def same_machine(m):
        procs = processes(m)
        return [e for e in m["edges"] if e["target"] in procs and e["source"] in procs
                and procs[e["source"]]["machine"] == procs[e["target"]]["machine"]]
    assert same_machine(full_map) == []
    shown = ok(client, "/api/map", group="all", hide_loopback=0, **LAST_DAY)
    pairs = {(processes(shown)[e["source"]]["name"], processes(shown)[e["target"]]["name"], e["port"])
             for e in same_machine(shown)}
    assert ("curl", "java", 8080) in pairs
    # the answer says how many edges "hide loopback" left out: exactly those hide_loopback=0 adds
    added = {e["id"] for e in shown["edges"]} - {e["id"] for e in full_map["edges"]}
    assert full_map["loopback_hidden"] == len(added) > 0 and shown["loopback_hidden"] == 0
    assert {e["id"] for e in same_machine(shown)} == added
    assert failed["loopback_hidden"] == len({e["id"] for e in same_machine(shown) if e["failing"]})


def test_tag_and_subnet_groups(client, inventory):
    web = ok(client, "/api/map", group="tag:tier=web", **LAST_DAY)
    assert sorted(web["focus"]) == sorted(inventory[c]["id"] for c in TAGS)
    prod = ok(client, "/api/map", group="tag:env=prod", **LAST_DAY)
    assert prod["focus"] == [inventory["web-01.contoso.local"]["id"]]
    assert ok(client, "/api/map", group="tag:env=none", **LAST_DAY)["focus"] == []
    net = ipaddress.ip_network("10.1.1.0/24")
    m = ok(client, "/api/map", group=f"subnet:{net}", **LAST_DAY)
    expect = sorted(v["id"] for v in inventory.values() if ipaddress.ip_address(v["ip"]) in net)
    assert expect and sorted(m["focus"]) == expect


def test_machines_have_os_ips_and_are_searchable(client, inventory):
    found = ok(client, "/api/machines")["machines"]
    assert len(found) == len(inventory)
    for mm in found:
        assert set(mm) == {"id", "computer", "os", "ips", "tags"} and mm["os"]
        assert inventory[mm["computer"]]["ip"] in mm["ips"] and mm["id"] == inventory[mm["computer"]]["id"]
    assert [mm["computer"] for mm in ok(client, "/api/machines", search="WEB-0")["machines"]] == [
        "web-01.contoso.local", "web-02.contoso.local"]
    assert [mm["computer"] for mm in ok(client, "/api/machines", search="10.229.243.232")["machines"]] == [
        "build-01.contoso.local"]
    assert ok(client, "/api/machines", search="nothing-like-this")["machines"] == []


def test_one_machine_in_detail(client, inventory):
    web = inventory["web-01.contoso.local"]
    d = ok(client, f"/api/machines/{web['id']}")
    assert set(d) == {"id", "record", "tags", "processes", "ports"} and d["id"] == web["id"]
    assert set(d["record"]) == {c for c, _ in Catalogue.load().get("VMComputer").columns}
    assert d["record"]["Computer"] == "web-01.contoso.local" and d["record"]["Ipv4Addresses"] == [web["ip"]]
    assert d["record"]["TimeGenerated"] > "2026-11-19T23"
    assert d["tags"] == TAGS["web-01.contoso.local"]
    nginx = next(p for p in d["processes"] if p["name"] == "nginx")
    assert set(nginx) == {"id", "name", "display", "command_line", "user", "version", "start_time"}
    assert "nginx" in nginx["command_line"] and nginx["user"] and nginx["start_time"].endswith("Z")
    ports = {(p["port"], p["name"]) for p in d["ports"]}
    assert {(443, "nginx"), (80, "nginx"), (22, "sshd")} <= ports
    assert ok(client, "/api/machines/web-01")["id"] == web["id"]       # its name or an address work too


def test_network_is_machine_to_machine_traffic(client, inventory):
    net = ok(client, "/api/network", **LAST_DAY)
    assert set(net) == {"nodes", "edges"}
    by_id = {n["id"]: n for n in net["nodes"]}
    assert set(by_id) == {v["id"] for v in inventory.values()}
    for n in net["nodes"]:
        assert set(n) == {"id", "computer", "subnet", "bytes", "links"}
        assert ipaddress.ip_address(inventory[n["computer"]]["ip"]) in ipaddress.ip_network(n["subnet"])
    assert net["edges"] and all(set(e) == {"source", "target", "bytes", "links", "failed"} for e in net["edges"])
    assert [e["bytes"] for e in net["edges"]] == sorted((e["bytes"] for e in net["edges"]), reverse=True)
    ip_of = {v["id"]: v["ip"] for v in inventory.values()}
    e = net["edges"][0]
    [x] = kql(client, f"""VMConnection | where {in_range(LAST_DAY['from'], LAST_DAY['to'])}
        | where Machine == "{e['source']}" and Direction == "outbound" and RemoteIp == "{ip_of[e['target']]}"
        | summarize bytes = sum(BytesSent + BytesReceived), links = sum(LinksEstablished), failed = sum(LinksFailed)""")
    assert (e["bytes"], e["links"], e["failed"]) == (x["bytes"], x["links"], x["failed"])
    totals = defaultdict(int)
    for e in net["edges"]:
        totals[e["source"]] += e["bytes"]
        totals[e["target"]] += e["bytes"]
    assert all(by_id[k]["bytes"] == v for k, v in totals.items())
    # a subnet: the pairs with an end in it; weight=links orders by links
    sub = ok(client, "/api/network", subnet="10.1.1.0/24", weight="links", **LAST_DAY)
    inside = {v["id"] for v in inventory.values() if ipaddress.ip_address(v["ip"]) in ipaddress.ip_network("10.1.1.0/24")}
    assert sub["edges"] and all(e["source"] in inside or e["target"] in inside for e in sub["edges"])
    assert [e["links"] for e in sub["edges"]] == sorted((e["links"] for e in sub["edges"]), reverse=True)
    assert all(e["links"] > 0 for e in sub["edges"])


def test_usage_per_day_is_the_usage_table(client):
    days = (datetime.now(timezone.utc).date() - END.date()).days + 3
    u = ok(client, "/api/usage", days=days)
    assert set(u) == {"days", "total_mb", "machines", "processes", "retention"}
    expect: dict[str, dict] = defaultdict(lambda: defaultdict(float))
    for r in kql(client, "Usage | project TimeGenerated, DataType, Quantity"):
        expect[r["TimeGenerated"][:10]][r["DataType"]] += r["Quantity"]
    assert [d["day"] for d in u["days"]] == sorted(expect) == ["2026-11-18", "2026-11-19"]
    for d in u["days"]:
        assert d["tables"] == pytest.approx(dict(expect[d["day"]]), abs=1e-5)
        assert {"VMConnection", "VMBoundPort", "VMComputer", "VMProcess"} <= set(d["tables"])
    assert u["total_mb"] == pytest.approx(sum(sum(t.values()) for t in expect.values()), abs=1e-4)
    assert len(u["machines"]) == 10 and all(set(m) == {"computer", "mb"} for m in u["machines"])
    assert [m["mb"] for m in u["machines"]] == sorted((m["mb"] for m in u["machines"]), reverse=True)
    [top] = kql(client, """union VMConnection, VMBoundPort, VMComputer, VMProcess, VMComputerTags_CL,
            InsightsMetrics, Perf, Heartbeat
        | summarize mb = sum(_BilledSize) / 1e6 by Computer | top 1 by mb desc""")
    assert (u["machines"][0]["computer"], u["machines"][0]["mb"]) == (top["Computer"], pytest.approx(top["mb"], abs=1e-5))
    assert len(u["processes"]) == 10 and all(set(p) == {"process", "computer", "mb"} for p in u["processes"])
    assert u["retention"]["VMConnection"] == 4383
    assert ok(client, "/api/usage", days=1)["days"] == []     # today (UTC): the demo ended before


def test_schema_comes_from_the_catalogue_and_the_engine(client):
    from netatlas.kql.functions import FUNCTIONS
    from netatlas.kql.parser import OPERATORS
    s = ok(client, "/api/schema")
    assert set(s) == {"tables", "functions", "operators"}
    cat = Catalogue.load()
    assert s["tables"] == {t: [list(c) for c in cat.get(t).columns] for t in cat.names()}
    assert s["tables"]["VMConnection"][0] == ["TimeGenerated", "datetime"]
    assert set(FUNCTIONS) <= set(s["functions"]) and {"ago", "bin", "count", "arg_max", "dcount"} <= set(s["functions"])
    assert set(OPERATORS) <= set(s["operators"]) and {"where", "summarize", "datatable"} <= set(s["operators"])
    assert s["functions"] == sorted(s["functions"]) and s["operators"] == sorted(s["operators"])


def test_samples_over_http(client):
    assert ok(client, "/api/samples") == {"samples": webmap.samples()}


def test_the_map_reports_its_steps_in_server_timing(client):
    r = get(client, "/api/map", group="all", **LAST_DAY)
    steps = dict(part.strip().split(";dur=") for part in r.headers["server-timing"].split(","))
    assert {"inventory", "remotes", "flows", "resolve", "listeners", "fold", "shape"} <= set(steps)   # "before": in "flows"


# ---------------------------------------------------------------- a host whose traffic is all loopback

SOLO = "m-00000000-0000-0000-0000-00000000050a"
SOLO_PROCESSES = {   # Process -> (ExecutableName, DisplayName, the port it listens on 127.0.0.1, or None)
    "p-0000000000a1": ("python3.11", "api.py", 8000),
    "p-0000000000a2": ("python3.11", "worker.py", None),
    "p-0000000000a3": ("postgres", "postgres", 5432),
    "p-0000000000a4": ("redis-server", "redis-server", 6379),
}
SOLO_FLOWS = [("p-0000000000a2", 8000), ("p-0000000000a1", 5432), ("p-0000000000a1", 6379), ("p-0000000000a2", 5432)]


def fill_loopback_host(ws, now: datetime) -> None:
    """One machine, solo, over the 20 minutes before ``now``: an API and a worker (Python scripts),
    PostgreSQL and Redis, all talking over 127.0.0.1 (the case of a single-host deployment)."""
    times = [now - timedelta(minutes=m) for m in range(20, 0, -1)]
    base = {"Computer": "solo.example", "Machine": SOLO}
    ws.ingest("VMComputer", [dict(base, TimeGenerated=t.isoformat(), HostName="solo", DisplayName="solo",
                                  Ipv4Addresses=["10.9.0.5"], Ipv4SubnetMasks=["255.255.255.0"],
                                  OperatingSystemFullName="Debian GNU/Linux 12 (bookworm)") for t in times[:1]])
    ws.ingest("VMProcess", [dict(base, TimeGenerated=times[0].isoformat(), Process=p, ExecutableName=exe,
                                 DisplayName=display, CommandLine=f"/usr/bin/{exe} {display}")
                            for p, (exe, display, _) in SOLO_PROCESSES.items()])
    ws.ingest("VMBoundPort", [dict(base, TimeGenerated=t.isoformat(), Process=p, ProcessName=exe, Ip="127.0.0.1",
                                   Port=port, Protocol="tcp", IsWildcardBind=False)
                              for t in times for p, (exe, _, port) in SOLO_PROCESSES.items() if port])
    rows = []
    for t in times:
        for n, (client, port) in enumerate(SOLO_FLOWS):
            server = next(p for p, (_, _, q) in SOLO_PROCESSES.items() if q == port)
            common = dict(base, TimeGenerated=t.isoformat(), SourceIp="127.0.0.1", DestinationIp="127.0.0.1",
                          DestinationPort=port, Protocol="tcp", RemoteIp="127.0.0.1", LinksEstablished=3,
                          LinksTerminated=3, LinksLive=0, LinksFailed=0, BytesSent=1000 + n, BytesReceived=5000,
                          Responses=3, ResponseTimeSum=3000)
            rows.append(dict(common, Direction="outbound", Process=client, ProcessName=SOLO_PROCESSES[client][0]))
            rows.append(dict(common, Direction="inbound", Process=server, ProcessName=SOLO_PROCESSES[server][0]))
    ws.ingest("VMConnection", rows)


@pytest.fixture(scope="module")
def solo(tmp_path_factory):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    served = serve_filled(tmp_path_factory, "loopback-host", lambda ws: fill_loopback_host(ws, now))
    server = next(served)
    yield server.client(), {"from": webmap.iso(now - timedelta(hours=1)), "to": webmap.iso(now)}
    next(served, None)


def test_a_host_whose_traffic_is_all_loopback_says_so(solo):
    client, span = solo
    hidden = ok(client, "/api/map", machine="solo", **span)
    assert [m["id"] for m in hidden["machines"]] == [SOLO] and hidden["focus"] == [SOLO]
    assert hidden["edges"] == [] and hidden["loopback_hidden"] == len(SOLO_FLOWS)
    shown = ok(client, "/api/map", machine="solo", hide_loopback=0, **span)
    assert shown["loopback_hidden"] == 0
    assert sorted((e["source"], e["port"]) for e in shown["edges"]) == sorted(SOLO_FLOWS)
    assert all(e["links"] == 20 * 3 for e in shown["edges"])
    displays = {p["display"] for p in shown["machines"][0]["processes"]}
    assert displays == {"api.py", "worker.py", "postgres", "redis-server"}
    # only failures: none of the loopback edges failed, so none is hidden by "hide loopback" either
    assert ok(client, "/api/map", machine="solo", only_failures=1, **span)["loopback_hidden"] == 0
