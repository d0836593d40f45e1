"""One transaction helper (store/duckdb.in_transaction) for the workspace's writes: the backup
copy, a custom table's definition, migrations, the threat indicators' import, demo remove and the
rollup's compaction. A COMMIT that fails has ended the transaction already: the error raised is the
COMMIT's, not the ROLLBACK's "no transaction is active" that hid it."""
from __future__ import annotations

import duckdb
import pytest

import netatlas
from netatlas import custom
from netatlas.store.duckdb import in_transaction


def test_the_helper_commits_and_returns():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    assert in_transaction(con, lambda c: c.execute("INSERT INTO t VALUES (1)").fetchall()) == [(1,)]
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_an_error_inside_rolls_back_and_is_raised():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k INTEGER)")

    def fails(c):
        c.execute("INSERT INTO t VALUES (1)")
        raise ValueError("inside")
    with pytest.raises(ValueError, match="inside"):
        in_transaction(con, fails)
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert in_transaction(con, lambda c: c.execute("SELECT 1").fetchone()) == (1,)   # no transaction left open


def test_a_failed_commit_raises_the_commits_error():
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k INTEGER PRIMARY KEY)")
    other = con.cursor()

    def insert(c):
        c.execute("INSERT INTO t VALUES (1)")
        other.execute("INSERT INTO t VALUES (1)")      # committed first: this COMMIT then fails
    with pytest.raises(duckdb.TransactionException, match="Failed to commit"):
        in_transaction(con, insert)


def test_a_custom_tables_definition_whose_commit_fails_says_why(tmp_path, monkeypatch):
    # another cursor registers the same custom table and commits while the definition's
    # transaction is open: the definition's COMMIT fails on the duplicate key. It used to raise
    # "cannot rollback - no transaction is active" from its own ROLLBACK instead.
    ws = netatlas.connect(tmp_path / "ws")
    other = ws.connection.cursor()
    other.execute("BEGIN TRANSACTION")
    other.execute(f"INSERT INTO {custom.TABLE} VALUES ('Race_CL', '[]')")
    save = custom.save

    def save_then_the_other_commits(con, table):
        save(con, table)
        other.execute("COMMIT")
    monkeypatch.setattr(custom, "save", save_then_the_other_commits)
    with pytest.raises(duckdb.TransactionException) as info:
        ws.define_table("Race_CL", [("TimeGenerated", "datetime"), ("Message", "string")])
    assert "Failed to commit" in str(info.value) and "duplicate key" in str(info.value)
    assert "Race_CL" not in ws.catalogue.tables
    ws.close()
