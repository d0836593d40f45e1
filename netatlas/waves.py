"""Migration waves: groups of monitored machines that talk together, in the order to move them.

The stages, each a function below:

| stage | in | out | where |
|---|---|---|---|
| flows | a workspace, a time range | VMConnection summed per (machine, process, direction, remote address, port) | ``FLOWS`` (KQL, so any store runs it) |
| resolve | remote addresses | address -> monitored machine, as the map resolves them | ``resolve()``: ``Workspace.resolve_addresses`` (machines.py) |
| graph | flows + resolution | ``Dependency``s (caller machine -> callee machine, per process and port), the undirected machine graph | ``dependencies()``, ``Graph``; ``dependencies_of()``: flows, resolve and dependencies of a workspace's range |
| communities | the graph | groups of machines that talk together, seeded Leiden (igraph + leidenalg), on the graph weighted by bytes and by connections: the plan whose crossing traffic (in the weight asked for) is least is kept (``communities_by``) | ``communities()``, ``arrange()`` |
| shared services | the graph, its communities | machines with many more peers than the median, spread over many coarse communities (participation coefficient); grouped as called (moved early) or calling (moved late) | ``shared()``, ``_shared_groups()`` |
| cap | communities, --max-wave-size | pieces no larger than the cap (Leiden again inside, then chunks) | ``split()`` |
| order | pieces | waves: callees before their callers | ``order()`` |
| pins | waves, machine=wave | pinned machines in their waves, the cap restored around them | ``pin()`` |
| report | waves + dependencies | per wave its machines, their processes and ports, and every dependency crossing a wave boundary; every machine pair's traffic (``edges``: what the network chart recomputes the crossing from when a machine moves) | ``plan()``, ``FORMATS`` |

What counts: outbound VMConnection rows (the caller's side; the callee's inbound row is the same
traffic seen again) whose remote address resolves to another monitored machine. Loopback rows, a
machine's connections to itself, the agent's own traffic (``AGENT_PROCESSES``) and the excluded
processes (as caller, or as the callee's listener on that port) are left out. Edge weight: bytes
(BytesSent + BytesReceived) or connections (LinksEstablished).

The direction rule: a machine calling another depends on it, and a wave moves after the waves it
depends on (callees first: the database's wave before the application's that calls it). Where
a cycle makes that impossible the order keeps the least traffic going backwards
(a crossing's ``backward``). Everything is deterministic: machines in name order, Leiden seeded.
"""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from .addresses import parse

SEED = 1
AGENT_PROCESSES = frozenset({"netatlas", "netatlas-agent"})     # the agent shipping to the workspace
WEIGHTS = {"bytes": "Bytes", "connections": "Connections"}

FLOWS = """declare query_parameters(since:datetime, until:datetime);
VMConnection
| where TimeGenerated >= since and TimeGenerated < until and Machine != ""
| summarize Bytes = sum(coalesce(BytesSent, 0) + coalesce(BytesReceived, 0)),
    Connections = sum(coalesce(LinksEstablished, 0)), LastSeen = max(TimeGenerated), Computer = max(Computer)
    by Machine, ProcessName, Direction, RemoteIp, DestinationPort"""

# every monitored machine of the range, connections or not: each is in a wave
MACHINES = """declare query_parameters(since:datetime, until:datetime);
VMComputer
| where TimeGenerated >= since and TimeGenerated < until and Machine != ""
| summarize arg_max(TimeGenerated, Computer) by Machine
| project Machine, Computer"""


class WavesError(ValueError):
    """Pins or arguments that cannot be honoured (the CLI says it as a usage error)."""


@dataclass
class Dependency:
    """Outbound traffic of one caller process to a monitored machine's port: the VMConnection rows
    with Direction "outbound", Machine = caller, ProcessName = process, RemoteIp = remote_ip and
    DestinationPort = port in the range."""
    caller: str
    process: str
    callee: str
    remote_ip: str
    port: int
    bytes: int
    connections: int
    last_seen: str


@dataclass
class Options:
    max_wave_size: int | None = None
    weight: str = "bytes"
    pins: dict[str, int] = field(default_factory=dict)        # machine (or computer) -> wave, from 1
    exclude: frozenset[str] = frozenset()
    range: timedelta = timedelta(days=7)
    now: datetime | None = None
    seed: int = SEED


# ---------------------------------------------------------------- flows, resolution, dependencies

def _loopback(address: str) -> bool:
    a = parse(address or "")
    return a is not None and a.is_loopback


def _stamp(v) -> str:
    return v.isoformat().replace("+00:00", "") + ("Z" if v.tzinfo is None or v.utcoffset() == timedelta(0) else "") \
        if isinstance(v, datetime) else str(v)


MAX_ROWS = 10_000_000
TIMEOUT = 600.0


def _run(ws, text: str, params: dict):
    """A query of ``ws`` (a workspace, or the server holding one: remote.RemoteWorkspace), its
    datetime parameters as text (what a server's JSON body carries)."""
    params = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in params.items()}
    return ws.query(text, params=params, max_rows=MAX_ROWS, timeout=TIMEOUT)


def flows(ws, since: datetime, until: datetime) -> list[dict]:
    res = _run(ws, FLOWS, {"since": since, "until": until})
    return [dict(zip(res.columns, row)) for row in res.rows]


def resolve(ws, addresses: list[str], lookback_days: float, until: datetime) -> dict[str, list[dict]]:
    """The workspace's own resolution (machines' addresses and NAT senders); through a server, by
    the machines' addresses only (``machines.resolve_kql``)."""
    if not addresses:
        return {}
    if hasattr(ws, "resolve_addresses"):
        return ws.resolve_addresses(addresses, lookback_days, now=until)
    from .machines import resolve_kql
    return resolve_kql(lambda text, params: _run(ws, text, params), addresses, lookback_days, now=until)


def dependencies(rows: list[dict], resolved: dict[str, list[dict]], exclude: frozenset[str],
                 inventory: dict[str, str] | None = None):
    """(dependencies, machines: machine -> {"computer", "processes": {name: set(ports)}}); ``inventory``:
    the monitored machines without connections too (machine -> computer)."""
    skip = AGENT_PROCESSES | exclude
    machines: dict[str, dict] = {m: {"computer": c or "", "processes": {}} for m, c in (inventory or {}).items()}
    listeners: dict[tuple[str, int], set[str]] = {}
    for r in rows:
        m = machines.setdefault(r["Machine"], {"computer": r["Computer"] or "", "processes": {}})
        m["computer"] = m["computer"] or r["Computer"] or ""
        if _loopback(r["RemoteIp"]) or r["ProcessName"] in skip:
            continue
        ports = m["processes"].setdefault(r["ProcessName"] or "", set())
        if r["Direction"] == "inbound" and r["DestinationPort"] is not None:
            ports.add(int(r["DestinationPort"]))
            listeners.setdefault((r["Machine"], int(r["DestinationPort"])), set()).add(r["ProcessName"])
    deps = []
    for r in rows:
        if r["Direction"] != "outbound" or r["ProcessName"] in skip or _loopback(r["RemoteIp"]):
            continue
        hits = resolved.get(r["RemoteIp"]) or []
        if not hits or hits[0]["machine"] == r["Machine"]:
            continue                # not a monitored machine, or the machine itself
        callee, port = hits[0]["machine"], int(r["DestinationPort"] or 0)
        if listeners.get((callee, port), set()) & skip:
            continue                # the callee's listener there is an excluded process
        machines.setdefault(callee, {"computer": hits[0].get("computer") or "", "processes": {}})
        deps.append(Dependency(r["Machine"], r["ProcessName"] or "", callee, r["RemoteIp"], port,
                               int(r["Bytes"] or 0), int(r["Connections"] or 0), _stamp(r["LastSeen"])))
    deps.sort(key=lambda d: (d.caller, d.callee, d.process, d.port, d.remote_ip))
    return deps, machines


class Graph:
    """The undirected weighted machine graph (both directions summed) and the directed one."""

    def __init__(self, nodes: list[str], deps: list[Dependency], weight: str):
        self.nodes = sorted(nodes)
        self.index = {m: i for i, m in enumerate(self.nodes)}
        self.undirected: dict[tuple[int, int], float] = {}
        self.directed: dict[tuple[int, int], float] = {}
        for d in deps:
            w = float(getattr(d, weight))
            a, b = self.index[d.caller], self.index[d.callee]
            self.directed[(a, b)] = self.directed.get((a, b), 0.0) + w
            key = (min(a, b), max(a, b))
            self.undirected[key] = self.undirected.get(key, 0.0) + w
        self.adjacent: list[dict[int, float]] = [{} for _ in self.nodes]
        self.calls: list[dict[int, float]] = [{} for _ in self.nodes]
        for (a, b), w in self.directed.items():
            self.calls[a][b] = w
        for (a, b), w in self.undirected.items():
            self.adjacent[a][b] = w
            self.adjacent[b][a] = w


# ---------------------------------------------------------------- communities and the cap

def _leiden(n: int, edges: dict[tuple[int, int], float], seed: int, resolution: float | None = None) -> list[list[int]]:
    import igraph
    import leidenalg
    g = igraph.Graph(n=n, edges=list(edges))
    # a pair that carried nothing in this weight still ties its machines, as the lightest link
    g.es["weight"] = [w if w > 0 else 1e-9 for w in edges.values()]
    if resolution is None:
        part = leidenalg.find_partition(g, leidenalg.ModularityVertexPartition, weights="weight", seed=seed)
    else:
        part = leidenalg.find_partition(g, leidenalg.RBConfigurationVertexPartition, weights="weight",
                                        seed=seed, resolution_parameter=resolution)
    return sorted((sorted(c) for c in part if c), key=lambda c: c[0])


def communities(graph: Graph, seed: int = SEED, without: frozenset[int] = frozenset(),
                resolution: float | None = None) -> list[list[int]]:
    """Machines that talk together, each community's machines in name order; machines without a
    dependency on another (``without`` left out) are not in any (``isolated``). ``resolution``:
    of the Potts model instead of modularity (lower: fewer, larger communities)."""
    edges = {e: w for e, w in graph.undirected.items() if e[0] not in without and e[1] not in without}
    linked = sorted({i for e in edges for i in e})
    if not linked:
        return []
    local = {m: k for k, m in enumerate(linked)}
    edges = {(local[a], local[b]): w for (a, b), w in edges.items()}
    return [[linked[k] for k in c] for c in _leiden(len(linked), edges, seed, resolution)]


# A shared service: a machine linked to many machines of many communities (a domain controller,
# a monitoring server polling every agent, a jump host): left in the graph it ties every community
# to every other, and in one wave with the rest it makes cycles no order can break. Found as
# Bunch's "omnipresent" modules are: the candidates are the machines with many more peers than the
# median machine; each candidate's peers are placed in the coarse communities of the graph without
# the candidates (Leiden at a low resolution: an application's tiers together), and Guimera and
# Amaral's participation coefficient (1 - sum over those communities of the share of its peers in
# it, squared) tells a hub between communities from a busy machine inside one (a queue that every
# part of one application calls).
SHARED_DEGREE = 3.0          # candidates: peers at least this many times the median machine's
SHARED_SPREAD = 3            # a hub: peers in at least this many coarse communities
SHARED_PARTICIPATION = 0.5   # and spread over them at least this evenly
SHARED_RESOLUTION = 0.25     # of the coarse communities


def shared(graph: Graph, seed: int = SEED) -> tuple[dict[int, dict], list[list[int]]]:
    """(shared services: machine -> {"peers", "communities", "participation"}, the communities of
    the other machines)."""
    degrees = sorted(len(a) for a in graph.adjacent if a)
    if not degrees:
        return {}, []
    median = degrees[len(degrees) // 2]
    candidates = frozenset(m for m, a in enumerate(graph.adjacent) if len(a) >= SHARED_DEGREE * median)
    hubs: dict[int, dict] = {}
    if candidates:
        coarse = communities(graph, seed, candidates, SHARED_RESOLUTION)
        where = {m: k for k, c in enumerate(coarse) for m in c}
        for m in sorted(candidates):
            count: dict[int, int] = {}
            for nb in graph.adjacent[m]:
                if nb in where:
                    count[where[nb]] = count.get(where[nb], 0) + 1
            n = sum(count.values())
            p = 1.0 - sum((k / n) ** 2 for k in count.values()) if n else 0.0
            if len(count) >= SHARED_SPREAD and p >= SHARED_PARTICIPATION:
                hubs[m] = {"peers": len(graph.adjacent[m]), "communities": len(count), "participation": round(p, 3)}
    return hubs, communities(graph, seed, frozenset(hubs))


def _shared_groups(graph: Graph, hubs: dict[int, dict]) -> list[list[int]]:
    """Shared services as groups by what they do: those called more than they call (a directory,
    a file server: they move early) and those calling more (monitoring, management: they move
    late), each by distinct peers; within a kind, the hubs that talk to each other (replicating
    directory servers) are a group, and the hubs of that kind that talk to none of them one more."""
    kinds: dict[bool, list[int]] = {True: [], False: []}
    for m in sorted(hubs):
        callers = sum(1 for a in range(len(graph.nodes)) if m in graph.calls[a])
        kinds[callers >= len(graph.calls[m])].append(m)
    groups = []
    for members in kinds.values():
        inside, seen, alone = set(members), set(), []
        for m in members:
            if m in seen:
                continue
            part, queue = [], [m]
            seen.add(m)
            while queue:
                x = queue.pop()
                part.append(x)
                for nb in graph.adjacent[x]:
                    if nb in inside and nb not in seen:
                        seen.add(nb)
                        queue.append(nb)
            (groups if len(part) > 1 else alone).append(sorted(part) if len(part) > 1 else part[0])
        if alone:
            groups.append(sorted(alone))
    return groups


def _sub(graph: Graph, members: list[int]) -> dict[tuple[int, int], float]:
    local = {m: k for k, m in enumerate(members)}
    return {(local[a], local[b]): w for (a, b), w in graph.undirected.items() if a in local and b in local}


def split(graph: Graph, community: list[int], cap: int | None, seed: int) -> list[list[int]]:
    """A community as pieces of at most ``cap`` machines: Leiden inside it at a rising resolution
    until it splits, then the pieces joined back greedily by the traffic between them while they
    fit; a community Leiden cannot split is cut into chunks in breadth-first order."""
    if cap is None or len(community) <= cap:
        return [community]
    edges = _sub(graph, community)
    parts: list[list[int]] = []
    for resolution in (1.0, 2.0, 4.0, 8.0, 16.0):
        found = _leiden(len(community), edges, seed, resolution)
        if len(found) > 1:
            parts = [[community[k] for k in c] for c in found]
            break
    if not parts:
        return _chunks(graph, community, cap)
    pieces = [p for part in parts for p in split(graph, part, cap, seed)]
    return _join(graph, pieces, cap)


def _chunks(graph: Graph, members: list[int], cap: int) -> list[list[int]]:
    inside, seen, order = set(members), set(), []
    for start in sorted(members, key=lambda m: (-sum(graph.adjacent[m].values()), m)):
        if start in seen:
            continue
        queue = [start]
        seen.add(start)
        while queue:
            m = queue.pop(0)
            order.append(m)
            for nb, _ in sorted(graph.adjacent[m].items(), key=lambda kv: (-kv[1], kv[0])):
                if nb in inside and nb not in seen:
                    seen.add(nb)
                    queue.append(nb)
    return [sorted(order[i:i + cap]) for i in range(0, len(order), cap)]


def _between(graph: Graph, a: list[int], b: list[int]) -> float:
    bs = set(b)
    return sum(w for m in a for nb, w in graph.adjacent[m].items() if nb in bs)


def _join(graph: Graph, pieces: list[list[int]], cap: int) -> list[list[int]]:
    pieces = [sorted(p) for p in pieces]
    while True:
        best = None
        for i in range(len(pieces)):
            for j in range(i + 1, len(pieces)):
                if len(pieces[i]) + len(pieces[j]) <= cap:
                    w = _between(graph, pieces[i], pieces[j])
                    if w > 0 and (best is None or w > best[0]):
                        best = (w, i, j)
        if best is None:
            return sorted(pieces, key=lambda p: p[0])
        _, i, j = best
        pieces[i] = sorted(pieces[i] + pieces[j])
        del pieces[j]


# ---------------------------------------------------------------- order and pins

def order(graph: Graph, groups: list[list[int]]) -> list[list[int]]:
    """Groups in moving order: callees before their callers. Greedy, as Eades, Lin and Smyth's
    heuristic for the feedback arc set: next a group that calls no group left to place, else the
    one most called by those left less what it calls of them; ties to the group holding the first
    machine."""
    where = {m: g for g, members in enumerate(groups) for m in members}
    calls: list[dict[int, float]] = [{} for _ in groups]       # group -> group it calls -> traffic
    called: list[dict[int, float]] = [{} for _ in groups]
    for a, ga in where.items():
        for b, w in graph.calls[a].items():
            gb = where.get(b)
            if gb is None or gb == ga:
                continue
            calls[ga][gb] = calls[ga].get(gb, 0.0) + w
            called[gb][ga] = called[gb].get(ga, 0.0) + w
    out = [sum(c.values()) for c in calls]
    inn = [sum(c.values()) for c in called]
    left, placed = set(range(len(groups))), []
    while left:
        g = min(left, key=lambda k: (out[k] > 1e-9, out[k] - inn[k], groups[k][0]))
        left.discard(g)
        placed.append(groups[g])
        for caller, w in called[g].items():
            out[caller] -= w
        for callee, w in calls[g].items():
            inn[callee] -= w
    return placed


def pin(graph: Graph, waves: list[list[int]], pins: dict[int, int], cap: int | None) -> list[list[int]]:
    """``waves`` (pinned machines already taken out) with each pinned machine in its wave (from 1),
    waves added up to the highest pin; a wave the pins overfill gives away its machines least tied
    to it to the wave with room they are most tied to, else to a new wave right after it (a new
    last wave when a later wave holds a pin)."""
    waves = [list(w) for w in waves]
    while len(waves) < max(pins.values(), default=0):
        waves.append([])
    for m, n in sorted(pins.items()):
        waves[n - 1].append(m)
    if cap is not None:
        for n in sorted(set(pins.values())):
            held = [m for m in waves[n - 1] if m in pins]
            if len(held) > cap:
                raise WavesError(f"{len(held)} machines are pinned to wave {n}, more than --max-wave-size {cap}")
        for i, wave in enumerate(waves):
            while len(wave) > cap:
                here = set(wave)
                m = min((m for m in wave if m not in pins),
                        key=lambda m: (sum(w for nb, w in graph.adjacent[m].items() if nb in here), m))
                wave.remove(m)
                room = [j for j, w in enumerate(waves) if j != i and len(w) < cap]
                tie = {j: sum(graph.adjacent[m].get(x, 0.0) for x in waves[j]) for j in room}
                target = max(room, key=lambda j: (tie[j], -j)) if room and max(tie.values()) > 0 else None
                if target is not None:
                    waves[target].append(m)
                elif any(n > i + 1 for n in pins.values()):
                    waves.append([m])           # a new wave here would move the later pins
                else:
                    waves.insert(i + 1, [m])
    return [sorted(w) for w in waves]


# ---------------------------------------------------------------- the plan

def plan(ws, options: Options) -> dict:
    """The waves of a workspace's machines (``Options``) as the report ``FORMATS`` print."""
    if options.weight not in WEIGHTS:
        raise WavesError(f"--weight must be one of {', '.join(WEIGHTS)}")
    if options.max_wave_size is not None and options.max_wave_size < 1:
        raise WavesError("--max-wave-size must be at least 1")
    deps, machines, span = dependencies_of(ws, options)
    return waves_of(deps, machines, options, span)


def dependencies_of(ws, options: Options) -> tuple[list[Dependency], dict[str, dict], dict]:
    """The dependencies and machines of a workspace's range (flows, resolve, graph's input), and the range."""
    until = (options.now or datetime.now(timezone.utc)).replace(tzinfo=None)
    since = until - options.range
    rows = flows(ws, since, until)
    remotes = sorted({r["RemoteIp"] for r in rows if r["Direction"] == "outbound" and r["RemoteIp"]})
    resolved = resolve(ws, remotes, max(options.range / timedelta(days=1), 1.0), until)
    res = _run(ws, MACHINES, {"since": since, "until": until})
    inventory = {m: c for m, c in res.rows}
    deps, machines = dependencies(rows, resolved, frozenset(options.exclude), inventory)
    return deps, machines, {"since": _stamp(since), "until": _stamp(until)}


def arrange(graph: Graph, pins: dict[int, int], cap: int | None, seed: int) -> tuple[dict, list, list]:
    """(shared services, communities, waves) of one weighting of the graph: communities and
    shared services, each community's pieces under the cap, in order, pins applied."""
    hubs, found = shared(graph, seed)
    found += _shared_groups(graph, hubs)
    linked = {m for c in found for m in c}
    isolated = [m for m in range(len(graph.nodes)) if m not in linked]
    # communities in order, then each one's pieces under the cap in order, next to each other
    pieces = {c[0]: [q for p in split(graph, c, cap, seed) if (q := [m for m in p if m not in pins])]
              for c in found}
    ordered = [p for c in order(graph, [c for c in found if pieces[c[0]]]) for p in order(graph, pieces[c[0]])]
    rest = [m for m in isolated if m not in pins]       # machines with no dependency: together, last
    step = cap or max(len(rest), 1)
    ordered += [rest[i:i + step] for i in range(0, len(rest), step)]
    return hubs, found, pin(graph, ordered, pins, cap)


def crossing_cost(graph: Graph, deps: list[Dependency], waves: list[list[int]], weight: str) -> int:
    """The ``weight`` (bytes or connections) of the dependencies whose ends are in different waves."""
    wave_of = {m: n for n, w in enumerate(waves, 1) for m in w}
    return sum(getattr(d, weight) for d in deps if wave_of[graph.index[d.caller]] != wave_of[graph.index[d.callee]])


def waves_of(deps: list[Dependency], machines: dict[str, dict], options: Options, span: dict | None = None) -> dict:
    """The report from dependencies and machines (``dependencies()``): the pure part of ``plan``."""
    cap = options.max_wave_size
    graph = Graph(list(machines), deps, options.weight)
    by_name = dict(graph.index)
    for m in graph.nodes:
        by_name.setdefault(machines[m]["computer"], graph.index[m])
    pins: dict[int, int] = {}
    for name, n in options.pins.items():
        if name not in by_name:
            raise WavesError(f"--pin {name}={n}: no monitored machine {name!r} in the range")
        if n < 1:
            raise WavesError(f"--pin {name}={n}: waves are numbered from 1")
        pins[by_name[name]] = n
    # The communities are found on the graph weighted each way; the plan kept is the one whose
    # crossing traffic, in the weight asked for, is least (modularity is Leiden's aim, not ours).
    best = None
    for by in [options.weight] + [w for w in WEIGHTS if w != options.weight]:
        g = graph if by == options.weight else Graph(list(machines), deps, by)
        hubs_by, found_by, waves_by = arrange(g, pins, cap, options.seed)
        cost = crossing_cost(graph, deps, waves_by, options.weight)
        if best is None or cost < best[0]:
            best = (cost, by, hubs_by, found_by, waves_by)
    _, communities_by, hubs, found, waves = best
    wave_of = {m: n for n, w in enumerate(waves, 1) for m in w}
    names = graph.nodes
    crossing = []
    for d in deps:
        a, b = wave_of[graph.index[d.caller]], wave_of[graph.index[d.callee]]
        if a != b:
            crossing.append(dict(vars(d), caller_wave=a, callee_wave=b, backward=a < b))

    def machine(m: int) -> dict:
        info = machines[names[m]]
        return {"machine": names[m], "computer": info["computer"],
                "processes": [{"process": p, "ports": sorted(ports)}
                              for p, ports in sorted(info["processes"].items())]}

    pairs: dict[tuple[str, str], dict] = {}     # every caller -> callee machine pair, crossing or not
    for d in deps:
        e = pairs.setdefault((d.caller, d.callee), {
            "caller": d.caller, "callee": d.callee, "bytes": 0, "connections": 0, "last_seen": d.last_seen,
            "caller_wave": wave_of[graph.index[d.caller]], "callee_wave": wave_of[graph.index[d.callee]]})
        e["bytes"] += d.bytes
        e["connections"] += d.connections
        e["last_seen"] = max(e["last_seen"], d.last_seen)

    mine: dict[int, list[dict]] = {}
    for c in crossing:                      # a crossing dependency under the caller's wave and the callee's
        mine.setdefault(c["caller_wave"], []).append(c)
        mine.setdefault(c["callee_wave"], []).append(c)
    report_waves = [{"wave": n, "machines": [machine(m) for m in w], "crossing": mine.get(n, [])}
                    for n, w in enumerate(waves, 1)]
    return {
        "range": span or {}, "weight": options.weight, "communities_by": communities_by,
        "max_wave_size": cap, "seed": options.seed,
        "library": library(),
        "communities": [[names[m] for m in c] for c in found],
        "shared_services": [{"machine": names[m], "computer": machines[names[m]]["computer"], **info}
                   for m, info in sorted(hubs.items())],
        "waves": report_waves,
        "crossing": crossing,
        "edges": list(pairs.values()),
        "crossing_bytes": sum(c["bytes"] for c in crossing),
        "crossing_connections": sum(c["connections"] for c in crossing),
        "backward": sum(1 for c in crossing if c["backward"]),
    }


def library() -> str:
    from importlib.metadata import version
    return f"leidenalg {version('leidenalg')} on igraph {version('igraph')}"


# ---------------------------------------------------------------- output

CSV_COLUMNS = ("wave", "kind", "machine", "computer", "process", "ports", "peer", "peer_wave", "remote_ip",
               "port", "bytes", "connections", "last_seen", "backward")


def format_text(report: dict) -> str:
    out = [f"{len(report['waves'])} waves, {len(report['communities'])} communities; crossing: "
           f"{len(report['crossing'])} dependencies, {report['crossing_bytes']} bytes, "
           f"{report['crossing_connections']} connections ({report['backward']} backward); "
           f"communities found on {report['communities_by']}"]
    if report.get("shared_services"):
        out.append("shared services: " + ", ".join(
            f"{s['computer'] or s['machine']} ({s['peers']} peers in {s['communities']} communities)"
            for s in report["shared_services"]))
    for w in report["waves"]:
        out.append(f"\nwave {w['wave']}: {len(w['machines'])} machines")
        for m in w["machines"]:
            procs = ", ".join(f"{p['process']}" + (f" ({', '.join(map(str, p['ports']))})" if p["ports"] else "")
                              for p in m["processes"])
            out.append(f"  {m['machine']} {m['computer']}: {procs}")
        for c in w["crossing"]:
            arrow = "calls" if c["caller_wave"] == w["wave"] else "called by"
            peer, peer_wave = (c["callee"], c["callee_wave"]) if arrow == "calls" else (c["caller"], c["caller_wave"])
            here = c["caller"] if arrow == "calls" else c["callee"]
            out.append(f"  {here} {arrow} {peer} (wave {peer_wave}) {c['process']} -> {c['remote_ip']}:{c['port']}: "
                       f"{c['bytes']} bytes, {c['connections']} connections, last {c['last_seen']}"
                       + (" BACKWARD" if c["backward"] else ""))
    return "\n".join(out) + "\n"


def format_csv(report: dict) -> str:
    """One row per machine process (kind "machine") and per crossing dependency under its caller's
    wave (kind "calls")."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for wave in report["waves"]:
        for m in wave["machines"]:
            for p in m["processes"] or [{"process": "", "ports": []}]:
                w.writerow([wave["wave"], "machine", m["machine"], m["computer"], p["process"],
                            " ".join(map(str, p["ports"])), "", "", "", "", "", "", "", ""])
        for c in wave["crossing"]:
            if c["caller_wave"] == wave["wave"]:
                w.writerow([wave["wave"], "calls", c["caller"], "", c["process"], "", c["callee"], c["callee_wave"],
                            c["remote_ip"], c["port"], c["bytes"], c["connections"], c["last_seen"],
                            str(c["backward"]).lower()])
    return buf.getvalue()


FORMATS = {
    "text": format_text,
    "csv": format_csv,
    "json": lambda report: json.dumps(report, indent=2) + "\n",
}
