"""The table catalogue: the shipped schema (netatlas/schemas.json, Azure's tables), and a new workspace has it all, empty."""
from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import pytest

import netatlas
from netatlas.catalogue import Catalogue

AZURE = json.loads(resources.files("netatlas").joinpath("schemas.json").read_text())
OWN = json.loads(resources.files("netatlas").joinpath("tables.json").read_text())
SCHEMAS = AZURE | OWN


@pytest.fixture(scope="module")
def ws():
    with netatlas.connect() as w:
        yield w


def test_netatlas_tables_are_custom_logs_or_sentinels_beside_azures():
    from netatlas.catalogue import SENTINEL
    assert OWN and all((name.endswith("_CL") or name in SENTINEL) and name not in AZURE for name in OWN)
    assert set(OWN) == {"VMComputerTags_CL", "ThreatIntelligenceIndicator"}
    assert list(OWN["VMComputerTags_CL"][:4]) == [["TimeGenerated", "datetime"], ["Computer", "string"],
                                                   ["Machine", "string"], ["Tags", "dynamic"]]


def test_catalogue_is_the_shipped_schema():
    cat = Catalogue.load()
    assert cat.names() == list(SCHEMAS)
    for name, cols in SCHEMAS.items():
        assert list(cat.get(name).columns) == [tuple(c) for c in cols]


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_every_table_and_column_exists_with_its_kql_type(ws, table):
    res = ws.query(f"{table} | getschema")
    got = [(r[res.columns.index("ColumnName")], r[res.columns.index("ColumnType")]) for r in res.rows]
    assert got == [tuple(c) for c in SCHEMAS[table]]


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_every_table_starts_empty(ws, table):
    assert ws.query(f"{table} | count").rows == [[0]]


@pytest.mark.parametrize("table", list(SCHEMAS))
def test_every_column_can_be_projected(ws, table):
    cols = [c for c, _ in SCHEMAS[table]]
    res = ws.query(f"{table} | project " + ", ".join(f"['{c}']" for c in cols))
    assert res.columns == cols
    assert res.types == [t for _, t in SCHEMAS[table]]
    assert res.rows == []
