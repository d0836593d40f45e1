"""Enrich stage: the columns the workspace fills in every batch, per table, as SQL trees.

Two tables hold the whole policy:

- ``FILLS``: a column computed from the record's own columns (Type, SourceSystem, _BilledSize,
  _IsBillable, _ResourceId, VMConnection's RemoteIp): which tables it applies to (by default
  every table that has the column) and the expression, a sqlglot tree over the staged batch
  (its columns as read, and ``__bytes``, the record's size as ingested).
- ``LOOKUPS``: values looked up in Python for a batch's keys (its distinct remote addresses):
  geolocation (geoip.py) and threat intelligence (threatintel.py): the tables, the looked-up
  columns (prefixed: DuckDB compares names without case, and a bare ``description`` would make
  VMConnection's Description ambiguous), and the table columns filled from them. A lookup that
  finds nothing for a batch adds no join at all.

A value a record brings is kept; the workspace fills only what is absent. The trees are rendered
for the store that runs the ingestion (``kql.generator.render``: DuckDB, the workspace's own
database) once per table and workspace; the ingest stage (``ingest.staged_select``) places them in
its SELECT over the batch. Azure-style ingestion-time transformations belong here too.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from sqlglot import exp

from .catalogue import Table
from .kql import types as T

# ---- building trees ------------------------------------------------------------------------------


def col(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=exp.Identifier(this=name, quoted=True),
                      table=exp.Identifier(this=table, quoted=False) if table else None)


def lit(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def coalesce(first: exp.Expression, *rest: exp.Expression) -> exp.Coalesce:
    return exp.Coalesce(this=first, expressions=list(rest))


def given(name: str) -> exp.Expression:
    """A string column's value, NULL when absent or empty (then the workspace fills it)."""
    return exp.Nullif(this=col(name), expression=lit(""))


def case(whens: list[tuple[exp.Expression, exp.Expression]], default: exp.Expression) -> exp.Case:
    return exp.Case(ifs=[exp.If(this=c, true=v) for c, v in whens], default=default)


def cast(e: exp.Expression, to: str) -> exp.Cast:
    return exp.Cast(this=e, to=exp.DataType.build(to))


# ---- FILLS: columns computed from the record ----------------------------------------------------

SOURCE_SYSTEM = {"ServiceMapComputer_CL": "OpsManager", "ServiceMapProcess_CL": "OpsManager", "Usage": "OMS"}

# RemoteIp as the workspace fills it: given, else SourceIp of an inbound record, DestinationIp of
# an outbound one (the seed: "For inbound connections, RemoteIp is the same as SourceIp...")
REMOTE_IP = coalesce(given("RemoteIp"), case(
    [(exp.EQ(this=col("Direction"), expression=lit("inbound")), coalesce(col("SourceIp"), lit(""))),
     (exp.EQ(this=col("Direction"), expression=lit("outbound")), coalesce(col("DestinationIp"), lit("")))],
    lit("")))


def resource_id(table: Table, ctx: dict) -> exp.Expression:
    """The record's own, else the workspace's path for its machine (none without a Computer)."""
    prefix = f"/netatlas/workspaces/{ctx.get('workspace_id', 'local')}/machines/"
    return coalesce(given("_ResourceId"), case(
        [(exp.EQ(this=coalesce(col("Computer"), lit("")), expression=lit("")), lit(""))],
        exp.DPipe(this=lit(prefix), expression=exp.Lower(this=col("Computer")), safe=True)))


@dataclass(frozen=True)
class Fill:
    column: str
    expr: Callable[[Table, dict], exp.Expression]
    tables: frozenset | None = None       # None: every table that has the column
    needs: tuple[str, ...] = ()           # other columns the table must have

    def applies(self, table: Table) -> bool:
        cols = table.column_types
        return (self.column in cols and all(n in cols for n in self.needs)
                and (self.tables is None or table.name in self.tables))


FILLS: tuple[Fill, ...] = (
    Fill("Type", lambda t, ctx: lit(t.name)),
    Fill("SourceSystem", lambda t, ctx: coalesce(given("SourceSystem"), lit(SOURCE_SYSTEM.get(t.name, "Insights")))),
    Fill("_BilledSize", lambda t, ctx: cast(col("__bytes"), "DOUBLE")),
    Fill("_IsBillable", lambda t, ctx: lit("True")),
    Fill("_ResourceId", resource_id, needs=("Computer",)),
    Fill("RemoteIp", lambda t, ctx: REMOTE_IP, tables=frozenset({"VMConnection"})),
)


# ---- LOOKUPS: values found in Python for a batch's remote addresses ---------------------------

def kept_or(table: Table, column: str, looked_up: exp.Expression) -> exp.Expression:
    """The record's value of ``column`` when it brings one, else the looked-up value (strings: '')."""
    if table.column_types[column] == T.STRING:
        return coalesce(given(column), looked_up, lit(""))
    return coalesce(col(column), looked_up)


def geo_fills(table: Table, alias: str) -> dict[str, exp.Expression]:
    return {"RemoteCountry": kept_or(table, "RemoteCountry", col("geo_country", alias)),
            "RemoteLatitude": kept_or(table, "RemoteLatitude", col("geo_lat", alias)),
            "RemoteLongitude": kept_or(table, "RemoteLongitude", col("geo_lon", alias))}


def geolocation(keys: set[str], ctx: dict) -> dict[str, tuple] | None:
    """Country, latitude, longitude of the public addresses among ``keys`` (geoip.py)."""
    geo = ctx.get("geoip")
    if geo is None:
        return None
    return {ip: hit for ip in keys if (hit := geo.lookup(ip)) is not None}


# VMConnection column -> the Match field (threatintel.py) it takes; MaliciousIp is the remote address
THREAT_COLUMNS = {"IndicatorThreatType": "threat_type", "Description": "description", "TLPLevel": "tlp",
                  "Confidence": "confidence", "Severity": "severity", "FirstReportedDateTime": "first_reported",
                  "LastReportedDateTime": "last_reported", "ReportReferenceLink": "reference",
                  "AdditionalInformation": "additional"}


def threat_fills(table: Table, alias: str) -> dict[str, exp.Expression]:
    out = {c: kept_or(table, c, col(f"ti_{f}", alias)) for c, f in THREAT_COLUMNS.items()}
    out["MaliciousIp"] = kept_or(table, "MaliciousIp", col("ti_ip", alias))
    out["IsActive"] = coalesce(given("IsActive"), case(
        [(exp.Is(this=col("ti_ip", alias), expression=exp.Null()), lit(""))], lit("True")))
    return out


def threat_intelligence(keys: set[str], ctx: dict) -> dict[str, tuple] | None:
    """The indicator fields of the addresses among ``keys`` matching an active indicator."""
    matcher = ctx.get("threatintel")
    if not matcher:
        return None
    fields = tuple(THREAT_COLUMNS.values())
    return {ip: (ip, *(getattr(m, f) for f in fields)) for ip in keys if (m := matcher.match(ip)) is not None}


@dataclass(frozen=True)
class LookupSpec:
    alias: str                                              # the joined relation's name
    tables: frozenset
    columns: tuple[tuple[str, str], ...]                    # looked-up columns: (name, SQL type)
    find: Callable[[set[str], dict], dict[str, tuple] | None]   # key -> one value per column
    fills: Callable[[Table, str], dict[str, exp.Expression]]    # table column -> tree


LOOKUPS: tuple[LookupSpec, ...] = (
    LookupSpec("__geo", frozenset({"VMConnection"}),
               (("geo_country", "VARCHAR"), ("geo_lat", "DOUBLE"), ("geo_lon", "DOUBLE")),
               geolocation, geo_fills),
    LookupSpec("__ti", frozenset({"VMConnection"}),
               (("ti_ip", "VARCHAR"),) + tuple((f"ti_{f}", "INTEGER" if f == "severity" else "VARCHAR")
                                               for f in THREAT_COLUMNS.values()),
               threat_intelligence, threat_fills),
)

# the key a lookup's values are joined on: the record's remote address, by the rule of REMOTE_IP
KEY = "__remote"


@dataclass
class Lookup:
    """One lookup's values for one batch: ``values`` (key -> one value per ``columns``, for the
    keys found only) and ``exprs`` (table column -> SQL over the staged batch and the looked-up
    columns ``{alias}.<name>``, NULL for a key not found). Joined as a relation built from bound
    lists (``join``): no SQL text to parse (a VALUES list of a few thousand rows takes ~130 ms),
    and DuckDB builds its hash table on it rather than on the wide batch."""
    alias: str
    columns: tuple[tuple[str, str], ...]
    values: dict[str, tuple]
    exprs: dict[str, str]

    def join(self) -> tuple[str, list]:
        """The LEFT JOIN of this lookup to the staged batch, and its parameters."""
        keys = list(self.values)
        rows = list(self.values.values())
        params = [keys] + [[row[i] for row in rows] for i in range(len(self.columns))]
        return " " + _bound_join(self.alias, self.columns), params

    def join_relation(self, name: str) -> str:
        """The LEFT JOIN of the relation ``name`` (the same columns) to the staged batch."""
        return " " + _join(self.alias, exp.Table(this=exp.Identifier(this=name, quoted=True)))


# ---- rendered for the store ---------------------------------------------------------------------

DIALECT = "duckdb"       # the store that runs ingestion: the workspace's own DuckDB database


def render(tree: exp.Expression) -> str:
    from .kql.generator import render as render_tree
    return render_tree(tree, DIALECT, printer="sqlglot")


@lru_cache(maxsize=4096)
def _fills(table: Table, workspace_id: str) -> dict[str, str]:
    ctx = {"workspace_id": workspace_id}
    return {f.column: render(f.expr(table, ctx)) for f in FILLS if f.applies(table)}


def columns(table: Table, ctx: dict) -> dict[str, str]:
    """Column -> SQL over the staged batch, for every column FILLS computes in ``table``."""
    return dict(_fills(table, ctx.get("workspace_id", "local")))


@lru_cache(maxsize=256)
def _lookup_exprs(spec: LookupSpec, table: Table) -> dict[str, str]:
    return {c: render(e) for c, e in spec.fills(table, spec.alias).items()}


def remote_ips(records: list, ctx: dict | None = None) -> set[str]:
    """The distinct RemoteIp of a batch of records, by the rule of REMOTE_IP (kept in ``ctx``:
    each lookup asks; the group committer puts its frames' addresses there)."""
    if ctx is not None and "remote_ips" in ctx:
        return ctx["remote_ips"]
    out = set()
    for r in records:
        ip = r.get("RemoteIp")
        if not ip:
            d = r.get("Direction")
            ip = r.get("SourceIp") if d == "inbound" else r.get("DestinationIp") if d == "outbound" else None
        if ip and type(ip) is str:
            out.add(ip)
    if ctx is not None:
        ctx["remote_ips"] = out
    return out


def lookups(table: Table, records: list, ctx: dict) -> list[Lookup]:
    """The lookups of LOOKUPS that apply to ``table`` and find something for the batch."""
    out = []
    for spec in LOOKUPS:
        if table.name not in spec.tables:
            continue
        found = spec.find(remote_ips(records, ctx), ctx)
        if found:
            out.append(Lookup(spec.alias, spec.columns, found, _lookup_exprs(spec, table)))
    return out


@lru_cache(maxsize=1)
def key_sql() -> str:
    """SQL of the join key over the staged batch (the record's remote address)."""
    return render(REMOTE_IP)


@lru_cache(maxsize=64)
def _bound_join(alias: str, columns: tuple[tuple[str, str], ...]) -> str:
    def unnest(sql_type: str, name: str) -> exp.Expression:
        bound = exp.Cast(this=exp.Placeholder(), to=exp.DataType.build(f"{sql_type}[]", dialect=DIALECT))
        return exp.Alias(this=exp.Unnest(expressions=[bound]), alias=exp.Identifier(this=name, quoted=False))
    values = exp.Select(expressions=[unnest("VARCHAR", "lk_key")] + [unnest(t, n) for n, t in columns])
    return _join(alias, exp.Subquery(this=values))


def _join(alias: str, relation: exp.Expression) -> str:
    aliased = relation.copy()
    aliased.set("alias", exp.TableAlias(this=exp.Identifier(this=alias, quoted=False)))
    on = exp.EQ(this=col("lk_key", alias), expression=exp.Column(this=exp.Identifier(this=KEY, quoted=False),
                                                                  table=exp.Identifier(this="__batch", quoted=False)))
    return render(exp.Join(this=aliased, side="LEFT", on=on))
