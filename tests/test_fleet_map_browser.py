"""The fleet map in Chromium on the 200-machine demo (issue 17; the session's ``fleet_server``): it
opens grouped with every group's name legible at the fitted zoom, a wheel notch zooms ~12 %, a
failed edge is hoverable and its tooltip names it, "only failures" keeps only failing edges and
their ends, the problems list focuses the map, the table mode sorts and filters, and "by tag" and
an unknown machine name say why. The map is a canvas: window.netatlasMapDebug (ui/mapview.js)
gives the drawn labels with their font size on screen and the edge under a point."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is absent: the browser tests need Debian's chromium package", allow_module_level=True)

from playwright.sync_api import sync_playwright  # noqa: E402

from test_ui_browser import VIEWPORT, TIMEOUT_MS, iso, sign_in, wait_map  # noqa: E402


@pytest.fixture(scope="module")
def fleet_page(fleet_server):
    """One signed-in page for the module (the map of all 200 machines over the last day)."""
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM))
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        errors = []
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
        base = f"http://127.0.0.1:{fleet_server.port}"
        sign_in(page, base, fleet_server.client().query_key.secret)
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)
        page.base, page.span = base, f"from={iso(now - timedelta(days=1))}&to={iso(now)}"
        page.errors = errors
        yield page
        context.close()
        browser.close()
        assert not errors, errors


def open_map(page, extra: str = "") -> None:
    page.goto(f"{page.base}/#/map?group=all&{page.span}{extra}")
    wait_map(page)


def labels(page) -> list[dict]:
    return page.evaluate("() => window.netatlasMapDebug.labels()")


def test_the_fleet_map_opens_grouped_with_every_group_name_legible(fleet_page):
    page = fleet_page
    page.evaluate("() => localStorage.removeItem('netatlas.mapGroupBy')")
    open_map(page)
    assert page.locator("#group-by").input_value() == "tier"          # > 40 machines: grouped by tier / role
    drawn = labels(page)
    groups = [d for d in drawn if d["kind"] in ("container", "outside")]
    machines = [d for d in drawn if d["kind"] == "machine"]
    assert 1 < len(groups) <= 45 and not machines                     # boxes of groups, not 200 machines
    small = [(d["text"], round(d["fontPx"], 1)) for d in groups if d["fontPx"] < 10]
    assert not small, small
    # a wheel notch zooms about 12 %
    box = page.locator("#cy").bounding_box()
    z0 = page.evaluate("() => window.netatlasMapDebug.zoom()")
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.wheel(0, -100)
    page.wait_for_timeout(200)
    z1 = page.evaluate("() => window.netatlasMapDebug.zoom()")
    assert 1.08 <= z1 / z0 <= 1.16, (z0, z1)
    # the group names stay legible zoomed out too (semantic zoom)
    page.mouse.wheel(0, 500)
    page.wait_for_timeout(200)
    assert all(d["fontPx"] >= 10 for d in labels(page) if d["kind"] in ("container", "outside"))
    # a click opens a group into its machines, the other groups staying where they were
    before = {d["id"]: (round(d["x"]), round(d["y"])) for d in labels(page) if d["kind"] in ("container", "outside")}
    page.evaluate("() => { window.netatlasMap.fit(); }")
    target = page.evaluate("""() => { const n = window.netatlasMap.nodes("[kind = 'container']")
        .sort((a, b) => a.data('label').localeCompare(b.data('label')))[0];
        return {id: n.id(), x: n.renderedPosition('x'), y: n.renderedPosition('y')}; }""")
    placed = page.evaluate("() => Object.fromEntries(window.netatlasMap.nodes().filter((n) => n.isChildless()).map((n) => [n.id(), n.position()]))")
    page.mouse.click(box["x"] + target["x"], box["y"] + target["y"])
    page.wait_for_function("(id) => window.netatlasMap.getElementById(id).children().length > 0", arg=target["id"])
    after = page.evaluate("() => Object.fromEntries(window.netatlasMap.nodes().filter((n) => n.isChildless()).map((n) => [n.id(), n.position()]))")
    kept = [k for k in placed if k in after and k != target["id"]]
    assert kept and all(placed[k] == after[k] for k in kept)
    assert before
    # its machines carry their status icons (OS, agent, ...): an SVG drawn in the box
    icons = page.evaluate("(id) => window.netatlasMap.getElementById(id).children().map((n) => n.data('icons'))",
                          target["id"])
    assert icons and all(i and i.startswith("data:image/svg+xml") for i in icons)


def test_a_failed_edge_is_hoverable_and_its_tooltip_names_it(fleet_page):
    page = fleet_page
    open_map(page)
    edges = page.evaluate("""() => window.netatlasMap.edges('[?failing]').map((e) => ({id: e.id(),
        source: e.source().data('label'), target: e.target().data('label')}))""")
    assert edges
    hovered = 0
    for e in edges[:6]:
        p = page.evaluate("(id) => window.netatlasMapDebug.pointOn(id)", e["id"])
        if p is None:
            continue
        box = page.locator("#cy").bounding_box()
        page.mouse.move(box["x"] + p["x"], box["y"] + p["y"])
        page.wait_for_selector(".tooltip:not([hidden])")
        assert page.evaluate("() => document.querySelector('.tooltip').dataset.edge") == e["id"]
        title = page.locator(".tooltip .tt-title").inner_text()
        assert title == f"{e['source']} → {e['target']}"
        # drawn at a fixed width on screen, whatever the bytes
        width = page.evaluate("(id) => window.netatlasMap.getElementById(id).renderedStyle('width')", e["id"])
        assert 3 <= float(width.rstrip("px")) <= 5
        if not hovered:     # a zoom moves the edge from under its tooltip: the tooltip goes
            page.mouse.wheel(0, -100)
            page.wait_for_selector(".tooltip[hidden]", state="attached")
            assert page.evaluate("() => document.querySelector('.tooltip').dataset.edge") is None
            page.evaluate("() => { window.netatlasMap.fit(); }")     # (returning the graph would crash the page)
        hovered += 1
        page.mouse.move(box["x"] + 2, box["y"] + 2)
    assert hovered


def test_only_failures_shows_only_failing_edges_and_their_ends(fleet_page):
    page = fleet_page
    open_map(page, "&only_failures=1")
    shown = page.evaluate("""() => ({edges: window.netatlasMap.edges().map((e) => e.data('failing')),
        lonely: window.netatlasMap.nodes().filter((n) => n.isChildless() && n.degree() === 0).map((n) => n.data('label')),
        boxes: window.netatlasMap.nodes("[kind = 'container']").map((n) => n.data('label')),
        machines: window.netatlasMap.nodes("[kind = 'machine']").length})""")
    assert shown["edges"] and all(shown["edges"]) and not shown["lonely"], shown
    total = shown["machines"] + sum(int(label.split("· ")[1].split(" ")[0]) for label in shown["boxes"])
    assert 0 < total < 200


def test_the_problems_list_focuses_the_map(fleet_page):
    page = fleet_page
    open_map(page)
    page.wait_for_selector("#problems a.problem")
    item = page.locator("#problems a.problem[data-kind='failing'], #problems a.problem[data-kind='used_to_work']").first
    item.click()
    page.wait_for_function("() => window.netatlasMap.elements(':selected').length > 0")
    selected = page.evaluate("() => window.netatlasMap.edges(':selected').map((e) => e.data('failing'))")
    assert selected and all(selected)
    # a new port or malicious item focuses its machine's node
    mal = page.locator("#problems a.problem[data-kind='malicious']")
    if mal.count():
        mal.first.click()
        page.wait_for_function("() => window.netatlasMap.nodes(':selected').length > 0")


def test_table_mode_sorts_and_filters(fleet_page):
    page = fleet_page
    open_map(page)
    page.click("#map-mode")
    page.wait_for_selector("#map-table table tbody tr")
    assert page.locator("#map-table tbody tr").count() == 200
    page.click("#map-table button[data-table='dependencies']")
    page.click("#map-table th[data-column='failed']")
    page.click("#map-table th[data-column='failed']")          # descending
    first = page.locator("#map-table tbody tr").first.locator("td").all_inner_texts()
    assert int(first[5].replace(",", "")) > 0
    page.fill("#map-table-filter", "failing")
    statuses = page.locator("#map-table tbody tr td:nth-child(4)").all_inner_texts()
    assert statuses and all(s == "failing" for s in statuses)
    page.click("#map-mode")
    assert page.locator("#cy").is_visible()


def test_by_tag_without_tags_and_an_unknown_machine_say_why(fleet_page):
    page = fleet_page
    open_map(page)
    page.select_option("#group-by", "tag")
    page.wait_for_selector("#group-notice:not([hidden])")
    assert "No machine of this map has tags" in page.locator("#group-notice").inner_text()
    assert page.evaluate("() => localStorage.getItem('netatlas.mapGroupBy')") == '"tag"'    # remembered
    page.select_option("#group-by", "tier")
    page.fill("#machine-search", "no-such-host-zz")
    page.wait_for_selector("#no-machine")
    assert "no-such-host-zz" in page.locator("#no-machine").inner_text()
