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

# JSON value types (DuckDB's json_type) each KQL column type accepts, and the reason given otherwise
ACCEPTS = {
    T.STRING: ("('VARCHAR')", "expected a string"),
    T.LONG: ("('BIGINT', 'UBIGINT')", "expected an integer"),
    T.INT: ("('BIGINT', 'UBIGINT')", "expected a 32-bit integer"),
    T.REAL: ("('BIGINT', 'UBIGINT', 'DOUBLE')", "expected a number"),
    T.DECIMAL: ("('BIGINT', 'UBIGINT', 'DOUBLE', 'VARCHAR')", "expected a number"),
    T.BOOL: ("('BOOLEAN')", "expected true or false"),
    T.DATETIME: ("('VARCHAR')", "expected an ISO 8601 datetime string"),
    T.TIMESPAN: ("('VARCHAR', 'BIGINT')", "expected a timespan ('1.02:03:04') or ticks"),
    T.GUID: ("('VARCHAR')", "expected a guid string"),
}


def _text(f: str) -> str:
    return f"json_extract_string({f}, '$')"


# KQL type -> (extra check beyond the JSON type, SQL turning the JSON value into the stored value)
CONVERT: dict[str, tuple[str | None, str]] = {
    T.STRING: (None, "coalesce({t}, '')"),
    T.LONG: ("TRY_CAST({f} AS BIGINT) IS NULL", "CAST({f} AS BIGINT)"),
    T.INT: ("TRY_CAST({f} AS INTEGER) IS NULL", "CAST({f} AS INTEGER)"),
    T.REAL: (None, "CAST({f} AS DOUBLE)"),
    T.DECIMAL: ("TRY_CAST({t} AS DECIMAL(38, 18)) IS NULL", "CAST({t} AS DECIMAL(38, 18))"),
    T.BOOL: (None, "CAST({f} AS BOOLEAN)"),
    T.DATETIME: ("TRY_CAST({t} AS TIMESTAMPTZ) IS NULL", "CAST(CAST({t} AS TIMESTAMPTZ) AS TIMESTAMP)"),
    T.TIMESPAN: ("(json_type({f}) = 'VARCHAR' AND netatlas_parse_timespan({t}) IS NULL)",
                 "CASE WHEN json_type({f}) = 'VARCHAR' THEN netatlas_parse_timespan({t}) ELSE CAST({f} AS BIGINT) END"),
    T.GUID: ("TRY_CAST({t} AS UUID) IS NULL", "CAST({t} AS UUID)"),
    T.DYNAMIC: (None, "{f}"),
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
    src = f"_in_{uuid.uuid4().hex[:12]}"
    spec = json.dumps({c: "JSON" for c, _ in table.columns})
    try:
        try:
            con.execute(
                f"CREATE TEMP TABLE {src} AS SELECT CAST(row_number() OVER () - 1 AS BIGINT) AS rn, j, "
                f"json_transform(j, ?) AS s FROM (SELECT unnest(CAST(CAST(? AS JSON) AS JSON[])) AS j)",
                [spec, text])
        except duckdb.Error as e:
            raise IngestError(f"{table.name}: the body must be a JSON array of records ({_first_line(e)})",
                              code="INGEST_BAD_BODY") from None
        t1 = time.perf_counter()
        n = validate(con, table, src)
        t2 = time.perf_counter()
        exprs = enrich(table, context or {})
        t3 = time.perf_counter()
        nbytes = store(con, table, src, exprs, batch_id, n)
        t4 = time.perf_counter()
    finally:
        con.execute(f"DROP TABLE IF EXISTS {src}")
    timings.update(parse=t1 - t0, validate=t2 - t1, enrich=t3 - t2, store=t4 - t3)
    return IngestReport(table.name, n, nbytes, batch_id, False, timings)


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
            checks.append(f"min(CASE WHEN {f} IS NULL OR json_type({f}) = 'NULL' THEN rn END)")
            labels.append((name, "missing", None))
    for name, typ in table.columns:
        if typ == T.DYNAMIC:
            continue
        f = f"s.{_q(name)}"
        accepted, reason = ACCEPTS[typ]
        cond = f"json_type({f}) NOT IN {accepted}"
        extra = CONVERT[typ][0]
        if extra:
            cond = f"({cond} OR {extra.format(f=f, t=_text(f))})"
        checks.append(f"min(CASE WHEN {f} IS NOT NULL AND json_type({f}) <> 'NULL' AND {cond} THEN rn END)")
        labels.append((name, typ, reason))
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


def store(con, table: Table, src: str, enriched: dict[str, str], batch_id: str | None, n: int) -> int:
    select = []
    for name, typ in table.columns:
        if name in enriched:
            select.append(enriched[name])
        else:
            f = f"s.{_q(name)}"
            conv = CONVERT[typ][1].format(f=f, t=_text(f))
            if typ != T.STRING:
                conv = f"CASE WHEN json_type({f}) = 'NULL' THEN NULL ELSE {conv} END"
            select.append(conv)
    con.execute("BEGIN TRANSACTION")
    try:
        if batch_id is not None:
            con.execute(f"INSERT INTO {BATCHES} VALUES (?, ?, ?, now())", [batch_id, table.name, n])
        con.execute(f"INSERT INTO {_q(table.name)} SELECT {', '.join(select)} FROM {src}")
        nbytes = record_usage(con, table, src) if n else 0
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return nbytes


def record_usage(con, table: Table, src: str) -> int:
    """Add this batch's billed bytes to the Usage records of each hour it covers."""
    tg = _text('s."TimeGenerated"')
    hour = f"date_trunc('hour', CAST(CAST({tg} AS TIMESTAMPTZ) AS TIMESTAMP))"
    con.execute(f"CREATE OR REPLACE TEMP TABLE _usage_batch AS SELECT {hour} AS h, "
                f"sum(strlen(CAST(j AS VARCHAR))) AS b FROM {src} GROUP BY ALL")
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
