"""KQL scalar types: names, storage per dialect, promotion rules."""
from __future__ import annotations

from sqlglot import exp

STRING, LONG, INT, REAL, DECIMAL, BOOL, DATETIME, TIMESPAN, DYNAMIC, GUID = (
    "string", "long", "int", "real", "decimal", "bool", "datetime", "timespan", "dynamic", "guid")
ALL = (STRING, LONG, INT, REAL, DECIMAL, BOOL, DATETIME, TIMESPAN, DYNAMIC, GUID)
NUMERIC = (INT, LONG, REAL, DECIMAL)
INTEGER = (INT, LONG)
# A wider numeric type absorbs a narrower one.
NUMERIC_RANK = {INT: 0, LONG: 1, DECIMAL: 2, REAL: 3}

# The .NET names getschema reports.
DOTNET = {STRING: "System.String", LONG: "System.Int64", INT: "System.Int32", REAL: "System.Double",
          DECIMAL: "System.Data.SqlTypes.SqlDecimal", BOOL: "System.SByte", DATETIME: "System.DateTime",
          TIMESPAN: "System.TimeSpan", DYNAMIC: "System.Object", GUID: "System.Guid"}

# Storage in DuckDB (the default dialect) as sqlglot DataTypes.
_STORAGE = {STRING: "VARCHAR", LONG: "BIGINT", INT: "INT", REAL: "DOUBLE", DECIMAL: "DECIMAL(38, 18)",
            BOOL: "BOOLEAN", DATETIME: "TIMESTAMP", TIMESPAN: "BIGINT", DYNAMIC: "JSON", GUID: "UUID"}
_STORAGE_TYPES = {k: exp.DataType.build(v, dialect="duckdb") for k, v in _STORAGE.items()}


def storage(kql_type: str) -> exp.DataType:
    return _STORAGE_TYPES[kql_type].copy()


def storage_sql(kql_type: str) -> str:
    return _STORAGE[kql_type]


def promote(a: str, b: str) -> str | None:
    """The numeric type of a op b, or None if either side is not numeric."""
    if a in NUMERIC_RANK and b in NUMERIC_RANK:
        return a if NUMERIC_RANK[a] >= NUMERIC_RANK[b] else b
    return None


def is_numeric(t: str) -> bool:
    return t in NUMERIC_RANK
