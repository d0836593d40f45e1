"""Workbooks in Chromium on the 200-machine demo (the session's read-only ``fleet_server``): the
built-in Service Map workbook's tiles all run and return rows; a workbook made in the UI
round-trips through its JSON (export, import: the same parameters, tiles and results); an Azure
Monitor workbook's JSON written here imports with its queries runnable. Nothing is stored on the
fleet's workspace (drafts live in the tab); saving is checked on a small workspace of its own.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import netatlas
import netatlas.demo
from netatlas import webmap

from screenshots import screenshots_dir
from test_server import serve_filled
from workbook_fixtures import AZURE_QUERY_TILES, AZURE_UNSUPPORTED, MULTI_MACHINES, azure_workbook, multi_workbook

from test_ui_browser import browser  # noqa: F401,E402 (skips the module without Chromium; browser: its fixture)

VIEWPORT = {"width": 1500, "height": 950}
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def fleet(fleet_server):
    return fleet_server.client(), f"http://127.0.0.1:{fleet_server.port}"


def open_page(browser, base: str, key: str):
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    pg.errors = []
    pg.on("pageerror", lambda e: pg.errors.append(f"page error: {e}"))
    pg.on("console", lambda m: pg.errors.append(f"console: {m.text}") if m.type == "error" else None)
    pg.goto(base + "/")
    pg.fill("#key", key)
    pg.click("button[type=submit]")
    pg.wait_for_selector("header.topbar nav")
    return context, pg


@pytest.fixture(scope="module")
def page(browser, fleet):
    client, base = fleet
    context, pg = open_page(browser, base, client.query_key.secret)
    yield pg
    context.close()
    assert not pg.errors, pg.errors


@pytest.fixture(scope="session")
def shots(tmp_path_factory) -> Path:
    return screenshots_dir(tmp_path_factory)


def tiles_settled(pg) -> list[dict]:
    """Wait until no tile is running; each tile's id, type, state, rows and text."""
    pg.wait_for_function("() => document.querySelectorAll('#wb-tiles section.wb-tile').length > 0 && "
                         "![...document.querySelectorAll('#wb-tiles section.wb-tile')].some(t => t.dataset.state === 'running')",
                         timeout=120_000)
    return pg.eval_on_selector_all("#wb-tiles section.wb-tile", """els => els.map(t => ({
        id: t.dataset.tile, type: t.dataset.type, state: t.dataset.state, rows: t.dataset.rows === undefined ? null : +t.dataset.rows,
        query: t.title, text: t.querySelector('.wb-tile-body').innerText, charts: t.querySelectorAll('canvas').length}))""")


# ---------------------------------------------------------------- the Service Map workbook

def test_service_map_workbook_tiles_all_return_rows(page, fleet, shots):
    client, base = fleet
    page.click("nav a[data-page=workbooks]")
    page.click("a.wb-entry[data-workbook=service-map]")
    tiles = tiles_settled(page)
    queries = [t for t in tiles if t["type"] == "query"]
    assert len(queries) == len(webmap.samples())
    failed = [(t["id"], t["state"], t["text"][:200]) for t in queries if t["state"] != "done" or not t["rows"]]
    assert not failed, failed
    assert sum(t["charts"] for t in queries) >= 4       # the timecharts and the world map are drawn
    # the map tile: the machine's own dependency map, in place
    frame = page.frame_locator("section.wb-tile[data-type=map] iframe")
    frame.locator("#cy canvas").first.wait_for()
    assert page.get_attribute("section.wb-tile[data-type=map]", "data-machine") == "acme-demo"
    page.screenshot(path=str(shots / "workbook-service-map.png"))
    # a parameter's value goes into the address and the tiles that name it
    page.fill("label.wb-param input[data-param=Computer]", "admdemo-appsvr")
    page.press("label.wb-param input[data-param=Computer]", "Enter")
    page.wait_for_function("() => location.hash.includes('Computer=admdemo-appsvr')")
    tiles = tiles_settled(page)
    trend = next(t for t in tiles if "Link status trends" in t["text"] or 'Computer == "admdemo-appsvr"' in (t["query"] or ""))
    assert 'Computer == "admdemo-appsvr"' in trend["query"] and trend["rows"]
    # the address opens the same workbook with the same values in a fresh context, after sign-in
    url = page.url
    context, fresh = open_page(page.context.browser, base, client.query_key.secret)
    try:
        fresh.goto(url)
        fresh.wait_for_selector("#wb-tiles")
        assert fresh.input_value("label.wb-param input[data-param=Computer]") == "admdemo-appsvr"
        again = tiles_settled(fresh)
        assert [t["query"] for t in again] == [t["query"] for t in tiles]
        assert not fresh.errors, fresh.errors
    finally:
        context.close()
    # Back returns to the values before
    page.go_back()
    page.wait_for_function("() => !location.hash.includes('Computer=')")
    page.wait_for_function("() => document.querySelector('label.wb-param input[data-param=Computer]')?.value === 'acme-demo'")


# ---------------------------------------------------------------- a workbook made in the UI, through JSON

FIELDS = {"Name": "name", "Type": "type", "Default value": "value", "Title": "title", "Visualization": "visualization",
          "Query": "query", "Machine": "machine"}


def edit_field(pg, block: str, index: int, label: str, value: str, select: bool = False) -> None:
    field = pg.locator(f"{block}[data-index='{index}'] [data-field={FIELDS[label]}]")
    if select:
        field.select_option(value)
    else:
        field.fill(value)
    field.dispatch_event("change")


def test_workbook_made_in_the_ui_round_trips_through_json(page, tmp_path):
    page.goto(page.url.split("#")[0] + "#/workbooks")
    page.click("#wb-new")
    page.wait_for_selector("#wb-edit")
    page.click("#wb-edit")
    page.fill("#wb-edit-title", "Fleet review")
    page.dispatch_event("#wb-edit-title", "change")
    edit_field(page, ".wb-edit-param", 0, "Default value", "P7D")
    page.click("#wb-add-param")
    edit_field(page, ".wb-edit-param", 1, "Name", "Computer")
    edit_field(page, ".wb-edit-param", 1, "Type", "machine", select=True)
    edit_field(page, ".wb-edit-param", 1, "Default value", "acme-demo")
    page.click("#wb-add-param")
    edit_field(page, ".wb-edit-param", 2, "Name", "Group")
    edit_field(page, ".wb-edit-param", 2, "Type", "group", select=True)
    edit_field(page, ".wb-edit-param", 2, "Default value", "all")
    tiles = [
        ("Links of {Computer} by process", "table",
         'VMConnection | where Computer == "{Computer}" | summarize Links = sum(LinksEstablished) by ProcessName | order by Links desc, ProcessName asc'),
        ("Records by direction", "tiles", "VMConnection | summarize Records = count() by Direction | order by Direction asc"),
        ("Bytes per hour", "timechart", "VMConnection | summarize Bytes = sum(BytesSent) by bin(TimeGenerated, 1h)"),
        ("Failed links by OS", "piechart",
         "VMConnection | where Computer in ({Group:machines}) | join kind=inner (VMComputer | summarize arg_max(TimeGenerated, OperatingSystemFullName) by Computer) on Computer "
         "| summarize Failed = sum(LinksFailed) by OperatingSystemFullName"),
    ]
    for i, (title, vis, query) in enumerate(tiles):
        page.click("#wb-add-tile")
        edit_field(page, ".wb-edit-tile", i, "Title", title)
        edit_field(page, ".wb-edit-tile", i, "Visualization", vis, select=True)
        edit_field(page, ".wb-edit-tile", i, "Query", query)
    page.click("#wb-add-tile")
    edit_field(page, ".wb-edit-tile", 4, "Type", "map", select=True)
    edit_field(page, ".wb-edit-tile", 4, "Title", "Map of {Computer}")
    edit_field(page, ".wb-edit-tile", 4, "Machine", "{Computer}")
    page.click("#wb-edit")          # Done: the tiles run
    made = tiles_settled(page)
    assert [t["state"] for t in made] == ["done"] * 5, [(t["id"], t["state"], t["text"][:300]) for t in made]
    assert all(t["rows"] for t in made if t["type"] == "query"), made

    with page.expect_download() as d:
        page.click("#wb-export")
    exported_path = tmp_path / "fleet-review.json"
    d.value.save_as(exported_path)
    exported = json.loads(exported_path.read_text())
    assert exported["format"] == "netatlas-workbook" and exported["version"] == 1 and exported["title"] == "Fleet review"
    assert [p["name"] for p in exported["parameters"]] == ["TimeRange", "Computer", "Group"]
    assert [t["type"] for t in exported["tiles"]] == ["query"] * 4 + ["map"]

    page.goto(page.url.split("#")[0] + "#/workbooks")
    page.set_input_files("#wb-import-file", str(exported_path))
    page.wait_for_function("() => location.hash.startsWith('#/workbooks/draft')")
    imported = tiles_settled(page)
    draft = json.loads(page.evaluate("() => sessionStorage.getItem('netatlas.workbookDraft')"))
    assert draft["parameters"] == exported["parameters"] and draft["tiles"] == exported["tiles"]
    assert page.inner_text("#wb-title").startswith("Fleet review")
    strip = lambda ts: [(t["id"], t["type"], t["state"], t["rows"], t["query"], t["text"] if t["type"] != "map" else "")
                        for t in ts]
    assert strip(imported) == strip(made)

    # a query key may not save: said in place, and the tab stays signed in
    page.click("#wb-save")
    page.wait_for_selector("#wb-status .notice.error")
    assert "admin key" in page.inner_text("#wb-status")
    assert page.locator("header.topbar nav").is_visible()
    page.errors[:] = [e for e in page.errors if "status of 403" not in e]     # that refusal, as meant


# ---------------------------------------------------------------- an Azure Monitor workbook

def test_azure_workbook_imports_with_its_queries_runnable(page, tmp_path, shots):
    path = tmp_path / "Connections review.json"
    path.write_text(json.dumps(azure_workbook()))
    page.goto(page.url.split("#")[0] + "#/workbooks")
    page.set_input_files("#wb-import-file", str(path))
    page.wait_for_function("() => location.hash.startsWith('#/workbooks/draft')")
    tiles = {t["id"]: t for t in tiles_settled(page)}
    assert page.inner_text("#wb-title").startswith("Connections review")
    for tid in AZURE_QUERY_TILES:
        assert tiles[tid]["state"] == "done" and tiles[tid]["rows"], (tid, tiles[tid])
    assert tiles["bytes-over-time"]["charts"] and tiles["ports-pie"]["charts"] and tiles["remote-bar"]["charts"]
    assert page.locator("section[data-tile=failures-tiles] .wb-number").count() == 6
    for tid in AZURE_UNSUPPORTED:
        assert tiles[tid]["state"] == "unsupported" and "not supported" in tiles[tid]["text"], tiles[tid]
    assert "The machine acme-demo over Last 2 days" in tiles["intro"]["text"]
    assert page.locator("label.wb-param select[data-param=Direction] option").count() == 2
    page.screenshot(path=str(shots / "workbook-azure.png"))
    page.wait_for_selector("label.wb-param select[data-param=Process][data-state=done]")     # choices from its query
    assert page.locator("label.wb-param select[data-param=Process] option").count() > 2
    assert page.locator("label.wb-param select[data-param=Process] option[value='java']").count() == 0
    page.fill("label.wb-param input[data-param=Computer]", "admdemo-appsvr")      # its query names {Computer}
    page.press("label.wb-param input[data-param=Computer]", "Enter")
    page.wait_for_selector("label.wb-param select[data-param=Process][data-state=done] option[value='java']", state="attached")
    assert "not supported" in page.inner_text("#wb-params")      # the subscription picker, in place


# ---------------------------------------------------------------- a multi-select, conditional tiles

def test_multi_select_and_conditional_tiles(page, tmp_path):
    path = tmp_path / "multi.json"
    path.write_text(json.dumps(multi_workbook()))
    errors_before = len(page.errors)
    ran = []            # the tiles the page asked the server to run
    def on_request(req):
        if req.url.endswith("/api/workbooks/run") and req.post_data and '"tile"' in req.post_data:
            ran.append(json.loads(req.post_data)["tile"])
    page.on("request", on_request)
    try:
        page.goto(page.url.split("#")[0] + "#/workbooks")
        page.set_input_files("#wb-import-file", str(path))
        page.wait_for_function("() => location.hash.startsWith('#/workbooks/draft')")
        tiles = {t["id"]: t for t in tiles_settled(page)}
        # nothing selected: the tile says the parameter is not set; View=summary: detail hidden, not run
        assert tiles["per-machine"]["state"] == "error" and "PARAMETER_MISSING" in tiles["per-machine"]["text"]
        assert tiles["summary"]["state"] == "done" and tiles["summary"]["rows"] == 1
        assert tiles["detail"]["state"] == "hidden" and not page.is_visible("section[data-tile=detail]")
        assert "detail" not in ran
        select = "label.wb-param select[multiple][data-param=Computers]"
        page.wait_for_selector(f"{select}[data-state=done]")
        assert page.eval_on_selector_all(f"{select} option", "os => os.map(o => o.value)") == list(MULTI_MACHINES)
        page.select_option(select, list(MULTI_MACHINES[:2]))
        page.wait_for_function("() => location.hash.includes('Computers=')")
        tiles = {t["id"]: t for t in tiles_settled(page)}
        per = tiles["per-machine"]
        assert per["state"] == "done" and per["rows"] == 2, per
        assert "in ('acme-demo','admdemo-appsvr')" in per["query"]
        assert all(m in per["text"] for m in MULTI_MACHINES[:2]) and MULTI_MACHINES[2] not in per["text"]
        assert page.inner_text("section[data-tile=per-machine] .wb-tile-title") == "Records of acme-demo, admdemo-appsvr"
        # View=detail: the detail tile appears and runs, the summary goes
        page.select_option("label.wb-param select[data-param=View]", "detail")
        page.wait_for_function("() => location.hash.includes('View=detail')")
        tiles = {t["id"]: t for t in tiles_settled(page)}
        assert tiles["detail"]["state"] == "done" and tiles["detail"]["rows"] == 5 and page.is_visible("section[data-tile=detail]")
        assert tiles["summary"]["state"] == "hidden" and not page.is_visible("section[data-tile=summary]")
        assert "detail" in ran and ran.count("summary") == 2         # before and after the machines; not after View
        # the selection is in the address: a reload keeps both machines selected
        page.reload()
        page.wait_for_selector(f"{select}[data-state=done]")
        assert page.eval_on_selector_all(f"{select} option:checked", "os => os.map(o => o.value)") == list(MULTI_MACHINES[:2])
        assert {t["id"]: t["state"] for t in tiles_settled(page)} == {"per-machine": "done", "summary": "hidden", "detail": "done"}
        # the editor: "Multiple" makes View a multi-select (its value a list; the condition still holds)
        page.click("#wb-edit")
        page.check(".wb-edit-param[data-index='2'] input.wb-param-multi")
        page.click("#wb-edit")
        page.wait_for_selector("label.wb-param select[multiple][data-param=View]")
        draft = json.loads(page.evaluate("() => sessionStorage.getItem('netatlas.workbookDraft')"))
        view = draft["parameters"][2]
        assert (view["multi"], view["quote"], view["delimiter"], view["value"]) == (True, "'", ",", '["summary"]')
        assert {t["id"]: t["state"] for t in tiles_settled(page)}["detail"] == "done"
        assert "View=%5B%22detail%22%5D" in page.url         # the value in the address became a list too
    finally:
        page.remove_listener("request", on_request)
    # the tile that said PARAMETER_MISSING was a 400, as meant
    page.errors[errors_before:] = [e for e in page.errors[errors_before:] if "status of 400" not in e]


# ---------------------------------------------------------------- saving (a small workspace of its own)

@pytest.fixture(scope="module")
def small(tmp_path_factory):
    yield from serve_filled(tmp_path_factory, "wbui", lambda ws: netatlas.demo.generate(
        ws, machines=netatlas.demo.MIN_MACHINES, days=2, seed=1))


def test_save_with_an_admin_key_and_share(browser, small):
    client = small.client()
    base = f"http://127.0.0.1:{small.port}"
    context, pg = open_page(browser, base, client.admin_key.secret)
    try:
        pg.goto(base + "/#/workbooks/service-map")
        tiles_settled(pg)
        pg.click("#wb-save-copy")
        pg.wait_for_function("() => /#\\/workbooks\\/service-map-copy-/.test(location.hash)")
        wid = pg.evaluate("() => location.hash.split('/')[2].split('?')[0]")
        assert client.call("GET", f"/api/workbooks/{wid}").body["title"] == "Service Map (copy)"
        tiles_settled(pg)
        pg.click("#wb-edit")
        pg.fill("#wb-edit-title", "Service Map, mine")
        pg.dispatch_event("#wb-edit-title", "change")
        pg.click("#wb-edit")
        pg.click("#wb-save")
        pg.wait_for_function("() => !document.querySelector('#wb-title').textContent.includes('changed')")
        assert client.call("GET", f"/api/workbooks/{wid}").body["title"] == "Service Map, mine"
        assert not pg.errors, pg.errors
    finally:
        context.close()
