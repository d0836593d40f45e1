"""Alerts (issue 17): log search alert rules on a real server, with a real webhook receiver (an
HTTP server on loopback) and a real SMTP server (aiosmtpd) on loopback.

Evaluation is driven by ``POST /api/alerts/rules/{id}/evaluate?at=...`` at explicit times (the
records are ingested with timestamps in the last hour), never by sleeping; the server's own
scheduler runs once at start and then waits an hour (``--alerts-interval 3600``). The limits of
limits.py are hit on an AlertStore over a workspace of their own.
"""
from __future__ import annotations

import json
import stat
import threading
import time
import urllib.parse
from datetime import datetime, timedelta, timezone
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import netatlas
from netatlas import alerts, limits
from netatlas.notify import Notifier

from test_server import Server, assert_error_shape, free_port, request, unique

pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------- the receivers on loopback

class Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.append({"path": self.path, "type": self.headers["Content-Type"], "body": json.loads(body)})
        self.send_response(500 if self.path == "/broken" else 200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture(scope="module")
def hooks():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd.server_address[1], Hook.received
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def mailbox():
    from aiosmtpd.controller import Controller
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, box
    controller.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, mailbox):
    data = tmp_path_factory.mktemp("alerts") / "data"
    s = Server(data, "--alerts-interval", "3600", "--smtp-host", "127.0.0.1", "--smtp-port", str(mailbox[0]),
               "--smtp-to", "ops@example.com", "--smtp-from", "netatlas@example.com",
               "--public-url", "https://atlas.example.com").start()
    yield s
    s.kill()


@pytest.fixture(scope="module")
def client(server):
    return server.client()


T = datetime.now(timezone.utc).replace(microsecond=0)


def at(delta: timedelta) -> str:
    return (T + delta).isoformat()


def ok(reply, status=200):
    assert reply.status == status, reply.body
    return reply.body


def evaluate(client, rid: str, when: timedelta) -> dict:
    return ok(client.admin("POST", f"/api/alerts/rules/{rid}/evaluate?at={urllib.parse.quote(at(when))}"))


def connection(computer: str, when: timedelta, remote: str, failed: int = 0, links: int = 1, **more) -> dict:
    return {"TimeGenerated": at(when), "Computer": computer, "Machine": f"m-{computer}", "Direction": "outbound",
            "ProcessName": "app", "Process": f"p-{computer}", "SourceIp": "10.9.0.1", "DestinationIp": remote,
            "RemoteIp": remote, "DestinationPort": 443, "LinksFailed": failed, "LinksEstablished": links, **more}


def events(result: dict) -> list[tuple]:
    """The state changes (action failures left out)."""
    return [(c["event"], c.get("dimensions", {}).get("RemoteIp")) for c in result["changes"]
            if c["event"] != "action_failed"]


# ---------------------------------------------------------------- fire, resolve, mute: end to end

def test_a_rule_fires_resolves_and_stays_quiet_in_its_mute_period(client, hooks, mailbox):
    hook_port, received = hooks
    box = mailbox[1]
    host = unique()
    assert ok(client.ingest("VMConnection", [connection(host, -timedelta(minutes=50), "10.1.1.1", failed=5),
                                             connection(host, -timedelta(minutes=50), "10.1.1.2", failed=1)]))
    rule = ok(client.admin("POST", "/api/alerts/rules", {
        "name": "failures", "severity": 2, "window": "10m", "frequency": "5m", "mute": "PT30M",
        "query": f'VMConnection | where Computer == "{host}" | summarize Failed = sum(LinksFailed) by Computer, RemoteIp',
        "measure": "Failed", "aggregation": "sum", "dimensions": ["Computer", "RemoteIp"],
        "operator": ">", "threshold": 2,
        "actions": {"webhooks": [f"http://127.0.0.1:{hook_port}/hook", f"http://127.0.0.1:{hook_port}/broken",
                                 f"http://127.0.0.1:{free_port()}/closed"], "email": True}}), 201)
    rid = rule["id"]
    assert rule["state"] == "ok" and rule["window"] == "10m" and rule["mute"] == "30m"

    # the condition becomes true: one instance (10.1.1.1, 5 failures); 10.1.1.2 (1) stays under the threshold
    first = evaluate(client, rid, -timedelta(minutes=45))
    assert events(first) == [("fired", "10.1.1.1")]
    failed = [c for c in first["changes"] if c["event"] == "action_failed"]
    assert {c["target"].rsplit("/", 1)[1] for c in failed} == {"broken", "closed"}, failed
    assert "HTTP 500" in next(c["error"] for c in failed if c["target"].endswith("broken"))
    hook = [r for r in received if r["path"] == "/hook"]
    assert len(hook) == 1 and hook[0]["type"] == "application/json"
    payload = hook[0]["body"]
    assert payload["state"] == "fired" and payload["severity"] == 2 and payload["severityName"] == "Sev2"
    assert payload["rule"]["id"] == rid and payload["rule"]["name"] == "failures"
    assert payload["dimensions"] == {"Computer": host, "RemoteIp": "10.1.1.1"} and payload["value"] == 5
    assert payload["window"]["end"].startswith(at(-timedelta(minutes=45))[:19])
    assert payload["link"].startswith("https://atlas.example.com/#/logs?q=") and host in \
        urllib.parse.unquote(payload["link"])
    assert len(box.messages) == 1
    to, mail = box.messages[0]
    assert to == ["ops@example.com"] and mail["From"] == "netatlas@example.com"
    assert "Sev2 fired: failures" in mail["Subject"] and "RemoteIp=10.1.1.1" in mail["Subject"]
    assert "value 5" in mail.get_payload()

    shown = ok(client.call("GET", f"/api/alerts/rules/{rid}"))
    assert shown["state"] == "fired" and shown["fired"] == 1

    # still true at the next evaluation: no new notification (stateful)
    assert events(evaluate(client, rid, -timedelta(minutes=42))) == []
    # the records leave the window: resolved, and said so
    assert events(evaluate(client, rid, -timedelta(minutes=30))) == [("resolved", "10.1.1.1")]
    hook = [r for r in received if r["path"] == "/hook"]
    assert [h["body"]["state"] for h in hook] == ["fired", "resolved"] and hook[1]["body"]["value"] is None   # no rows: no value
    assert len(box.messages) == 2 and "resolved" in box.messages[1][1]["Subject"]

    # true again 25 minutes after it fired, within its 30-minute mute: it does not fire
    assert ok(client.ingest("VMConnection", [connection(host, -timedelta(minutes=25), "10.1.1.1", failed=4)]))
    muted = evaluate(client, rid, -timedelta(minutes=20))
    assert events(muted) == [("muted", "10.1.1.1")]
    assert len([r for r in received if r["path"] == "/hook"]) == 2 and len(box.messages) == 2
    assert ok(client.call("GET", f"/api/alerts/rules/{rid}"))["state"] == "ok"

    # true after the mute period: it fires again
    assert ok(client.ingest("VMConnection", [connection(host, -timedelta(minutes=5), "10.1.1.1", failed=3)]))
    assert events(evaluate(client, rid, timedelta())) == [("fired", "10.1.1.1")]
    assert [h["body"]["state"] for h in received if h["path"] == "/hook"] == ["fired", "resolved", "fired"]
    assert len(box.messages) == 3

    history = ok(client.call("GET", f"/api/alerts/history?rule={rid}"))["history"]
    assert [h["event"] for h in history if h["event"] != "action_failed"] == ["fired", "muted", "resolved", "fired"]  # newest first
    assert ok(client.call("GET", f"/api/alerts/history?rule={rid}&limit=1"))["history"] == history[:1]


# ---------------------------------------------------------------- the built-in rules on planted records

def test_each_built_in_rule_fires_on_its_planted_case_and_not_on_its_control(client):
    bad, ok_ip = "203.0.113.66", "198.51.100.7"
    r = request(client.port, "POST", "/api/threatintel/import?source=alerts-test&format=list",
                f"{bad}\n".encode(), {"Authorization": f"Bearer {client.admin_key.secret}"})
    assert r.status == 200 and r.body["stored"] == 1, r.body

    dep, hb = unique(), unique()
    day = timedelta(days=1)
    ten = timedelta(minutes=10)
    ok(client.ingest("VMConnection", [
        # used to work: links and no failure one day earlier, failures now
        connection(dep, -day - ten, "10.2.0.1", failed=0, links=3), connection(dep, -ten, "10.2.0.1", failed=2),
        # control: failing then too
        connection(dep, -day - ten, "10.2.0.2", failed=1, links=3), connection(dep, -ten, "10.2.0.2", failed=2),
        # a malicious address, and a control
        connection(dep, -ten, bad), connection(dep, -ten, ok_ip)]))
    ok(client.ingest("VMBoundPort", [
        {"TimeGenerated": at(-timedelta(hours=5)), "Computer": dep, "Machine": f"m-{dep}", "Port": 22,
         "Protocol": "tcp", "ProcessName": "sshd", "Ip": "0.0.0.0"},
        {"TimeGenerated": at(-ten), "Computer": dep, "Machine": f"m-{dep}", "Port": 22,
         "Protocol": "tcp", "ProcessName": "sshd", "Ip": "0.0.0.0"},
        {"TimeGenerated": at(-ten), "Computer": dep, "Machine": f"m-{dep}", "Port": 4444,
         "Protocol": "tcp", "ProcessName": "nc", "Ip": "0.0.0.0"}]))
    ok(client.ingest("Heartbeat", [{"TimeGenerated": at(-timedelta(minutes=30)), "Computer": hb},
                                   {"TimeGenerated": at(-timedelta(minutes=1)), "Computer": dep}]))

    rules = {r["id"]: r for r in ok(client.call("GET", "/api/alerts/rules"))["rules"]}
    assert set(alerts.BUILTINS) <= set(rules) and not any(rules[b]["enabled"] for b in alerts.BUILTINS)
    expected = {
        "builtin-used-to-work": [{"Computer": dep, "ProcessName": "app", "RemoteIp": "10.2.0.1", "DestinationPort": 443}],
        "builtin-malicious-address": [{"Computer": dep, "ProcessName": "app", "RemoteIp": bad}],
        "builtin-new-listening-port": [{"Computer": dep, "Port": 4444, "Protocol": "tcp", "ProcessName": "nc"}],
        "builtin-heartbeat-stopped": [{"Computer": hb}],
    }
    for rid, dims in expected.items():
        assert ok(client.admin("POST", f"/api/alerts/rules/{rid}/enable"))["enabled"] is True
        result = evaluate(client, rid, timedelta())
        assert "error" not in result, result
        fired = [c["dimensions"] for c in result["changes"] if c["event"] == "fired"
                 and c["dimensions"]["Computer"] in (dep, hb)]
        assert fired == dims, (rid, result)
        assert ok(client.admin("POST", f"/api/alerts/rules/{rid}/disable"))["enabled"] is False


# ---------------------------------------------------------------- bad input: 4xx naming the field

RULE = {"name": "n", "query": "VMConnection | summarize n = count() by Computer", "dimensions": ["Computer"]}
BAD = [
    ({"query": "VMConnection"}, "name", "ALERT_INVALID"),
    ({**RULE, "colour": "red"}, "colour", "ALERT_INVALID"),
    ({**RULE, "operator": "=>"}, "operator", "ALERT_INVALID"),
    ({**RULE, "severity": 5}, "severity", "ALERT_INVALID"),
    ({**RULE, "frequency": "fortnight"}, "frequency", "ALERT_INVALID"),
    ({**RULE, "frequency": "10s"}, "frequency", "ALERT_INVALID"),
    ({**RULE, "window": "P90D"}, "window", "ALERT_INVALID"),
    ({**RULE, "threshold": "lots"}, "threshold", "ALERT_INVALID"),
    ({**RULE, "query": "VMConnection | summarize n = count() by Computr"}, "query", "KQL_UNKNOWN_COLUMN"),
    ({**RULE, "query": "VMConnection | summarize n = count( by Computer"}, "query", "KQL_SYNTAX"),
    ({**RULE, "dimensions": ["Machine"]}, "dimensions", "ALERT_INVALID"),
    ({**RULE, "measure": "Computer", "aggregation": "avg"}, "measure", "ALERT_INVALID"),
    ({**RULE, "measure": "n"}, "aggregation", "ALERT_INVALID"),
    ({**RULE, "actions": {"webhooks": ["ftp://x"]}}, "actions.webhooks", "ALERT_INVALID"),
    ({**RULE, "actions": {"email": ["not an address"]}}, "actions.email", "ALERT_INVALID"),
    ({**RULE, "actions": {"pager": True}}, "actions.pager", "ALERT_INVALID"),
    ({**RULE, "query": "VMConnection" + " " * limits.MAX_ALERT_QUERY_CHARS}, "query", "ALERT_LIMIT"),
    ({**RULE, "actions": {"webhooks": ["http://127.0.0.1/"] * (limits.MAX_ALERT_WEBHOOKS + 1)}},
     "actions.webhooks", "ALERT_LIMIT"),
]


@pytest.mark.parametrize("body, field, code", BAD, ids=[f"{c[1]}-{i}" for i, c in enumerate(BAD)])
def test_a_bad_rule_is_a_400_naming_the_field(client, body, field, code):
    err = assert_error_shape(client.admin("POST", "/api/alerts/rules", body), 400, code)
    assert err["field"] == field, err


def test_kql_errors_carry_the_compilers_message_and_position(client):
    err = assert_error_shape(client.admin("POST", "/api/alerts/rules", {**RULE, "query": "VMConnection | where Nope > 1"}),
                             400, "KQL_UNKNOWN_COLUMN")
    assert "Nope" in err["message"] and err["line"] == 1 and err["column"] == 22


def test_requests_that_are_not_allowed_or_name_nothing_are_refused(client):
    assert_error_shape(client.call("POST", "/api/alerts/rules", RULE), 403)            # a query key cannot change
    assert_error_shape(client.call("GET", "/api/alerts/rules", key="nope"), 403)
    assert_error_shape(client.call("GET", "/api/alerts/rules/nosuch"), 404, "ALERT_NOT_FOUND")
    assert_error_shape(client.admin("PUT", "/api/alerts/rules/nosuch", {"enabled": False}), 404, "ALERT_NOT_FOUND")
    assert_error_shape(client.admin("POST", "/api/alerts/rules/nosuch/evaluate"), 404, "ALERT_NOT_FOUND")
    assert_error_shape(client.admin("DELETE", "/api/alerts/rules/builtin-heartbeat-stopped"), 409, "ALERT_BUILTIN")
    rid = ok(client.admin("POST", "/api/alerts/rules", RULE), 201)["id"]
    err = assert_error_shape(client.admin("POST", f"/api/alerts/rules/{rid}/evaluate?at=yesterday"), 400)
    assert err["field"] == "at"
    err = assert_error_shape(client.admin("PUT", f"/api/alerts/rules/{rid}", {"severity": -1}), 400)
    assert err["field"] == "severity"
    assert_error_shape(client.admin("PUT", f"/api/alerts/rules/{rid}", {"id": "other"}), 400)
    assert_error_shape(client.call("GET", "/api/alerts/history?limit=0"), 400)
    assert ok(client.admin("PUT", f"/api/alerts/rules/{rid}", {"threshold": 10, "severity": 0}))["severity"] == 0
    assert ok(client.admin("DELETE", f"/api/alerts/rules/{rid}")) == {"deleted": rid}
    assert_error_shape(client.call("GET", f"/api/alerts/rules/{rid}"), 404)


# ---------------------------------------------------------------- a restart keeps rules, state and history

def test_a_restart_keeps_rules_state_and_history(server, client):
    host = unique()
    ok(client.ingest("VMConnection", [connection(host, -timedelta(minutes=3), "10.3.0.1", failed=1)]))
    rid = ok(client.admin("POST", "/api/alerts/rules", {
        "name": "restart", "window": "10m",
        "query": f'VMConnection | where Computer == "{host}" and LinksFailed > 0', "dimensions": ["RemoteIp"]}), 201)["id"]
    assert events(evaluate(client, rid, timedelta())) == [("fired", "10.3.0.1")]
    assert stat.S_IMODE((server.data / alerts.FILE).stat().st_mode) == 0o600     # webhook URLs may hold tokens
    server.terminate()
    server.start()
    again = server.client()
    shown = ok(again.call("GET", f"/api/alerts/rules/{rid}"))
    assert shown["state"] == "fired" and shown["instances"][0]["dimensions"] == {"RemoteIp": "10.3.0.1"}
    assert [h["event"] for h in ok(again.call("GET", f"/api/alerts/history?rule={rid}"))["history"]] == ["fired"]
    assert events(evaluate(again, rid, timedelta(minutes=1))) == []              # still fired: not again
    same = ok(again.admin("PUT", f"/api/alerts/rules/{rid}", {"query": shown["query"], "severity": 1}))
    assert same["state"] == "fired" and same["severity"] == 1                    # the same query keeps its state
    assert events(evaluate(again, rid, timedelta(minutes=20))) == [("resolved", "10.3.0.1")]


# ---------------------------------------------------------------- the limits of limits.py

@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    ws = netatlas.connect(tmp_path_factory.mktemp("alerts-limits") / "ws")
    yield ws
    ws.close()


def test_the_number_of_rules_is_limited(tmp_path, workspace):
    store = alerts.AlertStore(tmp_path)
    for i in range(limits.MAX_ALERT_RULES - len(alerts.BUILTINS)):
        store.create({**RULE, "name": f"r{i}"})
    with pytest.raises(alerts.AlertError) as e:
        store.create(RULE, workspace)
    assert e.value.code == "ALERT_LIMIT" and e.value.status == 409
    assert len(alerts.AlertStore(tmp_path).rules) == limits.MAX_ALERT_RULES      # as stored


def test_history_keeps_the_newest_entries_and_instances_are_limited(tmp_path, workspace):
    n = limits.MAX_ALERT_INSTANCES
    store = alerts.AlertStore(tmp_path, notifier=Notifier())
    rule = store.create({"name": "many", "query": f"range i from 1 to {n} step 1 | where now() < datetime(2030-01-01)",
                         "dimensions": ["i"]}, workspace)
    t = datetime(2029, 1, 1, tzinfo=timezone.utc)
    assert len(store.evaluate(rule["id"], workspace, t)["changes"]) == n                       # fired
    assert len(store.evaluate(rule["id"], workspace, datetime(2031, 1, 1, tzinfo=timezone.utc))["changes"]) == n
    assert len(store.evaluate(rule["id"], workspace, t)["changes"]) == n                       # fired again (no mute)
    kept = alerts.AlertStore(tmp_path).history(limit=10 ** 6)
    assert len(kept) == limits.MAX_ALERT_HISTORY and kept[0]["seq"] == 3 * n and kept[-1]["seq"] == 3 * n - len(kept) + 1

    over = store.create({"name": "too many", "query": f"range i from 0 to {n} step 1", "dimensions": ["i"]}, workspace)
    result = store.evaluate(over["id"], workspace, t)
    assert result["changes"][0]["event"] == "error" and "MAX_ALERT_INSTANCES" in result["error"]
    assert store.show(over["id"])["last_error"] == result["error"]


def test_a_query_that_fails_is_an_error_entry_and_changes_no_state(tmp_path, workspace):
    store = alerts.AlertStore(tmp_path)
    rid = store.create({"name": "x", "query": "range i from 1 to 3 step 1", "dimensions": ["i"]}, workspace)["id"]
    assert len(store.evaluate(rid, workspace)["changes"]) == 3
    store.rules[rid]["query"] = "range i from 1 to 3 step 1 | where nope"      # e.g. a table's column dropped
    result = store.evaluate(rid, workspace)
    assert [c["event"] for c in result["changes"]] == ["error"] and "nope" in result["error"]
    assert store.show(rid)["fired"] == 3


# ---------------------------------------------------------------- the Alerts page in Chromium

CHROMIUM = "/usr/bin/chromium"


def test_the_alerts_page_lists_creates_switches_and_evaluates_rules(server):
    import os
    client = server.client()            # the server may have been restarted: its port changed
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is absent: the browser test needs Debian's chromium package")
    from playwright.sync_api import sync_playwright
    host = unique()
    ok(client.ingest("VMConnection", [connection(host, -timedelta(minutes=2), "10.4.0.1", failed=1)]))
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 900})
            pg.set_default_timeout(20_000)
            errors = []
            pg.on("pageerror", lambda e: errors.append(str(e)))
            pg.on("console", lambda m: errors.append(m.text) if m.type == "error"
                  and "status of 400" not in m.text else None)       # the bad query below is a 400 on purpose
            pg.goto(f"http://127.0.0.1:{server.port}/")
            pg.fill("#key", client.admin_key.secret)
            pg.click("button[type=submit]")
            pg.click("header.topbar nav a[data-page=alerts]")
            pg.wait_for_selector("#alert-rules tr[data-rule=builtin-heartbeat-stopped]")
            assert "(built-in)" in pg.inner_text("#alert-rules tr[data-rule=builtin-malicious-address]")

            pg.click("#alert-new")
            pg.fill("#alert-name", "ui rule")
            pg.fill("#alert-query", f'VMConnection | where Computer == "{host}" | where Nope > 0')
            pg.click("#alert-save")
            pg.wait_for_function("document.querySelector('#alert-error')?.textContent.includes('Nope')")
            assert "line 1" in pg.inner_text("#alert-error")
            pg.fill("#alert-query", f'VMConnection | where Computer == "{host}" and LinksFailed > 0')
            pg.fill("#alert-dimensions", "RemoteIp")
            pg.fill("#alert-window", "10m")
            pg.click("#alert-save")
            pg.wait_for_selector("#alert-rules td:has-text('ui rule')")
            rule = next(r for r in ok(client.call("GET", "/api/alerts/rules"))["rules"] if r["name"] == "ui rule")
            assert rule["dimensions"] == ["RemoteIp"] and rule["window"] == "10m" and rule["enabled"]
            row = f"#alert-rules tr[data-rule='{rule['id']}']"
            pg.click(f"{row} button:has-text('Evaluate now')")
            pg.wait_for_selector(f"{row}[data-state=fired]")
            pg.wait_for_selector("#alert-history tr[data-event=fired]")
            pg.uncheck(f"{row} input[type=checkbox]")
            pg.wait_for_function(f"!document.querySelector(\"{row} input[type=checkbox]\").checked")
            assert ok(client.call("GET", f"/api/alerts/rules/{rule['id']}"))["enabled"] is False
            assert not errors, errors
        finally:
            browser.close()


# ---------------------------------------------------------------- the scheduler in the server process

def test_an_unreadable_store_is_named_and_not_overwritten(tmp_path):
    (tmp_path / alerts.FILE).write_text("{ not json")
    with pytest.raises(alerts.AlertError, match="alerts.json cannot be read"):
        alerts.AlertStore(tmp_path)
    assert (tmp_path / alerts.FILE).read_text() == "{ not json"


def test_the_scheduler_evaluates_due_rules_only(tmp_path, workspace):
    store = alerts.AlertStore(tmp_path)
    rid = store.create({"name": "x", "query": "range i from 1 to 1 step 1", "frequency": "10m"}, workspace)["id"]
    t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    assert store.due(t) == [rid]                            # never evaluated; the built-ins are disabled
    assert [r["rule"] for r in store.evaluate_due(workspace, t)] == [rid]
    assert store.due(t + timedelta(minutes=9)) == [] and store.due(t + timedelta(minutes=10)) == [rid]
    store.update(rid, {"enabled": False})
    assert store.due(t + timedelta(hours=1)) == []


def test_the_server_schedules_evaluations(tmp_path):
    s = Server(tmp_path / "data", "--alerts-interval", "0.2").start()
    try:
        c = s.client()
        rid = ok(c.admin("POST", "/api/alerts/rules", {"name": "scheduled", "query": "range i from 1 to 2 step 1",
                                                        "dimensions": ["i"], "frequency": "1m"}), 201)["id"]
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and ok(c.call("GET", f"/api/alerts/rules/{rid}"))["last_evaluated"] is None:
            time.sleep(0.1)
        shown = ok(c.call("GET", f"/api/alerts/rules/{rid}"))
        assert shown["state"] == "fired" and shown["fired"] == 2
        every = ok(c.admin("POST", "/api/alerts/evaluate"))["results"]          # every enabled rule, now
        assert [r["rule"] for r in every] == [rid] and every[0]["changes"] == []
        metrics = request(s.port, "GET", "/metrics").body
        assert 'netatlas_alert_events_total{event="fired"} 2' in metrics
        assert 'netatlas_alert_evaluations_total{outcome="ok"}' in metrics
    finally:
        s.kill()


# ---------------------------------------------------------------- the built-in rules on both stores

@pytest.mark.parametrize("store", ["duckdb", "chdb"])
def test_the_built_in_rules_run_on_both_stores(tmp_path, store):
    if store == "chdb":
        pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed")
    from netatlas import threatintel as ti
    from netatlas.workspace import Workspace
    with Workspace(tmp_path / "ws", store=store) as ws:
        ws.import_indicators(ti.parse("203.0.113.66\n", "list", source="t")[0], "t")
        day, ten = timedelta(days=1), timedelta(minutes=10)
        ws.ingest("VMConnection", [connection("a", -day - ten, "10.0.0.1", links=3), connection("a", -ten, "10.0.0.1", failed=2),
                                   connection("a", -ten, "203.0.113.66")])
        ws.ingest("VMBoundPort", [{"TimeGenerated": at(-timedelta(hours=5)), "Computer": "a", "Machine": "m", "Port": 22,
                                   "Protocol": "tcp", "ProcessName": "sshd"},
                                  {"TimeGenerated": at(-ten), "Computer": "a", "Machine": "m", "Port": 4444,
                                   "Protocol": "tcp", "ProcessName": "nc"}])
        ws.ingest("Heartbeat", [{"TimeGenerated": at(-timedelta(minutes=30)), "Computer": "hb"}])
        st = alerts.AlertStore(tmp_path)
        fired = {rid: [c["dimensions"] for c in st.evaluate(rid, ws, T)["changes"]] for rid in alerts.BUILTINS}
    assert fired == {
        "builtin-used-to-work": [{"Computer": "a", "ProcessName": "app", "RemoteIp": "10.0.0.1", "DestinationPort": 443}],
        "builtin-malicious-address": [{"Computer": "a", "ProcessName": "app", "RemoteIp": "203.0.113.66"}],
        "builtin-new-listening-port": [{"Computer": "a", "Port": 4444, "Protocol": "tcp", "ProcessName": "nc"}],
        "builtin-heartbeat-stopped": [{"Computer": "hb"}]}


# ---------------------------------------------------------------- e-mail with STARTTLS and a login

def test_email_goes_through_starttls_and_a_login_and_a_refused_login_is_a_failure(tmp_path):
    import ssl
    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult
    from netatlas import tlscert
    from netatlas.notify import Smtp
    cert, key, _ = tlscert.self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)

    def authenticator(server, session, envelope, mechanism, data):
        return AuthResult(success=(data.login, data.password) == (b"alerts", b"s3cret"), handled=False)

    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port(), tls_context=server_tls,
                            require_starttls=True, authenticator=authenticator, auth_required=True)
    controller.start()
    try:
        secret = tmp_path / "password"
        secret.write_text("s3cret\n")
        smtp = Smtp(host="127.0.0.1", port=controller.port, sender="a@example.com", to=("ops@example.com",),
                    starttls=True, user="alerts", password_file=str(secret), ca_file=str(cert))
        rule = alerts.validate({"name": "tls", "query": "print 1", "actions": {"email": True}})
        entry = {"rule": "r1", "event": "fired", "at": "2026-01-01T00:00:00Z", "dimensions": {"Computer": "web-1"},
                 "value": 1, "window": {"start": "2025-12-31T23:55:00Z", "end": "2026-01-01T00:00:00Z"}}
        assert Notifier(smtp).send(rule, entry) == [("email", "ops@example.com", None)]
        assert len(box.messages) == 1 and "Computer=web-1" in box.messages[0][1]["Subject"]
        secret.write_text("wrong")
        [(_, _, error)] = Notifier(smtp).send(rule, entry)
        assert "SMTPAuthenticationError" in error
        [(_, _, error)] = Notifier(Smtp(host="127.0.0.1", port=controller.port, to=("ops@example.com",))).send(rule, entry)
        assert error and "STARTTLS" in error.upper()          # the server requires it
        assert len(box.messages) == 1
    finally:
        controller.stop()


# ---------------------------------------------------------------- measures and conditions

@pytest.mark.parametrize("aggregation, want", [("sum", 6.0), ("avg", 2.0), ("min", 1.0), ("max", 3.0)])
def test_a_measure_column_is_aggregated_per_dimension(aggregation, want):
    rule = {"dimensions": ["host"], "measure": "ms", "aggregation": aggregation}
    rows = [("a", 1), ("a", 2), ("a", 3), ("b", None), ("c", 2.5)]
    got = alerts.measure(rule, ["host", "ms"], rows)
    assert got[alerts.instance_key({"host": "a"})] == ({"host": "a"}, want)
    assert got[alerts.instance_key({"host": "b"})] == ({"host": "b"}, None)           # no number: no value
    counted = alerts.measure({"dimensions": [], "measure": None, "aggregation": "count"}, ["host", "ms"], [])
    assert counted == {alerts.instance_key({}): ({}, 0)}                               # no rows: 0, one instance


@pytest.mark.parametrize("operator, holds", [(">", [False, False, True]), (">=", [False, True, True]),
                                             ("<", [True, False, False]), ("<=", [True, True, False]),
                                             ("==", [False, True, False]), ("!=", [True, False, True])])
def test_each_operator_compares_with_the_threshold(operator, holds):
    rule = {"operator": operator, "threshold": 2}
    assert [alerts.holds(rule, v) for v in (1, 2, 3)] == holds
    assert alerts.holds(rule, None) is False
