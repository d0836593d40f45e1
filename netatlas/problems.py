"""The problems list beside the map (``GET /api/problems``): what an operator should look at first
in the map's machines and range, each item with what the map needs to focus on it.

| kind | what | from |
|---|---|---|
| ``malicious`` | connections to or from an address the threat intelligence names (VMConnection's MaliciousIp, IndicatorThreatType, Severity) | ``MALICIOUS`` |
| ``used_to_work`` | a dependency failing now (``webmap.failing``) that worked the day before | the map's edges (``webmap.fold_map``) |
| ``failing`` | a dependency failing now (at least the failure rate of its link attempts failed) | the map's edges |
| ``new_port`` | a port bound in the range (VMBoundPort) by a machine that did not bind it in the day before the range | ``NEW_PORTS`` |

Each item: ``kind``, ``title``, ``detail``, ``machine`` (the machine to open), ``computer``, and
``focus``: the node ids to centre on (``nodes``) and the edge (``edge``, as in ``/api/map``) when
there is one. The order is the table's, then by size (failed links, records, time).
"""
from __future__ import annotations

from . import webmap
from .webmap import LOOKBACK, Edge, Options, Selection, Source, Span

MAX_PROBLEMS = 500     # items of one kind
FOCUS = {True: "", False: "| where Machine in (focus)\n"}

NEW_PORTS = """declare query_parameters(since:datetime, start:datetime, stop:datetime, focus:dynamic);
let before = VMBoundPort
    | where TimeGenerated >= since and TimeGenerated < start
    | distinct Machine, Port, Protocol;
VMBoundPort
| where TimeGenerated >= start and TimeGenerated < stop
{focus}| summarize First = min(TimeGenerated), arg_max(TimeGenerated, Computer, Process, ProcessName, Ip)
    by Machine, Port, Protocol
| join kind=leftanti before on Machine, Port, Protocol
| order by First asc, Machine asc, Port asc"""

MALICIOUS = """declare query_parameters(start:datetime, stop:datetime, focus:dynamic);
VMConnection
| where TimeGenerated >= start and TimeGenerated < stop and isnotempty(MaliciousIp)
{focus}| summarize Records = count(), Links = sum(LinksEstablished), First = min(TimeGenerated),
    arg_max(TimeGenerated, Computer, ProcessName, IndicatorThreatType, Description, Severity, RemoteDnsQuestions,
    RemoteCountry) by Machine, Process, Direction, RemoteIp, DestinationPort
| order by Records desc, Machine asc, RemoteIp asc"""

ORDER = ("malicious", "used_to_work", "failing", "new_port")


def _node_name(f: webmap.Folded, node: str, groups: dict) -> str:
    if node.startswith("p-"):
        machine, name = f.names.get(node) or f.listeners.process.get(node) or ("", node)
        m = f.machines.get(machine)
        return f"{name} on {m.short}" if m else name
    if node.startswith("m-"):
        m = f.machines.get(node)
        return m.short if m else node
    g = groups.get(node)
    return g.label if g is not None else node


def _machine_of(f: webmap.Folded, e: Edge) -> str:
    for node in (e.source, e.target):
        if node.startswith("p-"):
            return (f.names.get(node) or f.listeners.process.get(node) or ("", ""))[0]
        if node.startswith("m-"):
            return node
    return ""


def edge_problems(f: webmap.Folded, rate: float) -> list[dict]:
    groups = {e.group.id: e.group for e in f.edges.values() if e.group is not None}
    out = []
    for e in sorted(f.edges.values(), key=lambda e: (-e.failed, e.key)):
        if not e.failing:
            continue
        kind = "used_to_work" if e.status == "used_to_work" else "failing"
        machine = _machine_of(f, e)
        attempts = e.links + e.failed
        src, dst = _node_name(f, e.source, groups), _node_name(f, e.target, groups)
        verb = "used to work and now fails" if kind == "used_to_work" else "fails"
        out.append({"kind": kind, "title": f"{src} → {dst}:{e.port} {verb}",
                    "detail": f"{e.failed:,} of {attempts:,} link attempts failed ({e.failed / attempts:.0%}; "
                              f"the threshold is {rate:.0%})",
                    "machine": machine, "computer": f.machines[machine].computer if machine in f.machines else "",
                    "focus": {"nodes": [e.source, e.target], "edge": e.id}, "failed": e.failed, "links": e.links})
    return out


def new_ports(src: Source, f: webmap.Folded, span: Span, everything: bool) -> list[dict]:
    rows = src.kql("new_ports", NEW_PORTS.format(focus=FOCUS[everything]), since=span.start - LOOKBACK,
                   start=span.start, stop=span.end, focus=[] if everything else f.focus).to_dicts()
    out = []
    for r in rows[:MAX_PROBLEMS]:
        m = f.machines.get(r["Machine"])
        name = m.short if m else r["Computer"]
        out.append({"kind": "new_port", "title": f"{r['ProcessName']} on {name} listens on {r['Port']}/{r['Protocol']}",
                    "detail": f"bound on {r['Ip']} from {webmap.iso(r['First'])}, not in the "
                              f"{LOOKBACK.days} day before the range",
                    "machine": r["Machine"], "computer": r["Computer"], "port": r["Port"],
                    "protocol": r["Protocol"], "process": r["Process"],
                    "focus": {"nodes": [r["Process"], r["Machine"]], "edge": None}})
    return out


def malicious(src: Source, f: webmap.Folded, span: Span, everything: bool) -> list[dict]:
    rows = src.kql("malicious", MALICIOUS.format(focus=FOCUS[everything]), start=span.start, stop=span.end,
                   focus=[] if everything else f.focus).to_dicts()
    out = []
    for r in rows[:MAX_PROBLEMS]:
        row = dict(r, Dns=r["RemoteDnsQuestions"], Country=r["RemoteCountry"], Place=f.places.get(r["RemoteIp"]))
        end = f.ends.classify(row)
        nodes, edge = [r["Process"], r["Machine"]], None
        if end is not None:
            edge = Edge(end.source, end.target, r["DestinationPort"]).id
            nodes = [end.source, end.target]
        m = f.machines.get(r["Machine"])
        name = m.short if m else r["Computer"]
        way = "to" if r["Direction"] == "outbound" else "from"
        threat = r["IndicatorThreatType"] or "malicious"
        out.append({"kind": "malicious",
                    "title": f"{r['ProcessName']} on {name}: {r['Direction']} {way} {r['RemoteIp']} ({threat})",
                    "detail": f"{r['Records']:,} records, {r['Links']:,} links from {webmap.iso(r['First'])}"
                              + (f"; {r['Description']}" if r["Description"] else "")
                              + (f"; severity {r['Severity']}" if r["Severity"] is not None else ""),
                    "machine": r["Machine"], "computer": r["Computer"], "remote_ip": r["RemoteIp"],
                    "threat": threat, "focus": {"nodes": nodes, "edge": edge}, "records": r["Records"]})
    return out


def problems(ws, selection: Selection, span: Span, options: Options = Options(), *,
             timeout: float = webmap.DEFAULT_TIMEOUT, src: Source | None = None) -> dict:
    """The problems of the map of ``selection`` over ``span`` (module docstring), in ``ORDER``."""
    src = src or Source(ws, timeout)
    f = webmap.fold_map(src, selection, span, options)
    everything = selection.kind == "all"
    found = malicious(src, f, span, everything) + edge_problems(f, options.failure_rate)[:2 * MAX_PROBLEMS] \
        + new_ports(src, f, span, everything)
    found.sort(key=lambda p: ORDER.index(p["kind"]))     # stable: each kind keeps its own order
    counts = {k: sum(p["kind"] == k for p in found) for k in ORDER}
    return {"range": span.json(), "failure_rate": options.failure_rate, "counts": counts, "problems": found}

