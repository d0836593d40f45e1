"""The Log Analytics query API (server/azure/loganalytics.py) through Azure's own client,
azure-monitor-query, unmodified, over https (the SDK sends bearer tokens over https only; it
verifies the workspace's self-signed certificate through ``connection_verify``): a timespan that
restricts TimeGenerated, the same rows and types as ``netatlas query``, batches, a partial result,
Prefer's statistics, render and wait, and each mistake raising what the SDK raises against Azure."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("azure.monitor.query", reason="scripts/test.sh installs azure-monitor-query ([test])")
from azure.core.exceptions import HttpResponseError  # noqa: E402
from azure.monitor.query import LogsBatchQuery, LogsQueryClient, LogsQueryStatus  # noqa: E402

from azure_fixtures import NOW, Key, serve  # noqa: E402

MAX_ROWS = 50


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "loganalytics", True, "--max-rows", str(MAX_ROWS))


@pytest.fixture(scope="module")
def logs(server):
    with LogsQueryClient(Key(server.query_key), endpoint=server.url + "/v1", connection_verify=str(server.cert)) as c:
        yield c


def ref_rows(server, query: str, timespan: str | None) -> list:
    ref = server.reference(query, timespan)
    types = [t for _, t in ref["columns"]]
    # dynamic values travel as JSON text in Log Analytics' answers
    return sorted(([settled(json.dumps(v, separators=(",", ":"))) if t == "dynamic" and v is not None else v
                    for v, t in zip(r, types)] for r in ref["rows"]), key=json.dumps)


def settled(text: str) -> str:
    """A dynamic array's JSON text with its items sorted: make_set's order is no order (two runs of
    one query may list a set's items differently, in Kusto as here)."""
    value = json.loads(text)
    return json.dumps(sorted(value, key=json.dumps), separators=(",", ":")) if isinstance(value, list) else text


def raw_rows(table) -> list:
    return sorted(([v.isoformat().replace("+00:00", "Z") if isinstance(v, datetime)
                    else settled(v) if isinstance(v, str) and v.startswith("[") else v for v in r]
                   for r in table.rows), key=json.dumps)


@pytest.mark.parametrize("query", [
    "VMConnection | summarize Bytes = sum(BytesSent), n = count() by Computer",
    "VMConnection | project TimeGenerated, Computer, Port = DestinationPort, Ok = LinksFailed == 0",
    "VMConnection | summarize make_set(ProcessName) by Computer",
])
def test_a_timespan_restricts_time_generated_and_the_rows_are_netatlas_querys(server, logs, query):
    for span, iso in ((timedelta(hours=1), "PT1H"), ((NOW - timedelta(hours=2), NOW - timedelta(hours=1)),
                                                    f"{(NOW - timedelta(hours=2)).isoformat()}/{(NOW - timedelta(hours=1)).isoformat()}")):
        r = logs.query_workspace(server.workspace_id, query, timespan=span)
        assert r.status == LogsQueryStatus.SUCCESS
        table = r.tables[0]
        ref = server.reference(query, iso)
        assert list(zip(table.columns, table.columns_types)) == ref["columns"]
        assert raw_rows(table) == ref_rows(server, query, iso)
    everything = logs.query_workspace(server.workspace_id, "VMConnection | count", timespan=None).tables[0].rows[0][0]
    last_hour = logs.query_workspace(server.workspace_id, "VMConnection | count", timespan=timedelta(hours=1)).tables[0].rows[0][0]
    assert (everything, last_hour) == (60, 20)


def test_types_as_log_analytics_sends_them(logs, server):
    r = logs.query_workspace(server.workspace_id, "print d = dynamic({'a': [1]}), t = 90m, g = guid(00000000-0000-0000-0000-00000000000a), "
                                                  "w = datetime(2024-01-01 10:00), l = 1, r = 0.5, b = true, s = 'x', m = decimal(2.5), i = int(7)",
                             timespan=None)
    table = r.tables[0]
    assert table.columns_types == ["dynamic", "timespan", "guid", "datetime", "long", "real", "bool", "string", "decimal", "int"]
    row = table.rows[0]
    assert json.loads(row["d"]) == {"a": [1]} and row["t"] == "01:30:00" and uuid.UUID(row["g"]).int == 10
    assert row["w"] == datetime(2024, 1, 1, 10, tzinfo=timezone.utc)
    assert (row["l"], row["r"], row["b"], row["s"], row["m"], row["i"]) == (1, 0.5, True, "x", "2.5", 7)


def test_a_result_past_the_limit_is_a_partial_result(logs, server):
    r = logs.query_workspace(server.workspace_id, "range x from 1 to 100 step 1", timespan=None)
    assert r.status == LogsQueryStatus.PARTIAL
    assert len(r.partial_data[0].rows) == MAX_ROWS
    assert r.partial_error.code == "PartialError" and f"{MAX_ROWS} rows are shown" in r.partial_error.message


def test_statistics_render_and_wait(logs, server):
    r = logs.query_workspace(server.workspace_id, "VMConnection | summarize count() by Computer | render piechart with (title='Share')",
                             timespan=None, include_statistics=True, include_visualization=True)
    assert r.visualization["visualization"] == "piechart" and r.visualization["title"] == "Share"
    assert r.statistics["query"]["executionTime"] > 0
    plain = logs.query_workspace(server.workspace_id, "print 1", timespan=None)
    assert plain.visualization is None and plain.statistics is None
    with pytest.raises(HttpResponseError) as e:
        logs.query_workspace(server.workspace_id, "range x from 1 to 100000000 step 1 | summarize dcount(strcat('k', x))",
                             timespan=None, server_timeout=1)
    assert e.value.status_code == 504 and "time limit of 1 s" in e.value.model.message


def test_batches_answer_each_query_as_alone(logs, server):
    results = logs.query_batch([
        LogsBatchQuery(server.workspace_id, "VMConnection | count", timespan=timedelta(hours=2)),
        LogsBatchQuery(server.workspace_id, "VMConnection | where", timespan=None),
        LogsBatchQuery(server.workspace_id, "range x from 1 to 100 step 1", timespan=None),
        LogsBatchQuery(server.workspace_id, "print s = 'x'", timespan=None, include_visualization=True),
    ])
    assert [r.status for r in results] == [LogsQueryStatus.SUCCESS, LogsQueryStatus.FAILURE, LogsQueryStatus.PARTIAL,
                                           LogsQueryStatus.SUCCESS]
    assert results[0].tables[0].rows[0][0] == 40
    assert results[1].code == "BadArgumentError" and "(line 1, column" in results[1].message
    assert len(results[2].partial_data[0].rows) == MAX_ROWS
    assert results[3].visualization["visualization"] is None


def test_mistakes_raise_http_response_errors_with_our_message(logs, server):
    with pytest.raises(HttpResponseError) as e:
        logs.query_workspace(server.workspace_id, "VMConnection | project Nope", timespan=None)
    assert e.value.status_code == 400 and e.value.error.code == "BadArgumentError"
    assert "Nope" in e.value.model.message and "(line 1, column 24)" in e.value.model.message
    with pytest.raises(HttpResponseError) as e:
        logs.query_workspace(str(uuid.uuid4()), "print 1", timespan=None)
    assert e.value.status_code == 404 and e.value.error.code == "WorkspaceNotFoundError"
    assert logs.query_workspace(server.workspace_id, "print 1", timespan=None,
                                additional_workspaces=[server.workspace_id]).tables[0].rows[0][0] == 1
    with pytest.raises(HttpResponseError, match="is not this one"):
        logs.query_workspace(server.workspace_id, "print 1", timespan=None, additional_workspaces=[str(uuid.uuid4())])


def test_keys_are_checked(server):
    with LogsQueryClient(Key("not-a-key"), endpoint=server.url + "/v1", connection_verify=str(server.cert)) as c:
        with pytest.raises(HttpResponseError) as e:
            c.query_workspace(server.workspace_id, "print 1", timespan=None)
    assert e.value.status_code == 403


def test_get_with_query_and_timespan(server):
    from urllib.parse import urlencode
    path = f"/v1/workspaces/{server.workspace_id}/query?" + urlencode({"query": "VMConnection | count", "timespan": "PT1H"})
    status, headers, body = server.request("GET", path, headers={"Authorization": f"Bearer {server.query_key}",
                                                                 "Prefer": "include-statistics=true"})
    assert status == 200 and body["tables"][0]["rows"] == [[20]]
    assert headers["preference-applied"] == "include-statistics=true" and "statistics" in body
    status, _, body = server.request("GET", path.replace("PT1H", "P1Y"), headers={"Authorization": f"Bearer {server.query_key}"})
    assert status == 400 and "years and months" in body["error"]["innererror"]["message"]


def test_a_malformed_batch_item_is_its_own_400_never_a_500(server):
    """headers that are not an object of text, a workspace that is not an id: that item's 400, the
    others answered (each was an AttributeError and a 500 for the whole batch)."""
    h = {"Authorization": f"Bearer {server.query_key}", "Content-Type": "application/json"}
    good = {"id": "ok", "body": {"query": "print 1"}}
    for bad, words in [({"headers": [1]}, "'headers' must be an object"),
                       ({"headers": {"Prefer": 5}}, "'headers' must be an object"),
                       ({"workspace": 5}, "'workspace' must be a workspace id")]:
        batch = {"requests": [{"id": "bad", "body": {"query": "print 1"}, **bad}, good]}
        status, _, body = server.request("POST", "/v1/$batch", json.dumps(batch).encode(), h)
        assert status == 200, body
        first, second = body["responses"]
        assert first["status"] == 400 and words in first["body"]["error"]["innererror"]["message"], first
        assert second["status"] == 200 and second["body"]["tables"][0]["rows"] == [[1]]


def test_a_query_of_several_statements_gives_a_table_for_each(logs, server):
    r = logs.query_workspace(server.workspace_id, "print a = 1; print b = 'x', c = 2", timespan=None)
    assert r.status == LogsQueryStatus.SUCCESS
    assert [t.name for t in r.tables] == ["PrimaryResult", "Table_1"]
    assert [t.columns for t in r.tables] == [["a"], ["b", "c"]]
    assert [list(t.rows[0]) for t in r.tables] == [[1], ["x", 2]]
