"""The Kusto (Azure Data Explorer) REST API, as azure-kusto-data, Kqlmagic and other Kusto tools
speak it.

- ``POST /v2/rest/query``: ``{"db", "csl", "properties"}``; the answer is v2's frames:
  DataSetHeader, DataTable frames (QueryProperties with the Visualization of ``render``,
  PrimaryResult, QueryCompletionInformation), DataSetCompletion; progressive (TableHeader,
  TableFragment, TableCompletion) when the client asks (``results_progressive_enabled``).
- ``POST /v1/rest/query``: the same answer as v1's tables (the result, its properties, the query's
  status and the table of contents).
- ``POST /v1/rest/mgmt``: the management commands tools send (``MGMT``): ``.show tables``,
  ``.show table T schema as json``, ``.show database schema [as json]``, ``.show databases``,
  ``.show version``, ``.show functions``; any other is refused in Kusto's words.
- ``GET /v1/rest/auth/metadata``: answered without a key (clients ask it before they sign in).

Requests carry a query key as ``Authorization: Bearer <key>`` (an SDK's static token). From the
request's properties (ClientRequestProperties): ``Parameters`` give ``declare query_parameters``
their values (``LiteralText``), and the options ``servertimeout``, ``truncationmaxrecords``,
``truncationmaxsize`` lower the server's limits, ``notruncation`` leaves the server's own, and
``deferpartialqueryfailures`` sends a truncated answer's rows without failing it. A truncated
answer is what Kusto sends: the rows, then the error (E_QUERY_RESULT_SET_TOO_LARGE) inside the
table and in QueryCompletionInformation. Errors are Kusto's shape (``{"error": {"code", "message",
"@type", "@message", ...}}``, OneApiErrors), so a client raises what it raises against Azure.
"""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone

from starlette.requests import Request
from starlette.responses import Response

from ... import __version__
from ...auth import AuthError
from ...errors import KqlError, KqlSyntaxError, QueryExecutionError, QueryLimitError
from ...kql.values import LiteralText
from ...pool import QueryBusyError
from ...result import table_name
from ..http import HttpError, read_json_object
from .common import (authorize_query, DATABASE, NET_TYPES, V1_TYPES, BadRequest, described, is_database,
                     json_response as _json, json_rows, limits, positive_int, run, timeout_seconds)

BODY_LIMIT = 1024 * 1024

# QueryCompletionInformation's columns (v2), and QueryStatus's (v1)
COMPLETION_COLUMNS = [("Timestamp", "datetime"), ("ClientRequestId", "string"), ("ActivityId", "guid"),
                      ("SubActivityId", "guid"), ("ParentActivityId", "guid"), ("Level", "int"),
                      ("LevelName", "string"), ("StatusCode", "int"), ("StatusCodeName", "string"),
                      ("EventType", "int"), ("EventTypeName", "string"), ("Payload", "string")]
STATUS_COLUMNS = [("Timestamp", "datetime"), ("Severity", "int"), ("SeverityName", "string"),
                  ("StatusCode", "int"), ("StatusDescription", "string"), ("Count", "int"),
                  ("RequestId", "guid"), ("ActivityId", "guid"), ("SubActivityId", "guid"),
                  ("ClientActivityId", "string")]
# render's properties (KQL's names) -> Visualization's (Kusto's), with Kusto's value when unset
VISUALIZATION = {"visualization": ("Visualization", None), "title": ("Title", None), "xcolumn": ("XColumn", None),
                 "series": ("Series", None), "ycolumns": ("YColumns", None), "anomalycolumns": ("AnomalyColumns", None),
                 "xtitle": ("XTitle", None), "ytitle": ("YTitle", None), "xaxis": ("XAxis", None),
                 "yaxis": ("YAxis", None), "legend": ("Legend", None), "ysplit": ("YSplit", None),
                 "accumulate": ("Accumulate", False), "isquerysorted": ("IsQuerySorted", False),
                 "kind": ("Kind", None), "ymin": ("Ymin", "NaN"), "ymax": ("Ymax", "NaN"),
                 "xmin": ("Xmin", None), "xmax": ("Xmax", None)}
TRUNCATED = "E_QUERY_RESULT_SET_TOO_LARGE"
# how each failure of a query is told: (class, HTTP status, OneApi code, @type, @message's prefix)
FAILURES = (
    (KqlSyntaxError, 400, "General_BadRequest", "Kusto.Data.Exceptions.SyntaxException", "Syntax error: "),
    (KqlError, 400, "General_BadRequest", "Kusto.Data.Exceptions.SemanticException", "Semantic error: "),
    (QueryLimitError, 504, "Request_ExecutionTimeout", "Kusto.Data.Exceptions.KustoRequestExecutionTimeoutException", ""),
    (QueryBusyError, 429, "LimitsExceeded", "Kusto.DataNode.Exceptions.ControlCommandThrottledException", ""),
    (QueryExecutionError, 400, "General_BadRequest", "Kusto.Data.Exceptions.KustoDataStreamException", ""),
)


# ---- the request ----------------------------------------------------------------------------

def _properties(body: dict) -> dict:
    """ClientRequestProperties: a JSON text (the SDKs) or an object; {} when none."""
    props = body.get("properties")
    if props is None or props == "":
        return {}
    if isinstance(props, str):
        try:
            props = json.loads(props)
        except ValueError as e:
            raise BadRequest(f"'properties' is not JSON: {e}") from None
    if not isinstance(props, dict):
        raise BadRequest("'properties' must be an object of Options and Parameters")
    return props


def _request(body: dict, svc) -> tuple[str, dict, dict]:
    """The query text, ``Workspace.query``'s options, and the request's options."""
    text = body.get("csl")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("'csl' must be the query's text")
    _check_database(body, svc)
    props = _properties(body)
    options = props.get("Options") or props.get("options") or {}
    params = props.get("Parameters") or props.get("parameters") or {}
    if not isinstance(options, dict) or not isinstance(params, dict):
        raise BadRequest("'Options' and 'Parameters' must be objects")
    options = {str(k).lower(): v for k, v in options.items()}
    timeout = options.get("servertimeout")
    no_truncation = _flag(options.get("notruncation"))
    q = limits(svc.settings,
               max_rows=None if no_truncation or options.get("truncationmaxrecords") is None
               else positive_int("truncationmaxrecords", options["truncationmaxrecords"]),
               max_bytes=None if no_truncation or options.get("truncationmaxsize") is None
               else positive_int("truncationmaxsize", options["truncationmaxsize"]),
               timeout=None if timeout is None else timeout_seconds(timeout))
    q["params"] = {str(k): v if not isinstance(v, str) else LiteralText(v) for k, v in params.items()}
    return text, q, options


def _check_database(body: dict, svc) -> None:
    """The request's ``db`` names this workspace's database (or none: the default); BadRequest if not."""
    db = body.get("db")
    if db is not None and not isinstance(db, str):
        raise BadRequest("'db' must be a database's name")
    if not is_database(db, svc.keys.identity.workspace_id):
        raise BadRequest(f"Entity ID '{db}' of kind 'Database' was not found: this workspace's database is "
                         f"'{DATABASE}'", kind="not_found")


def _flag(v) -> bool:
    return v is True or (isinstance(v, str) and v.lower() == "true")


# ---- the answers ------------------------------------------------------------------------------

def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def visualization(render: dict | None) -> str:
    """A query's render as Kusto's Visualization property (JSON text)."""
    out = {name: default for name, default in VISUALIZATION.values()}
    for key, value in (render or {}).items():
        name = VISUALIZATION.get(key.lower(), (None,))[0]
        if name is None:
            continue
        out[name] = ", ".join(value) if isinstance(value, (list, tuple)) else value
    return json.dumps(out, separators=(",", ":"), default=str)


def one_api_error(code: str, message: str, type_: str, description: str, *, permanent: bool = True,
                  text: str | None = None, request_id: str = "") -> dict:
    """Kusto's error object (OneApiError)."""
    return {"code": code, "message": message, "@type": type_, "@message": description,
            "@context": {"timestamp": _now(), "serviceAlias": "NETATLAS", "machineName": "netatlas",
                         "processName": "netatlas", "processId": 0, "threadId": 0,
                         "clientRequestId": request_id, "activityId": str(uuid.uuid4()),
                         "subActivityId": str(uuid.uuid4()), "activityType": "PO-OWIN-CallContext;",
                         "parentActivityId": str(uuid.uuid4()), "activityStack": ""},
            "@permanent": permanent, **({"@text": text} if text is not None else {}),
            "@database": DATABASE}


def _truncation_error(res, request_id: str) -> dict:
    what = f"{res.limit:,} records" if res.truncated_by == "max_rows" else f"{res.limit:,} bytes"
    message = (f"Query result set has exceeded the internal {'record count' if res.truncated_by == 'max_rows' else 'data size'} "
               f"limit {what} ({TRUNCATED}): {res.truncation}")
    return one_api_error("LimitsExceeded", "Request is invalid and cannot be executed.",
                         "Kusto.Data.Exceptions.KustoServicePartialQueryFailureLimitsExceededException",
                         message, request_id=request_id)


def _completion_rows(res, request_id: str, v1: bool) -> list[list]:
    ok = [_now(), request_id, str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), 4, "Info", 0,
          "S_OK (0)", 4, "QueryInfo",
          json.dumps({"Count": 1, "Text": "Query completed successfully"})]
    rows = [ok]
    for table in res.tables():
        if table.truncated:
            err = _truncation_error(table, request_id)
            rows.append([_now(), request_id, str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4()), 2, "Error",
                         -2133196797, f"{TRUNCATED} (0x80DA0003)", 5, "QueryResourceConsumption",
                         err["@message"]])
    if not v1:
        return rows
    return [[r[0], r[5], r[6], r[7], r[11] if r[5] < 4 else "Query completed successfully", 1, str(uuid.uuid4()),
             r[2], r[3], request_id] for r in rows]


def frames_v2(res, request_id: str, *, progressive: bool = False, defer: bool = False) -> list[dict]:
    """The v2 answer of a Result: the list of frames. A query of several tabular statements gives a
    PrimaryResult table for each (TableId 1, 2, ...; named as Result.to_json names them), each
    with its Visualization row in @ExtendedProperties."""
    tables = res.tables()
    truncated = any(t.truncated for t in tables)
    out = [{"FrameType": "DataSetHeader", "IsProgressive": progressive, "Version": "v2.0",
            "IsFragmented": progressive, "ErrorReportingPlacement": "InData"},
           {"FrameType": "DataTable", "TableId": 0, "TableKind": "QueryProperties", "TableName": "@ExtendedProperties",
            "Columns": [{"ColumnName": "TableId", "ColumnType": "int"}, {"ColumnName": "Key", "ColumnType": "string"},
                        {"ColumnName": "Value", "ColumnType": "dynamic"}],
            "Rows": [[i, "Visualization", visualization(t.render)] for i, t in enumerate(tables, 1)]}]
    for i, table in enumerate(tables, 1):
        columns = [{"ColumnName": c, "ColumnType": t} for c, t in zip(table.columns, table.types)]
        rows = json_rows(table)
        error = _truncation_error(table, request_id) if table.truncated and not defer else None
        name = table_name(i - 1)
        if progressive:
            out.append({"FrameType": "TableHeader", "TableId": i, "TableKind": "PrimaryResult",
                        "TableName": name, "Columns": columns})
            if rows:
                out.append({"FrameType": "TableFragment", "TableFragmentType": "DataAppend", "TableId": i,
                            "Rows": rows})
            out.append({"FrameType": "TableCompletion", "TableId": i, "RowCount": len(rows),
                        **({"OneApiErrors": [{"error": error}]} if error else {})})
        else:
            out.append({"FrameType": "DataTable", "TableId": i, "TableKind": "PrimaryResult", "TableName": name,
                        "Columns": columns, "Rows": rows + ([{"OneApiErrors": [{"error": error}]}] if error else [])})
    first_cut = next((t for t in tables if t.truncated), None)
    out.append({"FrameType": "DataTable", "TableId": len(tables) + 1, "TableKind": "QueryCompletionInformation",
                "TableName": "QueryCompletionInformation",
                "Columns": [{"ColumnName": c, "ColumnType": t} for c, t in COMPLETION_COLUMNS],
                "Rows": _completion_rows(res, request_id, v1=False)})
    out.append({"FrameType": "DataSetCompletion", "HasErrors": truncated, "Cancelled": False,
                **({"OneApiErrors": [{"error": _truncation_error(first_cut, request_id)}]} if truncated else {})})
    return out


def tables_v1(res, request_id: str) -> dict:
    """The v1 answer of a Result: the results (Table_0, Table_1, ...: one for each tabular
    statement), their properties, the status, the table of contents."""
    def columns(pairs):
        return [{"ColumnName": c, "DataType": V1_TYPES[t], "ColumnType": t} for c, t in pairs]
    results = res.tables()
    n = len(results)
    ids = [str(uuid.uuid4()) for _ in range(n + 2)]
    out = [{"TableName": f"Table_{i}", "Columns": columns(zip(t.columns, t.types)),
            "Rows": json_rows(t, dynamic_as_text=True)} for i, t in enumerate(results)]
    return {"Tables": out + [
        {"TableName": f"Table_{n}", "Columns": columns([("Value", "string")]),
         "Rows": [[json.dumps({"Visualization": json.loads(visualization(t.render))})] for t in results]},
        {"TableName": f"Table_{n + 1}", "Columns": columns(STATUS_COLUMNS),
         "Rows": _completion_rows(res, request_id, v1=True)},
        {"TableName": f"Table_{n + 2}", "Columns": columns([("Ordinal", "long"), ("Kind", "string"), ("Name", "string"),
                                                            ("Id", "string"), ("PrettyName", "string")]),
         "Rows": [*([i, "QueryResult", table_name(i), ids[i], ""] for i in range(n)),
                  [n, "QueryProperties", "@ExtendedProperties", ids[n], ""],
                  [n + 1, "QueryStatus", "QueryStatus", ids[n + 1], ""]]},
    ]}


def table_v1(columns: list[tuple[str, str]], rows: list[list]) -> dict:
    """A management command's answer: one v1 table."""
    return {"Tables": [{"TableName": "Table_0",
                        "Columns": [{"ColumnName": c, "DataType": V1_TYPES[t], "ColumnType": t} for c, t in columns],
                        "Rows": rows}]}


def _error(status: int, error: dict) -> Response:
    return _json({"error": error}, status)


def _bad_request(e: BadRequest, text: str | None, request_id: str) -> Response:
    kinds = {"bad_request": ("General_BadRequest", "Kusto.Data.Exceptions.KustoBadRequestException"),
             "not_found": ("BadRequest_EntityNotFound", "Kusto.Data.Exceptions.EntityNotFoundException"),
             "syntax": ("General_BadRequest", "Kusto.Data.Exceptions.SyntaxException")}
    code, type_ = kinds.get(e.kind, kinds["bad_request"])
    return _error(e.status, one_api_error(code, "Request is invalid and cannot be executed.", type_, str(e),
                                          text=text, request_id=request_id))


def _failure(e: Exception, text: str, request_id: str) -> Response:
    for cls, status, code, type_, prefix in FAILURES:
        if isinstance(e, cls):
            message = "Request is invalid and cannot be executed." if status == 400 else str(e)
            return _error(status, one_api_error(code, message, type_, prefix + described(e), text=text,
                                                request_id=request_id, permanent=status == 400))
    raise e


def _request_id(request: Request) -> str:
    return request.headers.get("x-ms-client-request-id") or f"netatlas;{uuid.uuid4()}"


async def _body(request: Request, request_id: str):
    try:
        return await read_json_object(request, BODY_LIMIT), None
    except HttpError as e:
        return None, _bad_request(BadRequest(e.message, status=e.status), None, request_id)


async def _opened(request: Request):
    """(the service, the request's id, its JSON body, None), or an answer refusing it in the last place."""
    request_id = _request_id(request)
    try:
        svc = authorize_query(request)
    except AuthError as e:
        return None, request_id, None, _auth_error(e, request_id)
    body, failed = await _body(request, request_id)
    return svc, request_id, body, failed


async def _query(request: Request, v1: bool) -> Response:
    svc, request_id, body, failed = await _opened(request)
    if failed is not None:
        return failed
    text = body.get("csl") if isinstance(body.get("csl"), str) else None
    try:
        text, q, options = _request(body, svc)
    except BadRequest as e:
        return _bad_request(e, text, request_id)
    try:
        res = await run(svc, text, **q)
    except Exception as e:                 # the query's mistakes, limits and busy: Kusto's errors
        return _failure(e, text, request_id)
    if v1:
        return _json(tables_v1(res, request_id))
    return _json(frames_v2(res, request_id, progressive=_flag(options.get("results_progressive_enabled")),
                           defer=_flag(options.get("deferpartialqueryfailures"))))


async def query_v2(request: Request) -> Response:
    return await _query(request, v1=False)


async def query_v1(request: Request) -> Response:
    return await _query(request, v1=True)


def _auth_error(e: AuthError, request_id: str) -> Response:
    # the clients raise on 401 by status ("401. Missing adequate access rights."); 403 carries ours
    error = one_api_error("Unauthorized" if e.status == 401 else "Forbidden", str(e),
                          "Kusto.Data.Exceptions.UnauthorizedDatabaseAccessException", str(e), request_id=request_id)
    resp = _error(e.status, error)
    if e.status == 401:
        resp.headers["WWW-Authenticate"] = 'Bearer realm="netatlas"'
    return resp


async def auth_metadata(request: Request) -> Response:
    """What a client asks before it signs in: there is no Azure AD here (a query key is the token)."""
    return _json({"AzureAD": None, "dSTS": None})


# ---- management commands ---------------------------------------------------------------------------

def _schema_json(table) -> dict:
    return {"Name": table.name, "OrderedColumns": [{"Name": c, "Type": NET_TYPES[t], "CslType": t}
                                                   for c, t in table.columns],
            "Folder": "", "DocString": ""}


def show_tables(svc, m) -> dict:
    return table_v1([("TableName", "string"), ("DatabaseName", "string"), ("Folder", "string"), ("DocString", "string")],
                    [[name, DATABASE, "", ""] for name in svc.catalogue.names()])


def show_table_schema(svc, m) -> dict:
    name = m.group("table").strip("[]'\" ")
    table = svc.catalogue.get(name)
    if table is None:
        raise BadRequest(f"Table '{name}' was not found in database '{DATABASE}'", kind="not_found")
    schema = json.dumps(_schema_json(table)) if m.group("json") else ", ".join(f"{c}:{t}" for c, t in table.columns)
    return table_v1([("TableName", "string"), ("Schema", "string"), ("DatabaseName", "string"),
                     ("Folder", "string"), ("DocString", "string")], [[name, schema, DATABASE, "", ""]])


def show_database_schema(svc, m) -> dict:
    tables = [svc.catalogue.get(n) for n in svc.catalogue.names()]
    if m.group("json"):
        schema = {"Databases": {DATABASE: {"Name": DATABASE, "Tables": {t.name: _schema_json(t) for t in tables},
                                           "ExternalTables": {}, "MaterializedViews": {}, "Functions": {},
                                           "EntityGroups": {}, "MajorVersion": 1, "MinorVersion": 0,
                                           "DatabaseAccessMode": "ReadWrite"}}}
        return table_v1([("DatabaseSchema", "string")], [[json.dumps(schema)]])
    rows = [[DATABASE, "", "", "", False, False, "", "v1.0", "", ""]]
    for t in tables:
        rows.append([DATABASE, t.name, "", "", False, False, "", "", "", ""])
        rows += [[DATABASE, t.name, c, NET_TYPES[typ], False, False, "", "", "", ""] for c, typ in t.columns]
    return table_v1([("DatabaseName", "string"), ("TableName", "string"), ("ColumnName", "string"),
                     ("ColumnType", "string"), ("IsDefaultTable", "bool"), ("IsDefaultColumn", "bool"),
                     ("PrettyName", "string"), ("Version", "string"), ("Folder", "string"), ("DocString", "string")], rows)


def show_databases(svc, m) -> dict:
    return table_v1([("DatabaseName", "string"), ("PersistentStorage", "string"), ("Version", "string"),
                     ("IsCurrent", "bool"), ("DatabaseAccessMode", "string"), ("PrettyName", "string"),
                     ("ReservedSlot1", "bool"), ("DatabaseId", "guid"), ("InTransitionTo", "string")],
                    [[DATABASE, "", "v1.0", True, "ReadWrite", svc.keys.identity.workspace_id, False,
                      _guid(svc.keys.identity.workspace_id), ""]])


def _guid(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"netatlas:{text}"))


def show_version(svc, m) -> dict:
    return table_v1([("BuildVersion", "string"), ("BuildTime", "datetime"), ("ServiceType", "string"),
                     ("ProductVersion", "string")],
                    [[__version__, "2026-01-01T00:00:00Z", "Engine", f"netatlas {__version__}"]])


def show_functions(svc, m) -> dict:
    return table_v1([("Name", "string"), ("Parameters", "string"), ("Body", "string"), ("Folder", "string"),
                     ("DocString", "string")], [])


_NAME = r"(?:\[\s*(?:'[^']*'|\"[^\"]*\")\s*\]|[A-Za-z_][\w]*)"
# each command: (its pattern, its answer, how the refusal of an unknown one names it)
MGMT = [
    (re.compile(r"^\.show\s+tables(?:\s+details)?$", re.I), show_tables, ".show tables"),
    (re.compile(rf"^\.show\s+table\s+(?P<table>{_NAME})\s+(?:c?schema)(?P<json>\s+as\s+json)?$", re.I),
     show_table_schema, ".show table T schema as json"),
    (re.compile(rf"^\.show\s+database(?:\s+{_NAME})?\s+c?schema(?:\s+details)?(?P<json>\s+as\s+json)?$", re.I),
     show_database_schema, ".show database schema [as json]"),
    (re.compile(r"^\.show\s+databases(?:\s+details)?$", re.I), show_databases, ".show databases"),
    (re.compile(r"^\.show\s+version$", re.I), show_version, ".show version"),
    (re.compile(r"^\.show\s+functions$", re.I), show_functions, ".show functions"),
]


async def mgmt(request: Request) -> Response:
    svc, request_id, body, failed = await _opened(request)
    if failed is not None:
        return failed
    text = body.get("csl")
    if not isinstance(text, str) or not text.strip():
        return _bad_request(BadRequest("'csl' must be the command's text"), None, request_id)
    command = " ".join(text.split()).rstrip(";")
    try:
        _check_database(body, svc)
        for pattern, answer, _ in MGMT:
            m = pattern.match(command)
            if m:
                return _json(answer(svc, m))
    except BadRequest as e:
        return _bad_request(e, text, request_id)
    known = ", ".join(name for _, _, name in MGMT)
    return _bad_request(BadRequest(f"Syntax error: the command {command[:80]!r} is not one netatlas answers "
                                   f"(the commands are {known}); queries go to /v2/rest/query", kind="syntax"),
                        text, request_id)


__all__ = ["auth_metadata", "frames_v2", "mgmt", "query_v1", "query_v2", "tables_v1", "visualization"]
