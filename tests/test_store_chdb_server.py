"""Every web UI endpoint and every sample (seed) query answers the same from a workspace whose
tables are in ClickHouse (``workspace serve --store chdb``) as from a DuckDB one.

Two real servers on loopback, each over a workspace filled with the same simulated datacenter
(the smallest, one day, dated): one DuckDB, one chdb (the demo's batches go through the outbox).
"""
from __future__ import annotations

import json
import urllib.parse
from datetime import datetime, timedelta, timezone

import pytest

import netatlas
import netatlas.demo
from netatlas import webmap
from netatlas.workspace import Workspace

from test_server import Server

pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed: pip install -e '.[clickhouse]'")

END = datetime(2026, 11, 20, tzinfo=timezone.utc)
RANGE = {"from": "2026-11-19T06:00:00Z", "to": "2026-11-20T00:00:00Z"}


def fill(data, store: str):
    ws = Workspace(data, store=store)
    try:
        for table in ws.catalogue.names():
            ws.set_retention(table, 4383)
        netatlas.demo.generate(ws, machines=netatlas.demo.MIN_MACHINES, days=1, end=END)
        assert ws.store_name == store
    finally:
        ws.close()


@pytest.fixture(scope="module")
def clients(tmp_path_factory):
    servers = []
    try:
        for store in ("duckdb", "chdb"):
            data = tmp_path_factory.mktemp(f"served-{store}") / "data"
            fill(data, store)
            servers.append(Server(data, "--store", store).start())
        clients = [s.client() for s in servers]
        for s, c in zip(servers, clients):
            c.server_log = s.log
        yield clients
    finally:
        for s in servers:
            s.kill()


def canon(v):
    """A JSON answer with its lists in a fixed order (the API gives some lists in no order) and
    the statistics (timings) left out."""
    if isinstance(v, dict):
        return {k: canon(x) for k, x in v.items() if k not in ("statistics", "timings_ms", "elapsed_ms")}
    if isinstance(v, list):
        items = [canon(x) for x in v]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True, default=str))
    if isinstance(v, float):
        return round(v, 6)
    return v


def both(clients, method: str, path: str, payload=None):
    answers = []
    for c in clients:
        r = c.call(method, path, payload)
        assert r.status == 200, (path, r.body)
        answers.append(r.body)
    return answers


def get(path: str, **params) -> str:
    return path + ("?" + urllib.parse.urlencode(params) if params else "")


def test_each_server_says_its_store(clients):
    for c, store in zip(clients, ("duckdb (embedded)", "chdb ")):
        assert f"store         {store}" in c.server_log.read_text()


def test_every_ui_endpoint_answers_alike(clients):
    duck_map, ch_map = both(clients, "GET", get("/api/map", group="all", **RANGE))
    assert canon(duck_map) == canon(ch_map) and duck_map["machines"]
    machine = sorted(duck_map["machines"], key=lambda m: m["id"])[0]
    edge = next(e for e in duck_map["edges"] if e.get("port"))
    paths = [
        get("/api/map", machine=machine["computer"], **RANGE),
        get("/api/map", machine=machine["id"], only_failures="true", **RANGE),
        get("/api/map", group="subnet:10.0.0.0/8", **RANGE),
        get("/api/map", group="all", group_by="role", **RANGE),        # issue 17: the grouped map
        get("/api/problems", group="all", **RANGE),                    # and the problems list
        get("/api/machines", search="web"),
        get("/api/machines"),
        get(f"/api/machines/{machine['id']}"),
        get("/api/edges", source=edge["source"], target=edge["target"], port=str(edge["port"]), **RANGE),
        get("/api/network", **RANGE),
        get("/api/network", weight="links", **RANGE),
        get("/api/waves", range="4000d"),
        get("/api/waves", range="4000d", max_wave_size="3", weight="connections"),
        get("/api/usage", days="30"),
        "/api/schema",
        "/api/samples",
    ]
    for path in paths:
        a, b = both(clients, "GET", path)
        if path.startswith("/api/waves"):       # asked a moment apart: the range back from now differs
            assert a.pop("range") and b.pop("range") and a["waves"]
        assert canon(a) == canon(b), path


@pytest.mark.parametrize("sample", webmap.samples(), ids=lambda s: s["title"][:40])
def test_every_sample_query_answers_alike(clients, sample):
    body = {"query": sample["query"], "timespan": "P30D"}
    a, b = both(clients, "POST", "/api/query", body)
    if "now()" in sample["query"]:          # asked a moment apart: the time since differs, nothing else
        for answer in (a, b):
            for t in answer["tables"]:
                clock = [i for i, c in enumerate(t["columns"]) if c["type"] == "timespan"]
                t["rows"] = [[None if i in clock else v for i, v in enumerate(r)] for r in t["rows"]]
    assert canon(a) == canon(b)
