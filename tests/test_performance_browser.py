"""The performance and health views in a real browser: Debian's Chromium driven by Playwright
against a real server holding tests/test_performance.py's four machines (web-01, db-01, app-01
whose heartbeat stopped 20 minutes before NOW, and edge-01 that sends only counters).

The Performance page ranks them as /api/performance does, draws each one's value as a bar and
its series as a sparkline, and opens a machine's details (its record, its charts, its last
heartbeat) on a click; the map marks app-01 as a machine whose heartbeat stopped, and its details
say so. Skipped without /usr/bin/chromium, as tests/test_ui_browser.py is; its screenshots go where
tests/test_ui_browser.py's go (``scripts/screenshots.sh`` runs both files).
"""
from __future__ import annotations

import re
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

from test_performance import HOUR, MACHINES, NOW, SILENT, STOPPED, fill, minutes_of
from test_server import serve_filled
from test_ui_browser import CHROMIUM, browser, shot, shots, signed_in, wait_map, click_canvas  # noqa: F401 (skips without it; browser: its Chromium fixture)


RANGE = urllib.parse.urlencode(HOUR)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_filled(tmp_path_factory, "performance-ui", fill)


@pytest.fixture(scope="module")
def client(server):
    return server.client()


@pytest.fixture(scope="module")
def base(server):
    return f"http://127.0.0.1:{server.port}"


@pytest.fixture
def page(browser, base, client):
    yield from signed_in(browser, base, client.query_key.secret)


def api(client, path: str) -> dict:
    r = client.call("GET", path)
    assert r.status == 200, r.body
    return r.body


def wait_list(page) -> None:
    page.wait_for_function("() => document.querySelector('.perf-table-wrap')?.dataset.ready === '1'")


def rows(page) -> list[dict]:
    return page.evaluate("""() => [...document.querySelectorAll('#perf-list tbody tr')].map((tr) => ({
      computer: tr.dataset.computer, id: tr.dataset.id, value: tr.querySelector('.value').textContent,
      bar: parseFloat(tr.querySelector('.bar > span').style.width),
      points: +tr.querySelector('svg.sparkline').dataset.points,
      path: tr.querySelector('svg.sparkline path').getAttribute('d'),
      heartbeat: tr.lastElementChild.textContent}))""")


def test_the_performance_page_ranks_machines_by_a_counter_and_opens_one(page, base, client, shot):
    page.goto(f"{base}/#/performance?{RANGE}")
    wait_list(page)
    assert page.locator("nav a.active").inner_text() == "Performance"
    expected = api(client, f"/api/performance?counter=cpu&{RANGE}")["machines"]
    got = rows(page)
    assert [r["computer"] for r in got] == [m["computer"] for m in expected] == \
        ["web-01.perf.test", "edge-01.perf.test", "db-01.perf.test", "app-01.perf.test"]
    for r, m in zip(got, expected):
        assert r["value"] == f"{m['value']:.1f} %"
        assert r["bar"] == pytest.approx(m["value"], abs=0.1)              # a percentage's bar: of 100
        assert r["points"] == len(minutes_of(m["computer"])) and r["path"].startswith("M")
        assert ("heartbeat stopped" in r["heartbeat"]) == (m["computer"] in STOPPED)
        assert r["id"] == (MACHINES[m["computer"]][0] or "")
    assert "1 heartbeat stopped" in page.locator("#perf-status").inner_text()

    # another counter: the least available memory first; the counter's choice is kept in the address
    page.select_option("#perf-counter", "memory_available_percent")
    page.wait_for_function("() => location.hash.includes('counter=memory_available_percent')")
    wait_list(page)
    assert [r["computer"] for r in rows(page)] == ["web-01.perf.test", "db-01.perf.test", "app-01.perf.test"]
    assert [r["value"] for r in rows(page)] == ["12.5 %", "25.0 %", "50.0 %"]

    # the top N
    page.select_option("#perf-counter", "network_sent")
    page.fill("#perf-top", "2")
    page.press("#perf-top", "Enter")
    page.wait_for_function("() => location.hash.includes('top=2')")
    wait_list(page)
    top2 = api(client, f"/api/performance?counter=network_sent&top=2&{RANGE}")["machines"]
    assert [r["computer"] for r in rows(page)] == [m["computer"] for m in top2] == \
        ["web-01.perf.test", "edge-01.perf.test"]
    assert [r["bar"] for r in rows(page)] == [100.0, 25.0]              # of the largest: 20,000 and 5,000 B/s

    # a click on a machine: its record, its last heartbeat and its charts, with the endpoint's values
    page.click("#perf-list tbody tr[data-computer='web-01.perf.test']")
    page.wait_for_selector("#perf-details #machine-props dd")
    page.wait_for_selector("#perf-details #machine-perf[data-ready='1']")
    assert "Debian GNU/Linux 12" in page.locator("#perf-details #machine-props").inner_text()
    detail = api(client, f"/api/machines/{MACHINES['web-01.perf.test'][0]}/performance?{RANGE}")
    drawn = page.evaluate("""() => [...document.querySelectorAll('#machine-perf .perf-chart')].map((el) => {
      const o = window.echarts.getInstanceByDom(el).getOption();
      return {id: el.dataset.chart, series: o.series.map((s) => ({name: s.name, values: s.data.map((p) => p[1])}))}; })""")
    assert drawn == [{"id": c["id"], "series": c["series"]} for c in detail["charts"] if c["series"]]
    assert {c["id"] for c in drawn} == {"cpu", "memory", "memory_percent", "disk_free", "disk_io", "network"}
    beat = page.locator("#perf-details #machine-heartbeat").inner_text()
    assert "ago" in beat and "stopped" not in beat
    page.select_option("#perf-counter", "cpu")              # the picture: CPU of all four
    page.fill("#perf-top", "10")
    page.press("#perf-top", "Enter")
    page.wait_for_function("() => !location.hash.includes('top=') && !location.hash.includes('counter=')")
    wait_list(page)
    page.mouse.move(5, 5)
    shot(page, "performance.png")


def test_a_machine_without_a_record_opens_its_charts_and_bad_n_says_why(page, base):
    page.goto(f"{base}/#/performance?{RANGE}")
    wait_list(page)
    page.click("#perf-list tbody tr[data-computer='edge-01.perf.test']")
    page.wait_for_selector("#perf-details #machine-perf[data-ready='1']")
    assert page.get_attribute("#perf-details #machine-perf", "data-charts") == "2"        # cpu, network
    assert "No VMComputer record" in page.locator("#perf-details").inner_text()
    # N out of range: the server's 400 is shown, naming the parameter
    page.fill("#perf-top", "500")
    page.press("#perf-top", "Enter")
    page.wait_for_selector("#perf-status.error")
    assert "BAD_PARAMETER" in page.locator("#perf-status").inner_text()
    assert "top" in page.locator("#perf-status").inner_text()
    page.errors[:] = [e for e in page.errors if "status of 400" not in e]


def ago_is_right(text: str) -> bool:
    """The "N min ago" of app-01's last heartbeat, counted from the browser's clock now: the data
    were written when the module was imported, which on a slow run may be many minutes before."""
    m = re.search(r"\b(\d+) min ago", text)
    last = NOW - timedelta(minutes=SILENT + 1)
    return m is not None and abs(int(m[1]) - (datetime.now(timezone.utc) - last) / timedelta(minutes=1)) <= 1.5


def test_the_map_marks_a_machine_whose_heartbeat_stopped(page, base, shot):
    page.goto(f"{base}/#/map?group=all&{RANGE}")
    wait_map(page)
    nodes = page.evaluate("""() => window.netatlasMap.nodes("[kind = 'machine']").map((n) => ({
      label: n.data('label'), stopped: !!n.data('stopped'), border: n.style('border-style'),
      color: n.style('border-color').replace(/ /g, ''), x: n.renderedPosition('x'), y: n.renderedPosition('y')}))""")
    by_name = {n["label"].split("  (")[0]: n for n in nodes}
    assert set(by_name) == {c for c, v in MACHINES.items() if v[0] is not None}
    for name, n in by_name.items():
        stopped = name in STOPPED
        assert n["stopped"] == stopped and (n["border"] == "dashed") == stopped, n
    assert by_name["app-01.perf.test"]["color"] == "rgb(197,15,31)"
    assert "1 heartbeat stopped" in page.locator(".map-status").inner_text()
    assert "heartbeat stopped" in page.locator(".legend").inner_text()
    # hovering it says so; its details say when its last heartbeat was, and draw its charts
    app = by_name["app-01.perf.test"]
    box = page.locator("#cy").bounding_box()
    page.mouse.move(box["x"] + app["x"], box["y"] + app["y"])
    page.wait_for_selector(".tooltip:not([hidden])")
    tip = page.locator(".tooltip").inner_text()
    assert "app-01.perf.test" in tip and "heartbeat stopped" in tip and ago_is_right(tip), tip
    click_canvas(page, "#cy", app["x"], app["y"])
    page.wait_for_selector("#details #machine-perf[data-ready='1']")
    beat = page.locator("#details #machine-heartbeat").inner_text()
    assert "heartbeat stopped" in beat and ago_is_right(beat), beat
    assert int(page.get_attribute("#details #machine-perf", "data-charts")) >= 5
    shot(page, "map-heartbeat.png")
    # a zoom or pan moves what a tooltip points at: the machine's tooltip goes too
    page.mouse.move(box["x"] + 2, box["y"] + 2)
    page.wait_for_selector(".tooltip[hidden]", state="attached")
    page.mouse.move(box["x"] + app["x"], box["y"] + app["y"])
    page.wait_for_selector(".tooltip:not([hidden])")
    # (zoomed by the program, about a corner: no mouse event that could hide it on its own)
    page.evaluate("""() => { const cy = window.netatlasMap;
        cy.zoom({level: cy.zoom() * 1.5, renderedPosition: {x: 10, y: 10}}); }""")
    page.wait_for_selector(".tooltip[hidden]", state="attached")
