"""Kqlmagic (the %kql magic of Jupyter notebooks), unmodified, against the Kusto REST API: its
anonymous mode (``kusto://anonymous;cluster=...``, the only one that needs no Azure AD to reach),
which a workspace answers from the addresses its operator names (``--anonymous-query loopback``);
the answer as a pandas DataFrame with Kusto's types, and a chart for ``render timechart``.

Kqlmagic writes its temporary files (schema pages, charts) under the directory it starts in: the
test runs it in a temporary one."""
from __future__ import annotations

import json

import pytest

pytest.importorskip("Kqlmagic", reason="scripts/test.sh installs Kqlmagic ([test])")

from azure_fixtures import filled, Served  # noqa: E402


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Served(filled(tmp_path_factory, "kqlmagic"), False, "--anonymous-query", "loopback").start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def kql(server, tmp_path_factory):
    """A function running %kql in an IPython shell connected to the workspace, anonymously."""
    import os
    from IPython.core.interactiveshell import InteractiveShell
    start = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("kqlmagic-cwd"))
    try:
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "Kqlmagic")
        ip.run_line_magic("config", "Kqlmagic.table_package = 'pandas'")      # no HTML tables to render here
        ip.run_line_magic("config", "Kqlmagic.auto_popup_schema = False")
        ip.run_line_magic("config", "Kqlmagic.short_errors = False")
        ip.run_line_magic("kql", f"kusto://anonymous;cluster='{server.url}';database='netatlas'")
        yield lambda text: ip.run_line_magic("kql", text)
    finally:
        os.chdir(start)


def test_a_query_gives_a_dataframe_of_netatlas_querys_rows(server, kql):
    query = "VMConnection | summarize Bytes = sum(BytesSent), n = count() by Computer | order by Computer asc"
    df = kql(query).to_dataframe()
    ref = server.reference(query)
    assert list(df.columns) == [c for c, _ in ref["columns"]]
    assert df.values.tolist() == ref["rows"]


def test_kusto_types_become_pandas_types(kql):
    df = kql("print w = datetime(2024-01-01 10:00), t = 90m, d = dynamic({'a': [1]}), "
             "g = guid(00000000-0000-0000-0000-000000000001), b = true, l = 7, r = 0.5, s = 'x'").to_dataframe()
    kinds = {c: str(t) for c, t in df.dtypes.items()}
    assert kinds["w"].startswith("datetime64") and "UTC" in kinds["w"] and kinds["t"].startswith("timedelta64")
    assert kinds["b"] == "bool" and kinds["l"] == "int64" and kinds["r"] == "float64"
    row = df.iloc[0]
    assert row["w"].isoformat() == "2024-01-01T10:00:00+00:00" and row["t"].total_seconds() == 5400
    assert row["d"] == {"a": [1]} and row["g"] == "00000000-0000-0000-0000-000000000001" and row["s"] == "x"


def test_render_timechart_makes_a_chart(kql):
    r = kql("VMConnection | summarize n = count() by bin(TimeGenerated, 1h), Computer "
            "| render timechart with (title='Connections')")
    assert r.is_chart and r.visualization == "timechart"
    assert r.visualization_properties["Title"] == "Connections"
    assert len(r.to_dataframe()) > 0


def test_without_the_setting_a_request_without_a_key_is_refused(tmp_path_factory):
    s = Served(filled(tmp_path_factory, "kqlmagic-closed"), False).start()
    try:
        status, _, body = s.request("POST", "/v2/rest/query", json.dumps({"csl": "print 1"}).encode(),
                                    {"Content-Type": "application/json"})
        assert status == 401 and "missing" in body["error"]["@message"].lower()
    finally:
        s.stop()
