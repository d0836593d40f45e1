"""Shareable, navigable state in Chromium (issue 17): Back and Forward step through the user's own
steps, a copied address opens the same view in a fresh browser after sign-in, a new tab of a
signed-in browser is signed in (the session cookie), the logs query and range survive a reload,
a share link opens a read-only view; the logs page's units, series and schema browser, and the
network chart's stable colours, layout and labels. On the 200-machine demo (``fleet_server``),
except the share link, which writes DIR/shares.json: a small workspace of its own."""
from __future__ import annotations

import json
import re
from urllib.parse import parse_qs, urlsplit

import pytest

from test_server import Server
from test_ui_browser import TIMEOUT_MS, VIEWPORT, browser  # noqa: F401 (skips the module without Chromium; browser: its fixture)



@pytest.fixture(scope="module")
def fleet(fleet_server):
    return fleet_server.client()


@pytest.fixture(scope="module")
def base(fleet_server):
    return f"http://127.0.0.1:{fleet_server.port}"


@pytest.fixture(scope="module")
def context(browser, base, fleet):
    """One signed-in browser context for the module (its pages share the session cookie)."""
    ctx = browser.new_context(viewport=VIEWPORT)
    pg = new_page(ctx)
    sign_in(pg, base, fleet.query_key.secret)
    ctx.first = pg
    yield ctx
    ctx.close()


def sign_in(pg, base: str, key: str) -> None:
    """Through the login form, on the logs page (the default page, the whole fleet's map, would
    keep the browser busy laying out 200 machines)."""
    pg.goto(base + "/#/logs")
    sign_in_here(pg, key)


def new_page(ctx):
    pg = ctx.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(f"page error: {e}"))
    pg.on("console", lambda m: pg.errors.append(f"console: {m.text}") if m.type == "error"
          and "status of 400" not in m.text else None)
    return pg


@pytest.fixture
def page(context):
    pg = context.first
    pg.errors.clear()
    yield pg
    assert not pg.errors, pg.errors


def hash_params(url: str) -> dict:
    fragment = urlsplit(url).fragment
    return {k: v[0] for k, v in parse_qs(fragment.split("?", 1)[1] if "?" in fragment else "").items()}


def machines(client, n: int) -> list[dict]:
    found = client.call("GET", "/api/machines").body["machines"]
    return sorted(found, key=lambda m: m["computer"])[:n]


def map_of(page, machine_id: str) -> None:
    page.wait_for_function("id => new URLSearchParams(location.hash.split('?')[1] || '').get('machine') === id", arg=machine_id)
    page.wait_for_selector("#cy[data-ready='1']")
    page.wait_for_function("id => window.netatlasMap && window.netatlasMap.getElementById(id).nonempty()", arg=machine_id)


# ---------------------------------------------------------------- history, copied addresses, tabs

def test_back_returns_to_the_previous_machine_and_forward_to_the_next(page, base, fleet):
    a, b = machines(fleet, 2)
    page.goto(f"{base}/#/map?machine={a['id']}&range=1h")
    map_of(page, a["id"])
    page.fill("#machine-search", b["id"])
    page.press("#machine-search", "Enter")
    map_of(page, b["id"])
    page.go_back()
    map_of(page, a["id"])
    assert page.input_value("#machine-search") == a["id"]
    assert page.url.startswith(base)                  # still in the app
    page.go_forward()
    map_of(page, b["id"])
    # the selected machine is in the address and comes back with it
    page.evaluate("id => { window.netatlasMap.getElementById(id).emit('tap'); }", b["id"])
    page.wait_for_function("id => location.hash.includes('sel=' + encodeURIComponent(id))", arg=b["id"])
    page.reload()
    map_of(page, b["id"])
    page.wait_for_function("name => (document.querySelector('#details h2') || {}).textContent === name", arg=b["computer"])


def test_a_copied_address_opens_the_same_view_in_a_fresh_browser_after_sign_in(page, browser, base, fleet):
    a = machines(fleet, 3)[2]
    page.goto(f"{base}/#/map?machine={a['id']}&range=6h&only_failures=1")
    map_of(page, a["id"])
    copied = page.url
    fresh = browser.new_context(viewport=VIEWPORT)
    try:
        other = new_page(fresh)
        other.goto(copied)
        other.wait_for_selector("#key")                     # a fresh browser is not signed in
        sign_in_here(other, fleet.query_key.secret)
        map_of(other, a["id"])
        assert hash_params(other.url) == hash_params(copied)
        assert other.input_value("#machine-search") == a["id"]
        assert other.is_checked("#only-failures")
        assert other.locator(".timerange select.preset").input_value() == "6h"
        assert not other.errors, other.errors
    finally:
        fresh.close()


def sign_in_here(pg, key: str) -> None:
    pg.fill("#key", key)
    pg.click("button[type=submit]")
    pg.wait_for_selector("header.topbar nav")


def test_a_new_tab_of_a_signed_in_browser_is_signed_in(context, base):
    tab = new_page(context)
    try:
        tab.goto(f"{base}/#/usage")
        tab.wait_for_selector("header.topbar nav")
        assert tab.locator("#key").count() == 0
        cookie = next(c for c in context.cookies() if c["name"] == "netatlas_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert tab.evaluate("() => document.cookie") == ""     # HttpOnly: no script reads it
        assert not tab.errors, tab.errors
    finally:
        tab.close()


# ---------------------------------------------------------------- the logs page

BYTES_QUERY = "VMConnection | summarize BytesSent = sum(BytesSent) by Computer | top 5 by BytesSent"
MANY_SERIES = "VMConnection | summarize sum(BytesSent) by Computer, bin(TimeGenerated, 1h) | render timechart"


def run_query(page, text: str, span: str) -> None:
    page.select_option("#timespan", span)
    page.evaluate("q => window.netatlasLogs.editor.setValue(q)", text)
    page.click("#run")


def test_the_logs_query_and_range_survive_a_reload_and_show_units(page, base):
    page.goto(f"{base}/#/logs")
    page.wait_for_selector(".CodeMirror")
    run_query(page, BYTES_QUERY, "P2D")
    page.wait_for_selector("#result-grid tbody tr")
    assert hash_params(page.url) == {"q": BYTES_QUERY, "timespan": "P2D"}
    page.reload()
    page.wait_for_selector("#result-grid tbody tr")
    assert page.evaluate("() => window.netatlasLogs.editor.getValue()") == BYTES_QUERY
    assert page.input_value("#timespan") == "P2D"
    cells = page.locator("#result-grid tbody tr td:nth-child(2)").all_inner_texts()
    assert len(cells) == 5 and all(re.fullmatch(r"[\d.]+ (KB|MB|GB|TB)", c) for c in cells), cells
    raw = page.locator("#result-grid tbody tr td:nth-child(2)").first.get_attribute("title")
    assert raw.isdigit()                                   # the exact count in the title
    assert "bytes" in page.locator("#result-grid th[data-column='BytesSent']").inner_text()


def test_a_query_of_several_statements_shows_a_picker_of_its_tables(page, base):
    page.goto(f"{base}/#/logs")
    page.wait_for_selector(".CodeMirror")
    run_query(page, "print a = 1; print b = 2, c = 'x'", "P1D")
    page.wait_for_selector("#result-table")
    assert page.locator("#result-table option").all_inner_texts() == ["PrimaryResult (1 rows)", "Table_1 (1 rows)"]
    assert page.locator("#result-grid th").all_inner_texts()[0].startswith("a")
    assert "2 tables" in page.locator(".stats").inner_text()
    page.select_option("#result-table", "1")
    page.wait_for_selector("#result-grid th[data-column='c']")
    assert page.locator("#result-grid tbody tr td").all_inner_texts() == ["2", "x"]
    assert page.locator(".tabs button.tab[data-tab='table']").count() == 1      # the Table tab is still there
    run_query(page, "print a = 1", "P1D")                  # one table: no picker
    page.wait_for_selector("#result-grid th[data-column='a']")
    assert page.locator("#result-table").count() == 0


def test_a_chart_says_how_many_series_it_shows_and_lets_the_user_pick(page, base):
    page.goto(f"{base}/#/logs")
    page.wait_for_selector(".CodeMirror")
    run_query(page, MANY_SERIES, "P1D")
    page.wait_for_selector("#chart[data-ready='1']")
    note = page.locator("#series-note").inner_text()
    m = re.match(r"25 of (\d+) series shown", note)
    assert m and int(m.group(1)) > 100, note
    axis = page.evaluate("() => window.netatlasLogs.chart.chart.getOption().yAxis[0].name")
    assert axis == "bytes"
    page.fill("#series-count", "5")
    page.press("#series-count", "Enter")
    page.wait_for_function("() => document.querySelector('#series-note')?.textContent.startsWith('5 of')")
    assert page.evaluate("() => window.netatlasLogs.chart.chart.getOption().series.length") == 5
    # pick two by name
    page.click("#series-choose")
    page.click("#series-picker button:has-text('None')")
    boxes = page.locator("#series-picker input[type=checkbox]")
    wanted = [boxes.nth(i).get_attribute("data-series") for i in (7, 9)]
    boxes.nth(7).check()
    boxes.nth(9).check()
    page.click("#series-apply")
    page.wait_for_function("() => document.querySelector('#series-note')?.textContent.startsWith('2 of')")
    names = page.evaluate("() => window.netatlasLogs.chart.chart.getOption().series.map((s) => s.name)")
    assert sorted(names) == sorted(wanted)
    # the choice is in the address: a reload (or a copied address) draws the same two
    assert sorted(json.loads(hash_params(page.url)["pick"])) == sorted(wanted)
    assert hash_params(page.url)["series"] == "5"
    page.reload()
    page.wait_for_selector("#chart[data-ready='1']")
    page.wait_for_function("() => document.querySelector('#series-note')?.textContent.startsWith('2 of')")
    names = page.evaluate("() => window.netatlasLogs.chart.chart.getOption().series.map((s) => s.name)")
    assert sorted(names) == sorted(wanted)
    # a new run draws the largest again (of the count chosen)
    page.click("#run")
    page.wait_for_function("() => document.querySelector('#series-note')?.textContent.startsWith('5 of')")
    assert "pick" not in hash_params(page.url)
    # a bar chart of more categories than it draws says so too
    run_query(page, "range x from 1 to 300 step 1 | project Name = strcat('n', x), Bytes = x * 1000 | render columnchart", "")
    page.wait_for_selector("#chart-cut")
    assert page.locator("#chart-cut").inner_text() == "200 of 300 categories shown"


def test_an_error_is_shown_once_and_the_schema_browser_inserts_names(page, base):
    page.goto(f"{base}/#/logs")
    page.wait_for_selector(".CodeMirror")
    run_query(page, 'VMConnection\n| where Computr == "x"', "P1D")
    page.wait_for_selector(".kql-error-widget")
    assert page.locator("#query-error").is_hidden()
    assert page.locator("text=KQL_UNKNOWN_COLUMN").count() == 1
    page.evaluate("() => window.netatlasLogs.editor.setValue('VMConnection | where ')")
    page.evaluate("() => window.netatlasLogs.editor.setCursor({line: 0, ch: 21})")
    page.click(".side-tabs .tab[data-tab='schema']")
    page.fill("#schema-filter", "LinksFailed")
    page.click(".schema-table[data-table='VMConnection'] .schema-column[data-column='LinksFailed']")
    assert page.evaluate("() => window.netatlasLogs.editor.getValue()") == "VMConnection | where LinksFailed"
    page.fill("#schema-filter", "")
    assert page.locator(".schema-table").count() > 10


# ---------------------------------------------------------------- the network chart

def network_nodes(page) -> dict:
    return page.evaluate("""() => { const chart = window.netatlasNetwork, o = chart.getOption().series[0];
      const data = chart.getModel().getSeriesByIndex(0).getData(), out = {};
      for (let i = 0; i < data.count(); i++) { const n = data.getRawDataItem(i);
        out[n.id] = {subnet: n.subnet, colour: o.categories[n.category].itemStyle.color, at: data.getItemLayout(i),
                     label: !!(n.label && n.label.show), hub: n.hub, selected: n.selected}; }
      return out; }""")


def test_the_network_chart_keeps_colours_and_places_and_labels_hubs_and_the_selection(page, base, fleet):
    page.goto(f"{base}/#/network?range=24h")
    page.wait_for_selector("#network[data-ready='1']")
    page.wait_for_timeout(300)
    first = network_nodes(page)
    assert len(first) > 60
    by_subnet = {}
    for n in first.values():
        by_subnet.setdefault(n["subnet"], set()).add(n["colour"])
    assert all(len(c) == 1 for c in by_subnet.values())
    colours = {s: next(iter(c)) for s, c in by_subnet.items()}
    assert len(set(colours.values())) == len(colours) > 10          # a colour of its own for each subnet
    assert sum(n["hub"] and n["label"] for n in first.values()) >= 10   # the hubs are labelled
    # a filter: the machines left keep their places and their subnets' colours
    page.click("label.check:has-text('Only connections with failures') input")
    page.wait_for_function(f"() => +document.querySelector('#network')?.dataset.nodes < {len(first)}")
    page.wait_for_timeout(300)
    after = network_nodes(page)
    assert after and all(after[i]["colour"] == colours[after[i]["subnet"]] for i in after)
    moved = [i for i in after if max(abs(a - b) for a, b in zip(after[i]["at"], first[i]["at"])) > 1]
    assert not moved, moved[:5]
    # the selection, from the address: ringed and labelled
    chosen = next(iter(after))
    page.goto(f"{base}/#/network?range=24h&only_failing=1&sel={chosen}")
    page.wait_for_function(f"() => document.querySelector('#network')?.dataset.selected === {chosen!r}")
    page.wait_for_selector("#net-details h2")
    picked = network_nodes(page)[chosen]
    assert picked["selected"] and picked["label"]


# ---------------------------------------------------------------- a share link (a small workspace of its own)

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("share-ui") / "data").start()
    yield s
    s.kill()


def test_a_share_link_opens_a_read_only_view(browser, small):
    client = small.client()
    base = f"http://127.0.0.1:{small.port}"
    ctx = browser.new_context(viewport=VIEWPORT)
    try:
        admin = new_page(ctx)
        sign_in(admin, base, client.admin_key.secret)
        admin.goto(f"{base}/#/logs?q=print%20answer%20%3D%2042&timespan=query")
        admin.wait_for_selector("#result-grid tbody tr")
        admin.click("#share")
        admin.select_option("#share-expiry", "1h")
        admin.fill("#share-label", "for the auditors")
        admin.click("#share-create")
        link = admin.input_value("#share-url")
        assert "?share=s_" in link and link.endswith("#/logs?q=print+answer+%3D+42&timespan=query")
        admin.wait_for_selector(".share-table tr:has-text('for the auditors')")
        assert not admin.errors, admin.errors
    finally:
        ctx.close()
    viewer_ctx = browser.new_context(viewport=VIEWPORT)
    try:
        viewer = new_page(viewer_ctx)
        viewer.goto(link)
        viewer.wait_for_selector("#read-only")                # no sign-in: the link is the credential
        viewer.wait_for_selector("#result-grid tbody tr")
        assert viewer.locator("#result-grid tbody td").first.inner_text() == "42"
        assert viewer.locator("#signout").count() == 0 and viewer.locator("#share").count() == 0
        status = viewer.evaluate("""async () => (await fetch('/api/retention/apply', {method: 'POST',
          headers: {'X-Netatlas-Share': new URLSearchParams(location.search).get('share'), 'X-Netatlas-CSRF': '1'}})).status""")
        assert status == 403                                    # read only
        viewer.click("nav a[data-page='usage']")                 # another page of the same link: no Set buttons
        viewer.wait_for_selector("#usage-retention tbody tr")
        assert viewer.locator("#usage-retention button").count() == 0
        assert "share=" in viewer.url
        viewer.errors[:] = [e for e in viewer.errors if "status of 403" not in e]
        # revoked: the link opens nothing
        share_id = client.admin("GET", "/api/shares").body["shares"][0]["id"]
        assert client.admin("DELETE", f"/api/shares/{share_id}").status == 200
        viewer.reload()
        viewer.wait_for_selector("#key")
        assert "expired or was revoked" in viewer.locator(".login-error").inner_text()
        viewer.errors[:] = [e for e in viewer.errors if "status of 401" not in e]
        assert not viewer.errors, viewer.errors
    finally:
        viewer_ctx.close()


def test_the_performance_page_opens_the_machine_its_address_names(page, base, fleet):
    top = fleet.call("GET", "/api/performance?counter=cpu&top=3").body["machines"]
    assert top
    name = top[-1]["computer"]
    page.goto(f"{base}/#/performance?range=30m&sel={name}")
    page.wait_for_function("name => (document.querySelector('#perf-details h2') || {}).textContent === name", arg=name)
    assert page.locator("#perf-list tbody tr.selected").get_attribute("data-computer") == name
