"""The HTTP Data Collector API (server/azure/collector.py): a post signed exactly as Azure's
documentation builds it (this file's own HMAC, not netatlas's), custom tables and columns made on
first sight with Azure's type suffixes, time-generated-field, and each refusal in Azure's words."""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from azure_fixtures import Served, filled

WORKSPACE_ROWS = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Served(filled(tmp_path_factory, "collector"), False).start()
    from netatlas import keys
    s.shared_key = keys.load(s.data).by_role("ingest")[0].secret
    yield s
    s.stop()


def build_signature(customer_id, shared_key, date, content_length, method, content_type, resource):
    """As in Azure's Python sample for the Data Collector API."""
    x_headers = "x-ms-date:" + date
    string_to_hash = method + "\n" + str(content_length) + "\n" + content_type + "\n" + x_headers + "\n" + resource
    bytes_to_hash = bytes(string_to_hash, encoding="utf-8")
    decoded_key = base64.b64decode(shared_key)
    encoded_hash = base64.b64encode(hmac.new(decoded_key, bytes_to_hash, digestmod=hashlib.sha256).digest()).decode()
    return f"SharedKey {customer_id}:{encoded_hash}"


def post_data(server, body, log_type, *, time_field=None, key=None, api_version="2016-04-01", content_type="application/json"):
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    rfc1123date = format_datetime(datetime.now(timezone.utc), usegmt=True)
    signature = build_signature(server.workspace_id, key or server.shared_key, rfc1123date, len(body), "POST",
                                content_type, "/api/logs")
    headers = {"content-type": content_type, "Authorization": signature, "Log-Type": log_type, "x-ms-date": rfc1123date}
    if time_field:
        headers["time-generated-field"] = time_field
    return server.request("POST", f"/api/logs?api-version={api_version}", body, headers)


def test_a_post_makes_its_table_and_columns_with_azures_suffixes(server):
    records = [{"Host": "web-1", "Bytes": 1200, "Ok": True, "When": "2026-01-02T03:04:05Z",
                "Id": "0f8fad5b-d9cb-469f-a165-70867728950e", "Tags": {"env": "prod"}, "Nothing": None},
               {"Host": "web-2", "Bytes": 3.5, "Ok": False, "Extra": "new"}]
    status, _, body = post_data(server, records, "AppEvents")
    assert status == 200 and not body
    ref = server.reference("AppEvents_CL | project Host_s, Bytes_d, Ok_b, When_t, Id_g, Tags_s, Extra_s | order by Host_s asc")
    assert ref["columns"] == [("Host_s", "string"), ("Bytes_d", "real"), ("Ok_b", "bool"), ("When_t", "datetime"),
                              ("Id_g", "guid"), ("Tags_s", "string"), ("Extra_s", "string")]
    assert ref["rows"] == [["web-1", 1200.0, True, "2026-01-02T03:04:05Z", "0f8fad5b-d9cb-469f-a165-70867728950e",
                            '{"env":"prod"}', ""],
                           ["web-2", 3.5, False, None, None, "", "new"]]
    # TimeGenerated is the time of arrival; a null made no column
    fresh = server.reference("AppEvents_CL | summarize max(TimeGenerated)")["rows"][0][0]
    assert abs((datetime.fromisoformat(fresh.replace("Z", "+00:00")) - datetime.now(timezone.utc)).total_seconds()) < 120
    assert "Nothing_s" not in [r[0] for r in server.reference("AppEvents_CL | getschema | project ColumnName")["rows"]]


def test_a_field_of_another_kind_gets_another_column_and_time_generated_field(server):
    day = (datetime.now(timezone.utc) - timedelta(days=1)).strftime("%Y-%m-%d")
    status, _, answer = post_data(server, [{"Code": "E1", "At": f"{day}T10:00:00Z"}], "Codes", time_field="At")
    assert status == 200, answer
    status, _, answer = post_data(server, [{"Code": 7, "At": f"{day}T11:00:00Z"}], "Codes", time_field="At")
    assert status == 200, answer
    ref = server.reference("Codes_CL | project TimeGenerated, Code_s, Code_d | order by TimeGenerated asc")
    assert ref["rows"] == [[f"{day}T10:00:00Z", "E1", None], [f"{day}T11:00:00Z", "", 7.0]]


@pytest.mark.parametrize("case,status,error", [
    ("bad signature", 403, "InvalidAuthorization"),
    ("no api-version", 400, "MissingApiVersion"),
    ("bad log type", 400, "InvalidLogType"),
    ("not json", 400, "InvalidDataFormat"),
    ("bad time field", 400, "InvalidTimestamp"),
    ("text body", 415, "UnsupportedContentType"),
    ("bad field name", 400, "InvalidDataFormat"),
])
def test_refusals_are_azures_and_store_nothing(server, case, status, error):
    import base64 as b64
    args = dict(body=[{"A": 1}], log_type="Refused")
    if case == "bad signature":
        args["key"] = b64.b64encode(b"x" * 32).decode()
    elif case == "no api-version":
        args["api_version"] = ""
    elif case == "bad log type":
        args["log_type"] = "bad-type"
    elif case == "not json":
        args["body"] = b"{oops"
    elif case == "bad time field":
        args["time_field"] = "A"
    elif case == "text body":
        args["content_type"] = "text/plain"
    elif case == "bad field name":
        args["body"] = [{"a b": 1}]
    body, log_type = args.pop("body"), args.pop("log_type")
    if case == "no api-version":
        got = server.request("POST", "/api/logs", json.dumps(body).encode(), {"content-type": "application/json"})
    else:
        got = post_data(server, body, log_type, **args)
    assert got[0] == status, got
    assert got[2]["Error"] == error and got[2]["Message"]
    status, _, tables = server.request("POST", "/v1/rest/mgmt", b'{"csl": ".show tables"}',
                                       {"Authorization": f"Bearer {server.query_key}", "Content-Type": "application/json"})
    assert status == 200 and "Refused_CL" not in [r[0] for r in tables["Tables"][0]["Rows"]]
