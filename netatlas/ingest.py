"""Ingest stage: a batch of JSON records -> validated, enriched rows in a catalogue table.

Every path (HTTP, ``Workspace.ingest``, the demo) goes through ``ingest_json``. The work is
done by DuckDB, in named stages:

    decode    gzip -> bytes
    parse     orjson: the body must be a JSON array of objects
    check     (Python) every record an object, no unknown column, a TimeGenerated
    serialize each record once more as compact JSON, its size (``__bytes``, what is billed)
              appended, into a batch file
    lookup    (Python) for VMConnection, the batch's distinct remote addresses looked up in the
              GeoIP database (geoip.py) and the threat-intelligence matcher (threatintel.py),
              both cached per address: enrich.LOOKUPS, joined to the batch as one relation
    stage     DuckDB's read_json reads the file with the catalogue's column types, and the
              enrich stage (enrich.py: FILLS, LOOKUPS) adds the columns the workspace fills itself: Type,
              SourceSystem, _BilledSize, _IsBillable, _ResourceId, and for VMConnection RemoteIp,
              RemoteCountry/Latitude/Longitude and the malicious-IP columns (values a record
              brings are kept).
              A value of the wrong type fails the read; only then is the batch examined value
              by value (``explain``) to name the first bad record and field
    store     one transaction: the batch id (a batch sent twice is stored once), the rows,
              and the hourly Usage records for the bytes just ingested

Nothing of a rejected batch is stored.
"""
from __future__ import annotations

import json
import os
import tempfile
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import numpy as np
import orjson

from . import enrich, rollup
from .catalogue import REQUIRED as CATALOGUE_REQUIRED, Catalogue, Table
from .errors import IngestError, StorageError, did_you_mean
from .kql import types as T
from .kql.literals import format_timespan
from .store import duckdb as db

BATCHES = "_netatlas_batches"
REQUIRED = CATALOGUE_REQUIRED       # a record without one of them is refused
USAGE = "Usage"
MB = 1_000_000

def _text(f: str) -> str:
    return f"json_extract_string({f}, '$')"


# KQL column type -> (SQL true when a present, non-null JSON value f cannot be stored; the reason)
# Checks are casts, not json_type() calls: casting is several times cheaper per value. Strings
# accept any JSON value (numbers and objects are stored as their text), as Log Analytics does.
# An integer column takes a whole number only: not 3.5 (a cast would round it), not true (1).
REJECT = {
    T.LONG: ("json_type({f}) = 'BOOLEAN' OR TRY_CAST({f} AS BIGINT) IS NULL "
             "OR TRY_CAST({f} AS DOUBLE) <> TRY_CAST({f} AS BIGINT)", "expected an integer"),
    T.INT: ("json_type({f}) = 'BOOLEAN' OR TRY_CAST({f} AS INTEGER) IS NULL "
            "OR TRY_CAST({f} AS DOUBLE) <> TRY_CAST({f} AS INTEGER)", "expected a 32-bit integer"),
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
    truncated: int = 0      # string values cut at MAX_FIELD_BYTES

    def to_json(self) -> dict:
        return {"table": self.table, "records": self.records, "bytes": self.bytes, "batchId": self.batch_id,
                "duplicate": self.duplicate, "truncated": self.truncated}


# ---- the datetime window: what a stored datetime may be -------------------------------------------
#
# A datetime beyond Kusto's (and Python's) range, year 1 to 9999, cannot be answered; a TimeGenerated
# far in the future is never removed by retention and tops every `order by TimeGenerated desc`. So
# every datetime column must lie in KUSTO_RANGE, and TimeGenerated at most FUTURE ahead of the clock
# and, where the workspace refuses expired data (the server), not older than the table's retention.
# Other datetime columns may well be older (a BootTime) or later (an indicator's ExpirationDateTime).
FUTURE = timedelta(days=1)
KUSTO_RANGE = (datetime(1, 1, 1), datetime(9999, 12, 31, 23, 59, 59, 999999))   # naive: UTC


def datetime_window(table: Table, now: datetime, retention_days: int | None = None) -> dict[str, tuple]:
    """Per datetime column of the table, (low, high) (naive UTC) its values must lie in."""
    if now.tzinfo is not None:
        now = now.astimezone(timezone.utc).replace(tzinfo=None)
    out = {c: KUSTO_RANGE for c, t in table.columns if t == T.DATETIME}
    if "TimeGenerated" in out:
        low = now - timedelta(days=retention_days) if retention_days else KUSTO_RANGE[0]
        out["TimeGenerated"] = (low, now + FUTURE)
    return out


def _ts(d: datetime) -> str:
    return f"TIMESTAMP '{d.isoformat(sep=' ')}'"


def outside_window_sql(value: str, low: datetime, high: datetime) -> str:
    """SQL true when the TIMESTAMP ``value`` lies outside [low, high]."""
    return f"({value} < {_ts(low)} OR {value} > {_ts(high)})"


def window_message(name: str, low: datetime, high: datetime) -> str:
    what = ("more than a day ahead of the server's clock or older than the table's retention"
            if name == "TimeGenerated" else "outside the datetimes Kusto holds")
    return f"{what} (allowed {low.isoformat()}Z to {high.isoformat()}Z)"


def datetime_checks(table: Table, ctx: dict) -> dict[str, str]:
    """Each datetime column finished as FINISH does, failing the batch (then ``explain`` names the
    record and field) for a value outside ``ctx['datetime_window']`` (``datetime_window``)."""
    window = ctx.get("datetime_window") or {}
    out = {}
    for name, (low, high) in window.items():
        c = f"CAST({_q(name)} AS TIMESTAMP)"
        out[name] = (f"CASE WHEN {outside_window_sql(c, low, high)} THEN "
                     f"error({_lit(name + ': ' + window_message(name, low, high))}) ELSE {c} END")
    return out


def _lit(v: str) -> str:
    return "'" + v.replace("'", "''") + "'"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# ---- the pipeline -------------------------------------------------------------------------------

# Azure Monitor's Data Collector API limits (learn.microsoft.com, "Data Collector API": "Data limits"):
# a post of at most 30 MB, a field value of at most 32 KB (longer ones are truncated), at most 500
# fields per record. The post limit is the server's max_body_bytes (default MAX_POST_BYTES).
MAX_POST_BYTES = 30 * 1024 * 1024
MAX_FIELD_BYTES = 32 * 1024
MAX_FIELDS = 500
GZIP_MAGIC = b"\x1f\x8b"


def decode(body: bytes | str, content_encoding: str | None = None, limit: int | None = MAX_POST_BYTES) -> bytes:
    """The JSON text of a body: gunzipped when Content-Encoding says gzip or the body starts with
    the gzip magic, one layer only (a body still gzip after one inflation is refused), streaming,
    never more than ``limit`` bytes (INGEST_TOO_LARGE, which the server answers with 413)."""
    if isinstance(body, str):
        body = body.encode()
    if content_encoding == "gzip" or body[:2] == GZIP_MAGIC:
        body = inflate(body, limit)
        if body[:2] == GZIP_MAGIC:
            raise IngestError("the body is gzip inside gzip: one layer of compression only",
                              code="INGEST_NESTED_GZIP")
    elif limit is not None and len(body) > limit:
        raise IngestError(f"the body is larger than {limit} bytes", code="INGEST_TOO_LARGE")
    return body


def inflate(body: bytes, limit: int | None) -> bytes:
    """One gzip stream (of one or more members) inflated a chunk at a time, stopping as soon as
    the output passes ``limit``."""
    out = bytearray()
    data = body
    room = (lambda: limit - len(out) + 1) if limit is not None else (lambda: 0)
    try:
        while True:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while data:
                out += d.decompress(data, room())
                if limit is not None and len(out) > limit:
                    raise IngestError(f"the body inflates to more than {limit} bytes", code="INGEST_TOO_LARGE")
                data = d.unconsumed_tail
                if d.eof:
                    break
            if not d.eof:
                raise EOFError("the gzip stream ends early")
            data = d.unused_data
            if not data:
                return bytes(out)
    except zlib.error as e:
        raise IngestError(f"the body is not valid gzip: {e}", code="INGEST_BAD_BODY") from None
    except EOFError as e:
        raise IngestError(f"the body is not valid gzip: {e}", code="INGEST_BAD_BODY") from None


def ingest_json(con: db.Connection, catalogue: Catalogue, table_name: str, body: bytes, *,
                batch_id: str | None = None, context: dict | None = None) -> IngestReport:
    """Parse a JSON array of records and ingest it (the caller holds the workspace lock)."""
    table = resolve_table(catalogue, table_name)
    records = parse(table, body)
    return ingest_records(con, catalogue, table.name, records, batch_id=batch_id, context=context, body=body)


def parse(table: Table, body: bytes) -> list:
    """The body as a list (orjson, once); IngestError when it is not a JSON array."""
    try:
        records = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        raise IngestError(f"{table.name}: the body is not valid JSON ({e})", code="INGEST_BAD_BODY") from None
    if not isinstance(records, list):
        raise IngestError(f"{table.name}: the body must be a JSON array of records, not a {type(records).__name__}",
                          code="INGEST_BAD_BODY")
    return records


def resolve_table(catalogue: Catalogue, table_name: str) -> Table:
    table = catalogue.get(table_name)
    if table is None:
        hint = did_you_mean(table_name, catalogue.names())
        raise IngestError(f"unknown table '{table_name}'" + (f"; {hint}" if hint else ""), code="INGEST_UNKNOWN_TABLE")
    if table.name == USAGE:
        raise IngestError("Usage is written by the workspace itself", code="INGEST_READ_ONLY_TABLE")
    return table


def ingest_records(con: db.Connection, catalogue: Catalogue, table_name: str, records: list, *,
                   batch_id: str | None = None, context: dict | None = None,
                   body: bytes | None = None, inflight: str | os.PathLike | None = None) -> IngestReport:
    """Check, stage and store a batch of records (dicts); all or nothing.

    ``body``: the JSON the records were parsed from, written to the batch file as it is;
    ``inflight``: the directory of batch files (the workspace's DIR/inflight; default: the
    system's temporary directory). A store that cannot write raises StorageError."""
    timings = {}
    t0 = time.perf_counter()
    table = resolve_table(catalogue, table_name)
    if not isinstance(records, list):
        raise IngestError(f"expected a list of records, got {type(records).__name__}", code="INGEST_SHAPE")
    if batch_id is not None and con.execute(f"SELECT 1 FROM {BATCHES} WHERE batch_id = ?", [batch_id]).fetchone():
        return IngestReport(table.name, 0, 0, batch_id, True)
    check(table, records)
    if truncated := truncate_long_strings(table, records, body):
        body = None     # the batch file is written from the records, as cut
    context = context or {}
    lookups = enrich.lookups(table, records, context)
    t1 = time.perf_counter()
    path = serialize(records, body, inflight)
    t2 = time.perf_counter()
    try:
        try:
            n, nbytes = store(con, table, read_json_source(table, path), finished(table, context), batch_id, lookups,
                              context.get("outbox"))
        except (db.ConstraintException, StorageError):
            if batch_id is not None and stored_batch(con, batch_id):
                return IngestReport(table.name, 0, 0, batch_id, True)   # the same batch, sent twice at once
            raise
        except db.Error as e:
            explain(con, table, records, e, context)   # names the first bad record and field
        t3 = time.perf_counter()
    finally:
        os.unlink(path)
    if context.get("sender") and table.name == "VMComputer":
        from .machines import note_senders
        note_senders(con, records, context["sender"])
    timings.update(check_and_lookup=t1 - t0, serialize=t2 - t1, store=t3 - t2)
    return IngestReport(table.name, n, nbytes, batch_id, False, timings, truncated)


# ---- records as columns: the bulk path (the demo) --------------------------------------------------
#
# A *frame* is a batch given as columns: {column: numpy array}, all of one length. It goes through
# the same stages as a list of records (check, lookup, stage, store), with DuckDB scanning the
# arrays instead of reading a JSON file: the same enrichment, the same Usage bytes (computed from
# the values as read, like a JSON batch's) and the same stored rows. Column arrays are typed as
# READ_AS reads them: int64 / float64 / bool (numpy masked arrays where a value is absent),
# datetime64 or ISO 8601 strings for datetimes, object arrays of str (None: absent) for strings,
# guids and decimals, and of JSON text for dynamic and timespan columns. ``to_frame`` turns records
# into a frame; tests/test_demo.py checks that both paths store the same rows and Usage.

NUMPY_KIND = {"BIGINT": "int64", "INTEGER": "int64", "DOUBLE": "float64", "BOOLEAN": "bool"}
_ABSENT = object()


def frame_column(values: list, kql_type: str, table: str, name: str) -> np.ndarray:
    """One column of records (``_ABSENT`` where a record has no such key) as a frame array."""
    read = READ_AS[kql_type]
    kind = NUMPY_KIND.get(read)
    if kind is not None:
        ok = {"int64": (int,), "float64": (int, float), "bool": (bool,)}[kind]
        mask = [v is _ABSENT or v is None for v in values]
        for i, v in enumerate(values):
            if not mask[i] and (type(v) not in ok or (kind != "bool" and type(v) is bool)):
                raise IngestError(f"{table} record {i}, field {name} ({read}): expected "
                                  f"{'true or false' if kind == 'bool' else 'a number'}, got {v!r}"[:200],
                                  code="INGEST_TYPE", record=i, field=name)
        filled = [0 if m else v for v, m in zip(values, mask)]
        arr = np.array(filled, dtype=kind)
        return np.ma.masked_array(arr, mask=mask) if any(mask) else arr
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        if v is _ABSENT:
            out[i] = None
        elif read == "JSON":
            out[i] = orjson.dumps(v, default=_json_default, option=orjson.OPT_NAIVE_UTC).decode()
        elif v is None:
            out[i] = None
        elif type(v) is str:
            out[i] = v
        else:   # as a JSON batch stores it: the value's JSON text (a datetime: its ISO 8601 form)
            out[i] = orjson.dumps(v, default=_json_default, option=orjson.OPT_NAIVE_UTC).decode().strip('"')
    return out


def to_frame(table: Table, records: list[dict]) -> dict[str, np.ndarray]:
    """Records (dicts, as ``ingest_records`` takes them) as a frame of the columns they use."""
    check(table, records)
    used = dict.fromkeys(k for r in records for k in r)
    types = table.column_types
    return {c: frame_column([r.get(c, _ABSENT) for r in records], types[c], table.name, c)
            for c, _t in table.columns if c in used}


def concat_frames(frames: list[dict]) -> dict:
    """Frames of one table as one (a column some lack is absent in their rows)."""
    if len(frames) == 1:
        return frames[0]
    names = list(dict.fromkeys(c for f in frames for c in f))
    lengths = [len(next(iter(f.values()))) for f in frames]
    out = {}
    for c in names:
        parts = []
        for f, n in zip(frames, lengths):
            col = f.get(c)
            if col is None:
                like = next(g[c] for g in frames if c in g)
                col = (np.full(n, None, dtype=object) if like.dtype == object else
                       np.ma.masked_all(n, dtype=like.dtype))
            parts.append(col)
        masked = any(isinstance(p, np.ma.MaskedArray) for p in parts)
        out[c] = np.ma.concatenate(parts) if masked else np.concatenate(parts)
    return out


def frame_length(table: Table, frame: dict) -> int:
    """The frame's number of records; IngestError for an unknown column, columns of different
    lengths, or a missing TimeGenerated."""
    if not isinstance(frame, dict) or not frame:
        raise IngestError(f"{table.name}: a frame is a non-empty dict of column arrays", code="INGEST_SHAPE")
    allowed = table.column_types
    lengths = set()
    for name, col in frame.items():
        if name not in allowed:
            hint = did_you_mean(name, allowed)
            raise IngestError(f"{table.name}: unknown column '{name}'" + (f"; {hint}" if hint else ""),
                              code="INGEST_UNKNOWN_COLUMN", field=name)
        if not isinstance(col, np.ndarray) or col.ndim != 1:
            raise IngestError(f"{table.name}: column {name} must be a one-dimensional numpy array",
                              code="INGEST_SHAPE", field=name)
        lengths.add(len(col))
    if len(lengths) != 1:
        raise IngestError(f"{table.name}: the frame's columns have different lengths ({sorted(lengths)})",
                          code="INGEST_SHAPE")
    n = lengths.pop()
    for name in REQUIRED:
        if name not in allowed:
            continue
        col = frame.get(name)
        missing = None if col is not None else 0
        if col is not None:
            absent = np.ma.getmaskarray(col) if isinstance(col, np.ma.MaskedArray) else (
                np.equal(col, None) if col.dtype == object else np.isnat(col) if col.dtype.kind == "M" else None)
            if absent is not None and absent.any():
                missing = int(np.argmax(absent))
        if missing is not None and n:
            raise IngestError(f"{table.name} record {missing}: missing {name}", code="INGEST_MISSING_FIELD",
                              record=missing, field=name)
    return n


def frame_source(table: Table, name: str, frame: dict) -> str:
    """The registered frame ``name`` as a relation of every column of the table, typed as READ_AS
    says (columns the frame lacks are NULL, as keys no record has)."""
    cols = []
    for c, t in table.columns:
        read = READ_AS[t]
        cols.append(f"CAST({_q(c) if c in frame else 'NULL'} AS {read}) AS {_q(c)}")
    return f"(SELECT {', '.join(cols)} FROM {_q(name)})"


def frame_remote_ips(frame: dict, n: int) -> set[str]:
    """The distinct RemoteIp of a frame, by the rule of enrich.REMOTE_IP."""
    def strings(c):
        col = frame.get(c)
        return np.full(n, None, dtype=object) if col is None or col.dtype != object else col
    given, direction = strings("RemoteIp"), strings("Direction")
    fallback = np.where(direction == "inbound", strings("SourceIp"),
                        np.where(direction == "outbound", strings("DestinationIp"), None))
    ips = np.where(given.astype(bool), given, fallback)
    return {ip for ip in set(ips.tolist()) if ip and type(ip) is str}


def ingest_frame(con: db.Connection, catalogue: Catalogue, table_name: str, frame: dict, *,
                 batch_id: str | None = None, context: dict | None = None) -> IngestReport:
    """Check, stage and store a batch given as columns (a frame, above); all or nothing. The same
    stages, enrichment and Usage as ``ingest_records``."""
    t0 = time.perf_counter()
    table = resolve_table(catalogue, table_name)
    if batch_id is not None and con.execute(f"SELECT 1 FROM {BATCHES} WHERE batch_id = ?", [batch_id]).fetchone():
        return IngestReport(table.name, 0, 0, batch_id, True)
    n = frame_length(table, frame)
    context = dict(context or {})
    if table.name == "VMConnection":
        context["remote_ips"] = frame_remote_ips(frame, n)
    lookups = enrich.lookups(table, [], context)
    name = f"__frame_{uuid.uuid4().hex[:12]}"
    t1 = time.perf_counter()
    con.register(name, frame)
    try:
        try:
            count, nbytes = store(con, table, frame_source(table, name, frame), finished(table, context), batch_id,
                                  lookups, context.get("outbox"))
        except (db.ConstraintException, StorageError):
            if batch_id is not None and stored_batch(con, batch_id):
                return IngestReport(table.name, 0, 0, batch_id, True)
            raise
        except db.Error as e:
            explain_frame(con, table, name, frame, e)
    finally:
        con.unregister(name)
    t2 = time.perf_counter()
    return IngestReport(table.name, count, nbytes, batch_id, False, {"check_and_lookup": t1 - t0, "store": t2 - t1})


def explain_frame(con, table: Table, name: str, frame: dict, err: Exception):
    """Raise the IngestError naming the first record and column of a frame that its column cannot hold."""
    for c, t in table.columns:
        if c not in frame:
            continue
        read = READ_AS[t]
        row = con.execute(f"SELECT rn, CAST(v AS VARCHAR) FROM (SELECT row_number() OVER () - 1 AS rn, {_q(c)} AS v "
                          f"FROM {_q(name)}) WHERE v IS NOT NULL AND TRY_CAST(v AS {read}) IS NULL "
                          f"ORDER BY rn LIMIT 1").fetchall()
        if row:
            rn, value = row[0]
            shown = value if len(value) <= 60 else value[:57] + "..."
            raise IngestError(f"{table.name} record {rn}, field {c} ({read}): cannot be stored as {read}, got {shown}",
                              code="INGEST_TYPE", record=rn, field=c)
    raise IngestError(f"{table.name}: the batch was refused: {_first_line(err)}", code="INGEST_BAD_BODY")


def check(table: Table, records: list) -> None:
    """Every record an object, with known columns only, and the required ones."""
    allowed = frozenset(table.column_types)
    for i, rec in enumerate(records):
        if type(rec) is not dict:
            raise IngestError(f"{table.name} record {i}: expected an object, got {_json_kind(rec)}",
                              code="INGEST_SHAPE", record=i)
        if len(rec) > MAX_FIELDS:
            raise IngestError(f"{table.name} record {i}: {len(rec)} fields, more than Azure's limit of "
                              f"{MAX_FIELDS} per record", code="INGEST_TOO_MANY_FIELDS", record=i)
        if not allowed.issuperset(rec):
            key = next(k for k in rec if k not in allowed)
            hint = did_you_mean(key, allowed)
            raise IngestError(f"{table.name} record {i}: unknown column '{key}'" + (f"; {hint}" if hint else ""),
                              code="INGEST_UNKNOWN_COLUMN", record=i, field=key)
        for name in REQUIRED:
            if rec.get(name) is None and name in allowed:
                raise IngestError(f"{table.name} record {i}: missing {name}", code="INGEST_MISSING_FIELD",
                                  record=i, field=name)


def truncate_long_strings(table: Table, records: list, body: bytes | None = None) -> int:
    """Cut every string value of a string column longer than MAX_FIELD_BYTES (UTF-8) to that many
    bytes, as Azure does (never inside a character); the number of values cut. A body no longer
    than the limit holds no such value: nothing to look at."""
    if body is not None and len(body) <= MAX_FIELD_BYTES:
        return 0
    strings = frozenset(c for c, t in table.columns if t == T.STRING)
    cut = 0
    for rec in records:
        for k, v in rec.items():
            if type(v) is str and len(v) > MAX_FIELD_BYTES // 4 and k in strings:
                raw = v.encode("utf-8", "surrogatepass")
                if len(raw) > MAX_FIELD_BYTES:
                    rec[k] = raw[:MAX_FIELD_BYTES].decode("utf-8", "ignore")
                    cut += 1
    return cut


def _json_kind(v) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a bool"}.get(type(v), "null")


INFLIGHT_PREFIX = "netatlas-batch-"


def serialize(records: list, body: bytes | None = None, directory: str | os.PathLike | None = None) -> str:
    """The batch as a JSON file for read_json (in ``directory``, the workspace's DIR/inflight): the
    body as received, or the records as compact JSON."""
    if body is None:
        body = orjson.dumps(records, default=_json_default, option=orjson.OPT_NAIVE_UTC)
    fd, path = tempfile.mkstemp(prefix=INFLIGHT_PREFIX, suffix=".json", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(body)
    except BaseException:
        os.unlink(path)
        raise
    return path


# The billed size of a record: its length as compact JSON, from the values as read (a value that
# is absent or null takes no room). Per read type: the length of the value's JSON text.
VALUE_SIZE = {
    "VARCHAR": "strlen({c}) + 2", "BIGINT": "strlen(CAST({c} AS VARCHAR))", "INTEGER": "strlen(CAST({c} AS VARCHAR))",
    "DOUBLE": "strlen(CAST({c} AS VARCHAR))", "DECIMAL(38, 18)": "strlen(CAST({c} AS VARCHAR))",
    "BOOLEAN": "CASE WHEN {c} THEN 4 ELSE 5 END", "JSON": "strlen(CAST({c} AS VARCHAR))", "UUID": "38",
    "TIMESTAMPTZ": "CASE WHEN microsecond({c}) % 1000000 = 0 THEN 22 ELSE 29 END",
}


def record_size_sql(table: Table, empty_strings_absent: bool = False) -> str:
    """SQL for the compact-JSON size of a record, over its columns as read (or as stored)."""
    terms = []
    for name, typ in table.columns:
        read = READ_AS[typ]
        c = _q(name)
        absent = f"{c} IS NULL" + (f" OR {c} = ''" if empty_strings_absent and read == "VARCHAR" else "")
        value = VALUE_SIZE[read].format(c=c)
        terms.append(f"CASE WHEN {absent} THEN 0 ELSE {len(name.encode()) + 4} + {value} END")
    return f"greatest(2, 1 + {' + '.join(terms)})"


# how read_json reads each KQL type, and how the staged value is finished
READ_AS = {T.STRING: "VARCHAR", T.LONG: "BIGINT", T.INT: "INTEGER", T.REAL: "DOUBLE", T.BOOL: "BOOLEAN",
           T.DATETIME: "TIMESTAMPTZ", T.TIMESPAN: "JSON", T.DYNAMIC: "JSON", T.GUID: "UUID",
           T.DECIMAL: "DECIMAL(38, 18)"}
FINISH = {
    T.STRING: "coalesce({c}, '')",
    T.DATETIME: "CAST({c} AS TIMESTAMP)",
    T.TIMESPAN: ("CASE WHEN {c} IS NULL OR {c} = 'null' THEN NULL ELSE coalesce(netatlas_parse_timespan("
                 "json_extract_string({c}, '$')), TRY_CAST({c} AS BIGINT), error('timespan')) END"),
    T.DYNAMIC: "CASE WHEN {c} = 'null' THEN NULL ELSE {c} END",
}


def read_json_source(table: Table, path: str) -> str:
    """The batch file as a relation of the table's columns, each typed as READ_AS says."""
    spec = ", ".join(f"{_lit(c)}: {_lit(READ_STRICT.get(t, READ_AS[t]))}" for c, t in table.columns)
    return strict_source(table, f"read_json({_lit(path)}, format='array', columns={{{spec}}})")


# Integer columns are read as JSON, then checked and cast (read as BIGINT, read_json would round
# 3.5 to 4 and take true as 1): a value REJECT refuses fails the read, and ``explain`` names it.
READ_STRICT = {T.LONG: "JSON", T.INT: "JSON"}
STRICT = "CASE WHEN {c} IS NULL OR {c} = 'null' THEN NULL WHEN {bad} THEN error({msg}) ELSE CAST({c} AS {read}) END"


def strict_source(table: Table, source: str) -> str:
    """``source`` (columns typed as READ_STRICT, else READ_AS says) with the READ_STRICT columns
    checked and cast to their READ_AS type."""
    fixes = [STRICT.format(c=_q(c), bad=REJECT[t][0].format(f=_q(c), t=_text(_q(c))), read=READ_AS[t],
                           msg=_lit(f"{c}: {REJECT[t][1]}")) + f" AS {_q(c)}"
             for c, t in table.columns if t in READ_STRICT]
    if not fixes:
        return source
    return f"(SELECT * REPLACE ({', '.join(fixes)}) FROM {source})"


def staged_select(table: Table, source: str, enriched: dict[str, str],
                  lookups: list[enrich.Lookup] = (), size: str | None = None) -> tuple[str, list]:
    """SQL reading the batch (``source``: a relation of the table's columns typed as READ_AS says:
    ``read_json_source`` or ``frame_source``) as finished rows (joined to the lookups), and its
    parameters."""
    exprs = dict(enriched)
    for lk in lookups:
        exprs.update(lk.exprs)
    cols = []
    for name, typ in table.columns:
        if name in exprs:
            cols.append(f"{exprs[name]} AS {_q(name)}")
        else:
            cols.append(f"{FINISH.get(typ, '{c}').format(c=_q(name))} AS {_q(name)}")
    join, params = "", []
    for lk in lookups:
        sql, values = lk.join()
        join += sql
        params += values
    key = f", {enrich.key_sql()} AS {enrich.KEY}" if lookups else ""
    return (f"SELECT {', '.join(cols)} FROM (SELECT *, {size or record_size_sql(table)} AS __bytes{key} FROM "
            f"{source}) AS __batch{join}", params)


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


def explain(con, table: Table, records: list, err: Exception, context: dict | None = None):
    """Raise the IngestError naming the first bad record and field of a batch the fast pass refused
    (``context``: the batch's, for its datetime window)."""
    text = orjson.dumps(records, default=_json_default, option=orjson.OPT_NAIVE_UTC).decode()
    src = f"_in_{uuid.uuid4().hex[:12]}"
    try:
        try:
            con.execute(f"CREATE TEMP TABLE {src} AS {_records_sql()}",
                        [json.dumps({c: "JSON" for c, _ in table.columns}), text])
        except db.Error as e:
            raise IngestError(f"{table.name}: the body must be a JSON array of records ({_first_line(e)})",
                              code="INGEST_BAD_BODY") from None
        validate(con, table, src, (context or {}).get("datetime_window"))
    finally:
        con.execute(f"DROP TABLE IF EXISTS {src}")
    raise IngestError(f"{table.name}: the batch was refused: {_first_line(err)}", code="INGEST_BAD_BODY")


def validate(con, table: Table, src: str, window: dict | None = None) -> int:
    """Raise IngestError naming the first bad record and field; return the number of records.
    ``window``: (low, high) per datetime column (``datetime_window``)."""
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
    for name, (low, high) in (window or {}).items():
        f = f"s.{_q(name)}"
        value = f"CAST(TRY_CAST({_text(f)} AS TIMESTAMPTZ) AS TIMESTAMP)"
        checks.append(f"min(CASE WHEN {outside_window_sql(value, low, high)} THEN rn END)")
        labels.append((name, T.DATETIME, window_message(name, low, high)))
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
                          code="INGEST_TYPE" if i < len(labels) - len(window or ()) else "INGEST_DATETIME_RANGE",
                          record=rn, field=name)
    return n


def finished(table: Table, context: dict) -> dict[str, str]:
    """Column -> SQL over the staged batch, for the columns not simply read: those the enrich
    stage fills (enrich.py), and the datetime columns checked against their window."""
    return {**enrich.columns(table, context), **datetime_checks(table, context)}


def insert_sql(table: str, select: str, outbox=None, group: str | None = None) -> str:
    """The INSERT of ``select``'s rows into ``table``, or into its outbox (store/outbox.py) when the
    workspace's tables live in another store."""
    return f"INSERT INTO {_q(table)} {select}" if outbox is None else outbox.insert(table, select, group)


def usage_sql(outbox=None, group: str | None = None) -> str:
    """The INSERT of one row of hourly Usage bytes (hour, DataType, Solution, bytes)."""
    return insert_sql(USAGE_RAW, "SELECT ?, ?, ?, ?", outbox, group)


def rolls_up(table: Table, outbox=None) -> bool:
    """Whether storing a batch of ``table`` also adds to VMConnection's hourly rollup (rollup.py):
    VMConnection's batches, where the workspace keeps the rows itself (no outbox)."""
    return table.name == rollup.SOURCE and outbox is None


def store(con, table: Table, source: str, enriched: dict[str, str], batch_id: str | None,
          lookups: list[enrich.Lookup] = (), outbox=None) -> tuple[int, int]:
    """One transaction: the batch id, the rows read from the batch (``source``, see
    ``staged_select``), and their Usage bytes; with an ``outbox`` the rows and bytes are staged
    there and forwarded to its store once committed."""
    size = "_BilledSize" if "_BilledSize" in table.column_types else record_size_sql(table, empty_strings_absent=True)
    group = outbox.group() if outbox is not None else None
    con.execute("BEGIN TRANSACTION")
    try:
        if batch_id is not None:
            con.execute(f"INSERT INTO {BATCHES} VALUES (?, ?, 0, now())", [batch_id, table.name])
        select, params = staged_select(table, source, enriched, lookups)
        # the hour as epoch seconds and the bytes of every row, as two numpy columns; VMConnection's
        # rows as stored too, for its hourly rollup (rollup.py)
        rolled = rolls_up(table, outbox)
        returned = con.execute(
            f"{insert_sql(table.name, select, outbox, group)} RETURNING CAST(epoch(date_trunc('hour', "
            f"TimeGenerated)) AS BIGINT) AS h, CAST({size} AS BIGINT) AS b"
            + (f", {rollup.returning()}" if rolled else ""), params)
        if rolled:
            stored = rollup.stored(returned)
            rows = {"h": rollup.column(stored, "h"), "b": rollup.column(stored, "b")}
            rollup.add(con, stored)
        else:
            rows = returned.fetchnumpy()
        hours, inverse = np.unique(rows["h"], return_inverse=True)
        sums = np.bincount(inverse, weights=rows["b"], minlength=len(hours)) if len(hours) else []
        per_hour = {_EPOCH + timedelta(seconds=int(h)): int(b) for h, b in zip(hours.tolist(), np.asarray(sums).tolist())}
        if per_hour:
            con.executemany(usage_sql(outbox, group),
                            [(h, table.name, SOLUTION.get(table.name, "LogManagement"), b) for h, b in per_hour.items()])
        if batch_id is not None:
            con.execute(f"UPDATE {BATCHES} SET records = ? WHERE batch_id = ?", [len(rows["h"]), batch_id])
        con.execute("COMMIT")
    except Exception as e:
        rollback(con)
        err = storage_error(e)
        if err is e:
            raise
        raise err from e
    if outbox is not None:
        outbox.forward_quietly(con, group, [table.name, USAGE_RAW])
    return len(rows["h"]), sum(per_hour.values())


def stored_batch(con, batch_id: str) -> bool:
    """Whether the batch id is stored (a batch sent before, or at the same moment)."""
    return con.execute(f"SELECT 1 FROM {BATCHES} WHERE batch_id = ?", [batch_id]).fetchone() is not None


def rollback(con) -> None:
    """Roll back the transaction, if DuckDB has not already: a COMMIT that fails (a full disk, a write
    conflict) ends the transaction, and the ROLLBACK's own error must not hide the real one."""
    try:
        con.execute("ROLLBACK")
    except db.Error:
        pass


# the store's errors that say it could not write, not that the batch is bad: answered 503, retried
STORAGE_ERRORS = db.STORAGE_ERRORS


def storage_error(e: Exception) -> Exception:
    """``e`` as a StorageError when it is the store's failure (STORAGE_ERRORS), else ``e`` itself."""
    if isinstance(e, STORAGE_ERRORS) and not isinstance(e, db.ConstraintException):
        return StorageError(f"the workspace could not store the batch: {_first_line(e)}")
    return e


_EPOCH = datetime(1970, 1, 1)

# Usage is a view over the bytes each batch added per hour and table, so ingestion only appends.
USAGE_RAW = "_netatlas_usage"
USAGE_SQL = [
    f"CREATE TABLE IF NOT EXISTS {USAGE_RAW} (hour TIMESTAMP, DataType VARCHAR, Solution VARCHAR, bytes BIGINT)",
    f"""CREATE OR REPLACE VIEW "Usage" AS SELECT hour AS TimeGenerated, hour AS StartTime,
        hour + INTERVAL 1 HOUR AS EndTime, DataType, Solution, CAST(sum(bytes) / {MB}.0 AS DOUBLE) AS Quantity,
        'MBytes' AS QuantityUnit, true AS IsBillable, 'OMS' AS SourceSystem, 'Usage' AS Type
        FROM {USAGE_RAW} GROUP BY hour, DataType, Solution""",
]


SOLUTION = {"VMConnection": "VMInsights", "VMBoundPort": "VMInsights", "VMComputer": "VMInsights",
            "VMProcess": "VMInsights", "InsightsMetrics": "VMInsights", "ServiceMapComputer_CL": "ServiceMap",
            "ServiceMapProcess_CL": "ServiceMap"}


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


SETUP_SQL = [
    f"CREATE TABLE IF NOT EXISTS {BATCHES} (batch_id VARCHAR PRIMARY KEY, \"table\" VARCHAR, records BIGINT, "
    f"received TIMESTAMP)",
    # the addresses agents send from (machines.py: remote machines behind a NAT)
    "CREATE TABLE IF NOT EXISTS _netatlas_senders (Machine VARCHAR, Computer VARCHAR, Address VARCHAR, "
    "LastSeen TIMESTAMP, PRIMARY KEY (Machine, Address))",
]
