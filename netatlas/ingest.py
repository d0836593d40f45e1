"""Ingest stage: a batch of JSON records -> validated, enriched rows in a catalogue table.

Every path (HTTP, ``Workspace.ingest``, the demo) goes through ``ingest_json``. The work is
done by DuckDB, in named stages:

    decode    gzip -> bytes; the body must be a JSON array of objects
    parse     one JSON object per record, numbered (``rn``), with every catalogue column
              picked out by ``json_transform`` in a single pass
    validate  unknown columns, a missing TimeGenerated, values of the wrong type: the first
              offending record (0-based) and field are named in the error
    enrich    the columns the workspace fills itself (ENRICHERS): Type, SourceSystem,
              _BilledSize, _IsBillable, _ResourceId, and for VMConnection RemoteIp
    store     one transaction: the batch id (a batch sent twice is stored once), the rows,
              and the hourly Usage records for the bytes just ingested

Nothing of a rejected batch is stored.
"""
from __future__ import annotations

import gzip
import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Callable

import duckdb

from .catalogue import Catalogue, Table
from .errors import IngestError, did_you_mean
from .kql import types as T
from .kql.literals import format_timespan

BATCHES = "_netatlas_batches"
REQUIRED = ("TimeGenerated",)
USAGE = "Usage"
MB = 1_000_000

def _text(f: str) -> str:
    return f"json_extract_string({f}, '$')"


# KQL column type -> (SQL true when a present, non-null JSON value f cannot be stored; the reason)
# Checks are casts, not json_type() calls: casting is several times cheaper per value. Strings
# accept any JSON value (numbers and objects are stored as their text), as Log Analytics does.
REJECT = {
    T.LONG: ("TRY_CAST({f} AS BIGINT) IS NULL OR TRY_CAST({f} AS DOUBLE) <> TRY_CAST({f} AS BIGINT)",
             "expected an integer"),
    T.INT: ("TRY_CAST({f} AS INTEGER) IS NULL OR TRY_CAST({f} AS DOUBLE) <> TRY_CAST({f} AS INTEGER)",
            "expected a 32-bit integer"),
    T.REAL: ("TRY_CAST({f} AS DOUBLE) IS NULL", "expected a number"),
    T.DECIMAL: ("TRY_CAST({t} AS DECIMAL(38, 18)) IS NULL", "expected a number"),
    T.BOOL: ("TRY_CAST({f} AS BOOLEAN) IS NULL", "expected true or false"),
    T.DATETIME: ("TRY_CAST({t} AS TIMESTAMPTZ) IS NULL", "expected an ISO 8601 datetime string"),
    T.TIMESPAN: ("coalesce(netatlas_parse_timespan({t}), TRY_CAST({f} AS BIGINT)) IS NULL",
                 "expected a timespan ('1.02:03:04') or ticks"),
    T.GUID: ("TRY_CAST({t} AS UUID) IS NULL", "expected a guid string"),
}

# KQL column type -> SQL turning the JSON value f (text t) into the stored value (JSON null -> NULL)
CONVERT = {
    T.STRING: "coalesce({t}, '')",
    T.LONG: "CAST({f} AS BIGINT)",
    T.INT: "CAST({f} AS INTEGER)",
    T.REAL: "CAST({f} AS DOUBLE)",
    T.DECIMAL: "CAST({t} AS DECIMAL(38, 18))",
    T.BOOL: "CAST({f} AS BOOLEAN)",
    T.DATETIME: "CAST(CAST({t} AS TIMESTAMPTZ) AS TIMESTAMP)",
    T.TIMESPAN: "coalesce(netatlas_parse_timespan({t}), CAST({f} AS BIGINT))",
    T.GUID: "CAST({t} AS UUID)",
    T.DYNAMIC: "CASE WHEN {f} = 'null' THEN NULL ELSE {f} END",
}


@dataclass
class IngestReport:
    table: str
    records: int
    bytes: int
    batch_id: str | None = None
    duplicate: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"table": self.table, "records": self.records, "bytes": self.bytes, "batchId": self.batch_id,
                "duplicate": self.duplicate}


# ---- enrich: columns the workspace fills, per table -------------------------------------------

SOURCE_SYSTEM = {"ServiceMapComputer_CL": "OpsManager", "ServiceMapProcess_CL": "OpsManager", "Usage": "OMS"}


def azure_columns(table: Table, ctx: dict) -> dict[str, str]:
    cols = table.column_types
    out = {}
    if "Type" in cols:
        out["Type"] = _lit(table.name)
    if "SourceSystem" in cols:
        given = _text('s."SourceSystem"')
        out["SourceSystem"] = f"coalesce(nullif({given}, ''), {_lit(SOURCE_SYSTEM.get(table.name, 'Insights'))})"
    if "_BilledSize" in cols:
        out["_BilledSize"] = "CAST(strlen(CAST(j AS VARCHAR)) AS DOUBLE)"
    if "_IsBillable" in cols:
        out["_IsBillable"] = "'True'"
    if "_ResourceId" in cols:
        who = "Computer" if "Computer" in cols else None
        if who:
            prefix = f"/netatlas/workspaces/{ctx.get('workspace_id', 'local')}/machines/"
            given, computer = _text('s."_ResourceId"'), _text('s."Computer"')
            out["_ResourceId"] = (f"coalesce(nullif({given}, ''), CASE WHEN coalesce({computer}, '') = '' THEN '' "
                                  f"ELSE {_lit(prefix)} || lower({computer}) END)")
    return out


def remote_ip(table: Table, ctx: dict) -> dict[str, str]:
    if table.name != "VMConnection":
        return {}
    src, dst, d = _text('s."SourceIp"'), _text('s."DestinationIp"'), _text('s."Direction"')
    given = _text('s."RemoteIp"')
    return {"RemoteIp": f"coalesce(nullif({given}, ''), "
                        f"CASE WHEN {d} = 'inbound' THEN coalesce({src}, '') "
                        f"WHEN {d} = 'outbound' THEN coalesce({dst}, '') ELSE '' END)"}


# Each enricher: (table, context) -> {column: SQL over the parsed record s and its JSON text j}.
# Later stages (geolocation, threat intelligence, DNS names) add themselves here.
ENRICHERS: list[Callable[[Table, dict], dict[str, str]]] = [azure_columns, remote_ip]


def _lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---- the pipeline -------------------------------------------------------------------------------

def decode(body: bytes | str, content_encoding: str | None = None, limit: int | None = None) -> bytes:
    if isinstance(body, str):
        body = body.encode()
    if content_encoding == "gzip" or body[:2] == b"\x1f\x8b":
        try:
            if limit is not None:
                with gzip.GzipFile(fileobj=__import__("io").BytesIO(body)) as g:
                    out = g.read(limit + 1)
                if len(out) > limit:
                    raise IngestError(f"the decompressed body is larger than {limit} bytes", code="INGEST_TOO_LARGE")
                return out
            return gzip.decompress(body)
        except (OSError, EOFError) as e:
            raise IngestError(f"the body is not valid gzip: {e}", code="INGEST_BAD_BODY") from None
    if limit is not None and len(body) > limit:
        raise IngestError(f"the body is larger than {limit} bytes", code="INGEST_TOO_LARGE")
    return body


def ingest_json(con: duckdb.DuckDBPyConnection, catalogue: Catalogue, table_name: str, body: bytes, *,
                batch_id: str | None = None, context: dict | None = None) -> IngestReport:
    """Validate, enrich and store one batch (the caller holds the workspace lock)."""
    timings = {}
    t0 = time.perf_counter()
    table = catalogue.get(table_name)
    if table is None:
        hint = did_you_mean(table_name, catalogue.names())
        raise IngestError(f"unknown table '{table_name}'" + (f"; {hint}" if hint else ""), code="INGEST_UNKNOWN_TABLE")
    if table.name == USAGE:
        raise IngestError("Usage is written by the workspace itself", code="INGEST_READ_ONLY_TABLE")
    text = body.decode("utf-8", errors="strict") if isinstance(body, (bytes, bytearray)) else body
    if batch_id is not None and con.execute(f"SELECT 1 FROM {BATCHES} WHERE batch_id = ?", [batch_id]).fetchone():
        return IngestReport(table.name, 0, 0, batch_id, True)
    stage = f"_stage_{uuid.uuid4().hex[:12]}"
    exprs = enrich(table, context or {})
    t1 = time.perf_counter()
    try:
        try:
            n = parse_and_check(con, table, stage, text, exprs)
        except duckdb.Error as e:
            # the fast pass found a problem: find the first bad record and field, slowly and precisely
            explain(con, table, text, e)
        t2 = time.perf_counter()
        nbytes = store(con, table, stage, batch_id, n)
        t3 = time.perf_counter()
    finally:
        con.execute(f"DROP TABLE IF EXISTS {stage}")
    timings.update(enrich=t1 - t0, parse_validate=t2 - t1, store=t3 - t2)
    return IngestReport(table.name, n, nbytes, batch_id, False, timings)


def _records_sql() -> str:
    """The batch as rows (rn, j, s): record number, its JSON, and every catalogue column picked out."""
    return ("SELECT CAST(row_number() OVER () - 1 AS BIGINT) AS rn, j, json_transform(j, ?) AS s "
            "FROM (SELECT unnest(CAST(CAST(? AS JSON) AS JSON[])) AS j)")


def _bad_value(name: str, typ: str) -> str | None:
    """SQL true when the record has a value for the column that the column cannot hold."""
    if typ not in REJECT:
        return None
    f = f"s.{_q(name)}"
    fail = REJECT[typ][0].format(f=f, t=_text(f))
    return f"({f} IS NOT NULL AND {f} <> 'null' AND ({fail}))"


def _column_sql(name: str, typ: str, enriched: dict[str, str]) -> str:
    if name in enriched:
        return enriched[name]
    f = f"s.{_q(name)}"
    return CONVERT[typ].format(f=f, t=_text(f))


def parse_and_check(con, table: Table, stage: str, text: str, enriched: dict[str, str]) -> int:
    """One pass: parse the batch into a staging table of finished rows, failing on any bad record."""
    names = [c for c, _ in table.columns]
    # (a record that is not an object has no TimeGenerated, so the REQUIRED check catches it too)
    bad = [f"NOT list_has_all({_list_lit(names)}, json_keys(j))"]
    bad += [f"(s.{_q(r)} IS NULL OR s.{_q(r)} = 'null')" for r in REQUIRED if r in table.column_types]
    bad += [b for name, typ in table.columns if (b := _bad_value(name, typ))]
    check = f"CASE WHEN {' OR '.join(bad)} THEN error('netatlas: bad record ' || rn) ELSE true END"
    cols = ", ".join(f"{_column_sql(name, typ, enriched)} AS {_q(name)}" for name, typ in table.columns)
    cols += ", strlen(CAST(j AS VARCHAR)) AS __bytes"   # the record as ingested, for Usage
    con.execute(f"CREATE TEMP TABLE {stage} AS SELECT {cols} FROM ({_records_sql()}) WHERE {check}",
                [json.dumps({c: "JSON" for c in names}), text])
    return con.execute(f"SELECT count(*) FROM {stage}").fetchone()[0]


def _list_lit(names: list[str]) -> str:
    return "[" + ", ".join(_lit(n) for n in names) + "]"


def explain(con, table: Table, text: str, err: Exception):
    """Raise the IngestError naming the first bad record and field of a batch the fast pass refused."""
    src = f"_in_{uuid.uuid4().hex[:12]}"
    try:
        try:
            con.execute(f"CREATE TEMP TABLE {src} AS {_records_sql()}",
                        [json.dumps({c: "JSON" for c, _ in table.columns}), text])
        except duckdb.Error as e:
            raise IngestError(f"{table.name}: the body must be a JSON array of records ({_first_line(e)})",
                              code="INGEST_BAD_BODY") from None
        validate(con, table, src)
    finally:
        con.execute(f"DROP TABLE IF EXISTS {src}")
    raise IngestError(f"{table.name}: the batch was refused: {_first_line(err)}", code="INGEST_BAD_BODY")


def validate(con, table: Table, src: str) -> int:
    """Raise IngestError naming the first bad record and field; return the number of records."""
    names = [c for c, _ in table.columns]
    n, not_object = con.execute(
        f"SELECT count(*), min(CASE WHEN json_type(j) <> 'OBJECT' THEN rn END) FROM {src}").fetchone()
    if not_object is not None:
        raise IngestError(f"{table.name} record {not_object}: expected an object", code="INGEST_SHAPE",
                          record=not_object)
    bad = con.execute(
        f"SELECT rn, k FROM (SELECT rn, unnest(json_keys(j)) AS k FROM {src}) WHERE NOT list_contains(?, k) "
        f"ORDER BY rn LIMIT 1", [names]).fetchone()
    if bad:
        rn, key = bad
        hint = did_you_mean(key, names)
        raise IngestError(f"{table.name} record {rn}: unknown column '{key}'" + (f"; {hint}" if hint else ""),
                          code="INGEST_UNKNOWN_COLUMN", record=rn, field=key)
    checks, labels = [], []
    for name in REQUIRED:
        if name in table.column_types:
            f = f"s.{_q(name)}"
            checks.append(f"min(CASE WHEN {f} IS NULL OR {f} = 'null' THEN rn END)")
            labels.append((name, "missing", None))
    for name, typ in table.columns:
        if (cond := _bad_value(name, typ)) is None:
            continue
        checks.append(f"min(CASE WHEN {cond} THEN rn END)")
        labels.append((name, typ, REJECT[typ][1]))
    row = con.execute(f"SELECT {', '.join(checks)} FROM {src}").fetchone()
    found = [(rn, i) for i, rn in enumerate(row) if rn is not None]
    if found:
        rn, i = min(found)
        name, typ, reason = labels[i]
        if typ == "missing":
            raise IngestError(f"{table.name} record {rn}: missing {name}", code="INGEST_MISSING_FIELD",
                              record=rn, field=name)
        value = con.execute(f"SELECT CAST(s.{_q(name)} AS VARCHAR) FROM {src} WHERE rn = ?", [rn]).fetchone()[0]
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise IngestError(f"{table.name} record {rn}, field {name} ({typ}): {reason}, got {shown}",
                          code="INGEST_TYPE", record=rn, field=name)
    return n


def enrich(table: Table, context: dict) -> dict[str, str]:
    exprs = {}
    for enricher in ENRICHERS:
        exprs.update(enricher(table, context))
    return exprs


def store(con, table: Table, stage: str, batch_id: str | None, n: int) -> int:
    con.execute("BEGIN TRANSACTION")
    try:
        if batch_id is not None:
            con.execute(f"INSERT INTO {BATCHES} VALUES (?, ?, ?, now())", [batch_id, table.name, n])
        con.execute(f"INSERT INTO {_q(table.name)} SELECT {', '.join(_q(c) for c, _ in table.columns)} FROM {stage}")
        nbytes = record_usage(con, table, stage) if n else 0
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return nbytes


def record_usage(con, table: Table, src: str) -> int:
    """Add this batch's billed bytes to the Usage records of each hour it covers."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _usage_batch AS SELECT date_trunc('hour', TimeGenerated) AS h, "
                f"CAST(sum(__bytes) AS BIGINT) AS b FROM {src} GROUP BY ALL")
    con.execute(f"UPDATE {USAGE} AS u SET Quantity = u.Quantity + b.b / {MB}.0 FROM _usage_batch b "
                f"WHERE u.StartTime = b.h AND u.DataType = ? AND u.IsBillable", [table.name])
    con.execute(
        f"INSERT INTO {USAGE} (TimeGenerated, StartTime, EndTime, DataType, Solution, Quantity, QuantityUnit, "
        f"IsBillable, SourceSystem, Type) SELECT b.h, b.h, b.h + INTERVAL 1 HOUR, ?, ?, b.b / {MB}.0, 'MBytes', true, "
        f"'OMS', 'Usage' FROM _usage_batch b WHERE NOT EXISTS (SELECT 1 FROM {USAGE} u WHERE u.StartTime = b.h "
        f"AND u.DataType = ? AND u.IsBillable)", [table.name, SOLUTION.get(table.name, "LogManagement"), table.name])
    total = con.execute("SELECT coalesce(sum(b), 0) FROM _usage_batch").fetchone()[0]
    con.execute("DROP TABLE _usage_batch")
    return int(total)


SOLUTION = {"VMConnection": "VMInsights", "VMBoundPort": "VMInsights", "VMComputer": "VMInsights",
            "VMProcess": "VMInsights", "ServiceMapComputer_CL": "ServiceMap", "ServiceMapProcess_CL": "ServiceMap"}


def _first_line(e: Exception) -> str:
    return str(e).split("\n")[0].replace("Conversion Error: ", "").replace("Invalid Input Error: ", "")


# ---- records from Python ----------------------------------------------------------------------------

def _json_default(v):
    if isinstance(v, datetime):
        if v.tzinfo is None:
            return v.isoformat() + "Z"
        return v.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    if isinstance(v, date):
        return v.isoformat()
    if isinstance(v, timedelta):
        return format_timespan((v.days * 86400 + v.seconds) * 10_000_000 + v.microseconds * 10)
    if isinstance(v, (uuid.UUID, Decimal)):
        return str(v)
    raise TypeError(f"cannot store a {type(v).__name__} value")


def records_to_json(records) -> str:
    if not isinstance(records, list):
        raise IngestError(f"expected a list of records, got {type(records).__name__}", code="INGEST_SHAPE")
    try:
        return json.dumps(records, default=_json_default, separators=(",", ":"))
    except (TypeError, ValueError) as e:
        raise IngestError(f"a record cannot be written as JSON: {e}", code="INGEST_TYPE") from None


SETUP_SQL = [
    f"CREATE TABLE IF NOT EXISTS {BATCHES} (batch_id VARCHAR PRIMARY KEY, \"table\" VARCHAR, records BIGINT, "
    f"received TIMESTAMP)",
]
