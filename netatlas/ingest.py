"""Ingest stage: records (list of dicts) -> validated rows in catalogue column order.

Nothing of a batch is stored unless every record in it is valid; the error names the record
(0-based index) and the field.
"""
from __future__ import annotations

import json
import uuid

from .catalogue import Table
from .errors import IngestError, did_you_mean
from .kql import types as T
from .kql.values import python_to_kql

REQUIRED = ("TimeGenerated",)


def validate(table: Table, records: list[dict]) -> list[tuple]:
    """Check every record against the table and return rows ready for the store."""
    if not isinstance(records, list):
        raise IngestError(f"{table.name}: expected a list of records, got {type(records).__name__}",
                          code="INGEST_SHAPE")
    columns = table.columns
    types = table.column_types
    rows = []
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise IngestError(f"{table.name} record {i}: expected an object, got {type(rec).__name__}",
                              code="INGEST_SHAPE", record=i)
        for key in rec:
            if key not in types:
                hint = did_you_mean(key, types)
                raise IngestError(f"{table.name} record {i}: unknown column '{key}'" + (f"; {hint}" if hint else ""),
                                  code="INGEST_UNKNOWN_COLUMN", record=i, field=key)
        for key in REQUIRED:
            if key in types and rec.get(key) is None:
                raise IngestError(f"{table.name} record {i}: missing {key}", code="INGEST_MISSING_FIELD",
                                  record=i, field=key)
        row = []
        for name, typ in columns:
            v = rec.get(name)
            try:
                v = python_to_kql(v, typ)
            except (TypeError, ValueError) as e:
                raise IngestError(f"{table.name} record {i}, field {name} ({typ}): {e}", code="INGEST_TYPE",
                                  record=i, field=name) from None
            row.append(store_value(v, typ))
        rows.append(tuple(row))
    return rows


def store_value(v, typ: str):
    if v is None:
        return "" if typ == T.STRING else None
    if typ == T.DYNAMIC:
        return json.dumps(v, separators=(",", ":"), default=str)
    if typ == T.GUID:
        return str(v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)))
    return v
