"""The Kusto REST API (server/azure/kusto.py) through Azure's own client, azure-kusto-data,
unmodified: over http and https, queries with the same rows and column types as ``netatlas query``,
ClientRequestProperties (parameters, servertimeout, truncation), render's Visualization, the
management commands tools send, progressive answers, v1 answers, and each mistake raising in the
client what Kusto's own would raise, with our message."""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timedelta
from decimal import Decimal

import pytest

azure_kusto = pytest.importorskip("azure.kusto.data", reason="scripts/test.sh installs azure-kusto-data ([test])")
from azure.kusto.data import ClientRequestProperties, KustoClient, KustoConnectionStringBuilder  # noqa: E402
from azure.kusto.data.exceptions import KustoApiError, KustoMultiApiError, KustoServiceError  # noqa: E402
from azure.kusto.data.response import KustoResponseDataSetV1  # noqa: E402

from azure_fixtures import COMPUTERS, serve  # noqa: E402

QUERIES = [
    "VMConnection | summarize Bytes = sum(BytesSent), Links = sum(LinksEstablished) by Computer",
    "VMConnection | where DestinationPort == 443 | project TimeGenerated, Computer, ProcessName, BytesSent | order by TimeGenerated desc",
    "VMConnection | summarize count() by bin(TimeGenerated, 1h), Direction",
    "VMConnection | take 3 | project Computer, When = TimeGenerated, Age = now() - now(), Ip = parse_ipv4(SourceIp)",
]
TYPED = ("print l = 1, s = 'x', d = datetime(2024-01-01 10:00:00.5), t = 1h, y = dynamic({'k': [1, 2]}), "
         "g = guid(00000000-0000-0000-0000-000000000001), r = 1.5, b = true, i = int(3), m = decimal(1.25), "
         "n = long(null)")


@pytest.fixture(scope="module")
def http_server(tmp_path_factory):
    yield from serve(tmp_path_factory, "kusto-http", https=False)


@pytest.fixture(scope="module")
def https_server(tmp_path_factory):
    yield from serve(tmp_path_factory, "kusto-https", https=True)


def client_of(server, key: str | None = None) -> KustoClient:
    kcsb = KustoConnectionStringBuilder.with_aad_application_token_authentication(server.url, key or server.query_key)
    return KustoClient(kcsb)


@pytest.fixture(scope="module")
def kusto(http_server):
    with client_of(http_server) as c:
        yield c


@pytest.fixture(scope="module")
def kusto_https(https_server):
    import os
    old = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(https_server.cert)      # trust the workspace's own certificate
    try:
        with client_of(https_server) as c:
            yield c
    finally:
        if old is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = old


def as_reference(table, ordered: bool) -> dict:
    rows = table.raw_rows if ordered else sorted(table.raw_rows, key=json.dumps)
    return {"columns": [(c.column_name, c.column_type) for c in table.columns], "rows": rows}


def reference(server, query: str) -> dict:
    ref = server.reference(query)
    if "order by" not in query:
        ref["rows"] = sorted(ref["rows"], key=json.dumps)
    return ref


@pytest.mark.parametrize("query", QUERIES)
def test_queries_give_the_rows_and_types_of_netatlas_query_over_http_and_https(http_server, kusto, https_server,
                                                                                kusto_https, query):
    for server, client in ((http_server, kusto), (https_server, kusto_https)):
        ref = reference(server, query)
        got = client.execute("netatlas", query).primary_results[0]
        assert as_reference(got, "order by" in query) == ref
        assert len(ref["rows"]) > 0
    assert kusto.execute_query("netatlas", QUERIES[0]).primary_results[0].raw_rows == \
        http_server.reference(QUERIES[0])["rows"]


def test_every_type_arrives_typed_as_kusto_types_it(kusto):
    r = kusto.execute("netatlas", TYPED)
    assert [t.table_kind.value for t in r.tables] == ["QueryProperties", "PrimaryResult", "QueryCompletionInformation"]
    table = r.primary_results[0]
    assert [(c.column_name, c.column_type) for c in table.columns] == [
        ("l", "long"), ("s", "string"), ("d", "datetime"), ("t", "timespan"), ("y", "dynamic"), ("g", "guid"),
        ("r", "real"), ("b", "bool"), ("i", "int"), ("m", "decimal"), ("n", "long")]
    row = table.rows[0]
    assert row["l"] == 1 and row["s"] == "x" and row["r"] == 1.5 and row["b"] is True and row["i"] == 3
    assert row["d"].replace(tzinfo=None) == datetime(2024, 1, 1, 10, 0, 0, 500000)
    assert row["t"] == timedelta(hours=1)
    assert row["y"] == {"k": [1, 2]}
    assert uuid.UUID(row["g"]) == uuid.UUID(int=1)
    assert row["m"] == Decimal("1.25") and row["n"] is None
    assert r.errors_count == 0


def test_the_database_is_netatlas_or_the_workspace_id(kusto, http_server):
    assert kusto.execute(http_server.workspace_id, "print 1").primary_results[0].raw_rows == [[1]]
    assert kusto.execute(None, "print 1").primary_results[0].raw_rows == [[1]]      # the default database
    with pytest.raises(KustoApiError) as e:
        kusto.execute("Samples", "print 1")
    assert "Entity ID 'Samples' of kind 'Database' was not found" in str(e.value)
    assert e.value.get_api_error().code == "BadRequest_EntityNotFound"


def test_query_parameters_of_each_type(kusto):
    p = ClientRequestProperties()
    for name, value in {"n": "41", "s": "it's", "d": "datetime(2024-02-01 10:00)", "w": "1h", "y": "dynamic([1, 2])",
                        "c": COMPUTERS[0]}.items():
        p.set_parameter(name, value)
    q = ("declare query_parameters(n:long, s:string, d:datetime, w:timespan, y:dynamic, c:string, z:long = 7);\n"
         "print n = n + 1, s, d, w = w / 2, y = array_length(y), z, hits = toscalar(VMConnection | where Computer == c | count)")
    row = kusto.execute("netatlas", q, p).primary_results[0].raw_rows[0]
    assert row == [42, "it's", "2024-02-01T10:00:00Z", "00:30:00", 2, 7, 20]


def test_a_wrong_parameter_names_it(kusto):
    p = ClientRequestProperties()
    p.set_parameter("n", "many")
    with pytest.raises(KustoApiError) as e:
        kusto.execute("netatlas", "declare query_parameters(n:long); print n", p)
    assert "query parameter 'n' must be long" in str(e.value)
    assert e.value.is_semantic_error()


def test_truncation_raises_as_kusto_does_unless_deferred(kusto):
    p = ClientRequestProperties()
    p.set_option("truncationmaxrecords", 5)
    with pytest.raises(KustoMultiApiError) as e:
        kusto.execute("netatlas", "range x from 1 to 10 step 1", p)
    assert "E_QUERY_RESULT_SET_TOO_LARGE" in str(e.value) and "5 rows are shown" in str(e.value)
    p.set_option("deferpartialqueryfailures", True)
    r = kusto.execute("netatlas", "range x from 1 to 10 step 1", p)
    assert r.primary_results[0].raw_rows == [[x] for x in range(1, 6)]
    assert r.errors_count == 1 and "E_QUERY_RESULT_SET_TOO_LARGE" in r.get_exceptions()[0]
    p = ClientRequestProperties()
    p.set_option("truncationmaxrecords", 5)
    p.set_option("notruncation", True)
    assert len(kusto.execute("netatlas", "range x from 1 to 10 step 1", p).primary_results[0]) == 10


def test_truncation_by_size(kusto):
    p = ClientRequestProperties()
    p.set_option("truncationmaxsize", 1000)
    with pytest.raises(KustoMultiApiError) as e:
        kusto.execute("netatlas", "range x from 1 to 10000 step 1 | extend s = strcat('row ', x)", p)
    assert "data size limit 1,000 bytes" in str(e.value)


def test_servertimeout_stops_a_long_query(kusto, http_server):
    p = ClientRequestProperties()
    p.set_option("servertimeout", timedelta(milliseconds=1))        # the SDK sends str(timedelta)
    with pytest.raises(KustoApiError) as e:
        kusto.execute("netatlas", "range x from 1 to 100000000 step 1 | summarize dcount(strcat('k', x))", p)
    assert e.value.get_api_error().code == "Request_ExecutionTimeout"
    assert e.value.http_response.status_code == 504
    p.set_option("servertimeout", timedelta(days=2))                # '2 days, 0:00:00': longer than the server's
    assert kusto.execute("netatlas", "print 1", p).primary_results[0].raw_rows == [[1]]
    h = {"Authorization": f"Bearer {http_server.query_key}", "Content-Type": "application/json"}
    for value, status in (("00:04:00", 200), ("soon", 400)):
        body = {"csl": "print 1", "properties": {"Options": {"servertimeout": value}}}
        got, _, answer = http_server.request("POST", "/v2/rest/query", json.dumps(body).encode(), h)
        assert got == status, answer
    assert "the timeout 'soon' is not a timespan" in answer["error"]["@message"]


def test_render_travels_as_the_visualization_property(kusto):
    r = kusto.execute("netatlas", "VMConnection | summarize count() by bin(TimeGenerated, 1h), Computer "
                                  "| render timechart with (title='Links', ycolumns=count_, series=Computer)")
    props = next(t for t in r.tables if t.table_kind.value == "QueryProperties")
    key, value = props.raw_rows[0][1], json.loads(props.raw_rows[0][2])
    assert key == "Visualization"
    assert value["Visualization"] == "timechart" and value["Title"] == "Links"
    assert value["YColumns"] == "count_" and value["Series"] == "Computer" and value["Ymin"] == "NaN"
    none = json.loads(next(t for t in kusto.execute("netatlas", "print 1").tables
                           if t.table_kind.value == "QueryProperties").raw_rows[0][2])
    assert none["Visualization"] is None


def test_answers_stream_and_progressive_frames(kusto, http_server):
    r = kusto.execute_streaming_query("netatlas", "range x from 1 to 2000 step 1")
    assert [row[0] for row in next(r.iter_primary_results())] == list(range(1, 2001))
    # the Python SDK reads no progressive answer (it says so); other clients do: the frames
    h = {"Authorization": f"Bearer {http_server.query_key}", "Content-Type": "application/json"}
    body = {"csl": "range x from 1 to 3 step 1", "properties": {"Options": {"results_progressive_enabled": True}}}
    status, _, frames = http_server.request("POST", "/v2/rest/query", json.dumps(body).encode(), h)
    assert status == 200 and frames[0]["IsProgressive"] is True
    assert [f["FrameType"] for f in frames] == ["DataSetHeader", "DataTable", "TableHeader", "TableFragment",
                                                "TableCompletion", "DataTable", "DataSetCompletion"]
    assert frames[3]["Rows"] == [[1], [2], [3]] and frames[4]["RowCount"] == 3


def test_mistakes_raise_kusto_errors_with_our_message_and_place(kusto):
    with pytest.raises(KustoApiError) as e:
        kusto.execute("netatlas", "VMConnection | where")
    err = e.value.get_api_error()
    assert err.type == "Kusto.Data.Exceptions.SyntaxException" and err.description.startswith("Syntax error: ")
    assert "(line 1, column" in err.description and not e.value.is_semantic_error()
    with pytest.raises(KustoApiError) as e:
        kusto.execute("netatlas", "VMConnection | project Nope")
    assert e.value.is_semantic_error() and "Nope" in str(e.value) and "(line 1, column 24)" in str(e.value)
    assert e.value.http_response.status_code == 400


def test_management_commands(kusto, http_server):
    tables = kusto.execute_mgmt("netatlas", ".show tables").primary_results[0]
    assert "VMConnection" in [r["TableName"] for r in tables]
    schema = kusto.execute_mgmt("netatlas", ".show table VMConnection schema as json").primary_results[0].rows[0]
    cols = json.loads(schema["Schema"])["OrderedColumns"]
    assert {"Name": "BytesSent", "Type": "System.Int64", "CslType": "long"} in cols
    db = json.loads(kusto.execute_mgmt("netatlas", ".show database schema as json").primary_results[0].rows[0][0])
    assert "VMConnection" in db["Databases"]["netatlas"]["Tables"]
    flat = kusto.execute_mgmt("netatlas", ".show database netatlas schema").primary_results[0]
    assert ["netatlas", "VMConnection", "BytesSent", "System.Int64"] in [r.to_list()[:4] for r in flat]
    dbs = kusto.execute_mgmt(None, ".show databases").primary_results[0].rows
    assert [r["DatabaseName"] for r in dbs] == ["netatlas"] and dbs[0]["PrettyName"] == http_server.workspace_id
    assert kusto.execute_mgmt("netatlas", ".show version").primary_results[0].rows[0]["ServiceType"] == "Engine"
    assert len(kusto.execute_mgmt("netatlas", ".show functions").primary_results[0]) == 0
    with pytest.raises(KustoApiError, match="Table 'Nope' was not found"):
        kusto.execute_mgmt("netatlas", ".show table Nope schema as json")
    with pytest.raises(KustoApiError, match="is not one netatlas answers"):
        kusto.execute_mgmt("netatlas", ".drop table VMConnection")


def test_keys_are_checked(http_server):
    with client_of(http_server, "not-a-key") as c:
        with pytest.raises(KustoServiceError) as e:
            c.execute("netatlas", "print 1")
    assert e.value.http_response.status_code == 403
    status, headers, body = http_server.request("POST", "/v2/rest/query", b'{"csl": "print 1"}',
                                                {"Content-Type": "application/json"})
    assert status == 401 and "Bearer" in headers["www-authenticate"] and "missing" in body["error"]["@message"].lower()
    status, _, body = http_server.request("GET", "/v1/rest/auth/metadata")       # asked before signing in
    assert status == 200 and body["AzureAD"] is None


def test_bad_bodies_are_kusto_bad_requests(http_server):
    h = {"Authorization": f"Bearer {http_server.query_key}", "Content-Type": "application/json"}
    for body, words in [(b"[1]", "JSON object"), (b"{", "JSON"), (b'{"db": "netatlas"}', "'csl'"),
                        (b'{"csl": "print 1", "properties": "{oops"}', "'properties' is not JSON"),
                        (b'{"csl": "print 1", "properties": {"Options": {"truncationmaxrecords": -1}}}',
                         "truncationmaxrecords must be a positive whole number")]:
        status, _, answer = http_server.request("POST", "/v2/rest/query", body, h)
        assert status == 400, answer
        assert words in answer["error"]["@message"], answer
        assert answer["error"]["code"] == "General_BadRequest"
    # a command's db is checked as a query's is (a number named the default database)
    for path in ("/v2/rest/query", "/v1/rest/mgmt"):
        status, _, answer = http_server.request("POST", path, b'{"csl": ".show tables", "db": 5}', h)
        assert status == 400 and "'db' must be a database's name" in answer["error"]["@message"], (path, answer)


def test_v1_answers_parse_with_the_clients_v1_reader(http_server):
    h = {"Authorization": f"Bearer {http_server.query_key}", "Content-Type": "application/json"}
    status, _, body = http_server.request("POST", "/v1/rest/query", json.dumps(
        {"db": "netatlas", "csl": TYPED + " | render table"}).encode(), h)
    assert status == 200
    r = KustoResponseDataSetV1(body)
    assert [t.table_kind.value for t in r.tables] == ["PrimaryResult", "QueryProperties", "QueryCompletionInformation",
                                                     "TableOfContents"]
    row = r.primary_results[0].rows[0]
    assert row["l"] == 1 and json.loads(row["y"]) == {"k": [1, 2]} and row["t"] == timedelta(hours=1)
    assert [c.column_type for c in r.primary_results[0].columns][:3] == ["long", "string", "datetime"]
    assert r.errors_count == 0


def test_a_query_of_several_statements_gives_a_primary_result_for_each(kusto, http_server):
    # Kusto's batch (`T1; T2`): v2 gives each a PrimaryResult table, in order, with its Visualization
    r = kusto.execute("netatlas", "print a = 1; let x = 'y'; print b = x | render table")
    primaries = [t for t in r.tables if t.table_kind.value == "PrimaryResult"]
    assert [[c.column_name for c in t.columns] for t in primaries] == [["a"], ["b"]]
    assert [t.raw_rows for t in primaries] == [[[1]], [["y"]]]
    props = next(t for t in r.tables if t.table_kind.value == "QueryProperties").raw_rows
    assert [(row[0], json.loads(row[2])["Visualization"]) for row in props] == [(1, None), (2, "table")]
    # v1: Table_0 and Table_1 are the results, the table of contents lists both as query results
    h = {"Authorization": f"Bearer {http_server.query_key}", "Content-Type": "application/json"}
    status, _, body = http_server.request("POST", "/v1/rest/query", json.dumps(
        {"db": "netatlas", "csl": "print a = 1; print b = 2"}).encode(), h)
    assert status == 200
    v1 = KustoResponseDataSetV1(body)
    assert [t.table_kind.value for t in v1.tables] == ["PrimaryResult", "PrimaryResult", "QueryProperties",
                                                      "QueryCompletionInformation", "TableOfContents"]
    assert [t.raw_rows for t in v1.primary_results] == [[[1]], [[2]]]
