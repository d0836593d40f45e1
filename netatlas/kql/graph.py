"""Graph semantics: make-graph, graph-match, graph-shortest-paths, graph-to-table, planned as SQL
over two relations.

``make-graph`` gives a ``Graph``: its edges (the input rows, each numbered ``__eid``, its ends
``__s`` and ``__t``) and its nodes (every id the edges or the nodes table name, ``__id``, numbered
``__n`` in id order, with the nodes tables' columns as properties), both CTEs. Only the graph
operators (``plan.GRAPH_OPERATORS``) take a graph; anywhere else the planner refuses it.

``graph-match`` plans a pattern as one chain of joins: a named node is a row of the nodes CTE, an
edge a row of the edges seen from its left end (``__l``) to its right end (``__r``): forwards,
backwards, or both for ``--``; an anonymous node is no join at all, only the ids of the edges
around it made equal. A variable-length edge ``-[e*1..3]->`` is unrolled: each length is a chain
of its own, and the chains are a UNION ALL (``leg``); in a leg, ``e.p`` is the list of the
instances' ``p``, ``map(e, x)`` / ``all(e, c)`` / ``any(e, c)`` are built per instance, and a
``where`` conjunct naming ``e.p`` must hold for every instance. ``cycles=unique_edges`` (the
default) keeps an edge from being used twice in a match, ``none`` a node from being visited twice
in a sequence, ``all`` neither. ``graph-shortest-paths`` is graph-match's UNION ALL with each
match's ends and length, of which a window keeps the shortest per pair of ends.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, fields, replace

from sqlglot import exp

from ..errors import KqlSemanticError, Span, did_you_mean
from ..limits import MAX_GRAPH_JOINS, MAX_GRAPH_LEGS, MAX_GRAPH_PATH
from . import syntax as s
from . import types as T
from .plan import GRAPH_OPERATORS, OPERATORS, Binding, Rel
from .planner import _chain
from .relations import aliased, scope_of
from .scalars import to_bool, to_string
from .typed import Typed, cast, col, fn, ident

CYCLES = ("unique_edges", "all", "none")
ITEM_FUNCTIONS = {"map", "all", "any"}     # functions over a variable edge's items (or its inner_nodes)


@dataclass
class Graph(Rel):
    """A graph value: the names of its edges and nodes CTEs and their properties."""
    edges: str = ""
    edge_cols: list = None
    nodes: str = ""
    node_cols: list = None
    id_type: str = ""
    is_graph = True          # class attribute: what the planner checks

    def copy(self) -> "Graph":
        return self


def _err(message, span, code="KQL_ARGUMENTS", hint=None):
    raise KqlSemanticError(message, span, code=code, hint=hint)


def _table(name: str, alias: str) -> exp.Table:
    return exp.Table(this=ident(name), alias=exp.TableAlias(this=ident(alias)))


def _eq(a, b):
    return exp.EQ(this=a, expression=b)


# ---- make-graph ----------------------------------------------------------------------------

def op_make_graph(pl, rel: Rel, op: s.Operator) -> Rel:
    a = op.args
    types = rel.types
    for name, span in (a["source"], a["target"]):
        if name not in types:
            _err(f"unknown column '{name}'", span, "KQL_UNKNOWN_COLUMN", did_you_mean(name, rel.names()))
    src, tgt = a["source"][0], a["target"][0]
    id_type = types[src]
    if types[tgt] != id_type:
        _err(f"the source and target node ids must have one type, but '{src}' is {id_type} and '{tgt}' is "
             f"{types[tgt]}", a["arrow"], "KQL_TYPE")
    if id_type == T.DYNAMIC:
        _err("a node id cannot be dynamic", a["source"][1], "KQL_TYPE", hint="convert it with tostring()")
    # partitioned-by P (op): one graph per value of P, a node being (P, id): its key is the two as
    # text (__id) and its id alone is __raw; the graph operator runs over them all at once (an edge
    # joins the nodes of its own partition only)
    part = a.get("partition")
    if part is not None:
        if part[0] not in types:
            _err(f"unknown column '{part[0]}'", part[1], "KQL_UNKNOWN_COLUMN", did_you_mean(part[0], rel.names()))
        if types[part[0]] == T.DYNAMIC:
            _err("a partition column cannot be dynamic", part[1], "KQL_TYPE", hint="convert it with tostring()")
    ptype = types[part[0]] if part is not None else None

    def key_of(idc, pc=None):
        """A node's key: its id, or (partitioned) its partition value and id as one text."""
        if part is None:
            return idc
        ptext = to_string(Typed(pc, ptype)).sql      # length-prefixed: no two (P, id) read alike
        out = exp.Cast(this=exp.Length(this=ptext), to=T.storage(T.STRING))
        for part_sql in (exp.Literal.string(":"), ptext.copy(), to_string(Typed(idc, id_type)).sql):
            out = exp.DPipe(this=out, expression=part_sql, safe=True)
        return exp.Paren(this=out)
    edges = pl.fresh("_gedges")
    # numbered in the order of their values: a store that computes a CTE at each use (ClickHouse)
    # numbers every edge the same way each time (rows alike in all but a dynamic value may swap)
    order = [exp.Ordered(this=col(c)) for c in [src, tgt] + [c for c, t in rel.cols if c not in (src, tgt)
                                                             and t != T.DYNAMIC]]
    sql = pl.wrap(rel, [col(c) for c, _ in rel.cols] + [
        aliased(exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=order)), "__eid"),
        aliased(key_of(col(src), col(part[0]) if part else None), "__s"),
        aliased(key_of(col(tgt), col(part[0]) if part else None), "__t")])
    pl.ctes.append((edges, sql, True))

    raw = [aliased(col(src), "__raw")] if part else []
    ends = exp.Union(this=exp.select(aliased(col("__s"), "__id"), *raw).from_(exp.Table(this=ident(edges))),
                     expression=exp.select(col("__t"), *([col(tgt)] if part else [])).from_(
                         exp.Table(this=ident(edges))), distinct=True)
    own = col("__raw", "_i") if part else col("__id", "_i")     # the node's id alone
    number = aliased(exp.Window(this=exp.RowNumber(), order=exp.Order(expressions=[exp.Ordered(this=col("__id", "_i"))])), "__n")
    if len(a["nodes"]) > 2:
        _err("make-graph takes at most two nodes tables", a["nodes"][2][2], "KQL_ARGUMENTS")
    if a["nodes"]:
        ids, joins, merged = ends, [], {}       # merged: property -> (type, [(alias, column)])
        for table, key, key_span in a["nodes"]:
            nrel = pl.tab(table)
            ntypes = nrel.types
            if key not in ntypes:
                _err(f"unknown column '{key}' in the nodes table", key_span, "KQL_UNKNOWN_COLUMN",
                     did_you_mean(key, nrel.names()))
            if ntypes[key] != id_type:
                _err(f"the nodes table's '{key}' is {ntypes[key]}, but the edges' node ids are {id_type}", key_span,
                     "KQL_TYPE")
            if part is not None and ntypes.get(part[0]) != ptype:
                _err(f"the nodes table needs the partition column '{part[0]}' ({ptype})", key_span, "KQL_UNKNOWN_COLUMN",
                     hint="partitioned-by needs the partition column in the edges and in every nodes table")
            ids = exp.Union(this=ids, expression=exp.select(
                key_of(col(key), col(part[0]) if part else None), *([col(key)] if part else [])).from_(
                exp.Subquery(this=nrel.sql, alias=exp.TableAlias(this=ident(pl.fresh())))), distinct=True)
            # one row per node id: the first in the order of its values (Kusto keeps any one of them)
            first = exp.Window(this=exp.RowNumber(), partition_by=[col(key)] + ([col(part[0])] if part else []),
                               order=exp.Order(
                expressions=[exp.Ordered(this=col(c)) for c, t in nrel.cols if t != T.DYNAMIC]))
            one = exp.Select(expressions=[col(c) for c, _ in nrel.cols]).from_(exp.Subquery(
                this=pl.wrap(nrel, [col(c) for c, _ in nrel.cols] + [aliased(first, "__first")]),
                alias=exp.TableAlias(this=ident(pl.fresh()))), copy=False).where(
                exp.EQ(this=col("__first"), expression=exp.Literal.number(1)), copy=False)
            alias = f"_p{len(joins)}"
            joins.append((exp.Subquery(this=one, alias=exp.TableAlias(this=ident(alias))),
                          _eq(key_of(col(key, alias), col(part[0], alias) if part else None), col("__id", "_i"))))
            for c, typ in nrel.cols:
                if c in merged and merged[c][0] != typ:
                    _err(f"the nodes tables' '{c}' is {merged[c][0]} in one and {typ} in the other", key_span, "KQL_TYPE")
                merged.setdefault(c, (typ, []))[1].append(col(c, alias))
        # a node in both tables merges their properties (the first table's where both have one)
        # a node only the edges name has its id under the nodes tables' key columns (the reference's
        # graph-to-table nodes: Mallory, named by edges only, shows name=Mallory)
        keys = {key for _, key, _ in a["nodes"]}
        nowhere = _chain(exp.And, [exp.Is(this=col(key, f"_p{i}"), expression=exp.null())
                                   for i, (_, key, _) in enumerate(a["nodes"])])
        props = []
        for c, (typ, sources) in merged.items():
            blank = [exp.Literal.string("")] if typ == T.STRING else []
            if c in keys:
                blank = [exp.Case(ifs=[exp.If(this=nowhere.copy(), true=own.copy())],
                                  default=blank[0] if blank else None)]
            rest = sources[1:] + blank
            props.append(aliased(exp.Coalesce(this=sources[0], expressions=rest) if rest else sources[0], c))
        nodes_sql = exp.Select(expressions=[col("__id", "_i"), *props, number]).from_(
            exp.Subquery(this=ids, alias=exp.TableAlias(this=ident("_i"))), copy=False)
        for table, on in joins:
            nodes_sql = nodes_sql.join(table, on=on, join_type="left", copy=False)
        node_cols = [(c, typ) for c, (typ, _) in merged.items()]
    else:
        node_cols = []
        extra = []
        if a["node_id"]:
            node_cols = [(a["node_id"][0], id_type)]
            extra = [aliased(own.copy(), a["node_id"][0])]
        nodes_sql = exp.Select(expressions=[col("__id", "_i"), *extra, number]).from_(
            exp.Subquery(this=ends, alias=exp.TableAlias(this=ident("_i"))), copy=False)
    nodes = pl.fresh("_gnodes")
    pl.ctes.append((nodes, nodes_sql, True))
    g = Graph(exp.select(exp.Star()).from_(exp.Table(this=ident(nodes))), [], None,
              edges=edges, edge_cols=list(rel.cols), nodes=nodes, node_cols=node_cols,
              id_type=T.STRING if part else id_type)
    if part is None:
        return g
    inner = a["inner"]
    if inner.name not in GRAPH_OPERATORS:
        _err(f"partitioned-by applies a graph operator (graph-match, graph-shortest-paths), not {inner.name}",
             inner.span)
    if inner.name == "graph-to-table":
        _err("graph-to-table is not supported after partitioned-by here", inner.span, "KQL_NOT_SUPPORTED",
             hint="graph-match ... project the properties you need")
    return GRAPH[inner.name](pl, g, inner)


def _graph(rel, op) -> Graph:
    if not getattr(rel, "is_graph", False):
        _err(f"{op.name} needs a graph: put make-graph before it", op.span, "KQL_TYPE",
             hint="T | make-graph Source --> Target | " + op.name + " ...")
    return rel


# ---- graph-to-table ------------------------------------------------------------------------

def op_graph_to_table(pl, rel: Rel, op: s.Operator) -> Rel:
    g = _graph(rel, op)
    parts = op.args["parts"]
    if len(parts) == 1:
        return _graph_table(g, parts[0])
    # nodes as N, edges as E: two tables, bound as N and E for the statements after this one, and
    # given as the statement's two results (the planner's _fork: the statement must end with it)
    if len(parts) > 2 or {p["what"] for p in parts} != {"nodes", "edges"}:
        _err("graph-to-table gives at most two tables: nodes as N, edges as E", parts[-1]["span"],
             hint="name the nodes once and the edges once")
    for part in parts:
        if part["as"] is None:
            _err(f"graph-to-table's {part['what']} needs a name here: {part['what']} as Name", part["span"],
                 hint="nodes as N [with_node_id=C], edges as E [with_source_id=C] [with_target_id=C]")
    if parts[0]["as"] == parts[1]["as"]:
        _err(f"graph-to-table names both tables '{parts[1]['as']}'", parts[1]["span"], hint="give them two names")
    tables = []
    for part in parts:
        name = part["as"]
        table = pl._named(pl.shared(_graph_table(g, part), name), name)
        pl.env[name] = Binding("table", table)
        tables.append(table)
    pl._fork = tables
    return tables[0]


def _graph_table(g: Graph, part: dict) -> Rel:
    """One table of graph-to-table: the graph's nodes or its edges."""
    allowed = {"nodes": {"with_node_id"}, "edges": {"with_source_id", "with_target_id"}}[part["what"]]
    for k, (_, span) in part["ids"].items():
        if k not in allowed:
            _err(f"'{k}' is not a parameter of graph-to-table {part['what']}", span,
                 hint=f"{part['what']} takes {', '.join(sorted(allowed))}")
    if part["what"] == "nodes":
        cols = list(g.node_cols)
        select = [col(c) for c, _ in cols]
        if "with_node_id" in part["ids"]:
            name = part["ids"]["with_node_id"][0]
            cols.insert(0, (name, T.LONG))
            select.insert(0, aliased(_node_hash(g, col("__id")), name))
        if not cols:
            _err("the graph's nodes have no properties to give", part["span"],
                 hint="give make-graph a nodes table (with Nodes on Id) or with_node_id=Name, "
                      "or ask graph-to-table nodes with_node_id=Name")
        sql = exp.Select(expressions=select).from_(exp.Table(this=ident(g.nodes)), copy=False)
        return Rel(sql, cols, None, part["as"])
    ids, id_cols = [], []
    for k, end in (("with_source_id", "__s"), ("with_target_id", "__t")):
        if k in part["ids"]:
            name = part["ids"][k][0]
            id_cols.append((name, T.LONG))
            ids.append(aliased(_node_hash(g, col(end)), name))
    cols = id_cols + list(g.edge_cols)
    sql = exp.Select(expressions=ids + [col(c) for c, _ in g.edge_cols]).from_(exp.Table(this=ident(g.edges)),
                                                                                 copy=False)
    return Rel(sql, cols, None, part["as"])


def _node_hash(g: Graph, node_id: exp.Expression) -> exp.Expression:
    """A node's id as graph-to-table's with_node_id= / with_source_id= / with_target_id= give it:
    Kusto's hash() of the id, XXH64 of its text (the reference's Alice is -3122868243544336885)."""
    text = node_id if g.id_type == T.STRING else cast(node_id, T.STRING)
    return fn("netatlas_xxhash64", exp.Coalesce(this=text, expressions=[exp.Literal.string("")]))


# ---- graph-match ---------------------------------------------------------------------------

def _edge_view(g: Graph, direction: str) -> exp.Expression:
    def seen(left, right, where=None):
        sel = exp.Select(expressions=[exp.Star(), aliased(col(left), "__l"), aliased(col(right), "__r")]).from_(
            exp.Table(this=ident(g.edges)), copy=False)
        return sel.where(where, copy=False) if where is not None else sel
    if direction == "->":
        return seen("__s", "__t")
    if direction == "<-":
        return seen("__t", "__s")
    # either way; a self loop once
    return exp.Union(this=seen("__s", "__t"), expression=seen("__t", "__s", exp.NEQ(this=col("__s"), expression=col("__t"))),
                     distinct=False)


def _rewrite(node, f):
    """A copy of a syntax tree with f(node) (when not None) in place of each node, top down."""
    if isinstance(node, list):
        out = [_rewrite(x, f) for x in node]
        return out if any(a is not b for a, b in zip(out, node)) else node
    if not isinstance(node, s.Node):
        return node
    r = f(node)
    if r is not None:
        return r
    changes = {}
    for fld in fields(node):
        v = getattr(node, fld.name)
        nv = _rewrite(v, f)
        if nv is not v:
            changes[fld.name] = nv
    return replace(node, **changes) if changes else node


def _walk(node, skip_items=False):
    if isinstance(node, list):
        for x in node:
            yield from _walk(x, skip_items)
        return
    if not isinstance(node, s.Node):
        return
    yield node
    if skip_items and isinstance(node, s.Call) and node.name in ITEM_FUNCTIONS:
        return
    for fld in fields(node):
        yield from _walk(getattr(node, fld.name), skip_items)


def _var_of(node) -> str | None:
    if isinstance(node, s.Member) and isinstance(node.target, s.Name):
        return node.target.name
    return None


class _Match:
    """One graph-match: its variables, checked once, and one leg per combination of lengths."""

    def __init__(self, pl, g: Graph, op: s.Operator):
        self.pl, self.g, self.op = pl, g, op
        a = op.args
        self.shortest = op.name == "graph-shortest-paths"
        for k, (_, span) in a["params"].items():
            if k != ("output" if self.shortest else "cycles"):
                _err(f"'{k}' is not a parameter of {op.name}", span)
        output = a["params"].get("output")
        self.output = output[0] if output else "any"
        if self.output not in ("any", "all"):
            _err(f"output must be any or all, not '{self.output}'", output[1])
        cycles = a["params"].get("cycles")
        # a shortest path is a simple path: no node twice, its ends included (the reference's all()
        # example finds no path from North back to North)
        self.cycles = cycles[0] if cycles else "none" if self.shortest else "unique_edges"
        if self.cycles not in CYCLES:
            _err(f"cycles must be one of {', '.join(CYCLES)}, not '{self.cycles}'", cycles[1])
        self.patterns = a["patterns"]
        self.nodes: dict[str, Span] = {}
        self.edges: dict[str, dict] = {}
        for pat in self.patterns:
            for el in pat:
                name = el["name"]
                if el["kind"] == "edge":
                    if el["var"]:
                        if el["min"] < 1:
                            _err("a variable-length edge needs at least one edge here (*1..N)", el["span"],
                                 "KQL_NOT_SUPPORTED")
                        if el["min"] > el["max"]:
                            _err(f"the least number of edges ({el['min']}) is more than the greatest ({el['max']})",
                                 el["span"])
                        if el["max"] > MAX_GRAPH_PATH:
                            _err(f"a variable-length edge may span at most {MAX_GRAPH_PATH} edges, not {el['max']}",
                                 el["span"], "KQL_QUERY_TOO_COMPLEX",
                                 hint=f"ask for *{el['min']}..{MAX_GRAPH_PATH} or fewer (limits.MAX_GRAPH_PATH)")
                    if name is None:
                        continue
                    if name in self.edges or name in self.nodes:
                        _err(f"the pattern names '{name}' twice; an edge variable names one edge", el["span"])
                    self.edges[name] = el
                elif name is not None:
                    if name in self.edges:
                        _err(f"'{name}' names an edge and a node", el["span"])
                    self.nodes.setdefault(name, el["span"])
        self._connected()
        if self.shortest:
            if len(self.patterns) > 1:
                _err("graph-shortest-paths takes one sequence", self.patterns[1][0]["span"])
            if not any(el["kind"] == "edge" and el["var"] for el in self.patterns[0]):
                _err("graph-shortest-paths needs a variable-length edge in its pattern, e.g. -[e*1..5]->",
                     self.patterns[0][0]["span"])
        self.var_edges = [el for pat in self.patterns for el in pat if el["kind"] == "edge" and el["var"]]
        self.combos = list(itertools.product(*[range(el["min"], el["max"] + 1) for el in self.var_edges]))
        if len(self.combos) > MAX_GRAPH_LEGS:
            _err(f"the variable-length edges give {len(self.combos)} combinations of lengths, more than "
                 f"{MAX_GRAPH_LEGS}", self.var_edges[0]["span"], "KQL_QUERY_TOO_COMPLEX",
                 hint="narrow the edges' ranges (limits.MAX_GRAPH_LEGS)")
        joins = len(self.nodes) + sum(el["max"] if el["var"] else 1 for pat in self.patterns for el in pat
                                      if el["kind"] == "edge")
        if joins > MAX_GRAPH_JOINS:
            _err(f"the pattern joins {joins} nodes and edges, more than {MAX_GRAPH_JOINS}", self.patterns[0][0]["span"],
                 "KQL_QUERY_TOO_COMPLEX", hint="match a shorter pattern (limits.MAX_GRAPH_JOINS)")
        self.node_types = dict(g.node_cols)
        self.edge_types = dict(g.edge_cols)
        self.inner = {self.inner_edge(n) for n in _walk([a["where"], a["project"]])
                      if isinstance(n, s.Call) and n.name == "inner_nodes"}

    def _connected(self):
        if len(self.patterns) < 2:
            return
        groups = [{el["name"] for el in pat if el["kind"] == "node" and el["name"]} for pat in self.patterns]
        reached, todo = set(groups[0]), list(range(1, len(groups)))
        changed = True
        while changed:
            changed = False
            for i in list(todo):
                if groups[i] & reached:
                    reached |= groups[i]
                    todo.remove(i)
                    changed = True
        if todo:
            first = self.patterns[todo[0]][0]["span"]
            _err("the patterns must share node variables: one connected pattern", first,
                 hint="name a node of this sequence as in another one, e.g. (a)-->(b), (b)-->(c)")

    # ---- property references --------------------------------------------------------------------
    def prop(self, var: str, p: str, span: Span, inst: int | None = None) -> str:
        types = self.edge_types if var in self.edges else self.node_types
        if p not in types:
            what = "edge" if var in self.edges else "node"
            _err(f"the {what} '{var}' has no property '{p}'", span, "KQL_UNKNOWN_COLUMN",
                 hint=did_you_mean(p, list(types)) or (f"properties: {', '.join(list(types)[:12])}" if types else
                                                        "the graph's nodes have no properties: give make-graph a nodes table"))
        return f"{var}__{p}" if inst is None else f"{var}__{inst}__{p}"

    def expand(self, node, lengths: dict, bind: dict):
        """The expression with pattern properties as this leg's column names."""
        def f(n):
            v = _var_of(n)
            if v is not None and (v in self.nodes or v in self.edges):
                if v in lengths and v not in bind:
                    return s.Call(n.span, "pack_array", [s.Name(n.span, self.prop(v, n.name, n.span, j))
                                                         for j in range(lengths[v])], n.span)
                return s.Name(n.span, self.prop(v, n.name, n.span, bind.get(v)))
            if isinstance(n, s.Name) and (n.name in self.nodes or n.name in self.edges):
                if n.name in bind:       # a bare property of the edge in map(e, p) / all(e, p > 1)
                    return None
                _err(f"'{n.name}' is a pattern variable: name one of its properties, e.g. {n.name}.Name", n.span)
            if isinstance(n, s.Name) and "__" not in n.name and n.name not in self.pl.env:
                _err(f"unknown name '{n.name}'", n.span, "KQL_UNKNOWN_COLUMN",
                     hint=f"name a property of a pattern variable: variable.{n.name}" + (
                         f" (variables: {', '.join(list(self.nodes) + list(self.edges))})" if self.nodes or self.edges else ""))
            if isinstance(n, s.Call) and n.name in ITEM_FUNCTIONS and n.args and isinstance(n.args[0], (s.Name, s.Call)):
                target = n.args[0]
                if isinstance(target, s.Call) and target.name == "inner_nodes":
                    e = self.inner_edge(target)
                    if len(n.args) != 2:
                        _err(f"{n.name}() takes inner_nodes(edge) and an expression", n.span)
                    items = [self.expand(self.bare(n.args[1], e, k, inner=True), lengths, bind)
                             for k in range(lengths[e] - 1)]
                    return self.combine(n, items)
                if isinstance(target, s.Name) and target.name in self.edges:
                    if target.name not in lengths:
                        _err(f"{n.name}() takes a variable-length edge, and '{target.name}' is one edge", target.span)
                    if len(n.args) != 2:
                        _err(f"{n.name}() takes a variable-length edge and an expression", n.span)
                    e = target.name
                    items = [self.expand(self.bare(n.args[1], e, j), lengths, {**bind, e: j}) for j in range(lengths[e])]
                    return self.combine(n, items)
            return None
        return _rewrite(node, f)

    @staticmethod
    def combine(call: s.Call, items: list):
        """map(): the list of the items; all(): each is true; any(): one is."""
        if call.name == "map":
            if not items:
                return s.Literal(call.span, [], T.DYNAMIC)
            return s.Call(call.span, "pack_array", items, call.name_span)
        if not items:
            return s.Literal(call.span, call.name == "all", T.BOOL)
        op = "and" if call.name == "all" else "or"
        out = items[0]
        for it in items[1:]:
            out = s.Binary(call.span, op, out, it, call.name_span)
        return out

    def inner_edge(self, call: s.Call) -> str:
        if len(call.args) != 1 or not isinstance(call.args[0], s.Name) or call.args[0].name not in self.edges \
                or not self.edges[call.args[0].name]["var"]:
            _err("inner_nodes() takes a variable-length edge of the pattern", call.span)
        return call.args[0].name

    def bare(self, body, e: str, j: int, inner: bool = False):
        """map(e, p): a bare name that is a property of e's edges is e's j-th edge's; map(inner_nodes(e),
        p): of the j-th node inside e."""
        types = self.node_types if inner else self.edge_types

        def f(n):
            if isinstance(n, s.Name) and n.name in types and n.name not in self.nodes and n.name not in self.edges:
                return s.Name(n.span, f"{e}__in{j}__{n.name}" if inner else self.prop(e, n.name, n.span, j))
            if isinstance(n, s.Member):
                return replace(n, target=_rewrite(n.target, f)) if not isinstance(n.target, s.Name) else n
            return None
        return _rewrite(body, f)

    def conjuncts(self, node):
        if isinstance(node, s.Binary) and node.op == "and":
            return self.conjuncts(node.left) + self.conjuncts(node.right)
        return [node]

    # ---- one leg: one length of every variable-length edge -----------------------------------------
    def leg(self, combo) -> tuple[Rel, dict]:
        pl, g = self.pl, self.g
        lengths = {el["name"]: n for el, n in zip(self.var_edges, combo) if el["name"]}
        per_el = {id(el): n for el, n in zip(self.var_edges, combo)}
        items = []                     # [table expression, alias, [conditions]]
        named: dict[str, str] = {}     # node variable -> alias
        instances = []                 # edge aliases, for unique_edges
        where = []
        select, cols = [], []
        for pat in self.patterns:
            left = None                # id of the node before the next edge
            seq = []                   # (variable or None, id) of the sequence's nodes, for cycles=none
            for el in pat:
                if el["kind"] == "node":
                    name = el["name"]
                    if name is not None:
                        if name in named:
                            a = named[name]
                            if left is not None:
                                items[-1][2].append(_eq(col("__id", a), left))
                        else:
                            a = pl.fresh("_n")
                            items.append([_table(g.nodes, a), a, [_eq(col("__id", a), left)] if left is not None else []])
                            named[name] = a
                            for c, t in g.node_cols:
                                select.append(aliased(col(c, a), f"{name}__{c}"))
                                cols.append((f"{name}__{c}", t))
                        left = col("__id", a)
                    elif len(pat) == 1:               # () alone: every node
                        a = pl.fresh("_n")
                        items.append([_table(g.nodes, a), a, []])
                        left = col("__id", a)
                    if left is not None:
                        seq.append((name, left))
                    elif name is None:
                        seq.append((None, None))      # the next edge's left end
                    continue
                n = per_el.get(id(el), 1)
                # a variable edge's items come in the pattern's order, left to right, whatever the edges'
                # direction: (a)<-[e*1..3]-(b) lists first the edge at a (the reference's org example)
                order = range(n)
                for j in order:
                    a = pl.fresh("_e")
                    items.append([exp.Subquery(this=_edge_view(g, el["dir"]), alias=exp.TableAlias(this=ident(a))), a,
                                  [_eq(col("__l", a), left)] if left is not None else []])
                    if seq and seq[-1] == (None, None):
                        seq[-1] = (None, col("__l", a))
                    instances.append(a)
                    if el["name"]:
                        for c, t in g.edge_cols:
                            nm = f"{el['name']}__{c}" if not el["var"] else f"{el['name']}__{j}__{c}"
                            select.append(aliased(col(c, a), nm))
                            cols.append((nm, t))
                    left = col("__r", a)
                    if j != order[-1]:            # a node inside the variable edge
                        seq.append((None, left))
                        if el["name"] in self.inner:
                            k = j                                        # its place along the pattern
                            b = pl.fresh("_n")
                            items.append([_table(g.nodes, b), b, [_eq(col("__id", b), left)]])
                            for c, t in g.node_cols:
                                select.append(aliased(col(c, b), f"{el['name']}__in{k}__{c}"))
                                cols.append((f"{el['name']}__in{k}__{c}", t))
                # the node after the edge picks `left` up
            if self.cycles == "none":
                for (n1, i1), (n2, i2) in itertools.combinations(seq, 2):
                    if i1 is not None and i2 is not None and not (n1 is not None and n1 == n2):
                        where.append(exp.NEQ(this=i1.copy(), expression=i2.copy()))
        if self.cycles == "unique_edges":
            for a1, a2 in itertools.combinations(instances, 2):
                where.append(exp.NEQ(this=col("__eid", a1), expression=col("__eid", a2)))
        first = items[0]
        sql = exp.Select(expressions=select or [exp.Literal.number(1)]).from_(
            first[0] if isinstance(first[0], exp.Table) else first[0], copy=False)
        for table, _, conds in items[1:]:
            if conds:
                sql = sql.join(table, on=_chain(exp.And, conds), copy=False)
            else:
                sql = sql.join(table, join_type="cross", copy=False)
        if where:
            sql = sql.where(_chain(exp.And, where), copy=False)
        if not select:
            cols = [("__one", T.LONG)]
            sql.set("expressions", [aliased(exp.Literal.number(1), "__one")])
        self.ends = (seq[0][1], left, instances)     # the last sequence's ends and edges (shortest paths)
        return Rel(sql, cols, None), lengths

    def plan(self) -> Rel:
        pl, a = self.pl, self.op.args
        legs, out_cols = [], None
        for combo in self.combos:
            rel, lengths = self.leg(combo)
            scope = scope_of(rel)
            conds = []
            if a["where"] is not None:
                for c in self.conjuncts(a["where"]):
                    direct = {_var_of(n) for n in _walk(c, skip_items=True)} & set(lengths)
                    if len(direct) > 1:
                        _err("a condition may name the properties of one variable-length edge", c.span,
                             "KQL_NOT_SUPPORTED", hint="split it into conditions joined by 'and'")
                    if direct:
                        e = direct.pop()
                        for j in range(lengths[e]):
                            conds.append(to_bool(pl.scalar(self.expand(c, lengths, {e: j}), scope), "the where condition").sql)
                    else:
                        conds.append(to_bool(pl.scalar(self.expand(c, lengths, {}), scope), "the where condition").sql)
            items, seen = [], set()
            for i, it in enumerate(a["project"]):
                if it.names and len(it.names) > 1:
                    _err("tuple assignment is not supported here", it.span, "KQL_NOT_SUPPORTED")
                t = pl.scalar(self.expand(it.expr, lengths, {}), scope)
                v = _var_of(it.expr)
                name = it.names[0] if it.names else (f"{v}_{it.expr.name}" if v else f"Column{i + 1}")
                if name in seen:
                    _err(f"column '{name}' appears twice in project", it.span,
                         hint="give one of them another name: NewName = ...")
                seen.add(name)
                items.append((name, t))
            cols = [(n, t.type) for n, t in items]
            if out_cols is None:
                out_cols = cols
            elif [t for _, t in cols] != [t for _, t in out_cols]:
                _err("the project expressions have other types at other lengths of the variable-length edge",
                     self.op.span, "KQL_TYPE")
            hidden = []
            if self.shortest:
                rel = self.with_ends(rel)
                hidden = [col(c) for c in self.hidden_names()]
            legs.append(pl.wrap(rel, [aliased(t.sql, n) for n, t in items] + hidden,
                                where=_chain(exp.And, conds) if conds else None, alias=pl.fresh()))
        sql = legs[0]
        for leg in legs[1:]:
            sql = exp.Union(this=sql, expression=leg, distinct=False)
        if self.shortest:
            return self.shortest_of(sql, out_cols)
        if len(legs) > 1:
            sql = exp.Select(expressions=[col(c) for c, _ in out_cols]).from_(
                exp.Subquery(this=sql, alias=exp.TableAlias(this=ident(pl.fresh()))), copy=False)
        return Rel(sql, out_cols, None)


    # ---- graph-shortest-paths: the matches of least length for each pair of ends ------------------------
    def hidden_names(self) -> list[str]:
        most = max(sum(combo) for combo in self.combos) + sum(
            1 for el in self.patterns[0] if el["kind"] == "edge" and not el["var"])
        return ["__src", "__dst", "__len"] + (["__k%d" % i for i in range(most)] if self.output == "any" else [])

    def with_ends(self, rel: Rel) -> Rel:
        """The leg with its ends' ids, its length and (output=any) its edges' numbers in walk order."""
        first, last, instances = self.ends
        sql = rel.sql
        extra = [aliased(first.copy(), "__src"), aliased(last.copy(), "__dst"),
                 aliased(exp.Literal.number(len(instances)), "__len")]
        if self.output == "any":
            names = self.hidden_names()[3:]
            extra += [aliased(cast(col("__eid", instances[i]) if i < len(instances) else exp.null(), T.LONG), n)
                      for i, n in enumerate(names)]
        sql.set("expressions", list(sql.expressions) + extra)
        return Rel(sql, rel.cols, None)

    def shortest_of(self, union, out_cols) -> Rel:
        pl = self.pl
        part = [col("__src"), col("__dst")]
        if self.output == "any":
            keys = [exp.Ordered(this=col(n)) for n in self.hidden_names()[2:]]
            pick = exp.Window(this=exp.RowNumber(), partition_by=part, order=exp.Order(expressions=keys))
            cond = exp.EQ(this=col("__pick"), expression=exp.Literal.number(1))
        else:
            pick = exp.Window(this=exp.Min(this=col("__len")), partition_by=part)
            cond = exp.EQ(this=col("__len"), expression=col("__pick"))
        ranked = exp.Select(expressions=[exp.Star(), aliased(pick, "__pick")]).from_(
            exp.Subquery(this=union, alias=exp.TableAlias(this=ident(pl.fresh()))), copy=False)
        sql = exp.Select(expressions=[col(c) for c, _ in out_cols]).from_(
            exp.Subquery(this=ranked, alias=exp.TableAlias(this=ident(pl.fresh()))), copy=False).where(cond, copy=False)
        return Rel(sql, out_cols, None)


def op_graph_match(pl, rel: Rel, op: s.Operator) -> Rel:
    return _Match(pl, _graph(rel, op), op).plan()


GRAPH = {"make-graph": op_make_graph, "graph-match": op_graph_match, "graph-shortest-paths": op_graph_match,
         "graph-to-table": op_graph_to_table}
OPERATORS.update(GRAPH)
GRAPH_OPERATORS.update(("graph-match", "graph-shortest-paths", "graph-to-table"))
