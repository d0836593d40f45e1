"""The Logs Ingestion API (server/azure/ingestion.py) through Azure's own client,
azure-monitor-ingestion, unmodified, over https: a data collection rule defined from Azure's JSON
(PUT /api/dcr/{id}), its KQL transformation applied at ingestion as Azure applies it, into a custom
table made from the transformation's columns and into one of the workspace's own tables; and each
mistake raising HttpResponseError with our words."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

pytest.importorskip("azure.monitor.ingestion", reason="scripts/test.sh installs azure-monitor-ingestion ([test])")
from azure.core.exceptions import HttpResponseError  # noqa: E402
from azure.monitor.ingestion import LogsIngestionClient  # noqa: E402

from azure_fixtures import Key, serve  # noqa: E402

RULE = "dcr-00000000000000000000000000000001"
DEFINITION = {
    "location": "local",
    "properties": {
        "immutableId": RULE,
        "streamDeclarations": {
            "Custom-AppRequests": {"columns": [
                {"name": "Time", "type": "datetime"}, {"name": "Host", "type": "string"},
                {"name": "DurationMs", "type": "long"}, {"name": "Props", "type": "dynamic"}]},
            "Custom-Links": {"columns": [
                {"name": "Time", "type": "datetime"}, {"name": "Machine", "type": "string"},
                {"name": "Port", "type": "int"}]},
        },
        "destinations": {"logAnalytics": [{"workspaceResourceId": "netatlas", "name": "ws"}]},
        "dataFlows": [
            {"streams": ["Custom-AppRequests"], "destinations": ["ws"], "outputStream": "Custom-AppRequests_CL",
             "transformKql": "source | where DurationMs >= 0 | extend TimeGenerated = Time, Seconds = DurationMs / 1000.0, "
                             "Route = tostring(Props.route) | project TimeGenerated, Host, Seconds, Route"},
            {"streams": ["Custom-Links"], "destinations": ["ws"], "outputStream": "Microsoft-VMConnection",
             "transformKql": "source | project TimeGenerated = Time, Computer = Machine, DestinationPort = Port, "
                             "Direction = 'outbound', LinksEstablished = 1"},
        ],
    },
}


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    yield from serve(tmp_path_factory, "ingestion", True)


@pytest.fixture(scope="module")
def admin(server):
    from netatlas import keys
    return keys.create_key(server.data, "admin").secret


@pytest.fixture(scope="module")
def defined(server, admin):
    status, _, body = server.request("PUT", f"/api/dcr/{RULE}", json.dumps(DEFINITION).encode(),
                                     {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    assert status == 200, body
    return body


@pytest.fixture(scope="module")
def client(server, defined):
    from netatlas import keys
    ingest_key = keys.load(server.data).by_role("ingest")[0].secret
    with LogsIngestionClient(endpoint=server.url, credential=Key(ingest_key), connection_verify=str(server.cert)) as c:
        yield c


def iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_rule_makes_its_custom_table_from_the_transformation(server, defined):
    assert defined["tables"] == ["AppRequests_CL", "VMConnection"]
    schema = server.reference("AppRequests_CL | getschema | project ColumnName, ColumnType")["rows"]
    assert schema == [["TimeGenerated", "datetime"], ["Host", "string"], ["Seconds", "real"], ["Route", "string"]]


def test_upload_applies_the_transformation(server, client):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    logs = [{"Time": iso(now - timedelta(minutes=i)), "Host": f"app-{i % 2}", "DurationMs": 250 * i - 250,
             "Props": {"route": f"/r{i}"}} for i in range(5)]
    client.upload(rule_id=RULE, stream_name="Custom-AppRequests", logs=logs)
    ref = server.reference("AppRequests_CL | project TimeGenerated, Host, Seconds, Route | order by Seconds asc")
    assert ref["rows"] == [[iso(now - timedelta(minutes=i)), f"app-{i % 2}", (250 * i - 250) / 1000, f"/r{i}"]
                           for i in range(1, 5)]          # the record of -250 ms was dropped by the where


def test_upload_into_one_of_the_workspaces_tables(server, client):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    before = server.reference("VMConnection | where Computer == 'dcr-host' | count")["rows"][0][0]
    client.upload(rule_id=RULE, stream_name="Custom-Links",
                  logs=[{"Time": iso(now), "Machine": "dcr-host", "Port": 8443}] * 3)
    ref = server.reference("VMConnection | where Computer == 'dcr-host' | summarize n = count(), links = sum(LinksEstablished) by DestinationPort, Direction")
    assert before == 0 and ref["rows"] == [[8443, "outbound", 3, 3]]


def test_many_records_go_in_several_gzip_posts(server, client):
    now = datetime.now(timezone.utc).replace(microsecond=0)
    logs = [{"Time": iso(now), "Host": "bulk", "DurationMs": i, "Props": {"route": "x" * 200}} for i in range(8000)]
    client.upload(rule_id=RULE, stream_name="Custom-AppRequests", logs=logs)     # > 1 MB: the SDK splits it
    assert server.reference("AppRequests_CL | where Host == 'bulk' | count")["rows"] == [[8000]]


def test_mistakes_raise_with_our_words(server, client):
    with pytest.raises(HttpResponseError) as e:
        client.upload(rule_id="dcr-nope", stream_name="Custom-AppRequests", logs=[{"Time": "2026-01-01"}])
    assert e.value.status_code == 404 and "no data collection rule 'dcr-nope'" in str(e.value)
    with pytest.raises(HttpResponseError) as e:
        client.upload(rule_id=RULE, stream_name="Custom-Nope", logs=[{"Time": "2026-01-01"}])
    assert e.value.status_code == 404 and "declares no stream 'Custom-Nope'" in str(e.value)
    old = iso(datetime.now(timezone.utc) - timedelta(days=400))
    with pytest.raises(HttpResponseError) as e:
        client.upload(rule_id=RULE, stream_name="Custom-AppRequests", logs=[{"Time": old, "Host": "old", "DurationMs": 1}])
    assert e.value.status_code == 400 and "TimeGenerated" in str(e.value)
    assert server.reference("AppRequests_CL | where Host == 'old' | count")["rows"] == [[0]]


@pytest.mark.parametrize("change,words", [
    (lambda d: d["properties"]["dataFlows"][0].update(transformKql="source | extend TimeGenerated = Nope"), "does not compile"),
    (lambda d: d["properties"]["dataFlows"][0].update(transformKql="source | project Host"), "must give TimeGenerated"),
    (lambda d: d["properties"]["dataFlows"][1].update(transformKql="source | project TimeGenerated = Time, Nope = 1"),
     "VMConnection has no column Nope"),
    (lambda d: d["properties"]["streamDeclarations"]["Custom-Links"]["columns"].append({"name": "X", "type": "blob"}),
     "has type 'blob'"),
    (lambda d: d["properties"]["dataFlows"][0].update(outputStream="Custom-NoSuffix"), "ending in _CL"),
    # a stream that is not a name (a list: unhashable, it was a TypeError and a 500)
    (lambda d: d["properties"]["dataFlows"][0].update(streams=[["Custom-Links"]]), "must name declared streams"),
])
def test_bad_rules_are_refused_with_what_is_wrong(server, admin, change, words):
    doc = json.loads(json.dumps(DEFINITION))
    doc["properties"]["immutableId"] = "dcr-bad"
    change(doc)
    status, _, body = server.request("PUT", "/api/dcr/dcr-bad", json.dumps(doc).encode(),
                                     {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    assert status == 400 and words in body["error"]["message"], body
    status, _, body = server.request("GET", "/api/dcr", headers={"Authorization": f"Bearer {admin}"})
    assert "dcr-bad" not in body["rules"]


def test_rules_need_an_admin_key_and_an_ingest_key(server, defined):
    status, _, _ = server.request("GET", "/api/dcr", headers={"Authorization": f"Bearer {server.query_key}"})
    assert status == 403
    status, _, body = server.request("POST", f"/dataCollectionRules/{RULE}/streams/Custom-Links?api-version=2023-01-01",
                                     b"[]", {"Authorization": f"Bearer {server.query_key}", "Content-Type": "application/json"})
    assert status == 403 and body["error"]["code"] == "Forbidden"
