"""Data collection rules: how the Logs Ingestion API maps a stream of records to a table, with a
KQL transformation at ingestion, from the same JSON Azure uses.

A rule (``{"properties": {...}}`` or the properties alone) has:

- ``immutableId``: its id (``dcr-`` and hex in Azure; the id it is stored under);
- ``streamDeclarations``: ``{"Custom-<Name>": {"columns": [{"name", "type"}]}}``, the records a
  client sends (types: string, int, long, real, boolean, datetime, dynamic, guid, timespan);
- ``dataFlows``: ``[{"streams": [...], "transformKql": "source | ...", "outputStream": ...}]``:
  each record of a stream goes through the transformation (``source`` is the records, with the
  declared columns and types) into the output stream, ``Custom-<Name>_CL`` (a custom table, made
  or widened from the transformation's columns when the rule is defined: custom.py) or
  ``Microsoft-<Table>`` (one of the workspace's tables, whose columns the transformation's must be).

``define`` checks a rule by compiling every transformation over the declared columns, then keeps
it in the workspace's database (``TABLE``); ``transform`` runs a flow's transformation over a
batch (the records travel as one dynamic query parameter, never as query text).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass

from .errors import KqlError, RuleError
from .kql import types as T

TABLE = "_netatlas_dcr"
SETUP_SQL = f"CREATE TABLE IF NOT EXISTS {TABLE} (id VARCHAR PRIMARY KEY, definition VARCHAR NOT NULL)"
ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
STREAM = re.compile(r"Custom-[A-Za-z0-9_][A-Za-z0-9_-]{0,127}")
# a declared column's type -> (KQL type, the conversion of the record's value, a dynamic)
TYPES = {"string": (T.STRING, "tostring"), "int": (T.INT, "toint"), "long": (T.LONG, "tolong"),
         "real": (T.REAL, "toreal"), "boolean": (T.BOOL, "tobool"), "bool": (T.BOOL, "tobool"),
         "datetime": (T.DATETIME, "todatetime"), "dynamic": (T.DYNAMIC, ""), "guid": (T.GUID, "toguid"),
         "timespan": (T.TIMESPAN, "totimespan")}
ROWS = "__netatlas_rows"


@dataclass(frozen=True)
class Flow:
    streams: tuple[str, ...]
    transform: str
    table: str                 # the output table
    custom: bool               # Custom-<Name>_CL (else Microsoft-<Table>)


@dataclass(frozen=True)
class Rule:
    id: str
    streams: dict              # stream -> [(column, declared type)]
    flows: tuple[Flow, ...]
    definition: dict           # as given

    def flows_of(self, stream: str) -> list[Flow]:
        return [f for f in self.flows if stream in f.streams]


def _name(text) -> str:
    return "['" + str(text).replace("\\", "\\\\").replace("'", "\\'") + "']"


def source_query(columns: list[tuple[str, str]]) -> str:
    """KQL binding ``source`` to the batch (the query parameter ROWS: a dynamic array of records)."""
    parts = []
    for name, declared in columns:
        conv = TYPES[declared][1]
        value = f"__r[{json.dumps(name)}]"
        parts.append(f"{_name(name)} = {conv}({value})" if conv else f"{_name(name)} = {value}")
    return (f"declare query_parameters({ROWS}:dynamic);\n"
            f"let source = print __r = {ROWS} | mv-expand __r | project {', '.join(parts)};\n")


def parse(rule_id: str, doc: dict, catalogue) -> Rule:
    """A rule from Azure's JSON (RuleError naming what is wrong)."""
    if not isinstance(doc, dict):
        raise RuleError("a data collection rule is a JSON object")
    props = doc.get("properties", doc)
    if not isinstance(props, dict):
        raise RuleError("'properties' must be an object")
    rid = props.get("immutableId") or rule_id
    if not isinstance(rid, str) or not ID.fullmatch(rid) or rid != rule_id:
        raise RuleError(f"the rule's immutableId {rid!r} must be the id it is defined under ({rule_id!r}): "
                        f"letters, digits, . _ -")
    decls = props.get("streamDeclarations")
    if not isinstance(decls, dict) or not decls:
        raise RuleError("'streamDeclarations' must declare at least one stream: {\"Custom-Name\": {\"columns\": [...]}}")
    streams = {}
    for stream, decl in decls.items():
        if not STREAM.fullmatch(str(stream)):
            raise RuleError(f"the stream {str(stream)[:80]!r} must be named Custom-<Name>")
        cols = decl.get("columns") if isinstance(decl, dict) else None
        if not isinstance(cols, list) or not cols:
            raise RuleError(f"stream {stream}: 'columns' must list its columns ({{\"name\", \"type\"}})")
        out = []
        for c in cols:
            if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"]:
                raise RuleError(f"stream {stream}: every column needs a name and a type, got {c!r}")
            typ = str(c.get("type", "")).lower()
            if typ not in TYPES:
                raise RuleError(f"stream {stream}: column {c['name']} has type {c.get('type')!r}; the types are "
                                f"{', '.join(sorted(set(TYPES) - {'bool'}))}")
            out.append((c["name"], typ))
        streams[stream] = out
    flows = []
    raw = props.get("dataFlows")
    if not isinstance(raw, list) or not raw:
        raise RuleError("'dataFlows' must list at least one flow ({\"streams\", \"transformKql\", \"outputStream\"})")
    for i, f in enumerate(raw):
        if not isinstance(f, dict):
            raise RuleError(f"dataFlows[{i}] must be an object")
        names = f.get("streams")
        if not isinstance(names, list) or not names or not all(isinstance(s, str) and s in streams for s in names):
            raise RuleError(f"dataFlows[{i}]: 'streams' must name declared streams ({', '.join(streams)})")
        out = f.get("outputStream")
        if not isinstance(out, str) or not (out.startswith("Custom-") or out.startswith("Microsoft-")):
            raise RuleError(f"dataFlows[{i}]: 'outputStream' must be Custom-<Name>_CL or Microsoft-<Table>, got {out!r}")
        custom = out.startswith("Custom-")
        table = out.split("-", 1)[1]
        if custom and not table.endswith("_CL"):
            raise RuleError(f"dataFlows[{i}]: a custom output stream names a table ending in _CL, got {out}")
        if not custom and table not in catalogue:
            raise RuleError(f"dataFlows[{i}]: there is no table {table} for the output stream {out}")
        transform = f.get("transformKql") or "source"
        if not isinstance(transform, str):
            raise RuleError(f"dataFlows[{i}]: 'transformKql' must be KQL text")
        flows.append(Flow(tuple(names), transform, table, custom))
    return Rule(rule_id, streams, tuple(flows), doc)


def output_columns(ws, rule: Rule, flow: Flow) -> list[tuple[str, str]]:
    """The columns a flow's transformation gives (compiled over each of its streams' columns)."""
    found = None
    for stream in flow.streams:
        text = source_query(rule.streams[stream]) + flow.transform
        try:
            compiled = ws.compile(text, params={ROWS: []})
        except KqlError as e:
            raise RuleError(f"the transformKql of {stream} -> {flow.table} does not compile: {e.message}"
                            + (f" (line {e.line - 2}, column {e.column})" if e.line and e.line > 2 else ""),
                            code="DCR_TRANSFORM") from None
        cols = list(zip(compiled.columns, compiled.types))
        if found is not None and cols != found:
            raise RuleError(f"the streams of the flow into {flow.table} give different columns", code="DCR_TRANSFORM")
        found = cols
    if "TimeGenerated" not in dict(found) or dict(found)["TimeGenerated"] != T.DATETIME:
        raise RuleError(f"the transformation into {flow.table} must give TimeGenerated (a datetime), as Azure "
                        f"requires; its columns are {', '.join(c for c, _ in found)}", code="DCR_TRANSFORM")
    return found


def check_output(catalogue, flow: Flow, cols: list[tuple[str, str]]) -> None:
    """A Microsoft- output: every column the transformation gives is the table's, of its type."""
    table = catalogue.get(flow.table)
    have = table.column_types
    for c, t in cols:
        if c not in have:
            raise RuleError(f"{flow.table} has no column {c} (the transformation gives it)", code="DCR_TRANSFORM")
        if have[c] != t:
            raise RuleError(f"{flow.table}.{c} is {have[c]}; the transformation gives {t}", code="DCR_TRANSFORM")


def load(con) -> dict[str, dict]:
    """The rules kept (id -> their JSON); the table made first if it is not there (save, delete
    come after)."""
    con.execute(SETUP_SQL)
    return {rid: json.loads(text) for rid, text in con.execute(f"SELECT id, definition FROM {TABLE}").fetchall()}


def save(con, rule: Rule) -> None:
    con.execute(f"INSERT OR REPLACE INTO {TABLE} VALUES (?, ?)", [rule.id, json.dumps(rule.definition)])


def delete(con, rule_id: str) -> bool:
    return bool(con.execute(f"DELETE FROM {TABLE} WHERE id = ? RETURNING id", [rule_id]).fetchall())


__all__ = ["Flow", "Rule", "RuleError", "TABLE", "check_output", "delete", "load", "output_columns", "parse",
           "save", "source_query"]
