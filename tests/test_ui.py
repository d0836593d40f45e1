"""The web UI's server side (netatlas/server/ui.py) and its vendored files, without a browser.

A real server on a small workspace: the UI's files with their content types and cache headers,
the API keeping its routes and error shape beside them, and POST /api/export?format=parquet
(read back with DuckDB). The vendored libraries are checked against vendor/VENDOR.json.
"""
from __future__ import annotations

import http.client
import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest


from test_server import assert_error_shape, request, serve_filled

ROOT = Path(__file__).resolve().parent.parent
UI = ROOT / "netatlas" / "ui"
VENDOR = UI / "vendor"
T0 = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=1)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_filled(tmp_path_factory, "ui-files", lambda ws: ws.ingest("VMConnection", [
        {"TimeGenerated": (T0 + timedelta(minutes=i)).isoformat(), "Computer": f"web-{i % 2}",
         "ProcessName": "nginx", "BytesSent": 100 * i, "LinksFailed": i % 3, "Direction": "inbound"}
        for i in range(10)]))


@pytest.fixture(scope="module")
def client(server):
    return server.client()


# ---------------------------------------------------------------- the files

def test_the_page_and_its_modules_are_served_with_their_types(server):
    page = request(server.port, "GET", "/")
    assert page.status == 200 and page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["cache-control"] == "no-cache" and 'src="/ui/app.js"' in page.body
    for src in re.findall(r'(?:src|href)="(/ui/[^"]+)"', page.body):
        r = request(server.port, "GET", src)
        assert r.status == 200, src
        kind = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}[Path(src).suffix]
        assert r.headers["content-type"] == kind, src
        assert r.headers["cache-control"] == ("public, max-age=86400" if "/vendor/" in src else "no-cache"), src
    shapes = request(server.port, "GET", "/ui/vendor/world-atlas/countries-110m.json")
    assert shapes.status == 200 and shapes.headers["content-type"] == "application/json"
    assert shapes.body["type"] == "Topology"


def test_an_unchanged_file_is_not_sent_again(server):
    first = request(server.port, "GET", "/ui/app.js")
    again = request(server.port, "GET", "/ui/app.js", headers={"If-None-Match": first.headers["etag"]})
    assert again.status == 304 and again.body == ""


def test_a_missing_file_is_a_404_in_the_one_error_shape_and_the_api_keeps_its_routes(server, client):
    assert_error_shape(request(server.port, "GET", "/ui/nothing-here.js"), 404, "NOT_FOUND")
    assert request(server.port, "GET", "/ui/../pyproject.toml").status == 404
    assert request(server.port, "GET", "/api/nothing").status == 404
    assert client.query("VMConnection | count").body["tables"][0]["rows"] == [[10]]
    assert request(server.port, "POST", "/").status == 405


def test_every_module_the_page_imports_exists():
    for module in UI.glob("*.js"):
        for name in re.findall(r'from "\./([\w-]+\.js)"|import\("\./([\w-]+\.js)"\)', module.read_text()):
            target = next(n for n in name if n)
            assert (UI / target).is_file(), f"{module.name} imports {target}"


def test_the_vendored_files_are_the_ones_recorded_with_their_licenses():
    manifest = json.loads((VENDOR / "VENDOR.json").read_text())
    shipped = {p.relative_to(VENDOR).as_posix() for p in VENDOR.rglob("*") if p.is_file()} - {"VENDOR.json"}
    recorded = set()
    for pkg in manifest["packages"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", pkg["version"]) and pkg["integrity"].startswith("sha512-")
        assert "LICENSE" in pkg["files"], pkg["package"]
        recorded |= {f"{pkg['folder']}/{f}" for f in pkg["files"]}
        assert sum((VENDOR / pkg["folder"] / f).stat().st_size for f in pkg["files"]) == pkg["bytes"]
    assert shipped == recorded
    assert sum((VENDOR / f).stat().st_size for f in shipped) < 4_000_000
    assert {p["package"] for p in manifest["packages"]} >= {"cytoscape", "cytoscape-fcose", "echarts", "codemirror",
                                                             "world-atlas", "topojson-client"}


def test_the_ui_is_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"ui/**"' in text


# ---------------------------------------------------------------- POST /api/export?format=parquet

def export(client, body: dict) -> tuple[int, dict, bytes]:
    """POST /api/export?format=parquet; the raw answer (the helpers of test_server read text)."""
    conn = http.client.HTTPConnection("127.0.0.1", client.port, timeout=30)
    try:
        conn.request("POST", "/api/export?format=parquet", body=json.dumps(body).encode(),
                     headers={"Authorization": f"Bearer {client.query_key.secret}", "Content-Type": "application/json"})
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_a_query_exports_as_parquet(client, tmp_path):
    query = ("VMConnection | summarize Bytes = sum(BytesSent), Failed = sum(LinksFailed), Last = max(TimeGenerated), "
             "Span = max(TimeGenerated) - min(TimeGenerated), Names = make_set(ProcessName) by Computer "
             "| order by Computer asc")
    status, headers, body = export(client, {"query": query})
    assert status == 200 and headers["content-type"] == "application/vnd.apache.parquet"
    assert headers["content-disposition"] == 'attachment; filename="query.parquet"'
    assert headers["x-netatlas-rows"] == "2" and body[:4] == b"PAR1"
    target = tmp_path / "q.parquet"
    target.write_bytes(body)
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    rows = con.execute(f"SELECT Computer, Bytes, Failed, Last, Span, Names FROM read_parquet('{target}')").fetchall()
    types = dict(con.execute(f"SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('{target}'))").fetchall())
    expected = client.query(query).body["tables"][0]["rows"]
    assert [(c, b, f) for c, b, f, *_ in rows] == [(c, b, f) for c, b, f, *_ in expected]
    assert [row[3] for row in rows] == [datetime.fromisoformat(e[3].replace("Z", "")) for e in expected]
    assert [row[4] for row in rows] == [e[4] for e in expected]            # a timespan: its KQL text
    assert [json.loads(row[5]) for row in rows] == [e[5] for e in expected]
    assert types["Bytes"] == "BIGINT" and types["Last"] == "TIMESTAMP" and types["Computer"] == "VARCHAR"


def test_export_refuses_what_the_query_api_refuses(client, server):
    r = client.call("POST", "/api/export?format=parquet", {"query": "VMConnection | where Computr == 1"})
    assert r.status == 400 and r.error["code"] == "KQL_UNKNOWN_COLUMN" and r.error["line"] == 1
    r = client.call("POST", "/api/export?format=xlsx", {"query": "VMConnection"})
    assert r.status == 400 and r.error["code"] == "BAD_FORMAT" and r.error["field"] == "format"
    r = client.call("POST", "/api/export?format=parquet", {"query": "VMConnection"}, key=client.ingest_key.secret)
    assert r.status == 403
    r = request(server.port, "POST", "/api/export?format=parquet", b'{"query": "VMConnection"}',
                {"Content-Type": "application/json"})
    assert_error_shape(r, 401, "AUTH_MISSING")


# ---------------------------------------------------------------- the browser tests' screenshots

def test_the_browser_tests_write_screenshots_outside_the_repository(tmp_path_factory, tmp_path):
    """Running tests/test_ui_browser.py must not rewrite docs/screenshots/*.png (tracked files):
    its screenshots go to a temporary directory; scripts/screenshots.sh names docs/screenshots."""
    from screenshots import ENV, screenshots_dir
    default = screenshots_dir(tmp_path_factory, environ={})
    assert default.is_dir() and not default.resolve().is_relative_to(ROOT)
    chosen = tmp_path / "chosen" / "shots"
    assert screenshots_dir(tmp_path_factory, environ={ENV: str(chosen)}) == chosen and chosen.is_dir()
    # every screenshot of the browser tests goes through that directory (the session's ``shots``)
    browser_tests = (ROOT / "tests" / "test_ui_browser.py").read_text()
    assert re.findall(r"\.screenshot\((.*)\)", browser_tests) == ["path=str(shots / name)"]
    assert "return screenshots_dir(tmp_path_factory)" in browser_tests
    # and only the script asks for docs/screenshots
    script = (ROOT / "scripts" / "screenshots.sh").read_text()
    assert f'{ENV}="$PWD/docs/screenshots"' in script and "tests/test_ui_browser.py" in script
