"""Workbooks' API (netatlas/workbooks.py, netatlas/server/workbooks.py) on a small demo workspace
of its own: storage in the workspace directory (surviving a restart), keys (query reads, admin
writes), validation with clear 4xx errors, the limits of netatlas/limits.py, the Azure import,
parameter values in queries, the built-in Service Map workbook."""
from __future__ import annotations

import copy
import json

import pytest

import netatlas
import netatlas.demo
from netatlas import webmap
from netatlas import limits, workbooks as wbs

from test_server import serve_filled
from workbook_fixtures import (AZURE_QUERY_TILES, AZURE_UNSUPPORTED, MULTI_MACHINES, azure_conditional_workbook,
                               azure_workbook, multi_workbook, small_workbook)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve_filled(tmp_path_factory, "workbooks", lambda ws: netatlas.demo.generate(
        ws, machines=netatlas.demo.MIN_MACHINES, days=2, seed=1))


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def error(reply, status: int, code: str, field: str | None = None) -> dict:
    assert reply.status == status, (reply.status, reply.body)
    err = reply.body["error"]
    assert err["code"] == code, err
    if field is not None:
        assert err.get("field") == field, err
    return err


def run(client, tile: str, *, id: str | None = None, workbook: dict | None = None, parameters=None):
    body = {"tile": tile, **({"id": id} if id else {}), **({"workbook": workbook} if workbook else {}),
            **({"parameters": parameters} if parameters is not None else {})}
    return client.call("POST", "/api/workbooks/run", body)


# ---------------------------------------------------------------- storage, keys, restart

def test_create_get_update_delete_and_restart(server, client):
    r = client.admin("POST", "/api/workbooks", small_workbook("Storage check"))
    assert r.status == 201, r.body
    wid = r.body["id"]
    assert wid.startswith("storage-check-") and r.body["version"] == wbs.VERSION
    assert (server.data / "workbooks" / f"{wid}.json").is_file()
    got = client.call("GET", f"/api/workbooks/{wid}")
    assert got.status == 200 and got.body["tiles"] == r.body["tiles"] and got.body["parameters"] == r.body["parameters"]
    listed = {w["id"]: w for w in client.call("GET", "/api/workbooks").body["workbooks"]}
    assert listed[wid]["title"] == "Storage check" and listed[wid]["tiles"] == 4
    assert listed[wbs.BUILTIN_ID]["builtin"]

    changed = copy.deepcopy(got.body)
    changed["title"] = "Storage check, changed"
    changed["tiles"].pop()
    r = client.admin("PUT", f"/api/workbooks/{wid}", changed)
    assert r.status == 200 and len(r.body["tiles"]) == 3

    server.kill()                       # the workbook outlives the server
    server.start()
    client.port = server.port
    got = client.call("GET", f"/api/workbooks/{wid}")
    assert got.status == 200 and got.body["title"] == "Storage check, changed" and len(got.body["tiles"]) == 3

    assert client.admin("DELETE", f"/api/workbooks/{wid}").status == 200
    error(client.call("GET", f"/api/workbooks/{wid}"), 404, "WORKBOOK_NOT_FOUND")
    error(client.admin("DELETE", f"/api/workbooks/{wid}"), 404, "WORKBOOK_NOT_FOUND")


def test_query_key_reads_admin_key_writes(client):
    r = client.call("POST", "/api/workbooks", small_workbook())
    assert r.status == 403, r.body
    assert client.call("GET", "/api/workbooks").status == 200
    assert client.call("GET", "/api/workbooks", key="not-a-key").status in (401, 403)
    wid = client.admin("POST", "/api/workbooks", small_workbook("Keys")).body["id"]
    assert client.call("PUT", f"/api/workbooks/{wid}", small_workbook()).status == 403
    assert client.call("DELETE", f"/api/workbooks/{wid}").status == 403
    assert client.admin("DELETE", f"/api/workbooks/{wid}").status == 200


def test_ids_the_builtin_and_conflicts(client):
    wb = small_workbook("Named")
    wb["id"] = "named-one"
    assert client.admin("POST", "/api/workbooks", wb).status == 201
    error(client.admin("POST", "/api/workbooks", wb), 409, "WORKBOOK_EXISTS", "id")
    other = dict(wb, id="another")
    error(client.admin("PUT", "/api/workbooks/named-one", other), 400, "BAD_WORKBOOK", "id")
    error(client.admin("PUT", "/api/workbooks/nope", small_workbook()), 404, "WORKBOOK_NOT_FOUND")
    error(client.admin("PUT", f"/api/workbooks/{wbs.BUILTIN_ID}", small_workbook()), 409, "WORKBOOK_READ_ONLY")
    error(client.admin("DELETE", f"/api/workbooks/{wbs.BUILTIN_ID}"), 409, "WORKBOOK_READ_ONLY")
    assert client.call("GET", "/api/workbooks/..%2Fkeys").status == 404
    error(client.call("GET", "/api/workbooks/.keys"), 404, "WORKBOOK_NOT_FOUND")
    error(client.admin("POST", "/api/workbooks", dict(small_workbook(), id="Bad Id!")), 400, "BAD_WORKBOOK", "id")
    assert client.admin("DELETE", "/api/workbooks/named-one").status == 200


# ---------------------------------------------------------------- validation: 4xx naming the field

def broken(path: str, value, wb: dict | None = None):
    """The workbook (small_workbook by default) with the field at ``path`` set to ``value`` (DROP: removed)."""
    wb = small_workbook() if wb is None else wb
    target = wb
    parts = path.replace("]", "").replace("[", ".").split(".")
    for p in parts[:-1]:
        target = target[int(p)] if p.isdigit() else target[p]
    last = parts[-1]
    key = int(last) if last.isdigit() else last
    if value is DROP:
        del target[key]
    else:
        target[key] = value
    return wb


@pytest.mark.parametrize("path,value,field", [
    ("title", "", "title"),
    ("format", "something-else", "format"),
    ("version", 99, "version"),
    ("parameters[0].type", "slider", "parameters[0].type"),
    ("parameters[0].value", "yesterday", "parameters[0].value"),
    ("parameters[1].name", "has space", "parameters[1].name"),
    ("parameters[1].name", "TimeRange", "parameters[1].name"),
    ("parameters[2].value", "rack:7", "parameters[2].value"),
    ("parameters[0].query", "print 1", "parameters[0].query"),
    ("tiles[0].type", "gauge", "tiles[0].type"),
    ("tiles[0].visualization", "honeycomb", "tiles[0].visualization"),
    ("tiles[0].query", "", "tiles[0].query"),
    ("tiles[0].timeRange", "Computer", "tiles[0].timeRange"),
    ("tiles[1].id", "links", "tiles[1].id"),
    ("tiles[1].colour", "red", "tiles[1].colour"),
    ("tiles[2].machine", "", "tiles[2]"),
    ("tiles", "not a list", "tiles"),
])
def test_validation_names_the_field(client, path, value, field):
    err = error(client.admin("POST", "/api/workbooks", broken(path, value)), 400, "BAD_WORKBOOK", field)
    assert err["message"].startswith(field)


def test_bodies_that_are_not_workbooks(client):
    r = client.admin("POST", "/api/workbooks", [1, 2])
    assert r.status == 400 and r.body["error"]["code"] == "BAD_JSON"
    from test_server import request
    r = request(client.port, "POST", "/api/workbooks", b"{nope", {"Authorization": f"Bearer {client.admin_key.secret}",
                                                                 "Content-Type": "application/json"})
    assert r.status == 400 and r.body["error"]["code"] == "BAD_JSON"


# ---------------------------------------------------------------- limits

def test_limits(client, monkeypatch):
    wb = small_workbook()
    wb["tiles"] = [{"id": f"t{i}", "type": "text", "text": "x"} for i in range(limits.WORKBOOK_MAX_TILES + 1)]
    error(client.admin("POST", "/api/workbooks", wb), 400, "WORKBOOK_TOO_LARGE", "tiles")
    wb = small_workbook()
    wb["parameters"] += [{"name": f"P{i}", "type": "text"} for i in range(limits.WORKBOOK_MAX_PARAMETERS)]
    error(client.admin("POST", "/api/workbooks", wb), 400, "WORKBOOK_TOO_LARGE", "parameters")
    wb = small_workbook()
    wb["tiles"][0]["query"] = "VMConnection | take 1 // " + "x" * limits.WORKBOOK_MAX_QUERY_CHARS
    error(client.admin("POST", "/api/workbooks", wb), 400, "WORKBOOK_TOO_LARGE", "tiles[0].query")
    wb = small_workbook()
    wb["tiles"][3]["text"] = "z" * (limits.WORKBOOK_MAX_TEXT_CHARS + 1)
    error(client.admin("POST", "/api/workbooks", wb), 400, "WORKBOOK_TOO_LARGE", "tiles[3].text")
    wb = small_workbook()
    wb["parameters"][3]["choices"] = ["c"] * (limits.WORKBOOK_MAX_CHOICES + 1)
    error(client.admin("POST", "/api/workbooks", wb), 400, "BAD_WORKBOOK", "parameters[3].choices")
    wb = small_workbook()      # each tile within its limit, the whole past WORKBOOK_MAX_BYTES
    wb["tiles"] = [{"id": f"t{i}", "type": "text", "text": "y" * (limits.WORKBOOK_MAX_TEXT_CHARS - 10)}
                   for i in range(limits.WORKBOOK_MAX_BYTES // limits.WORKBOOK_MAX_TEXT_CHARS + 1)]
    error(client.admin("POST", "/api/workbooks", wb), 413, "WORKBOOK_TOO_LARGE")
    from test_server import request
    big = json.dumps({"title": "x", "description": "z" * limits.WORKBOOK_IMPORT_MAX_BYTES}).encode()
    r = request(client.port, "POST", "/api/workbooks", big, {"Authorization": f"Bearer {client.admin_key.secret}",
                                                             "Content-Type": "application/json"})
    assert r.status == 413, r.body
    # Azure: items and nesting
    deep = {"version": "Notebook/1.0", "items": []}
    level = deep["items"]
    for _ in range(limits.WORKBOOK_IMPORT_MAX_DEPTH + 2):
        group = {"type": 12, "content": {"items": []}}
        level.append(group)
        level = group["content"]["items"]
    error(client.call("POST", "/api/workbooks/import", deep), 400, "WORKBOOK_TOO_LARGE", "items")
    many = {"version": "Notebook/1.0",
            "items": [{"type": 1, "content": {"json": "x"}}] * (limits.WORKBOOK_IMPORT_MAX_ITEMS + 1)}
    error(client.call("POST", "/api/workbooks/import", many), 400, "WORKBOOK_TOO_LARGE", "items")


def test_the_number_of_workbooks_is_bounded(tmp_path, monkeypatch):
    monkeypatch.setattr(limits, "WORKBOOKS_MAX", 3)
    store = wbs.Store(tmp_path)
    for i in range(3):
        store.create(small_workbook(f"W{i}"))
    with pytest.raises(wbs.WorkbookError) as e:
        store.create(small_workbook("one more"))
    assert e.value.status == 409 and e.value.code == "WORKBOOKS_FULL"


def test_a_tile_result_stops_at_the_tile_row_limit(client):
    wb = small_workbook()
    wb["tiles"] = [{"id": "many", "type": "query", "query": "range i from 1 to 20000 step 1", "visualization": "table"}]
    r = run(client, "many", workbook=wb)
    assert r.status == 200, r.body
    assert len(r.body["tables"][0]["rows"]) == limits.WORKBOOK_TILE_ROWS and r.body["statistics"]["truncated"]


# ---------------------------------------------------------------- running tiles: parameter values

def test_run_puts_the_values_in(client):
    wb = small_workbook()
    r = run(client, "links", workbook=wb)
    assert r.status == 200, r.body
    assert 'Computer == "acme-demo"' in r.body["query"] and r.body["title"] == "Links of acme-demo"
    assert r.body["tables"][0]["rows"] and "timespan" in r.body
    other = run(client, "links", workbook=wb, parameters={"Computer": "admdemo-appsvr", "TimeRange": "PT6H"})
    assert 'Computer == "admdemo-appsvr"' in other.body["query"]
    start, end = other.body["timespan"]
    from datetime import datetime
    assert (datetime.fromisoformat(end.replace("Z", "+00:00")) - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds() == 6 * 3600
    text = run(client, "text", workbook=wb, parameters={"Note": "hi"})
    assert text.body["text"] == "Note: hi, over Last day"
    m = run(client, "map", workbook=wb)
    assert m.body["map"]["machine"] == "acme-demo" and m.body["map"]["from"] < m.body["map"]["to"]
    error(run(client, "links", workbook=wb, parameters={"TimeRange": "last week"}), 400, "BAD_WORKBOOK",
          "parameters.TimeRange")
    error(run(client, "nope", workbook=wb), 404, "TILE_NOT_FOUND", "tile")
    bad = run(client, "links", workbook=wb, parameters={"Computer": 'x" | bogus'})
    assert bad.status == 400 and bad.body["error"]["code"].startswith("KQL_"), bad.body


def test_formats_of_parameters(client):
    wb = small_workbook()
    wb["tiles"] = [{"id": "f", "type": "query", "visualization": "table",
                    "query": 'print a = "{Computer:id}", b = {TimeRange:start} < {TimeRange:end}, g = {TimeRange:grain}, '
                             'n = array_length({Group:machines}), e = "{Note:escape}", u = "{Unknown}"'}]
    r = run(client, "f", workbook=wb, parameters={"Note": 'say "hi"'})
    assert r.status == 200, r.body
    row = dict(zip([c["name"] for c in r.body["tables"][0]["columns"]], r.body["tables"][0]["rows"][0]))
    assert row["a"].startswith("m-") and row["b"] is True and row["g"] == "00:15:00"
    assert row["n"] == netatlas.demo.MIN_MACHINES and row["e"] == 'say "hi"' and row["u"] == "{Unknown}"
    error(run(client, "f", workbook=wb, parameters={"Computer": "no-such-machine"}), 404, "MACHINE_NOT_FOUND")


def queries_ok(client) -> float:
    from test_server import request
    text = request(client.port, "GET", "/metrics").body
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith('netatlas_queries_total{outcome="ok"}'))


def test_stored_workbook_runs_by_id(client):
    wid = client.admin("POST", "/api/workbooks", small_workbook("By id")).body["id"]
    before = queries_ok(client)
    r = run(client, "count", id=wid)
    assert r.status == 200 and r.body["tables"][0]["rows"][0][0] > 0
    assert queries_ok(client) == before + 1         # counted as /api/query's queries are
    client.admin("DELETE", f"/api/workbooks/{wid}")


# ---------------------------------------------------------------- the Service Map workbook, export/import

def test_service_map_is_the_seeds_queries(client):
    wb = client.call("GET", f"/api/workbooks/{wbs.BUILTIN_ID}").body
    queries = [t for t in wb["tiles"] if t["type"] == "query"]
    samples = webmap.samples()
    assert len(queries) == len(samples)
    values = wbs.Values(wb, {}, inventory=lambda: {})
    for tile, sample in zip(queries, samples):
        assert tile["title"] == sample["title"]
        text = tile["query"]
        for literal, param in wbs.SERVICE_MAP_LITERALS.items():      # its parameters' defaults give the seed's text
            text = text.replace(param, literal)
        assert text == sample["query"]
    assert any(t["type"] == "map" for t in wb["tiles"])
    assert values.expand("{Computer}") == "acme-demo"


def test_every_service_map_tile_returns_rows(client):
    wb = client.call("GET", f"/api/workbooks/{wbs.BUILTIN_ID}").body
    for tile in wb["tiles"]:
        r = run(client, tile["id"], id=wbs.BUILTIN_ID)
        assert r.status == 200, (tile["id"], r.body)
        if tile["type"] == "query":
            assert r.body["tables"][0]["rows"], tile["title"]


def test_export_import_round_trip(client):
    wid = client.admin("POST", "/api/workbooks", small_workbook("Round trip")).body["id"]
    exported = client.call("GET", f"/api/workbooks/{wid}").body
    imported = client.call("POST", "/api/workbooks/import", exported)
    assert imported.status == 200 and imported.body["id"] == ""
    assert imported.body["tiles"] == exported["tiles"] and imported.body["parameters"] == exported["parameters"]
    again = client.admin("POST", "/api/workbooks", imported.body)
    assert again.status == 201 and again.body["id"] != wid
    for tile in ("links", "count"):
        a, b = run(client, tile, id=wid), run(client, tile, id=again.body["id"])
        # the same answer; an unordered summarize may give its rows in another order
        for ta, tb in zip(a.body["tables"], b.body["tables"], strict=True):
            assert {k: v for k, v in ta.items() if k != "rows"} == {k: v for k, v in tb.items() if k != "rows"}
            assert sorted(map(json.dumps, ta["rows"])) == sorted(map(json.dumps, tb["rows"]))
    client.admin("DELETE", f"/api/workbooks/{wid}")
    client.admin("DELETE", f"/api/workbooks/{again.body['id']}")


def test_azure_import(client):
    r = client.call("POST", "/api/workbooks/import?title=Connections+review", azure_workbook())
    assert r.status == 200, r.body
    wb = r.body
    assert wb["title"] == "Connections review" and wb["source"]["kind"] == "azure"
    params = {p["name"]: p for p in wb["parameters"]}
    assert params["TimeRange"]["type"] == "timerange" and params["TimeRange"]["value"] == "P2D"
    assert params["Computer"] == {"name": "Computer", "type": "text", "label": "Machine", "value": "acme-demo"}
    assert params["Direction"]["choices"] == ["outbound", "inbound"]
    assert "not supported" in params["Subscription"]["note"]
    assert params["Process"]["query"].startswith("VMConnection") and params["Process"]["value"] == ""
    choices = client.call("POST", "/api/workbooks/run", {"workbook": wb, "parameter": "Process"})
    assert choices.status == 200 and "w3wp.exe" in choices.body["choices"], choices.body
    assert choices.body["choices"] == sorted(choices.body["choices"]) and "'acme-demo'" in choices.body["query"]
    error(client.call("POST", "/api/workbooks/run", {"workbook": wb, "parameter": "Computer"}), 404, "PARAMETER_NOT_FOUND")
    tiles = {t["id"]: t for t in wb["tiles"]}
    assert {k: tiles[k]["visualization"] for k in AZURE_QUERY_TILES} == AZURE_QUERY_TILES
    assert {k for k, t in tiles.items() if t["type"] == "unsupported"} == AZURE_UNSUPPORTED
    assert tiles["connections-per-process"]["timeRange"] == "TimeRange"
    assert tiles["failures-tiles"]["timespan"] == "P1D"
    assert tiles["failures-tiles"]["tiles"] == {"title": "Computer", "value": "Failed"}
    assert tiles["intro"]["type"] == "text" and any(t["type"] == "text" and "Processes" in t["text"] for t in wb["tiles"])
    for tid in AZURE_QUERY_TILES:
        out = run(client, tid, workbook=wb)
        assert out.status == 200, (tid, out.body)
        assert out.body["tables"][0]["rows"], tid
    assert run(client, "intro", workbook=wb).body["text"].startswith("## Connections review\nThe machine **acme-demo** over Last 2 days")
    # an ARM template's workbook resource: its serializedData
    arm = {"displayName": "From ARM", "serializedData": json.dumps(azure_workbook())}
    assert client.call("POST", "/api/workbooks/import", arm).body["title"] == "From ARM"


def test_azure_import_never_fails_on_odd_items():
    odd = {"version": "Notebook/1.0", "items": [None, 5, {"type": 3}, {"type": 3, "content": {"query": 7}},
                                                {"type": 9, "content": {"parameters": [None, {"name": "bad name"}]}},
                                                {"type": 12, "content": {"items": "x"}}, {"type": "text"}]}
    wb = wbs.from_azure(odd)
    assert [t["type"] for t in wb["tiles"]] == ["unsupported"] * 4
    with pytest.raises(wbs.WorkbookError):      # not a workbook at all: its items are not a list
        wbs.from_azure({"version": "Notebook/1.0", "items": {}})


def test_workbooks_are_backed_up_and_restored(tmp_path):
    from netatlas import backup, keys
    data = tmp_path / "data"
    keys.load_or_create(data)
    netatlas.connect(data).close()
    stored = wbs.Store(data).create(small_workbook("Kept"))
    backup.backup_directory(data, tmp_path / "bk")
    assert (tmp_path / "bk" / "workbooks" / f"{stored['id']}.json").is_file()
    backup.restore(tmp_path / "bk", tmp_path / "restored")
    assert wbs.Store(tmp_path / "restored").get(stored["id"]) == stored


MALFORMED = [None, 5, "x", [], {}, {"type": None}, {"type": True}, {"type": [3]}, {"type": 1, "content": None},
             {"type": 1, "content": {"json": 5}}, {"type": 3, "content": {"query": "print 1", "visualization": ["x"]}},
             {"type": 3, "content": {"query": "print 1", "size": [1], "timeContext": 5, "tileSettings": 3}},
             {"type": 3, "content": {"query": "print 1", "visualization": "tiles", "tileSettings": {"titleContent": 3}}},
             {"type": 9, "content": {"parameters": 7}}, {"type": 9, "content": {"parameters": [{"name": "A", "type": 4, "value": "x"}]}},
             {"type": 9, "content": {"parameters": [{"name": "B", "type": 2, "jsonData": "[1, {}]", "value": 3}]}},
             {"type": 12, "content": {"items": [{"type": 12, "content": {"title": 5, "items": None}}]}},
             {"type": 3, "name": ["n"], "content": {"title": {"a": 1}, "query": "print 1"}}]


@pytest.mark.parametrize("item", MALFORMED, ids=range(len(MALFORMED)))
def test_azure_import_takes_any_malformed_item(item):
    wb = wbs.from_azure({"version": "Notebook/1.0", "items": [item, {"type": 1, "content": {"json": "kept"}}]})
    assert wb["tiles"][-1]["text"] == "kept"


def test_every_workbook_route_is_in_the_endpoint_table_and_the_doc():
    from pathlib import Path
    from netatlas import server as server_pkg
    from netatlas.server import app, workbooks as views
    doc = (Path(__file__).resolve().parent.parent / "docs" / "web-api.md").read_text()
    paths = {r.path for r in app.ROUTES if getattr(getattr(r, "endpoint", None), "__module__", "") == views.__name__}
    assert len(paths) == 4
    for path in paths:
        assert f"{path}``" in server_pkg.__doc__ and f" {path}" in doc, path


def test_the_tiles_run_on_clickhouse_too(tmp_path):
    """The Service Map workbook's and the Azure workbooks' query tiles (multi-select values quoted
    and escaped among them) on a chdb workspace."""
    pytest.importorskip("chdb")
    from netatlas.workspace import Workspace
    ws = Workspace(tmp_path / "ch", store="chdb")
    try:
        netatlas.demo.generate(ws, machines=netatlas.demo.MIN_MACHINES, days=2, seed=1)

        def inventory():
            src = webmap.Source(ws)
            return webmap.inventory(src.kql("i", webmap.LATEST_MACHINES).to_dicts(), src.kql("t", webmap.ALL_TAGS).to_dicts())
        for wb in (wbs.builtin(), wbs.from_azure(azure_workbook()), wbs.from_azure(azure_conditional_workbook())):
            values = wbs.Values(wb, {}, inventory=inventory)
            for tile in (t for t in wb["tiles"] if t["type"] == "query"):
                res = ws.query(values.expand(tile["query"]), timespan=values.timespan(tile), max_rows=limits.WORKBOOK_TILE_ROWS)
                assert res.rows, tile["title"]
    finally:
        ws.close()


def test_choices_of_a_query_stop_at_the_limit(client):
    wb = small_workbook()
    wb["parameters"][3]["query"] = "range i from 1 to 5000 step 1"
    r = client.call("POST", "/api/workbooks/run", {"workbook": wb, "parameter": "Note"})
    assert r.status == 200 and len(r.body["choices"]) == limits.WORKBOOK_MAX_CHOICES and r.body["truncated"]


def test_a_time_range_in_its_own_datetime_or_quotes():
    wb = wbs.validate(small_workbook())
    values = wbs.Values(wb, {"TimeRange": "2026-12-01T00:00:00Z/2026-12-02T00:00:00Z"})
    got = values.expand("datetime({TimeRange:start}) todatetime('{TimeRange:end}') {TimeRange:start} {TimeRange} {TimeRange:grain}")
    assert got == ("datetime(2026-12-01T00:00:00Z) todatetime('2026-12-02T00:00:00Z') datetime(2026-12-01T00:00:00Z) "
                   "between (datetime(2026-12-01T00:00:00Z) .. datetime(2026-12-02T00:00:00Z)) 15m")
    assert values.expand("{TimeRange:label}", "text") == "2026-12-01T00:00:00Z to 2026-12-02T00:00:00Z"
    with pytest.raises(wbs.WorkbookError) as e:
        values.expand("{TimeRange:sideways}")
    assert e.value.code == "BAD_FORMAT"


# ---------------------------------------------------------------- multi-select parameters, conditional tiles

DROP = object()


@pytest.mark.parametrize("path,value,field,code", [
    ("parameters[1].multi", "yes", "parameters[1].multi", "BAD_WORKBOOK"),
    ("parameters[0].multi", True, "parameters[0].multi", "BAD_WORKBOOK"),            # a time range is one value
    ("parameters[1].quote", "`", "parameters[1].quote", "BAD_WORKBOOK"),
    ("parameters[1].quote", 1, "parameters[1].quote", "BAD_WORKBOOK"),
    ("parameters[1].delimiter", 5, "parameters[1].delimiter", "BAD_WORKBOOK"),
    ("parameters[1].delimiter", "," * (limits.WORKBOOK_MAX_DELIMITER_CHARS + 1), "parameters[1].delimiter",
     "WORKBOOK_TOO_LARGE"),
    ("parameters[1].delimiter", ",\n", "parameters[1].delimiter", "BAD_WORKBOOK"),
    ("parameters[2].quote", "'", "parameters[2].quote", "BAD_WORKBOOK"),             # View is not multi
    ("parameters[2].delimiter", ";", "parameters[2].delimiter", "BAD_WORKBOOK"),
    ("parameters[1].value", "acme-demo", "parameters[1].value", "BAD_WORKBOOK"),     # not JSON
    ("parameters[1].value", '"acme-demo"', "parameters[1].value", "BAD_WORKBOOK"),   # not an array
    ("parameters[1].value", "[1, 2]", "parameters[1].value", "BAD_WORKBOOK"),        # not strings
    ("parameters[1].value", json.dumps(["m"] * (limits.WORKBOOK_MAX_CHOICES + 1)), "parameters[1].value",
     "WORKBOOK_TOO_LARGE"),
    ("tiles[1].visibleWhen", "View == summary", "tiles[1].visibleWhen", "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen", [{"parameter": "View"}] * (limits.WORKBOOK_MAX_CONDITIONS + 1), "tiles[1].visibleWhen",
     "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen[0]", "View", "tiles[1].visibleWhen[0]", "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen[0].parameter", "Nope", "tiles[1].visibleWhen[0].parameter", "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen[0].parameter", DROP, "tiles[1].visibleWhen[0].parameter", "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen[0].comparison", "isEqualTo", "tiles[1].visibleWhen[0].comparison", "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen[0].value", 3, "tiles[1].visibleWhen[0].value", "BAD_WORKBOOK"),
    ("tiles[1].visibleWhen[0].colour", "red", "tiles[1].visibleWhen[0].colour", "BAD_WORKBOOK"),
])
def test_multi_and_condition_validation_names_the_field(client, path, value, field, code):
    err = error(client.admin("POST", "/api/workbooks", broken(path, value, multi_workbook())), 400, code, field)
    assert err["message"].startswith(field)
    assert not any(f"unknown field {k!r}" in err["message"] for k in ("multi", "quote", "delimiter", "visibleWhen")), err


def test_multi_and_conditions_are_normalized():
    wb = multi_workbook()
    wb["parameters"][1].update(value='[ "b", "a" ]')
    del wb["parameters"][1]["quote"], wb["parameters"][1]["delimiter"]
    del wb["tiles"][1]["visibleWhen"][0]["comparison"]
    got = wbs.validate(wb)
    p = got["parameters"][1]
    assert (p["multi"], p["quote"], p["delimiter"], p["value"]) == (True, "'", ",", '["b","a"]')    # the defaults
    assert got["tiles"][1]["visibleWhen"] == [{"parameter": "View", "comparison": "equals", "value": "summary"}]
    assert "multi" not in got["parameters"][2] and "visibleWhen" not in got["tiles"][0]
    assert wbs.validate(dict(multi_workbook(), parameters=[dict(p, value="[]")] + multi_workbook()["parameters"][:1]
                             + multi_workbook()["parameters"][2:]))["parameters"][0]["value"] == ""


def test_multi_values_expand_quoted_escaped_and_joined():
    wb = multi_workbook()
    wb["parameters"] += [{"name": "Bare", "type": "text", "multi": True, "quote": "", "delimiter": " | ", "value": '["1","2"]'},
                         {"name": "Dq", "type": "text", "multi": True, "quote": '"', "value": ""}]
    wb = wbs.validate(wb)
    values = wbs.Values(wb, {"Computers": json.dumps(["web-01", "o'brien \\ x", 'say "hi"']),
                             "Dq": ["a\"b", "c'd"]})          # the API takes the list itself too
    assert values.expand("in ({Computers})") == "in ('web-01','o\\'brien \\\\ x','say \"hi\"')"
    assert values.expand("in ({Computers:value})") == values.expand("in ({Computers})")
    assert values.expand("({Dq})") == '("a\\"b","c\'d")'         # only the quote used (and \\) escaped
    assert values.expand("{Bare}") == "1 | 2"
    assert values.expand("{Computers:label}") == "web-01, o'brien \\ x, say \"hi\""
    assert values.expand("Records of {Computers}", "text") == values.expand("Records of {Computers:label}")
    with pytest.raises(wbs.WorkbookError) as e:
        values.expand("{Computers:escape}")
    assert e.value.code == "BAD_FORMAT" and e.value.field == "parameters.Computers"
    for given in ({}, {"Computers": "[]"}, {"Computers": []}):     # nothing selected: not set, as Azure says
        with pytest.raises(wbs.WorkbookError) as e:
            wbs.Values(wb, given).expand("where Computer in ({Computers})")
        assert (e.value.code, e.value.field) == ("PARAMETER_MISSING", "parameters.Computers")
        with pytest.raises(wbs.WorkbookError):
            wbs.Values(wb, given).expand("{Computers:label}", "text")
    with pytest.raises(wbs.WorkbookError) as e:
        wbs.Values(wb, {"Computers": "web-01"})
    assert e.value.field == "parameters.Computers"
    # the values really are KQL string literals: run, they come back as they were
    import tempfile
    ws = netatlas.connect(tempfile.mkdtemp())
    try:
        row = ws.query(values.expand("print a = pack_array({Computers}), b = pack_array({Dq})")).rows[0]
        assert (json.loads(row[0]) if isinstance(row[0], str) else row[0]) == ["web-01", "o'brien \\ x", 'say "hi"']
        assert (json.loads(row[1]) if isinstance(row[1], str) else row[1]) == ["a\"b", "c'd"]
    finally:
        ws.close()


def test_multi_machine_ids(client):
    wb = multi_workbook()
    wb["parameters"][1]["type"] = "machine"
    wb["tiles"] = [{"id": "ids", "type": "query", "visualization": "table",
                    "query": "VMComputer | where Machine in ({Computers:id}) | distinct Computer | order by Computer asc"}]
    r = run(client, "ids", workbook=wb, parameters={"Computers": json.dumps(list(MULTI_MACHINES[:2]))})
    assert r.status == 200, r.body
    assert [row[0] for row in r.body["tables"][0]["rows"]] == list(MULTI_MACHINES[:2])
    assert "'m-" in r.body["query"]
    error(run(client, "ids", workbook=wb, parameters={"Computers": '["no-such-machine"]'}), 404, "MACHINE_NOT_FOUND")


def test_multi_and_conditional_tiles_run(client):
    wb = multi_workbook()
    picked = json.dumps(list(MULTI_MACHINES[:2]))
    r = run(client, "per-machine", workbook=wb, parameters={"Computers": picked})
    assert r.status == 200, r.body
    assert "where Computer in ('acme-demo','admdemo-appsvr')" in r.body["query"]
    assert [row[0] for row in r.body["tables"][0]["rows"]] == list(MULTI_MACHINES[:2])
    assert r.body["title"] == "Records of acme-demo, admdemo-appsvr"
    err = error(run(client, "per-machine", workbook=wb), 400, "PARAMETER_MISSING", "parameters.Computers")
    assert "nothing is selected" in err["message"]
    error(run(client, "per-machine", workbook=wb, parameters={"Computers": "{"}), 400, "BAD_WORKBOOK", "parameters.Computers")
    # the choices of its query; conditions: a hidden tile is not run
    choices = client.call("POST", "/api/workbooks/run", {"workbook": wb, "parameter": "Computers"})
    assert choices.status == 200 and choices.body["choices"] == list(MULTI_MACHINES)
    assert run(client, "summary", workbook=wb).body["tables"][0]["rows"][0][0] > 0
    assert run(client, "detail", workbook=wb).body == {"tile": "detail", "visible": False}
    assert run(client, "summary", workbook=wb, parameters={"View": "detail"}).body == {"tile": "summary", "visible": False}
    assert len(run(client, "detail", workbook=wb, parameters={"View": "detail"}).body["tables"][0]["rows"]) == 5


def test_multi_and_conditions_round_trip_through_export_and_import(client):
    stored = client.admin("POST", "/api/workbooks", multi_workbook("Round trip, multi")).body
    exported = client.call("GET", f"/api/workbooks/{stored['id']}").body
    assert exported["parameters"][1]["multi"] and exported["tiles"][2]["visibleWhen"][0]["comparison"] == "not_equals"
    imported = client.call("POST", "/api/workbooks/import", exported).body
    assert imported["parameters"] == exported["parameters"] and imported["tiles"] == exported["tiles"]
    assert imported["parameters"] == wbs.validate(multi_workbook())["parameters"]
    client.admin("DELETE", f"/api/workbooks/{stored['id']}")


def test_azure_import_of_multi_select_and_conditions(client):
    r = client.call("POST", "/api/workbooks/import?title=Conditions", azure_conditional_workbook())
    assert r.status == 200, r.body
    wb = r.body
    params = {p["name"]: p for p in wb["parameters"]}
    assert {k: params["Computers"][k] for k in ("type", "multi", "quote", "delimiter", "value")} == \
        {"type": "text", "multi": True, "quote": "'", "delimiter": ",", "value": '["acme-demo","admdemo-appsvr"]'}
    assert params["Computers"]["query"].startswith("VMComputer")
    assert (params["Ports"]["quote"], params["Ports"]["choices"]) == ("", ["80", "443", "1433"])
    assert (params["Names"]["quote"], params["Names"]["delimiter"]) == ('"', " , ")
    assert params["Everything"]["value"] == "" and "All" in params["Everything"]["note"]
    assert "multi" not in params["View"]
    tiles = {t["id"]: t for t in wb["tiles"]}
    summary_only = [{"parameter": "View", "comparison": "equals", "value": "summary"}]
    detail_only = [{"parameter": "View", "comparison": "equals", "value": "detail"}]
    assert tiles["summary"]["visibleWhen"] == summary_only
    assert tiles["details-title"]["visibleWhen"] == detail_only            # the group's condition, passed down
    assert tiles["detail-note"]["visibleWhen"] == detail_only
    assert tiles["detail-links"]["visibleWhen"] == detail_only + [
        {"parameter": "Computers", "comparison": "not_equals", "value": ""}]
    for tid in ("odd-condition", "tab-condition"):        # kept visible, said not supported
        assert "visibleWhen" not in tiles[tid] and "not supported" in tiles[tid]["note"], tiles[tid]
    assert "isGreaterThan" in tiles["odd-condition"]["note"] and "selectedTab" in tiles["tab-condition"]["note"]
    assert wb["source"]["unsupported"] == 3 and "3 not supported" in wb["description"]
    for tid in ("by-machine", "summary", "odd-condition", "tab-condition"):
        out = run(client, tid, workbook=wb)
        assert out.status == 200 and out.body["tables"][0]["rows"], (tid, out.body)
    out = run(client, "by-machine", workbook=wb).body
    assert "in ('acme-demo','admdemo-appsvr')" in out["query"]
    assert sorted(row[0] for row in out["tables"][0]["rows"]) == ["acme-demo", "admdemo-appsvr"]
    out = run(client, "by-port", workbook=wb).body
    assert "in (80,443)" in out["query"] and sorted(row[0] for row in out["tables"][0]["rows"]) == [80, 443]
    out = run(client, "names", workbook=wb).body
    assert out["query"] == 'print n = array_length(pack_array("acme-demo" , "o\'brien \\"x\\\\y\\"")), last = "acme-demo" , "o\'brien \\"x\\\\y\\""'
    assert out["tables"][0]["rows"][0][:2] == [2, "acme-demo"]
    for tid in ("detail-links", "detail-note", "details-title"):
        assert run(client, tid, workbook=wb).body == {"tile": tid, "visible": False}
    detail = {"View": "detail"}
    assert run(client, "summary", workbook=wb, parameters=detail).body["visible"] is False
    out = run(client, "detail-links", workbook=wb, parameters=detail).body
    assert sorted(row[0] for row in out["tables"][0]["rows"]) == ["acme-demo", "admdemo-appsvr"]
    assert run(client, "detail-note", workbook=wb, parameters=detail).body["text"] == "Details of acme-demo, admdemo-appsvr"
    # a stored copy keeps it all
    stored = client.admin("POST", "/api/workbooks", wb).body
    assert stored["tiles"] == wb["tiles"] and stored["parameters"] == wb["parameters"]
    client.admin("DELETE", f"/api/workbooks/{stored['id']}")
