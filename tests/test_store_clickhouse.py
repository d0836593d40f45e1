"""The ClickHouse store (store/chdb.py, ClickHouse's engine embedded through chdb) against DuckDB.

One demo workspace (the simulated datacenter at its smallest, two days) is built on DuckDB and
copied into a chdb store; the web UI's answers (the map, the network, the machine search and
detail, an edge's records) must be the same from both. Then the store's own promises: the
MergeTree tables the catalogue gives, a batch id stored once, and a query's limits (time, rows,
bytes) and mistakes answered as on DuckDB.
"""
from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

import netatlas
import netatlas.demo
from netatlas import webmap
from netatlas.errors import KqlError, QueryLimitError
from netatlas.workspace import StoreWorkspace

chdb_store = pytest.importorskip("netatlas.store.chdb", reason="chdb is not installed: pip install -e '.[clickhouse]'")

END = datetime(2026, 11, 20, tzinfo=timezone.utc)
LAST_DAY = webmap.Span(END - timedelta(days=1), END)


@pytest.fixture(scope="module")
def stores():
    duck = netatlas.connect()
    netatlas.demo.generate(duck, machines=netatlas.demo.MIN_MACHINES, days=2, end=END)
    from netatlas.store import copy_tables
    ch = StoreWorkspace(chdb_store.ChdbStore(None), duck.catalogue,
                        retention={t: 4383 for t in duck.catalogue.names()})   # dated data: no TTL yet
    copied = copy_tables(duck, ch.store)
    assert copied["VMConnection"] > 1000 and copied["VMComputer"] > 0
    yield duck, ch
    ch.close()
    duck.close()


def same(a, b):
    """JSON answers equal, lists compared without their order where the API gives no order."""
    import json
    canon = lambda v: json.dumps(v, sort_keys=True, default=str)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return sorted(map(canon, a)) == sorted(map(canon, b))
    return a == b


@pytest.mark.parametrize("selection", [webmap.Selection("all"), webmap.Selection("machine", "web-01"),
                                       webmap.Selection("subnet", ipaddress.ip_network("10.1.1.0/24"))],
                         ids=["all", "machine", "subnet"])
def test_the_map_is_the_same_on_clickhouse(stores, selection):
    duck, ch = stores
    want = webmap.build_map(duck, selection, LAST_DAY)
    got = webmap.build_map(ch, selection, LAST_DAY)
    assert want["machines"] and want["edges"]
    for key in want:
        if key not in ("timings", "took"):
            assert same(got[key], want[key]), key


def test_network_search_detail_and_edge_records_are_the_same_on_clickhouse(stores):
    duck, ch = stores
    want, got = webmap.network(duck, LAST_DAY), webmap.network(ch, LAST_DAY)
    assert want and same(got, want)
    want, got = webmap.find_machines(duck, "web"), webmap.find_machines(ch, "web")
    assert want["machines"] and same(got["machines"], want["machines"])
    key = want["machines"][0]["id"]
    d, c = webmap.machine_detail(duck, key), webmap.machine_detail(ch, key)
    assert d["processes"] and same(c, d)
    full = webmap.build_map(duck, webmap.Selection("all"), LAST_DAY)
    edge = next(e for e in full["edges"] if e.get("port"))
    want = webmap.edge_records(duck, edge["source"], edge["target"], edge["port"], LAST_DAY)
    got = webmap.edge_records(ch, edge["source"], edge["target"], edge["port"], LAST_DAY)
    assert want["rows"] and same(got["rows"], want["rows"]) and got["columns"] == want["columns"]


def test_tables_are_merge_trees_by_day_sorted_by_machine_and_time_with_ttl(stores):
    _, ch = stores
    row = ch.store.fetch("SELECT engine, partition_key, sorting_key, create_table_query FROM system.tables "
                         f"WHERE name = 'VMConnection' AND database = '{ch.store.database}'")[0]
    engine, partition, sorting, ddl = row
    assert engine == "MergeTree" and partition == "toYYYYMMDD(TimeGenerated)"
    assert sorting == "Computer, TimeGenerated"
    assert "TTL toDateTime(TimeGenerated) + toIntervalDay(4383)" in ddl
    assert "`Computer` LowCardinality(String)" in ddl and "`BytesSent` Nullable(Int64)" in ddl


def test_a_batch_id_is_stored_once():
    store = chdb_store.ChdbStore(None)
    try:
        store.create_tables(netatlas.connect().catalogue)
        now = datetime.now(timezone.utc)
        batch = pa.table({"TimeGenerated": pa.array([now] * 3, pa.timestamp("us", tz="UTC")),
                          "Computer": ["a", "b", "c"], "BytesSent": pa.array([1, None, 3], pa.int64())})
        store.append("VMConnection", batch, "batch-1")
        store.append("VMConnection", batch, "batch-1")        # an agent's retry
        assert store.count("VMConnection") == 3
        store.append("VMConnection", batch, "batch-2")
        store.append("VMConnection", batch, None)             # no id: equal batches are two batches
        store.append("VMConnection", batch, None)
        assert store.count("VMConnection") == 12
    finally:
        store.close()


def test_limits_and_mistakes_on_clickhouse(stores):
    _, ch = stores
    res = ch.query("VMConnection | project Computer", max_rows=10)
    assert len(res.rows) == 10 and res.truncated and res.truncated_by == "max_rows"
    res = ch.query("VMConnection | project Computer, ProcessName", max_result_bytes=500)
    assert res.truncated_by == "max_result_bytes" and 0 < len(res.rows) < 30
    with pytest.raises(QueryLimitError):
        ch.query("range i from 1 to 2000000000 step 1 | summarize count() by bin(i % 1000003, 1)", timeout=0.5)
    with pytest.raises(KqlError) as info:
        ch.query("VMConnection | summarise count()")
    assert info.value.code and "^" in str(info.value)


def test_a_query_that_fails_while_running_leaves_the_next_answer_whole(stores):
    """chdb 4.4 leaves part of a statement's answer in the session when the statement fails after
    it began answering (a time limit, a throwIf); without the store's drain the next query read it
    and failed ("Invalid flatbuffers message", "Old metadata version not supported")."""
    _, ch = stores
    want = ch.query("VMComputer | summarize n = count() by Computer | order by Computer asc").rows
    for _ in range(2):
        with pytest.raises(QueryLimitError):
            ch.query("range i from 1 to 20000000000 step 1 | summarize count() by bin(i % 1000003, 1)", timeout=0.5)
        assert ch.query("VMComputer | summarize n = count() by Computer | order by Computer asc").rows == want
    with pytest.raises(Exception, match="throwIf"):
        ch.store.fetch("SELECT throwIf(number = 5) FROM numbers(10)")
    assert ch.store.fetch("SELECT 41 + 1") == [(42,)]


def test_an_answer_within_the_limits_as_a_whole_is_measured_as_row_by_row():
    """workspace.fits sums row_sizer's measure over Arrow columns at once: exactly the total
    cap_rows reaches row by row, so an answer passes whole only when cap_rows would cut nothing."""
    from netatlas.workspace import cap_rows, fits, row_sizer
    types = ["string", "long", "dynamic", "datetime", "string"]
    now = datetime(2026, 1, 2, tzinfo=timezone.utc)
    table = pa.table({"a": ["x", "ééé", None, ""], "n": pa.array([1, None, 3, 4], pa.int64()),
                      "d": ['{"k":1}', None, "[1,2]", "null"],
                      "t": pa.array([now, None, now, now], pa.timestamp("us", tz="UTC")),
                      "s": ["a" * 100, "b", "c", "d"]})
    rows = chdb_store.ChdbStore.rows_of(table)
    total = row_sizer(types)(rows)
    assert fits(table, types, 4, total) and cap_rows(rows, types, 4, total) == (rows, None)
    assert not fits(table, types, 4, total - 1) and cap_rows(rows, types, 4, total - 1)[1] == "max_result_bytes"
    assert not fits(table, types, 3, total) and cap_rows(rows, types, 3, total)[1] == "max_rows"
    assert fits(table, types, None, None)


def test_columns_convert_as_rows_do():
    """values.convert_columns (the chdb store's answers, a column at a time) gives the rows
    convert_rows gives, datetimes aware in UTC."""
    from netatlas.kql.values import convert_columns, convert_rows
    now = datetime(2026, 1, 2, 3, 4, 5)
    types = ["string", "datetime", "long", "dynamic", "bool"]
    raw = [("a", now, 1, '{"k": 1}', True), (None, None, None, None, None), ("", now, 3, "[1]", False)]
    assert convert_columns([list(c) for c in zip(*raw)], types) == convert_rows(raw, types)
    assert convert_columns([list(c) for c in zip(*raw)], types)[0][1] == now.replace(tzinfo=timezone.utc)


def test_bools_are_bools_on_clickhouse(stores):
    """A comparison's value is a UInt8 in ClickHouse: the answer still holds Python's bools, as on
    DuckDB (JSON true/false over HTTP, not 1/0), in the column-wise and the row-wise conversion."""
    duck, ch = stores
    q = "print a = 1 == 1, b = 2 < 1, c = true, d = 1 == long(null)"
    for ws in (duck, ch):
        r = ws.query(q)
        assert r.rows == [[True, False, True, None]]
        assert [type(v) for v in r.rows[0][:3]] == [bool, bool, bool]
    wide = ch.query("range x from 1 to 5 step 1 | extend odd = x % 2 == 1", max_rows=3)       # cut: row-wise
    assert wide.truncated and all(type(r[1]) is bool for r in wide.rows)


def test_a_low_cardinality_string_packs_as_on_duckdb(stores):
    """ClickHouse keeps some string columns LowCardinality: toJSONString of one is LowCardinality
    too, and netatlas_json_value encoded it a second time (pack() of an empty ProcessName after a
    left join gave '\"\"'). Both stores give the same bags."""
    duck, ch = stores
    q = ("datatable(k:string)['nowhere'] | join kind=leftouter (VMBoundPort | project PortId, ProcessName) "
         "on $left.k == $right.PortId | extend P = pack('ProcessName', ProcessName), "
         "Q = tostring(pack('p', ProcessName)) | project P, Q")
    assert duck.query(q).rows == ch.query(q).rows == [[{"ProcessName": ""}, '{"p":""}']]
    q = "VMBoundPort | where isnotempty(ProcessName) | take 1 | project P = pack('n', ProcessName), N = ProcessName"
    p, name = ch.query(q).rows[0]
    assert p == {"n": name}
