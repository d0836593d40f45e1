"""Import stage: an export of an Azure Log Analytics workspace's tables -> batches for
``Workspace.ingest`` (or a server's ``POST /api/ingest/{Table}``), so a team brings its history.

| stage | input | output | where |
|---|---|---|---|
| read | the file's bytes | rows as (row number, {column: value}) | ``read`` (the format from the first character): ``csv`` (the portal's "Export to CSV (all columns)"), ``query-api`` (the Log Analytics query API's ``{"tables": [{"columns", "rows"}]}``), ``objects`` (a JSON array of objects, as ``az monitor log-analytics query`` prints) |
| route | rows, ``--table``, the file name | rows per catalogue table | ``table_of``: ``--table``, else each row's ``Type``, else the file name (``VMConnection.csv``) |
| columns | a row | a record: Azure's system columns dropped and counted (``AZURE_ONLY``); columns of other tables with no value in the row (a union's export) skipped; any other unknown column refused naming the row | ``record`` |
| convert | text values | values ``ingest`` takes | ``CONVERT`` per KQL type: empty text is no value; the portal's display datetimes (``5/1/2024, 10:00:00.000 AM``, UTC) to ISO 8601; dynamic values as JSON text parsed; numbers and booleans from text |
| batch | records | batches of ``BATCH_RECORDS`` per table, each with a batch id from the SHA-256 of its records: importing the same file again (or again after fixing a row) stores no batch twice | ``batches`` |

Through a server, a batch refused as larger than its max_body_bytes (413) is sent as two halves.
Into a directory, rows older than a table's retention are imported and counted in the report
(``old``): the next retention pass deletes them unless the retention is raised first
(``--retention DAYS``). Through a server they are refused (exit 2 naming the row and field), as
the server refuses a TimeGenerated older than its table's retention, unless ``--retention``
raises it first.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable, Iterator

from .catalogue import Catalogue, Table
from .errors import ImportFileError, NetatlasError, ServerRefused, did_you_mean
from .kql import types as T

BATCH_RECORDS = 5000

# Columns every Log Analytics table has (or an export adds) that netatlas's catalogue does not:
# they say where a row lived in Azure, not what it records. Dropped and counted.
AZURE_ONLY = {
    "TenantId": "the Log Analytics workspace id",
    "_ItemId": "the row's id in Log Analytics",
    "_TimeReceived": "when Log Analytics received the row",
    "_Internal_WorkspaceResourceId": "the Log Analytics workspace's resource id",
    "TableName": "the result table's name (az monitor log-analytics query)",
    "MG": "the management group (legacy agents)",
    "ManagementGroupName": "the management group (legacy agents)",
}




# ---------------------------------------------------------------- read

Rows = Iterator[tuple[int, dict]]


def read_csv(text: str, name: str) -> Rows:
    """The portal's CSV: a header row of column names, then one row per record (row numbers count
    the data rows from 1; the header is line 1 of the file)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        return
    header = [column_name(h, name) for h in header]
    if len(set(header)) != len(header):
        raise ImportFileError(f"{name}: the header names a column twice")
    for n, row in enumerate(reader, start=1):
        if not row:
            continue
        if len(row) != len(header):
            raise ImportFileError(f"{name} row {n} (line {reader.line_num}): {len(row)} values for "
                                  f"{len(header)} columns")
        yield n, dict(zip(header, row))


# the portal's CSV headers name a datetime column with the time zone it shows: "TimeGenerated [UTC]"
ZONE_SUFFIX = re.compile(r"^(.*?) \[(.+)\]$")


def column_name(header: str, name: str) -> str:
    m = ZONE_SUFFIX.match(header.strip())
    if m is None:
        return header.strip()
    if m.group(2).upper() != "UTC":
        raise ImportFileError(f"{name}: column {header!r} holds times in {m.group(2)}; export again with the "
                              f"portal's display time zone set to UTC")
    return m.group(1)


def read_query_api(data: dict, name: str) -> Rows:
    """The Log Analytics query API's answer: ``{"tables": [{"name", "columns": [{"name", "type"}],
    "rows": [[...]]}]}``; every table of it, rows numbered from 1 across them."""
    n = 0
    for t, table in enumerate(data.get("tables") or []):
        try:
            names = [c["name"] for c in table["columns"]]
            rows = table["rows"]
        except (KeyError, TypeError):
            raise ImportFileError(f"{name}: table {t} of the query API answer has no columns or rows") from None
        for row in rows:
            n += 1
            if not isinstance(row, list) or len(row) != len(names):
                raise ImportFileError(f"{name} row {n}: expected a list of {len(names)} values")
            yield n, dict(zip(names, row))


def read_objects(data: list, name: str) -> Rows:
    for n, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise ImportFileError(f"{name} row {n}: expected an object, got {type(row).__name__}")
        yield n, row


# the JSON value a file holds -> its format and reader
JSON_READERS = {dict: ("query-api", read_query_api), list: ("objects", read_objects)}


def read(data: bytes, name: str) -> tuple[str, Rows]:
    """The file's format and its rows."""
    text = data.decode("utf-8-sig", errors="strict") if data else ""
    head = text.lstrip()[:1]
    if head in ("{", "["):
        try:
            parsed = json.loads(text)
        except ValueError as e:
            raise ImportFileError(f"{name}: not valid JSON: {e}") from None
        if isinstance(parsed, dict) and "tables" not in parsed:
            raise ImportFileError(f"{name}: a JSON object, but not the query API's answer (no \"tables\")")
        fmt, reader = JSON_READERS[type(parsed)]
        return fmt, reader(parsed, name)
    return "csv", read_csv(text, name)


# ---------------------------------------------------------------- convert

# the Log Analytics portal's display format of a datetime (UTC unless the portal is set otherwise)
PORTAL_DATETIME = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}),? (\d{1,2}):(\d{2}):(\d{2})(?:\.(\d{1,7}))? ?([AP]M)",
                             re.IGNORECASE)


def to_datetime(text: str) -> str:
    m = PORTAL_DATETIME.fullmatch(text.strip())
    if m is None:
        return text                            # ISO 8601 and the like: the ingest stage checks it
    month, day, year, hour, minute, second, frac, half = m.groups()
    hour = int(hour) % 12 + (12 if half.upper() == "PM" else 0)
    micro = int((frac or "0").ljust(6, "0")[:6])
    try:
        when = datetime(int(year), int(month), int(day), hour, int(minute), int(second), micro, timezone.utc)
    except ValueError as e:
        raise ValueError(f"not a date: {e}") from None
    return when.isoformat().replace("+00:00", "Z")


def to_number(parse: Callable):
    def convert(text: str):
        try:
            return parse(text)
        except ValueError:
            return text                        # the ingest stage names the field and the value
    return convert


def to_int(text: str) -> int:
    f = float(text)
    if not f.is_integer():
        raise ValueError(text)
    return int(f)


def to_bool(text: str):
    return {"true": True, "false": False, "1": True, "0": False}.get(text.strip().lower(), text)


def to_dynamic(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return text                            # a plain string is a dynamic string


# KQL type -> text -> value; empty text is no value (Kusto exports null as an empty cell)
CONVERT: dict[str, Callable[[str], object]] = {
    T.DATETIME: to_datetime,
    T.LONG: to_number(to_int),
    T.INT: to_number(to_int),
    T.REAL: to_number(float),
    T.DECIMAL: str,
    T.BOOL: to_bool,
    T.DYNAMIC: to_dynamic,
}


@dataclass
class Report:
    """What an import did, per table."""
    file: str
    format: str
    tables: dict[str, dict] = field(default_factory=dict)
    ignored_columns: dict[str, int] = field(default_factory=dict)

    def table(self, name: str) -> dict:
        return self.tables.setdefault(name, {"rows": 0, "stored": 0, "duplicate_batches": 0, "batches": 0,
                                             "oldest": None, "old": 0, "retention_days": None})

    def to_json(self) -> dict:
        return {"file": self.file, "format": self.format, "tables": self.tables,
                "ignored_columns": self.ignored_columns}


def record(table: Table, row: dict, n: int, name: str, ignored: dict[str, int]) -> dict:
    """One row as a record of ``table``: Azure-only columns dropped, text converted by type."""
    types = table.column_types
    out = {}
    for column, value in row.items():
        typ = types.get(column)
        if typ is None:
            if column in AZURE_ONLY:
                ignored[column] = ignored.get(column, 0) + 1
                continue
            if value is None or value == "":
                continue            # another table's column in the export of a union: empty here
            hint = did_you_mean(column, list(types))
            raise ImportFileError(f"{name} row {n}: column '{column}' is not a column of {table.name}"
                                  + (f" ({hint})" if hint else "")
                                  + f"; netatlas drops only Azure's own columns ({', '.join(AZURE_ONLY)})",
                                  record=n, field=column)
        if value is None or (isinstance(value, str) and value == "" and typ != T.STRING):
            continue
        if isinstance(value, str) and typ in CONVERT:
            try:
                value = CONVERT[typ](value)
            except ValueError as e:
                raise ImportFileError(f"{name} row {n}, column {column} ({typ}): {e}", record=n,
                                      field=column) from None
        elif typ == T.DYNAMIC and isinstance(value, str):
            value = to_dynamic(value)
        out[column] = value
    return out


def table_of(catalogue: Catalogue, wanted: str | None, row: dict, n: int, name: str) -> Table:
    """--table, else the row's Type, else the file name's stem."""
    label = wanted or row.get("Type") or Path(name).stem.split(".")[0]
    table = catalogue.get(label)
    if table is None or table.name == "Usage":
        hint = did_you_mean(label, catalogue.names())
        how = ("--table" if wanted else "its Type column" if row.get("Type") else "the file name")
        raise ImportFileError(f"{name} row {n}: {label!r} (from {how}) is not a table netatlas imports"
                              + (f"; {hint}" if hint else "") + "; name the table with --table")
    if wanted and row.get("Type") not in (None, "", table.name):
        raise ImportFileError(f"{name} row {n}: a {row['Type']} row, but --table {table.name}", record=n,
                              field="Type")
    return table


@dataclass
class Batch:
    table: str
    batch_id: str
    records: list[dict]
    rows: list[int]             # the file's row number of each record


def parse_time(text) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def batches(data: bytes, name: str, catalogue: Catalogue, report: Report, *, wanted: str | None = None,
            retention: dict[str, int] | None = None, now: datetime | None = None,
            size: int = BATCH_RECORDS) -> list[Batch]:
    """The file's records in batches per table, all read and checked before any is stored; fills
    ``report`` (rows, oldest, rows older than ``retention`` days). A batch's id is the SHA-256 of
    its table and records: importing a file again, or again after fixing one row, stores no
    batch twice."""
    fmt, rows = read(data, name)
    report.format = fmt
    now = now or datetime.now(timezone.utc)
    out: list[Batch] = []
    pending: dict[str, Batch] = {}
    for n, row in rows:
        table = table_of(catalogue, wanted, row, n, name)
        rec = record(table, row, n, name, report.ignored_columns)
        stats = report.table(table.name)
        stats["rows"] += 1
        when = parse_time(rec.get("TimeGenerated"))
        if when is not None:
            if stats["oldest"] is None or when < parse_time(stats["oldest"]):
                stats["oldest"] = when.isoformat().replace("+00:00", "Z")
            days = (retention or {}).get(table.name)
            stats["retention_days"] = days
            if days is not None and when < now - timedelta(days=days):
                stats["old"] += 1
        batch = pending.setdefault(table.name, Batch(table.name, "", [], []))
        batch.records.append(rec)
        batch.rows.append(n)
        if len(batch.records) >= size:
            out.append(pending.pop(table.name))
    out += pending.values()
    for batch in out:
        batch.batch_id = batch_id(batch.table, batch.records)
        report.table(batch.table)["batches"] += 1
    return out


def batch_id(table: str, records: list[dict]) -> str:
    digest = hashlib.sha256(json.dumps([table, records], sort_keys=True).encode()).hexdigest()
    return f"import:{table}:{digest[:40]}"


def halves(batch: Batch) -> list[Batch]:
    """A batch too large for the server's body limit, as two (ids from their own records)."""
    mid = len(batch.records) // 2
    return [Batch(batch.table, batch_id(batch.table, batch.records[a:b]), batch.records[a:b], batch.rows[a:b])
            for a, b in ((0, mid), (mid, len(batch.records)))]


def refused(e, batch: Batch, name: str) -> ImportFileError:
    """An ingest refusal of record i of a batch, as an error naming the file's row."""
    record = getattr(e, "record", None)
    message = getattr(e, "server_message", str(e))
    if isinstance(record, int) and 0 <= record < len(batch.rows):
        row = batch.rows[record]
        message = re.sub(rf"^{batch.table} record {record}\b", f"{name} row {row}", message)
        if not message.startswith(name):
            message = f"{name} row {row}: {message}"
        return ImportFileError(message, record=row, field=getattr(e, "field", None))
    return ImportFileError(f"{name}: {message}")


def import_into(ws, data: bytes, name: str, *, table: str | None = None,
                retention: int | None = None) -> Report:
    """Import the file into an open Workspace (``Workspace.ingest``: checks and enrichment)."""
    from .errors import IngestError
    report = Report(name, "")
    set_days: set[str] = set()
    days = ws.retention()
    for batch in batches(data, name, ws.catalogue, report, wanted=table, retention=_days(days, retention)):
        if retention is not None and batch.table not in set_days:
            ws.set_retention(batch.table, retention)
            set_days.add(batch.table)
        try:
            result = ws.ingest(batch.table, batch.records, batch_id=batch.batch_id)
        except IngestError as e:
            raise refused(e, batch, name) from None
        _count(report, batch, result.records, result.duplicate)
    return report


def _days(current: dict[str, int], wanted: int | None) -> dict[str, int]:
    return {t: wanted for t in current} if wanted is not None else current


def _count(report: Report, batch: Batch, stored: int, duplicate: bool) -> None:
    stats = report.table(batch.table)
    stats["stored"] += stored
    stats["duplicate_batches"] += int(duplicate)


def import_through(server: str, ingest_key: str, data: bytes, name: str, *, table: str | None = None,
                   retention: int | None = None, query_key: str | None = None) -> Report:
    """Import the file through a running server: signed, gzipped ``POST /api/ingest/{Table}``
    batches with their batch ids. ``query_key``: reads (and with ``retention``, sets) the tables'
    retention; without it the default is assumed."""
    import gzip
    from .auth import signed_headers
    from .catalogue import Catalogue
    base = server.rstrip("/")
    workspace_id = _call(base, "GET", "/healthz")["workspace_id"]
    days = {t: 30 for t in Catalogue.load().names()}
    if query_key:
        days = _call(base, "GET", "/api/retention", key=query_key)["tables"]
    report = Report(name, "")
    set_days: set[str] = set()

    def send(batch: Batch) -> None:
        body = gzip.compress(json.dumps(batch.records).encode())
        path = f"/api/ingest/{batch.table}"
        headers = signed_headers(workspace_id, ingest_key, body, path, gzipped=True, batch_id=batch.batch_id)
        try:
            answer = _call(base, "POST", path, raw=body, headers=headers)
        except ServerRefused as e:
            if e.status == 413 and len(batch.records) > 1:       # over the server's max_body_bytes
                report.table(batch.table)["batches"] += 1
                for half in halves(batch):
                    send(half)
                return
            if e.status == 400 and e.record is not None:
                raise refused(e, batch, name) from None
            raise
        _count(report, batch, answer["records"], answer["duplicate"])

    for batch in batches(data, name, Catalogue.load(), report, wanted=table, retention=_days(days, retention)):
        if retention is not None and batch.table not in set_days:
            if not query_key:
                raise ImportFileError("--retention through a server needs --query-key (or NETATLAS_QUERY_KEY)")
            _call(base, "PUT", f"/api/retention/{batch.table}", key=query_key, body={"days": retention})
            set_days.add(batch.table)
        send(batch)
    return report




def _call(base: str, method: str, path: str, *, key: str | None = None, body: dict | None = None,
          raw: bytes | None = None, headers: dict | None = None) -> dict:
    import urllib.error
    import urllib.request
    headers = dict(headers or {})
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if body is not None:
        raw = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(base + path, data=raw, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=600) as r:      # noqa: S310 (the operator's server)
            return json.loads(r.read())
    except urllib.error.HTTPError as e:
        try:
            err = json.loads(e.read())["error"]
        except (ValueError, KeyError, TypeError):
            err = {"message": str(e.reason)}
        raise ServerRefused(f"{method} {base}{path}", e.code, err) from None
    except OSError as e:
        raise NetatlasError(f"cannot reach {base}: {e}") from None


# ---------------------------------------------------------------- the command line

def import_arguments(p) -> None:
    import os
    p.add_argument("file", metavar="FILE", help="a CSV or JSON export of Log Analytics tables ('-' for standard input)")
    p.add_argument("--table", default=None, help="the table of every row (default: each row's Type column, "
                   "else the file name, e.g. VMConnection.csv)")
    p.add_argument("--data", metavar="DIR", default="netatlas-data",
                   help="the workspace directory (default: ./netatlas-data); when its server runs "
                   "(DIR/server.json), the import goes through it")
    p.add_argument("--server", metavar="URL", default=None,
                   help="import through a running workspace server, e.g. http://127.0.0.1:8080")
    p.add_argument("--key", default=os.environ.get("NETATLAS_INGEST_KEY"),
                   help="an ingest key of that server (default: $NETATLAS_INGEST_KEY, else DIR/workspace.json's)")
    p.add_argument("--query-key", default=os.environ.get("NETATLAS_QUERY_KEY"),
                   help="a query key of that server: reads the tables' retention; --retention needs an "
                   "admin key here (default: $NETATLAS_QUERY_KEY, else the local token of DIR's server)")
    p.add_argument("--retention", type=int, default=None, metavar="DAYS",
                   help="set the retention of the imported tables first, so that old history is kept")
    p.add_argument("--format-output", dest="output", choices=["table", "json"], default="table",
                   help="how to print the report (default: table)")


def _key_of(data: Path, role: str) -> str | None:
    """A key of ``role`` from DIR: the ingest secret; for query work (query keys are stored
    hashed) the local token of the server running on DIR (server.json), if any."""
    from . import discovery, keys
    try:
        found = [k.secret for k in keys.load(data).by_role(role) if k.secret]
    except (OSError, ValueError):
        found = []
    if not found and role == "query":
        try:
            return discovery.read(data).token
        except (OSError, ValueError):
            return None
    return found[0] if found else None


def summary(report: Report) -> str:
    lines = []
    for t, s in report.tables.items():
        again = f", {s['duplicate_batches']} of {s['batches']} batches imported before" if s["duplicate_batches"] else ""
        lines.append(f"{t}: {s['rows']} rows read, {s['stored']} stored in {s['batches']} batches{again}; "
                     f"oldest {s['oldest']}")
    if report.ignored_columns:
        lines.append("Azure's own columns dropped: " + ", ".join(f"{c} ({n} values)" for c, n in report.ignored_columns.items()))
    return f"{report.file} ({report.format}):\n  " + "\n  ".join(lines or ["no rows"]) + "\n"


def warnings(report: Report) -> list[str]:
    return [f"warning: {s['old']} {t} rows are older than the table's retention ({s['retention_days']} days): the "
            f"next retention pass deletes them; import again with --retention DAYS to keep them"
            for t, s in report.tables.items() if s["old"]]


def cmd_import(args) -> int:
    import sys
    from .discovery import live_url
    from .errors import UsageError
    from .workspace import open_workspace
    if args.retention is not None and not 1 <= args.retention <= 4383:
        raise UsageError("--retention is a whole number of days from 1 to 4383 (12 years)")
    if args.file == "-":
        data, name = sys.stdin.buffer.read(), args.table or "stdin"
    else:
        try:
            data, name = Path(args.file).read_bytes(), args.file
        except OSError as e:
            raise UsageError(f"cannot read {args.file}: {e.strerror or e}") from None
    data_dir = Path(args.data)
    server = args.server or live_url(data_dir)
    try:
        if server:
            key = args.key or _key_of(data_dir, "ingest")
            if not key:
                raise UsageError("importing through a server needs --key (an ingest key) or NETATLAS_INGEST_KEY")
            report = import_through(server, key, data, name, table=args.table, retention=args.retention,
                                    query_key=args.query_key or _key_of(data_dir, "query"))
        else:
            with open_workspace(args.data) as ws:
                report = import_into(ws, data, name, table=args.table, retention=args.retention)
    except ImportFileError as e:
        raise UsageError(str(e)) from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    if args.output == "json":
        print(json.dumps(report.to_json(), indent=2))
    else:
        sys.stdout.write(summary(report))
    for w in warnings(report):
        print(w, file=sys.stderr)
    return 0
