"""Upgrades: a workspace made by the release before schema versions (tests/fixtures/workspace-v1,
made by tests/fixtures/workspace-v1/make.py at commit 7aed62f) opens with this code, is migrated
to the current schema version, keeps its rows and takes new ones; a newer workspace is refused."""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest

import netatlas
import netatlas.workspace
from netatlas import migrate, rollup
from netatlas.catalogue import Catalogue, Table
from netatlas.store.duckdb import DB_FILE

FIXTURE = Path(__file__).parent / "fixtures" / "workspace-v1"


def v1_workspace(tmp_path: Path) -> Path:
    data = tmp_path / "v1"
    data.mkdir()
    with gzip.open(FIXTURE / "netatlas.duckdb.gz", "rb") as src, open(data / DB_FILE, "wb") as dst:
        shutil.copyfileobj(src, dst)
    shutil.copy(FIXTURE / "workspace.json", data / "workspace.json")
    return data


def raw_version(data: Path):
    con = duckdb.connect(str(data / DB_FILE), read_only=True)
    try:
        return migrate.stored_version(con)
    finally:
        con.close()


def test_the_fixture_is_a_small_v1_workspace(tmp_path):
    assert (FIXTURE / "netatlas.duckdb.gz").stat().st_size < 1_000_000
    data = v1_workspace(tmp_path)
    con = duckdb.connect(str(data / DB_FILE), read_only=True)
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()
    assert migrate.META not in tables and "_netatlas_batches" in tables
    assert raw_version(data) == 1


def test_a_v1_workspace_is_migrated_keeps_its_rows_and_takes_new_ones(tmp_path):
    data = v1_workspace(tmp_path)
    with netatlas.connect(data) as ws:
        assert ws.upgrade.found == 1 and ws.upgrade.version == migrate.SCHEMA_VERSION
        assert [step[:6] for step in ws.upgrade.steps] == ["1 -> 2", "2 -> 3"]
        # VMConnection's hourly rollup (rollup.py) built from the rows the old release stored
        assert ws.connection.execute(f"SELECT sum(Records), sum(Sent) FROM {rollup.TABLE}").fetchone() == (12, 12018)
        r = ws.query("VMConnection | summarize n = count(), sent = sum(BytesSent) by Computer")
        assert r.rows == [["web-01", 12, 12018]]
        assert ws.query("VMComputer | project Computer, Ipv4Addresses").rows == [["web-01", ["10.0.0.11"]]]
        assert ws.query("VMBoundPort | project Port").rows == [[443]]
        assert ws.query("Usage | summarize sum(Quantity) by DataType | count").rows == [[4]]
        assert ws.retention()["VMConnection"] == 3650
        # a batch id stored by the old release is still deduplicated
        assert ws.ingest("VMConnection", [{"TimeGenerated": "2026-11-30T10:09:00Z"}],
                         batch_id="v1-connection-0").duplicate
        report = ws.ingest("VMConnection", [{"TimeGenerated": "2026-12-01T10:00:00Z", "Computer": "web-02",
                                             "BytesSent": 5}], batch_id="v2-connection-0")
        assert report.records == 1 and not report.duplicate
        assert ws.query("VMConnection | count").rows == [[13]]
    assert raw_version(data) == migrate.SCHEMA_VERSION
    with netatlas.connect(data) as ws:         # a second open has nothing to do
        assert ws.upgrade.found == migrate.SCHEMA_VERSION and not ws.upgrade.changed
        assert ws.query("VMConnection | count").rows == [[13]]


def test_a_new_workspace_records_the_current_version(tmp_path):
    with netatlas.connect(tmp_path / "new") as ws:
        assert ws.upgrade.found is None and not ws.upgrade.steps
    assert raw_version(tmp_path / "new") == migrate.SCHEMA_VERSION


def test_a_workspace_of_a_newer_version_is_refused_and_left_as_it_was(tmp_path):
    data = tmp_path / "future"
    netatlas.connect(data).close()
    con = duckdb.connect(str(data / DB_FILE))
    con.execute(f"UPDATE {migrate.META} SET value = '{migrate.SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(migrate.SchemaVersionError,
                       match=rf"newer netatlas \(schema version {migrate.SCHEMA_VERSION + 1}; this netatlas "
                       rf"knows versions up to {migrate.SCHEMA_VERSION}\)"):
        netatlas.connect(data)
    assert raw_version(data) == migrate.SCHEMA_VERSION + 1     # and the file is released: it opens again


def test_the_command_line_says_the_workspace_is_too_new(tmp_path, capsys):
    from netatlas.cli import main
    data = tmp_path / "future"
    netatlas.connect(data).close()
    con = duckdb.connect(str(data / DB_FILE))
    con.execute(f"UPDATE {migrate.META} SET value = '99' WHERE key = 'schema_version'")
    con.close()
    assert main(["query", "--data", str(data), "VMConnection | count"]) == 1
    err = capsys.readouterr().err
    assert "WORKSPACE_TOO_NEW" in err and "schema version 99" in err and "Traceback" not in err


def test_catalogue_columns_missing_from_an_old_file_are_added(tmp_path):
    """A later release's catalogue with a column the v1 file lacks: the column is added, old rows
    read '' (strings are never null), and new records can fill it."""
    data = v1_workspace(tmp_path)
    base = Catalogue.load()
    conn = base.get("VMConnection")
    extra = Table(conn.name, conn.columns + (("NetatlasFlowLabel", "string"), ("NetatlasHops", "long")))
    catalogue = Catalogue(dict(base.tables) | {conn.name: extra})
    ws = netatlas.workspace.Workspace(data, catalogue)
    try:
        # (the v1 file also lacks the columns later releases gave ThreatIntelligenceIndicator: added too)
        assert [c for c in ws.upgrade.added_columns if c.startswith("VMConnection.")] == \
            ["VMConnection.NetatlasFlowLabel", "VMConnection.NetatlasHops"]
        ws.ingest("VMConnection", [{"TimeGenerated": "2026-12-01T10:00:00Z", "Computer": "web-02",
                                    "NetatlasFlowLabel": "x", "NetatlasHops": 3}])
        r = ws.query("VMConnection | summarize count() by NetatlasFlowLabel, NetatlasHops | order by NetatlasFlowLabel asc")
        assert r.rows == [["", None, 12], ["x", 3, 1]]
    finally:
        ws.close()


def test_a_failing_migration_leaves_the_file_at_its_old_version(tmp_path, monkeypatch):
    data = v1_workspace(tmp_path)

    def broken(con, catalogue):
        con.execute(f'CREATE TABLE IF NOT EXISTS {migrate.META} ("key" VARCHAR PRIMARY KEY, value VARCHAR)')
        raise RuntimeError("step failed")
    monkeypatch.setitem(migrate.MIGRATIONS, 1, migrate.Migration(1, "broken", broken))
    with pytest.raises(RuntimeError, match="step failed"):
        netatlas.connect(data)
    assert raw_version(data) == 1
    monkeypatch.undo()
    with netatlas.connect(data) as ws:
        assert ws.upgrade.found == 1 and ws.query("VMConnection | count").rows == [[12]]


def test_a_v1_workspace_holding_usage_as_a_table_gets_the_view(tmp_path):
    """Workspaces from before Usage became a view held it as a table of derived data; the 1 -> 2
    step drops it so the view over _netatlas_usage takes its place."""
    data = v1_workspace(tmp_path)
    con = duckdb.connect(str(data / DB_FILE))
    con.execute('DROP VIEW "Usage"')
    con.execute('CREATE TABLE "Usage" (TimeGenerated TIMESTAMP, DataType VARCHAR, Quantity DOUBLE)')
    con.execute("INSERT INTO \"Usage\" VALUES ('2020-01-01', 'Stale', 99)")
    con.close()
    with netatlas.connect(data) as ws:
        kind = ws.connection.execute("SELECT table_type FROM information_schema.tables "
                                     "WHERE table_name = 'Usage'").fetchone()[0]
        assert kind == "VIEW"
        r = ws.query("Usage | summarize by DataType | order by DataType asc")
        assert r.rows == [["VMBoundPort"], ["VMComputer"], ["VMConnection"], ["VMProcess"]]
