"""evaluate migration_waves([MaxWaveSize, Weight, ExcludedProcesses, Pins]): `netatlas waves` in KQL.

The input is VMConnection rows (filtered as the query likes: a time range, some machines). The
planner reads them at plan time, summed per (Machine, ProcessName, Direction, RemoteIp,
DestinationPort) (``pl.run``, so the plan is marked ``ran_sql`` and the compile cache does not keep
it), resolves the remote addresses to monitored machines by their own addresses in VMComputer
(the latest inventory of each machine within a day of the rows; NAT senders are the workspace's
own and are not read here: ``netatlas waves`` uses them) or, when the input has a string column
``RemoteMachine``, takes that as the callee, then computes the waves as ``netatlas/waves.py`` does
(``waves.dependencies``, ``waves.waves_of``). Output: one row per machine, in wave order:

    Wave:long, Community:long (0: no dependency on another machine), Machine:string,
    Computer:string, CrossingBytes:long, CrossingConnections:long (its dependencies, as caller or
    callee, that cross a wave boundary)
"""
from __future__ import annotations

import json
from datetime import timedelta

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .planner import _chain, _naive_utc
from .relations import constant_args, values_rel
from .typed import col

ARGS = ("MaxWaveSize", "Weight", "ExcludedProcesses", "Pins")
NEEDED = {"Machine": T.STRING, "Computer": T.STRING, "ProcessName": T.STRING, "Direction": T.STRING,
          "RemoteIp": T.STRING, "DestinationPort": None, "BytesSent": None, "BytesReceived": None,
          "LinksEstablished": None, "TimeGenerated": T.DATETIME}
MAX_ROWS = 2_000_000            # summed rows read from the input
OUT = [("Wave", T.LONG), ("Community", T.LONG), ("Machine", T.STRING), ("Computer", T.STRING),
       ("CrossingBytes", T.LONG), ("CrossingConnections", T.LONG)]


def _check(ok: bool, message: str, span) -> None:
    if not ok:
        raise KqlSemanticError(f"migration_waves(): {message}", span, code="KQL_ARGUMENTS")


def migration_waves(pl, rel, call: s.Call):
    from .. import waves
    args = constant_args(pl, rel, call.args, ARGS, "migration_waves")
    cap, span = args.get("MaxWaveSize", (None, call.span))
    _check(cap is None or (isinstance(cap, int) and cap >= 1), "MaxWaveSize is a whole number of at least 1", span)
    weight, span = args.get("Weight", ("bytes", call.span))
    _check(weight in waves.WEIGHTS, f"Weight is one of {', '.join(repr(w) for w in waves.WEIGHTS)}", span)
    excluded, span = args.get("ExcludedProcesses", ([], call.span))
    _check(isinstance(excluded, list) and all(isinstance(p, str) for p in excluded),
           "ExcludedProcesses is a dynamic array of process names", span)
    pins, span = args.get("Pins", ({}, call.span))
    _check(isinstance(pins, dict) and all(isinstance(n, int) and not isinstance(n, bool) for n in pins.values()),
           "Pins is a dynamic bag of machine: wave", span)
    types = rel.types
    missing = [c for c in NEEDED if c not in types]
    if missing:
        raise KqlSemanticError(f"migration_waves() reads VMConnection's columns; the input has no "
                               f"{', '.join(missing)}", call.span, code="KQL_ARGUMENTS",
                               hint="apply it to VMConnection (filtered, but not summarized or projected away)")
    given = types.get("RemoteMachine") == T.STRING
    if pl.executor is None:
        raise KqlSemanticError("migration_waves() needs a workspace to read the connections", call.span,
                               code="KQL_UNSUPPORTED")
    keys = ["Machine", "ProcessName", "Direction", "RemoteIp", "DestinationPort"] + (["RemoteMachine"] if given else [])

    def total(*names):
        return exp.Sum(this=_chain(exp.Add, [exp.Coalesce(this=col(n), expressions=[exp.Literal.number(0)]) for n in names]))

    select = [col(k) for k in keys] + [
        exp.alias_(total("BytesSent", "BytesReceived"), "Bytes", quoted=True),
        exp.alias_(total("LinksEstablished"), "Connections", quoted=True),
        exp.alias_(exp.Max(this=col("TimeGenerated")), "LastSeen", quoted=True),
        exp.alias_(exp.Min(this=col("TimeGenerated")), "FirstSeen", quoted=True),
        exp.alias_(exp.Max(this=col("Computer")), "Computer", quoted=True)]
    q = exp.Select(expressions=select).from_(pl.finish(rel).subquery(pl.fresh(), copy=False), copy=False) \
        .group_by(*[col(k) for k in keys], copy=False).where(
            exp.NEQ(this=col("Machine"), expression=exp.Literal.string("")), copy=False)
    names = keys + ["Bytes", "Connections", "LastSeen", "FirstSeen", "Computer"]
    rows = [dict(zip(names, r)) for r in pl.run(q.limit(MAX_ROWS + 1))]
    if len(rows) > MAX_ROWS:
        raise KqlSemanticError(f"migration_waves(): more than {MAX_ROWS:,} connection groups; filter the input "
                               f"(a shorter time range, fewer machines)", call.span, code="KQL_LIMIT")
    if given:
        resolved = {r["RemoteIp"]: [{"machine": r["RemoteMachine"], "computer": ""}]
                    for r in rows if r["RemoteMachine"]}
        inventory = {}
    else:
        resolved, inventory = _resolve(pl, rows)
    options = waves.Options(max_wave_size=cap, weight=weight, pins={str(k): v for k, v in pins.items()},
                            exclude=frozenset(excluded))
    deps, machines = waves.dependencies(rows, resolved, options.exclude, inventory)
    try:
        report = waves.waves_of(deps, machines, options)
    except waves.WavesError as e:
        raise KqlSemanticError(f"migration_waves(): {e}", call.span, code="KQL_ARGUMENTS") from None
    community = {m: i for i, c in enumerate(report["communities"], 1) for m in c}
    crossing: dict[str, list[int]] = {}
    for c in report["crossing"]:
        for m in (c["caller"], c["callee"]):
            t = crossing.setdefault(m, [0, 0])
            t[0] += c["bytes"]
            t[1] += c["connections"]
    out = []
    for w in report["waves"]:
        for m in w["machines"]:
            b, n = crossing.get(m["machine"], (0, 0))
            out.append(exp.Tuple(expressions=[
                _long(w["wave"]), _long(community.get(m["machine"], 0)), exp.Literal.string(m["machine"]),
                exp.Literal.string(m["computer"]), _long(b), _long(n)]))
    return values_rel(pl, out, OUT)


def _long(n: int) -> exp.Expression:
    return exp.Cast(this=exp.Literal.number(int(n)), to=T.storage(T.LONG))


def _resolve(pl, rows: list[dict]):
    """address -> [{"machine", "computer"}] from each machine's latest VMComputer record within a day
    of the rows, and every machine of that inventory (machine -> computer)."""
    if not rows:
        return {}, {}
    first = min(r["FirstSeen"] for r in rows) - timedelta(days=1)
    last = max(r["LastSeen"] for r in rows) + timedelta(days=1)
    computers = pl.table_ref(s.Name(None, "VMComputer"))
    t = computers.types["TimeGenerated"]
    from .typed import const
    q = exp.Select(expressions=[col("Machine"), col("Computer"), col("Ipv4Addresses"), col("Ipv6Addresses"),
                                col("TimeGenerated")]).from_(
        pl.finish(computers).subquery(pl.fresh(), copy=False), copy=False).where(
        exp.and_(exp.GTE(this=col("TimeGenerated"), expression=const(_naive_utc(first), t).sql),
                 exp.LTE(this=col("TimeGenerated"), expression=const(_naive_utc(last), t).sql),
                 exp.NEQ(this=col("Machine"), expression=exp.Literal.string(""))), copy=False)
    latest: dict[str, tuple] = {}
    for machine, computer, v4, v6, when in pl.run(q):
        if machine not in latest or when > latest[machine][0]:
            latest[machine] = (when, computer, v4, v6)
    from ..addresses import canonical
    by_address: dict[str, list[dict]] = {}
    for machine, (_, computer, v4, v6) in sorted(latest.items()):
        for a in _addresses(v4) + _addresses(v6):
            if (c := canonical(a)) is not None:
                by_address.setdefault(c, []).append({"machine": machine, "computer": computer or ""})
    resolved = {r["RemoteIp"]: by_address.get(canonical(r["RemoteIp"] or "") or "", [])
                for r in rows if r["Direction"] == "outbound"}
    return resolved, {m: v[1] or "" for m, v in latest.items()}


def _addresses(v) -> list[str]:
    if isinstance(v, str):
        try:
            v = json.loads(v)
        except ValueError:
            return []
    return [a for a in v if isinstance(a, str)] if isinstance(v, list) else []
