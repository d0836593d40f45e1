"""Stage 3, plan: Query syntax tree + Catalogue -> Plan.

The planner resolves every name against the catalogue and the `let` scope, checks types, and
builds each tabular operator as a sqlglot SELECT over the previous one (``Rel``, plan.py). Tabular
operators are a table (``plan.OPERATORS``, filled by operators.py); scalar expressions are
compiled by the methods below with the tables in scalars.py, functions/ and aggregates.py.
"""
from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timezone

from sqlglot import exp

from .. import catalogue as _catalogue   # a module: catalogue.py imports kql.types, which loads this package
from ..errors import KqlError, KqlSemanticError, Span, did_you_mean
from ..limits import (MAX_FUNCTION_DEPTH, MAX_PLAN_STEPS, MAX_RESULTS, MAX_SCALAR_NODES, MAX_TERMS, PLAN_STEPS_PER_TOKEN,
                      Deadline)
from . import syntax as s
from . import types as T
from .aggregates import AGGREGATES
from .builtins import KUSTO_FUNCTIONS, not_yet
from .functions import FUNCTIONS
from .functions.series import TUPLES, not_alone
from .plan import GRAPH_OPERATORS, OPERATORS, SOURCES, Binding, Plan, Rel
from .scalars import Scope, binary, dynamic_to, to_bool, to_dynamic, to_string, type_error, unify
from .typed import Typed, cast, col, const, fn, ident, json_key_path, null
from .dialects import DIALECTS
from .generator import render
from .prune import multiplies


class Planner:
    def __init__(self, catalogue: "_catalogue.Catalogue", *, now: datetime | None = None, params: dict | None = None,
                 executor=None, timespan=None, deadline: Deadline | None = None, tokens: int = 0,
                 dialect: str = "duckdb"):
        """``deadline``: checked every few hundred steps; ``tokens``: the query's length in tokens,
        which sets the step budget (limits.MAX_PLAN_STEPS + PLAN_STEPS_PER_TOKEN per token)."""
        self.catalogue = catalogue
        now = now or datetime.now(timezone.utc)
        self._now = now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo else now
        self.read_now = False           # whether the plan depends on now (now(), ago()): the compile cache
        self.ran_sql = False            # whether planning read the data (plugins' helper queries): ditto
        self.params = params or {}
        self.executor = executor
        self.dialect = dialect          # what the plan-time helper queries are rendered in
        self.timespan = tuple(_naive_utc(x) for x in timespan) if timespan else None
        self.env: dict[str, Binding] = {}
        self.ctes: list[tuple[str, exp.Expression, bool]] = []
        self.render: dict | None = None
        self._ids = itertools.count(1)
        self.deadline = deadline
        self.steps = 0
        self.budget = MAX_PLAN_STEPS + PLAN_STEPS_PER_TOKEN * tokens
        self._next_check = 256
        self._where: Span | None = None     # the statement or let being planned, for the budget's error
        self._fn_depth = 0
        self._params: frozenset = frozenset()    # the scalar parameters of the function being planned
        self._query: s.Query | None = None
        self._uses: Counter | None = None   # name -> how often the query names it (on first need)
        self._fork: list[Rel] | None = None  # graph-to-table nodes as N, edges as E: its two tables

    def flag(self, name: str):
        """A fact of the dialect the plan is for (``dialects.base``: flags), None where it has none."""
        return DIALECTS[self.dialect].flags.get(name)

    @property
    def now(self) -> datetime:
        """The query's now(), naive UTC; reading it marks the plan as depending on it."""
        self.read_now = True
        return self._now

    # ---- limits -------------------------------------------------------------------------------
    def step(self, n: int = 1) -> None:
        """Count planner work: past the budget the query is too complex (a let or function whose
        uses multiply); every 256 steps the deadline is checked."""
        self.steps += n
        if self.steps >= self._next_check:
            self._next_check = self.steps + 256
            if self.steps > self.budget:
                raise KqlSemanticError(f"the query is too complex to plan: it needs more than {self.budget} "
                                       f"planning steps", self._where, code="KQL_QUERY_TOO_COMPLEX",
                                       hint="a let or function used many times over multiplies the work; "
                                            "use materialize() or fewer nested uses")
            if self.deadline is not None:
                self.deadline.check()

    # ---- entry ------------------------------------------------------------------------------
    def plan(self, query: s.Query) -> Plan:
        """Every tabular statement gives a result, in order (Kusto's multiple result sets); a `let`
        between two of them applies to the later ones. The first is the Plan's ``rel``, the others
        ``more``. A graph-to-table's two-table form gives its two (``_fork``)."""
        results: list[tuple[Rel, dict | None]] = []
        self._query = query
        tabular = [i for i, st in enumerate(query.statements)
                   if not isinstance(st, (s.Let, s.DeclareParams, s.Set))]
        for i, stmt in enumerate(query.statements):
            self._where = stmt.span
            if isinstance(stmt, s.Let):
                self.let(stmt)
                self._forked(stmt.span)
            elif isinstance(stmt, s.DeclareParams):
                self.declare(stmt)
            elif isinstance(stmt, s.Set):
                continue
            else:
                self.render = None
                rel = self.tabular_or_print(stmt.expr)
                given = self._forked(stmt.span, rel)
                if given is None:
                    given = [rel]
                elif i != tabular[-1]:
                    # graph-to-table nodes as N, edges as E followed by statements: it binds N and E
                    # for them and gives no table itself. Kusto's reference example (`...; N; E`)
                    # answers with two tables, not four: the names are its results
                    given = []
                for r in given:
                    if len(results) >= MAX_RESULTS:
                        raise KqlSemanticError(f"a query may give at most {MAX_RESULTS} results; this "
                                               f"statement would be result {len(results) + 1}", stmt.span,
                                               code="KQL_QUERY_TOO_COMPLEX",
                                               hint="split the query, or join or union the tables into fewer")
                    results.append((r, self.render))
        if not results:
            raise KqlSemanticError("the query has no tabular expression to return (only let statements)",
                                   query.span, code="KQL_SYNTAX",
                                   hint="end the query with a tabular expression, e.g. a table name")
        (rel, render), more = results[0], results[1:]
        return Plan(rel, self.ctes, render, more)

    def _forked(self, span: Span, rel: Rel | None = None) -> list[Rel] | None:
        """The tables of a graph-to-table nodes as N, edges as E planned in the statement just planned
        (graph.op_graph_to_table leaves them in ``_fork``); it must end a tabular statement."""
        fork, self._fork = self._fork, None
        if fork is None:
            return None
        if rel is None or rel is not fork[0]:
            raise KqlSemanticError("graph-to-table nodes as N, edges as E gives two tables: it must end "
                                   "a statement of its own", span, code="KQL_NOT_SUPPORTED",
                                   hint="use N and E in the statements after it")
        return list(fork)

    def tabular_or_print(self, node: s.Node) -> Rel:
        if self.is_tabular(node):
            return self.tab(node)
        raise KqlSemanticError("this statement is a scalar expression, not a table", node.span,
                               code="KQL_SYNTAX", hint="use 'print' to show a scalar value")

    def fresh(self, prefix: str = "_q") -> str:
        return f"{prefix}{next(self._ids)}"

    # ---- statements ---------------------------------------------------------------------------
    def let(self, stmt: s.Let) -> None:
        v = stmt.value
        saved, self._where = self._where, stmt.span
        try:
            if isinstance(v, s.FunctionDef):
                self.env[stmt.name] = Binding("function", v, dict(self.env))
            elif isinstance(v, s.Call) and v.name == "materialize":
                rel = self.materialize(v)
                self.env[stmt.name] = Binding("table", self._named(rel, stmt.name))
            elif self.is_tabular(v):
                rel = self.tab(v, graph=True)
                if getattr(rel, "is_graph", False):
                    self.env[stmt.name] = Binding("table", rel)
                else:
                    self.env[stmt.name] = Binding("table", self._named(self.shared(rel, stmt.name), stmt.name))
            else:
                value = self.scalar(v, Scope())
                size = sql_size(value.sql, MAX_SCALAR_NODES)
                if size > MAX_SCALAR_NODES:
                    raise KqlSemanticError(f"the value of '{stmt.name}' is too large: more than {MAX_SCALAR_NODES} "
                                           f"SQL nodes", stmt.span, code="KQL_QUERY_TOO_COMPLEX",
                                           hint="each use of a scalar let copies its value; a let built from "
                                                "several uses of another grows fast")
                self.env[stmt.name] = Binding("scalar", value, size=size)
        finally:
            self._where = saved

    def shared(self, rel: Rel, name: str, uses: int = 0) -> Rel:
        """A tabular let or 'as' used more than once becomes a CTE, planned once: inlined at every
        use, a chain of lets each using the last twice would double the SQL. ``uses``: uses besides
        the names in the text (an 'as' is also used by the rest of its pipeline)."""
        if self._uses is None:
            self._uses = name_uses(self._query) if self._query is not None else Counter()
        if self._uses[name] + uses < 2:
            return rel
        cte = self.fresh("_let")
        self.ctes.append((cte, self.finish(rel), True))   # computed once: inlined, DuckDB would plan it once per use
        sel = exp.Select(expressions=[col(c) for c, _ in rel.cols]).from_(exp.Table(this=ident(cte)), copy=False)
        # the order travels on when it sorts by the CTE's own columns (order by a, b desc)
        names = set(rel.names())
        keeps = rel.order and all(isinstance(o, exp.Ordered) and isinstance(o.this, exp.Column)
                                  and not o.this.table and o.this.name in names for o in rel.order)
        return Rel(sel, list(rel.cols), list(rel.order) if keeps else None, rel.name, rel.serialized,
                   literals=rel.literals)

    @staticmethod
    def _named(rel: Rel, name: str) -> Rel:
        rel.name = name
        return rel

    def declare(self, stmt: s.DeclareParams) -> None:
        for p in stmt.params:
            if p.type is None:
                raise KqlSemanticError("tabular query parameters are not supported", p.span, code="KQL_UNSUPPORTED")
            if p.name in self.params:
                v = self.params[p.name]
                self.env[p.name] = Binding("scalar", self.param_value(p, v))
            elif p.default is not None:
                self.env[p.name] = Binding("scalar", self.coerce(self.scalar(p.default, Scope()), p.type, p.default.span))
            else:
                raise KqlSemanticError(f"query parameter '{p.name}' has no value and no default", p.span,
                                       code="KQL_ARGUMENTS", hint=f"pass params={{'{p.name}': ...}}")

    def param_value(self, p: s.Param, v) -> Typed:
        from .values import python_to_kql
        try:
            return const(python_to_kql(v, p.type), p.type, p.span)
        except (TypeError, ValueError) as e:
            raise KqlSemanticError(f"query parameter '{p.name}' must be {p.type}: {e}", p.span, code="KQL_TYPE") from None

    def coerce(self, t: Typed, typ: str, span: Span) -> Typed:
        if t.type == typ or (t.is_const and t.const is None):
            return t if t.type == typ else null(typ)
        if T.promote(t.type, typ) == typ:
            return Typed(cast(t.sql, typ), typ, t.span, t.const, t.name)
        if t.type == T.DYNAMIC:
            return dynamic_to(t, typ)
        if typ == T.DYNAMIC:
            return to_dynamic(t)
        if typ == T.STRING:
            return to_string(t)
        type_error(f"expected {typ}, got {t.type}", span)

    # ---- classification ----------------------------------------------------------------------
    def is_tabular(self, node: s.Node, scope: Scope | None = None) -> bool:
        if isinstance(node, (s.Pipe, s.Datatable, s.RangeSource, s.PrintSource, s.UnionSource, s.SearchSource)):
            return True
        if isinstance(node, s.Name):
            if scope is not None and node.name in scope.columns:
                return False
            b = self.env.get(node.name)
            if b is not None:
                return b.kind == "table" or (b.kind == "function" and not b.value.params and self._fn_is_tabular(b))
            return node.name in self.catalogue or "*" in node.name
        if isinstance(node, s.Call):
            if node.name in ("materialize", "view", "table", "cluster", "database"):
                return True
            b = self.env.get(node.name)
            return b is not None and b.kind == "function" and self._fn_is_tabular(b)
        return False

    def _fn_is_tabular(self, b: Binding) -> bool:
        body = b.value.body
        last = body[-1] if body else None
        if isinstance(last, s.ExprStatement):
            saved = self.env
            self.env = dict(b.env)
            for p in b.value.params:
                self.env[p.name] = Binding("table" if p.type is None else "scalar", None)
            try:
                for st in body[:-1]:
                    if isinstance(st, s.Let):
                        self.env[st.name] = Binding("table" if self.is_tabular(st.value) else "scalar", None)
                return self.is_tabular(last.expr)
            finally:
                self.env = saved
        return False

    # ---- tabular expressions ------------------------------------------------------------------
    def tab(self, node: s.Node, graph: bool = False) -> Rel:
        """The tabular expression's Rel; ``graph``: it may be a graph (make-graph's, for a let)."""
        ops = []
        while isinstance(node, s.Pipe):    # a loop, not recursion: pipelines may be long
            ops.append(node.op)
            node = node.source
        self.step()
        rel = self.source(node)
        for op in reversed(ops):
            self.step()
            if getattr(rel, "is_graph", False) and op.name not in GRAPH_OPERATORS:
                self.not_a_table(op.span)
            rel = OPERATORS[op.name](self, rel, op)
        if not graph and getattr(rel, "is_graph", False):
            self.not_a_table(node.span if not ops else ops[0].span)
        return rel

    @staticmethod
    def not_a_table(span):
        raise KqlSemanticError("this is a graph, not a table: only graph-match, graph-shortest-paths and graph-to-table take a graph",
                               span, code="KQL_TYPE",
                               hint="follow make-graph with graph-match ... project ..., or graph-to-table nodes / edges")

    def source(self, node: s.Node) -> Rel:
        handler = SOURCES.get(type(node))
        if handler:
            return handler(self, node)
        if isinstance(node, s.Name):
            return self.table_ref(node)
        if isinstance(node, s.Call):
            if node.name == "materialize":
                return self.materialize(node)
            if node.name in ("view", "table"):
                if node.args and isinstance(node.args[0], s.Literal) and isinstance(node.args[0].value, str):
                    return self.table_ref(s.Name(node.args[0].span, node.args[0].value))
            b = self.env.get(node.name)
            if b and b.kind == "function":
                return self.call_function(node, b, Scope(), tabular=True)
        raise KqlSemanticError("expected a table or a tabular expression here", node.span, code="KQL_TYPE")

    def table_ref(self, node: s.Name) -> Rel:
        b = self.env.get(node.name)
        if b is not None:
            if b.kind == "table":
                return b.value.copy()
            if b.kind == "function" and not b.value.params:
                rel = self.call_function(s.Call(node.span, node.name, [], node.span), b, Scope(), tabular=True)
                return self._named(rel, node.name)
            raise KqlSemanticError(f"'{node.name}' is a scalar, not a table", node.span, code="KQL_TYPE")
        table = self.catalogue.get(node.name)
        if table is None:
            names = list(self.catalogue.names()) + [k for k, v in self.env.items() if v.kind == "table"]
            raise KqlSemanticError(f"unknown table '{node.name}'", node.span, code="KQL_UNKNOWN_TABLE",
                                   hint=did_you_mean(node.name, names) or f"tables: {', '.join(self.catalogue.names())}")
        sel = exp.Select(expressions=[exp.Star()]).from_(exp.Table(this=ident(table.name)), copy=False)
        if self.timespan and "TimeGenerated" in table.column_types:
            start, end = self.timespan
            sel = sel.where(exp.And(this=exp.GTE(this=col("TimeGenerated"), expression=const(start, T.DATETIME).sql),
                                    expression=exp.LT(this=col("TimeGenerated"), expression=const(end, T.DATETIME).sql)),
                            copy=False)
        return Rel(sel, list(table.columns), None, table.name,
                   notnull=frozenset(c for c in _catalogue.REQUIRED if c in table.column_types))

    def materialize(self, call: s.Call) -> Rel:
        if len(call.args) != 1:
            raise KqlSemanticError("materialize() takes one tabular expression", call.span, code="KQL_ARGUMENTS")
        rel = self.tab(call.args[0])
        name = self.fresh("_m")
        self.ctes.append((name, self.finish(rel), True))
        sel = exp.Select(expressions=[col(c) for c, _ in rel.cols]).from_(exp.Table(this=ident(name)), copy=False)
        return Rel(sel, list(rel.cols), None, rel.name)

    def finish(self, rel: Rel) -> exp.Expression:
        """The rel as a standalone query, with its order applied."""
        if rel.order:
            return self.wrap(rel, [col(c) for c, _ in rel.cols], order=rel.order)
        return rel.sql

    def wrap(self, rel: Rel, select: list[exp.Expression], *, where: exp.Expression | None = None,
             group: list[exp.Expression] | None = None, order: list[exp.Ordered] | None = None,
             limit: exp.Expression | None = None, distinct: bool = False, qualify=None,
             alias: str | None = None) -> exp.Select:
        if (alias is None and where is None and not group and qualify is None and not order and limit is None
                and not distinct and (merged := _narrowed(rel.sql, select)) is not None):
            return merged
        # built with constructors: sqlglot's builder methods cost several times more per call
        name = exp.TableAlias(this=exp.Identifier(this=alias or self.fresh(), quoted=False))
        source = _filtered_source(rel.sql, select)
        if source is None and len(select) == 1 and type(select[0]) is exp.Star and type(rel.sql) is exp.Select:
            # SELECT * of a SELECT that only picks columns: its columns, from its source
            inner = rel.sql.expressions
            if inner and all(_plain_column(e) for e in inner) and (
                    source := _filtered_source(rel.sql, mine := [e.copy() for e in inner])) is not None:
                select = mine
        if source is not None:
            # the input is SELECT * FROM src [WHERE w]: select from src itself, keeping w
            src, old_where = source
            src = (exp.Table(this=src.this, db=src.args.get("db"), catalog=src.args.get("catalog"), alias=name)
                   if isinstance(src, exp.Table) else exp.Subquery(this=src.this, alias=name))
            args = {"expressions": select, "from_": exp.From(this=src)}
            if old_where is not None:
                where = old_where if where is None else exp.And(this=old_where, expression=where)
        else:
            args = {"expressions": select, "from_": exp.From(this=exp.Subquery(this=rel.sql, alias=name))}
        if where is not None:
            args["where"] = exp.Where(this=where)
        if group:
            args["group"] = exp.Group(expressions=group)
        if qualify is not None:
            args["qualify"] = exp.Qualify(this=qualify)
        if order:
            args["order"] = exp.Order(expressions=order)
        if limit is not None:
            args["limit"] = exp.Limit(expression=limit)
        if distinct:
            args["distinct"] = exp.Distinct()
        return exp.Select(**args)

    def run(self, tree: exp.Expression) -> list[tuple]:
        """Run a helper query at plan time (schema discovery, e.g. bag_unpack's keys)."""
        for name, body, materialized in self.ctes:
            tree = tree.with_(ident(name), as_=body.copy(), materialized=materialized, copy=False)
        self.ran_sql = True
        return self.executor(render(tree, self.dialect))

    # ---- user functions -----------------------------------------------------------------------
    def call_function(self, call: s.Call, b: Binding, scope: Scope, tabular: bool):
        fdef: s.FunctionDef = b.value
        if len(call.args) > len(fdef.params):
            n = len(fdef.params)
            raise KqlSemanticError(f"{call.name}() takes {n} argument{'' if n == 1 else 's'}, got {len(call.args)}",
                                   call.span, code="KQL_ARGUMENTS")
        self._fn_depth += 1
        try:
            if self._fn_depth > MAX_FUNCTION_DEPTH:
                raise KqlSemanticError(f"user functions call each other more than {MAX_FUNCTION_DEPTH} deep here",
                                       call.span, code="KQL_QUERY_TOO_COMPLEX",
                                       hint="a function that calls itself is not supported")
            return self._call_function(call, b, scope, tabular)
        finally:
            self._fn_depth -= 1

    def _call_function(self, call: s.Call, b: Binding, scope: Scope, tabular: bool):
        fdef: s.FunctionDef = b.value
        bound = {}
        positional = [a for a in call.args if not isinstance(a, s.Assign)]
        named = {a.names[0]: a.expr for a in call.args if isinstance(a, s.Assign)}
        known = {p.name for p in fdef.params}
        for n, e in named.items():
            if n not in known:
                raise KqlSemanticError(f"{call.name}() has no parameter '{n}'", e.span, code="KQL_ARGUMENTS",
                                       hint=did_you_mean(n, known))
        for i, p in enumerate(fdef.params):
            arg = positional[i] if i < len(positional) else named.get(p.name)
            if arg is not None:
                if p.type is None:
                    bound[p.name] = Binding("table", self.tab(arg))
                else:
                    bound[p.name] = Binding("scalar", self.coerce(self.scalar(arg, scope), p.type, arg.span))
            elif p.default is not None:
                bound[p.name] = Binding("scalar", self.coerce(self.scalar(p.default, Scope()), p.type, p.default.span))
            else:
                raise KqlSemanticError(f"{call.name}() is missing argument '{p.name}'", call.span, code="KQL_ARGUMENTS")
        saved, saved_params = self.env, self._params
        self.env = {**b.env, **bound}
        # inside the body its scalar parameters win over columns of the same name (the caller's row,
        # or a table the body reads), as in Kusto
        self._params = frozenset(n for n, v in bound.items() if v.kind == "scalar")
        try:
            result = None
            for st in fdef.body:
                if isinstance(st, s.Let):
                    self.let(st)
                elif isinstance(st, s.ExprStatement):
                    result = st.expr
            if result is None:
                raise KqlSemanticError(f"function {call.name}() has no result expression", fdef.span, code="KQL_SYNTAX")
            if tabular:
                return self.tab(result)
            return self.scalar(result, scope)
        finally:
            self.env, self._params = saved, saved_params

    # ---- scalar expressions -------------------------------------------------------------------
    def scalar(self, node: s.Node, scope: Scope, agg: bool = False) -> Typed:
        self.step()
        handler = SCALAR_NODES.get(type(node))
        if handler is None:
            if self.is_tabular(node, scope):
                raise KqlSemanticError("a tabular expression cannot be used as a scalar value", node.span,
                                       code="KQL_TYPE", hint="wrap it in toscalar(...)")
            raise KqlSemanticError("this is not a scalar expression", node.span, code="KQL_SYNTAX")
        t = handler(self, node, scope, agg)
        if t.span is None:
            t.span = node.span
        return t

    def sc_literal(self, node: s.Literal, scope, agg) -> Typed:
        return const(node.value, node.type, node.span)

    def sc_name(self, node: s.Name, scope: Scope, agg) -> Typed:
        if node.name in self._params:             # a parameter of the function being planned
            v: Typed = self.env[node.name].value
            return Typed(v.sql.copy(), v.type, node.span, v.const, None)
        if node.name in scope.inline:
            v: Typed = scope.inline[node.name]
            return Typed(v.sql.copy(), v.type, node.span, v.const, node.name)
        typ = scope.columns.get(node.name)
        if typ is not None:
            return Typed(scope.ref(node.name), typ, node.span, name=node.name)
        b = self.env.get(node.name)
        if b is not None:
            if b.kind == "scalar":
                v: Typed = b.value
                self.step(1 + b.size // 50)    # copying its nodes: ~50 cost one step
                return Typed(v.sql.copy(), v.type, node.span, v.const, None)
            if b.kind == "function" and not b.value.params:
                return self.call_function(s.Call(node.span, node.name, [], node.span), b, scope, tabular=False)
            raise KqlSemanticError(f"'{node.name}' is a table; it cannot be used as a value here", node.span,
                                   code="KQL_TYPE", hint=f"use toscalar({node.name}) or 'in ({node.name})'")
        if node.name in self.catalogue:
            raise KqlSemanticError(f"'{node.name}' is a table; it cannot be used as a value here", node.span,
                                   code="KQL_TYPE")
        cands = list(scope.columns) + [k for k, v in self.env.items() if v.kind == "scalar"]
        hint = did_you_mean(node.name, cands)
        if hint is None and scope.columns:
            shown = ", ".join(list(scope.columns)[:12]) + (", ..." if len(scope.columns) > 12 else "")
            hint = f"available columns: {shown}"
        raise KqlSemanticError(f"unknown column or variable '{node.name}'", node.span, code="KQL_UNKNOWN_COLUMN",
                               hint=hint)

    def sc_member(self, node: s.Member, scope, agg) -> Typed:
        target = self.scalar(node.target, scope, agg)
        if target.type != T.DYNAMIC:
            raise KqlSemanticError(f"'.{node.name}' needs a dynamic value, but this is {target.type}", node.span,
                                   code="KQL_TYPE", hint="convert it with todynamic() / parse_json()")
        path = json_key_path(node.name)
        name = f"{target.name}_{node.name}" if target.name else node.name
        return Typed(fn("json_at", target.sql, exp.Literal.string(path)), T.DYNAMIC, node.span, name=name)

    def sc_index(self, node: s.Index, scope, agg) -> Typed:
        target = self.scalar(node.target, scope, agg)
        idx = self.scalar(node.index, scope, agg)
        if target.type != T.DYNAMIC:
            raise KqlSemanticError(f"indexing needs a dynamic value, but this is {target.type}", node.span, code="KQL_TYPE")
        if idx.is_const and isinstance(idx.const, str):
            path = exp.Literal.string(json_key_path(idx.const))
            name = f"{target.name}_{idx.const}" if target.name else idx.const
            return Typed(fn("json_at", target.sql, path), T.DYNAMIC, node.span, name=name)
        if idx.is_const and isinstance(idx.const, int):
            i = idx.const
            path = exp.Literal.string(f"$[{i}]" if i >= 0 else f"$[#{i}]")
            return Typed(fn("json_at", target.sql, path), T.DYNAMIC, node.span)
        if idx.type in T.INTEGER:
            path = exp.DPipe(this=exp.DPipe(this=exp.Literal.string("$["), expression=cast(idx.sql, T.STRING)),
                             expression=exp.Literal.string("]"))
        else:
            path = exp.DPipe(this=exp.Literal.string("$."), expression=fn("as_json", to_string(idx).sql))
        return Typed(fn("json_at", target.sql, path), T.DYNAMIC, node.span)

    def sc_unary(self, node: s.Unary, scope, agg) -> Typed:
        v = self.scalar(node.operand, scope, agg)
        if v.type not in T.NUMERIC and v.type != T.TIMESPAN:
            type_error(f"cannot negate a {v.type}", node.span)
        return Typed(exp.Neg(this=exp.Paren(this=v.sql)), v.type, node.span)

    def sc_binary(self, node: s.Binary, scope, agg) -> Typed:
        # a + b + c + ... is a left-deep tree: walk its left spine in a loop, not by recursion
        spine = []
        while isinstance(node, s.Binary):
            if node.op == ":":
                raise KqlSemanticError("'Column:value' is only valid in search", node.op_span, code="KQL_SYNTAX")
            spine.append(node)
            node = node.left
        if len(spine) > MAX_TERMS:     # operators on the left spine: one fewer than the terms
            raise KqlSemanticError(f"the expression chains more than {MAX_TERMS} terms", spine[-MAX_TERMS - 1].op_span,
                                   code="KQL_QUERY_TOO_COMPLEX", hint="split it with extend or let statements")
        a = self.scalar(node, scope, agg)
        for b_node in reversed(spine):
            self.step()
            b = self.scalar(b_node.right, scope, agg)
            t = binary(b_node.op, a, b, b_node.span)
            folded = fold(b_node.op, a, b)
            a = folded if folded is not None else t
            if a.span is None:
                a.span = b_node.span
        return a

    def sc_between(self, node: s.Between, scope, agg) -> Typed:
        v = self.scalar(node.left, scope, agg)
        lo = self.scalar(node.low, scope, agg)
        hi = self.scalar(node.high, scope, agg)
        if v.type == T.DATETIME and hi.type == T.TIMESPAN:
            hi = binary("+", lo, hi, node.span)
        v1, lo, _ = unify(v, lo, node.span, "compare (between)")
        v2, hi, _ = unify(v, hi, node.span, "compare (between)")
        e = exp.Between(this=v1.sql, low=lo.sql, high=hi.sql)
        if node.negated:
            e = exp.Not(this=exp.Paren(this=e))
        return Typed(exp.Paren(this=e), T.BOOL, node.span)

    def sc_in(self, node: s.InList, scope, agg) -> Typed:
        left = self.scalar(node.left, scope, agg)
        op = node.op
        ci = op in ("in~", "!in~")
        negated = op.startswith("!")
        if op in ("has_any", "has_all"):
            return self.has_any_all(node, left, scope, agg)
        tabular = len(node.items) == 1 and self.is_tabular(node.items[0], scope)
        rel = self.tab(node.items[0]) if tabular else None
        literal = rel is not None and rel.literals is not None and rel.cols[0][1] != T.DYNAMIC
        if tabular and not literal:
            sub_col, sub_type = rel.cols[0]
            sub = self.finish(rel)
            first = exp.Select(expressions=[col(sub_col)]).from_(sub.subquery(self.fresh(), copy=False), copy=False)
            lhs = left
            if sub_type != left.type:
                lhs, _, _ = unify(left, Typed(exp.null(), sub_type), node.span, "compare (in)")
                if lhs.type != sub_type and sub_type == T.DYNAMIC:
                    # dynamic values against a scalar: both sides as text (1 in (dynamic(1)))
                    first = exp.Select(expressions=[to_string(Typed(col(sub_col), T.DYNAMIC)).sql]).from_(
                        sub.subquery(self.fresh(), copy=False), copy=False)
                    lhs = Typed(to_string(lhs).sql, T.STRING, lhs.span)
            lsql = exp.Lower(this=to_string(lhs).sql) if ci else lhs.sql
            if ci:
                first = exp.Select(expressions=[exp.Lower(this=col(sub_col))]).from_(sub.subquery(self.fresh(), copy=False), copy=False)
            e = exp.In(this=lsql, query=exp.Subquery(this=first))
        else:
            items = []
            # a datatable's first column, listed: the store filters its scan by the values
            for it in (() if literal else node.items):
                v = self.scalar(it, scope, agg)
                if v.type == T.DYNAMIC and v.is_const and isinstance(v.const, list):
                    items.extend(const(x, left.type if left.type != T.DYNAMIC else T.DYNAMIC, v.span)
                                 if not isinstance(x, (dict, list)) else const(x, T.DYNAMIC, v.span) for x in v.const)
                else:
                    items.append(v)
            if literal:
                items = [Typed(row[0].copy(), rel.cols[0][1], node.items[0].span) for row in rel.literals]
            conv = []
            for v in items:
                _, bb, _ = unify(left, v, v.span, f"compare ({op})")
                conv.append(bb)
            lhs, _, _ = unify(left, items[0], node.span, f"compare ({op})") if items else (left, None, None)
            if ci:
                lsql = exp.Lower(this=to_string(lhs).sql)
                vals = [exp.Lower(this=to_string(v).sql) for v in conv]
            else:
                lsql = lhs.sql
                vals = [v.sql for v in conv]
            e = exp.In(this=lsql, expressions=vals) if vals else exp.false()
        if negated:
            e = exp.Not(this=exp.Paren(this=e))
        return Typed(exp.Paren(this=e), T.BOOL, node.span)

    def has_any_all(self, node: s.InList, left: Typed, scope, agg) -> Typed:
        terms = []
        for it in node.items:
            v = self.scalar(it, scope, agg)
            if v.type == T.DYNAMIC and v.is_const and isinstance(v.const, list):
                terms.extend(const(str(x), T.STRING, v.span) for x in v.const)
            else:
                terms.append(to_string(v))
        parts = [binary("has", left, t, node.span).sql for t in terms]
        if not parts:
            return Typed(exp.false(), T.BOOL, node.span)
        cls = exp.Or if node.op == "has_any" else exp.And
        return Typed(exp.Paren(this=_chain(cls, parts)), T.BOOL, node.span)

    def sc_call(self, node: s.Call, scope: Scope, agg: bool) -> Typed:
        name = node.name
        special = SPECIAL_CALLS.get(name)
        if special:
            return special(self, node, scope, agg)
        b = self.env.get(name)
        if b is not None and b.kind == "function":
            return self.call_function(node, b, scope, tabular=False)
        if name in AGGREGATES and name not in FUNCTIONS:
            if not agg:
                raise KqlSemanticError(f"{name}() is an aggregation; use it in summarize", node.name_span,
                                       code="KQL_UNKNOWN_FUNCTION",
                                       hint=f"e.g. | summarize {name}(...) by ...")
            return self.aggregate_call(node, scope)
        f = FUNCTIONS.get(name)
        if f is None and name in TUPLES:
            not_alone(name, node.name_span)
        if f is None:
            if name in KUSTO_FUNCTIONS:           # Kusto has it, netatlas not yet: not a typo
                raise KqlSemanticError(not_yet(name), node.name_span, code="KQL_NOT_SUPPORTED",
                                       hint="the name is right (no typo): netatlas lacks this function for now")
            cands = list(FUNCTIONS) + list(AGGREGATES) + [k for k, v in self.env.items() if v.kind == "function"]
            raise KqlSemanticError(f"unknown function '{name}'", node.name_span, code="KQL_UNKNOWN_FUNCTION",
                                   hint=did_you_mean(name, cands))
        args = []
        for a in node.args:
            if name in TYPE_ARG_FUNCTIONS:   # extract(..., typeof(long))
                tname = (a.type if isinstance(a, s.TypeOf) else
                         a.args[0].name if isinstance(a, s.Call) and a.name == "typeof" and len(a.args) == 1
                         and isinstance(a.args[0], s.Name) else a.name if isinstance(a, s.Name) else None)
                if tname in TYPE_NAMES:
                    args.append(Typed(exp.null(), TYPE_NAMES[tname], a.span))
                    continue
            args.append(self.scalar(a, scope, agg))
        out = f.call(self, args, node.span, node.name_span)
        if all(a.is_const for a in args) and args and name in FOLDABLE:
            return fold_call(self, out)
        return out

    def aggregate_call(self, node: s.Call, scope: Scope) -> Typed:
        a = AGGREGATES[node.name]
        if a.multi or node.name in ("arg_max", "arg_min"):
            raise KqlSemanticError(f"{node.name}() must be a top-level aggregation of summarize", node.span,
                                   code="KQL_UNSUPPORTED")
        args = [self.scalar(x, scope, False) for x in node.args]
        self.check_agg_arity(a, node, args)
        out = a.build(*args)
        out.span = node.span
        out.name = a.default_name(args)
        return out

    @staticmethod
    def check_agg_arity(a, node: s.Call, args: list) -> None:
        n = len(args)
        if n < a.min_args or (a.max_args is not None and n > a.max_args):
            raise KqlSemanticError(f"{node.name}() takes {a.min_args}"
                                   f"{'' if a.max_args == a.min_args else ' to ' + str(a.max_args) if a.max_args else ' or more'}"
                                   f" arguments, got {n}", node.span, code="KQL_ARGUMENTS")

    def sc_star(self, node, scope, agg) -> Typed:
        raise KqlSemanticError("'*' is not a value here", node.span, code="KQL_SYNTAX")

    def sc_typeof(self, node, scope, agg):
        raise KqlSemanticError("typeof() is only valid in mv-expand ... to typeof()", node.span, code="KQL_SYNTAX")

    # ---- special scalar forms -----------------------------------------------------------------
    def call_toscalar(self, node: s.Call, scope, agg) -> Typed:
        if len(node.args) != 1:
            raise KqlSemanticError("toscalar() takes one tabular expression", node.span, code="KQL_ARGUMENTS")
        arg = node.args[0]
        if not self.is_tabular(arg, scope):
            return self.scalar(arg, scope, agg)
        rel = self.tab(arg)
        cname, ctype = rel.cols[0]
        sub = self.finish(rel)
        q = exp.Select(expressions=[col(cname)]).from_(sub.subquery(self.fresh(), copy=False), copy=False).limit(1)
        return Typed(exp.Subquery(this=q), ctype, node.span)

    def call_typeof(self, node, scope, agg):
        raise KqlSemanticError("typeof() is only valid in mv-expand ... to typeof()", node.span, code="KQL_SYNTAX")

    def call_row_window(self, node: s.Call, scope, agg) -> Typed:
        return row_window(self, node, scope)


_NOT_PLAIN = ("joins", "group", "having", "qualify", "order", "limit", "distinct", "with_", "windows", "offset")


def _filtered_source(sql: exp.Expression, select: list[exp.Expression] | None = None):
    """(source, where condition or None) when sql is SELECT * FROM one table or subquery [WHERE ...],
    or, for a ``select`` without ``*``, SELECT a, b FROM it [WHERE ...] (plain columns: the
    select reads only them, by the same names, from the source itself)."""
    if not isinstance(sql, exp.Select):
        return None
    star = len(sql.expressions) == 1 and isinstance(sql.expressions[0], exp.Star)
    if not star and not (select is not None and sql.expressions
                         and all(_plain_column(e) for e in sql.expressions)
                         and not any(e.find(exp.Star) for e in select)):
        return None
    if any(sql.args.get(k) for k in _NOT_PLAIN):
        return None
    frm = sql.args.get("from_")
    src = frm.this if frm is not None else None
    if not isinstance(src, (exp.Table, exp.Subquery)) or (isinstance(src, exp.Table) and not isinstance(src.this, exp.Identifier)):
        return None
    w = sql.args.get("where")
    return src, (w.this if w is not None else None)


def _chain(cls, parts: list):
    """parts joined by cls: left-deep (a OR b) OR c for a few, balanced for many, which DuckDB
    would otherwise refuse past 1000 levels."""
    if len(parts) > 64:
        mid = len(parts) // 2
        return cls(this=_chain(cls, parts[:mid]), expression=_chain(cls, parts[mid:]))
    e = parts[0]
    for p in parts[1:]:
        e = cls(this=e, expression=p)
    return e


def name_uses(query: s.Query) -> Counter:
    """How often each name appears in the query's syntax tree (a let's or an 'as' name's uses)."""
    uses: Counter = Counter()
    stack: list = [query]
    while stack:
        x = stack.pop()
        if isinstance(x, s.Name):
            uses[x.name] += 1
        elif isinstance(x, s.Call):
            uses[x.name] += 1
            stack.extend(x.args)
        elif isinstance(x, s.Node):
            stack.extend(getattr(x, f) for f in x.__dataclass_fields__)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return uses


def sql_size(tree: exp.Expression, limit: int) -> int:
    """The SQL tree's node count, counting no further than just past ``limit``."""
    n, stack = 0, [tree]
    while stack and n <= limit:
        node = stack.pop()
        n += 1
        for v in node.args.values():
            if isinstance(v, exp.Expression):
                stack.append(v)
            elif type(v) is list:
                stack.extend(x for x in v if isinstance(x, exp.Expression))
    return n


def _plain_column(e: exp.Expression) -> bool:
    return type(e) is exp.Column and not e.args.get("table") and type(e.this) is exp.Identifier


def _narrowed(inner: exp.Expression, select: list[exp.Expression]) -> exp.Select | None:
    """SELECT a, b FROM (SELECT a, f(x) AS b, c FROM src ...) as SELECT a, f(x) AS b FROM src ...:
    the columns picked from a SELECT (no DISTINCT, whose rows the columns make) are its own items
    for those names, the rest of it unchanged; a bare ``*`` there gives the other names from src as
    they are (an extend of new columns: SELECT *, f(x) AS b). Its WHERE, GROUP BY, QUALIFY and
    ORDER BY stay; where they or a picked item name an item left out, by its alias, nothing is
    merged. DuckDB plans every nesting level: one less is faster on short queries. None when it does
    not apply."""
    if type(inner) is not exp.Select or inner.args.get("distinct") or not inner.expressions:
        return None
    if not all(_plain_column(e) for e in select):
        return None
    items: dict[str, exp.Expression] = {}
    star = computed = False
    for e in inner.expressions:
        if type(e) is exp.Star and not any(e.args.values()):
            star = True
        elif _plain_column(e):
            items[e.name] = e
        elif type(e) is exp.Alias and e.alias:
            items[e.alias] = e
            computed = True
        else:
            return None
    if len(items) + star != len(inner.expressions):      # a name given twice
        return None
    for k in ("group", "order"):        # GROUP BY ALL and ordinals read the items by place
        v = inner.args.get(k)
        if v is not None and (v.args.get("all") or any(type(x.this if type(x) is exp.Ordered else x) is exp.Literal
                                                       for x in v.expressions)):
            return None
    picked = [items.get(e.name) for e in select]
    if not star and None in picked:
        return None
    if star and (not computed or inner.args.get("joins")):
        return None         # SELECT * alone: wrap's _filtered_source reads through it; of a join: two sides
    if computed:
        aliases = {n for n, e in items.items() if type(e) is exp.Alias}
        wanted = {e.name for e in select}
        named = {c.name for k in _CLAUSES for v in _as_list(inner.args.get(k))
                 for c in v.find_all(exp.Column) if not c.table}
        dropped = aliases - wanted
        if any(multiplies(items[n]) for n in dropped):
            return None         # an UNNEST left out would no longer make its rows
        named |= {c.name for e in picked if type(e) is exp.Alias for c in e.this.find_all(exp.Column) if not c.table}
        if named & dropped:
            return None
    return exp.Select(**dict(inner.args, expressions=[
        (p if p is not None else e).copy() for p, e in zip(picked, select)]))


_CLAUSES = ("where", "group", "having", "qualify", "order", "joins")   # the clauses that may name an alias


def _as_list(v) -> list:
    return [] if v is None else v if isinstance(v, list) else [v]


def _naive_utc(d: datetime) -> datetime:
    return d.astimezone(timezone.utc).replace(tzinfo=None) if d.tzinfo else d


def fold(op: str, a: Typed, b: Typed) -> Typed | None:
    """Fold arithmetic on constant datetimes and timespans (ago(1d) - 1h, now() + 2h) to literals."""
    if not (a.is_const and b.is_const) or a.const is None or b.const is None:
        return None
    from datetime import timedelta
    ta, tb = a.type, b.type
    if ta == T.DATETIME and tb == T.TIMESPAN and op in "+-":
        d = timedelta(microseconds=b.const // 10)
        return const(a.const + d if op == "+" else a.const - d, T.DATETIME, a.span)
    if ta == T.TIMESPAN and tb == T.TIMESPAN and op in "+-":
        return const(a.const + b.const if op == "+" else a.const - b.const, T.TIMESPAN, a.span)
    if ta == T.DATETIME and tb == T.DATETIME and op == "-":
        delta = a.const - b.const
        return const((delta.days * 86400 + delta.seconds) * 10_000_000 + delta.microseconds * 10, T.TIMESPAN, a.span)
    if ta == T.TIMESPAN and tb in T.INTEGER and op == "*":
        return const(a.const * b.const, T.TIMESPAN, a.span)
    if ta in T.INTEGER and tb == T.TIMESPAN and op == "*":
        return const(a.const * b.const, T.TIMESPAN, a.span)
    if ta in T.INTEGER and tb in T.INTEGER and op in "+-*":
        v = {"+": a.const + b.const, "-": a.const - b.const, "*": a.const * b.const}[op]
        if -2**63 <= v < 2**63:
            return const(v, T.promote(ta, tb), a.span)
    return None


def call_pack_all(planner, node: s.Call, scope: Scope, agg: bool) -> Typed:
    """pack_all([ignore_null_empty]): a bag of the row's columns (those the operator reads, not the
    ones the same extend defines); with true, null and empty values are left out."""
    from .functions.dynamic import pack
    if len(node.args) > 1:
        raise KqlSemanticError("pack_all() takes at most one argument (ignore_null_empty)", node.span,
                               code="KQL_ARGUMENTS")
    skip = False
    if node.args:
        flag = planner.scalar(node.args[0], scope, agg)
        if flag.type != T.BOOL or not flag.is_const:
            raise KqlSemanticError("pack_all()'s argument must be a constant bool", node.args[0].span, code="KQL_TYPE")
        skip = bool(flag.const)
    names = [c for c in scope.columns if c not in scope.inline]
    return _packed(planner, node, scope, names, skip, pack)


def call_bag_pack_columns(planner, node: s.Call, scope: Scope, agg: bool) -> Typed:
    """bag_pack_columns(c1, c2, ...): a bag of the named columns, keyed by their names."""
    from .functions.dynamic import pack
    names = []
    for a in node.args:
        if not isinstance(a, s.Name) or a.name not in scope.columns:
            raise KqlSemanticError("bag_pack_columns() takes column names", a.span, code="KQL_ARGUMENTS")
        names.append(a.name)
    if not names:
        raise KqlSemanticError("bag_pack_columns() needs at least one column", node.span, code="KQL_ARGUMENTS")
    return _packed(planner, node, scope, names, False, pack)


def _packed(planner, node, scope, names, skip_null_empty: bool, pack) -> Typed:
    from .typed import const as constant
    L = exp.Literal.string
    items = []
    for name in names:
        value = planner.scalar(s.Name(span=node.span, name=name), scope, False)
        if skip_null_empty:       # a JSON null, then the bag's null members dropped
            empty = exp.Or(this=exp.Is(this=value.sql, expression=exp.null()),
                           expression=exp.EQ(this=exp.Cast(this=value.sql, to=T.storage(T.STRING)), expression=L("")))
            value = Typed(exp.Case(ifs=[exp.If(this=empty, true=exp.null())], default=value.sql), value.type)
        items += [constant(name, T.STRING), value]
    bag = pack(*items)
    sql = bag.sql if isinstance(bag, Typed) else bag
    if skip_null_empty:
        sql = fn("netatlas_json_drop_nulls", sql)
    return Typed(sql, T.DYNAMIC, node.span)


FOLDABLE: set[str] = set()


def fold_call(planner, out: Typed) -> Typed:
    return out


TYPE_NAMES = {"string": T.STRING, "long": T.LONG, "int": T.INT, "real": T.REAL, "double": T.REAL,
              "bool": T.BOOL, "datetime": T.DATETIME, "timespan": T.TIMESPAN, "dynamic": T.DYNAMIC,
              "guid": T.GUID, "decimal": T.DECIMAL}
TYPE_ARG_FUNCTIONS = {"extract"}

SCALAR_NODES = {
    s.Literal: Planner.sc_literal, s.Name: Planner.sc_name, s.Member: Planner.sc_member,
    s.Index: Planner.sc_index, s.Unary: Planner.sc_unary, s.Binary: Planner.sc_binary,
    s.Between: Planner.sc_between, s.InList: Planner.sc_in, s.Call: Planner.sc_call,
    s.Star: Planner.sc_star, s.TypeOf: Planner.sc_typeof,
}
SPECIAL_CALLS = {
    "toscalar": Planner.call_toscalar, "typeof": Planner.call_typeof,
    "row_number": Planner.call_row_window, "prev": Planner.call_row_window,
    "next": Planner.call_row_window, "row_cumsum": Planner.call_row_window,
    "row_rank_dense": Planner.call_row_window, "row_rank_min": Planner.call_row_window,
    "pack_all": call_pack_all, "bag_pack_columns": call_bag_pack_columns,
}


def plan(query: s.Query, catalogue: "_catalogue.Catalogue | None" = None, **kw) -> Plan:
    """Resolve a Query against the catalogue into a Plan."""
    return Planner(catalogue or _catalogue.Catalogue.load(), **kw).plan(query)


__all__ = ["Planner", "Plan", "Rel", "plan", "KqlError"]


def row_window(pl: Planner, node: s.Call, scope: Scope) -> Typed:
    """row_number(), prev(), next(), row_cumsum() over the serialized input's order."""
    N, L = exp.Literal.number, exp.Literal.string
    order = [o.copy() for o in scope.order] if scope.order else None
    over = exp.Window(this=None, order=exp.Order(expressions=order) if order else None)
    args = [pl.scalar(a, scope) for a in node.args]
    name = node.name
    if name == "row_number":
        start = args[0].sql if args else N(1)
        w = exp.Window(this=exp.RowNumber(), order=over.args.get("order"))
        if len(args) > 1:
            # restart: numbering starts again at each row where it is true. Helper columns, each one
            # SELECT below the other (the condition may hold windows itself: prev(g) != g): the
            # condition, the row's position, the position of the last restart so far (positions grow:
            # a running max); no PARTITION BY, which would lose the serialized order
            cond = to_bool(args[1], "the restart argument of row_number()")
            h = pl.fresh("__restart")
            scope.pre[h + "_at"] = cond.sql
            scope.pre[h + "_n"] = w
            scope.pre[h + "_from"] = exp.Window(
                this=exp.Max(this=exp.Case(ifs=[exp.If(this=exp.Coalesce(this=col(h + "_at"), expressions=[exp.false()]),
                                                      true=col(h + "_n"))])),
                order=over.args.get("order"),
                spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"))
            w = exp.Add(this=exp.Sub(this=col(h + "_n"), expression=exp.Coalesce(this=col(h + "_from"), expressions=[N(1)])),
                        expression=N(1))
        return Typed(cast(exp.Add(this=exp.Sub(this=w, expression=N(1)), expression=start), T.LONG), T.LONG, node.span)
    if name in ("prev", "next"):
        if not args:
            raise KqlSemanticError(f"{name}() needs a column", node.span, code="KQL_ARGUMENTS")
        offset = args[1].sql if len(args) > 1 else N(1)
        f = exp.Lag if name == "prev" else exp.Lead
        call_args = [args[0].sql, offset]
        if len(args) > 2:
            d, _, _ = unify(args[2], args[0], node.span, name)
            call_args.append(cast(d.sql, args[0].type) if args[0].type != T.DYNAMIC else d.sql)
        w = exp.Window(this=fn(f, *call_args), order=over.args.get("order"))
        e = w
        if args[0].type == T.STRING:
            e = exp.Coalesce(this=w, expressions=[L("")])
        return Typed(e, args[0].type, node.span)
    if name in ("row_cumsum", "row_rank_dense", "row_rank_min"):
        return running(pl, node, scope, args, over.args.get("order"))
    raise KqlSemanticError(f"unknown window function {name}()", node.span, code="KQL_UNKNOWN_FUNCTION")


def running(pl: Planner, node: s.Call, scope: Scope, args: list[Typed], order) -> Typed:
    """row_cumsum(), row_rank_dense(), row_rank_min() over the serialized order, each restarting at
    the rows where its second argument is true. Helper columns one SELECT below each other
    (``Scope.pre``): the term, the restart condition, the row's position, then running counts and
    maxima over the rows so far; the ranks follow runs of equal terms in that order (a term unlike
    the row before's starts a new rank), not a sort of the terms."""
    N = exp.Literal.number
    name = node.name
    if not args:
        raise KqlSemanticError(f"{name}() needs a term", node.span, code="KQL_ARGUMENTS")
    if len(args) > 2:
        raise KqlSemanticError(f"{name}() takes a term and an optional restart condition", node.args[2].span,
                               code="KQL_ARGUMENTS")
    term = args[0]
    if name == "row_cumsum" and term.type not in (*T.INTEGER, T.REAL, T.DECIMAL):
        type_error(f"row_cumsum() sums numbers, but this expression is {term.type}", term.span)
    h = pl.fresh("__run")
    so_far = dict(spec=exp.WindowSpec(kind="ROWS", start="UNBOUNDED", start_side="PRECEDING", end="CURRENT ROW"))

    def window(f, **kw):
        return exp.Window(this=f, order=order.copy() if order else None, **kw)

    def flag(c):
        return exp.Coalesce(this=col(c), expressions=[exp.false()])

    scope.pre[h + "_t"] = term.sql
    at = None
    if len(args) > 1:
        scope.pre[h + "_at"] = to_bool(args[1], f"the restart argument of {name}()").sql
        at = flag(h + "_at")
    scope.pre[h + "_n"] = window(exp.RowNumber())
    if name == "row_cumsum":
        rtype = T.LONG if term.type in T.INTEGER else term.type
        if at is None:
            return Typed(cast(window(exp.Sum(this=col(h + "_t")), **so_far), rtype), rtype, node.span)
        # the restarts so far number the partitions; within one the position orders the sum
        scope.pre[h + "_g"] = window(exp.Sum(this=exp.Case(ifs=[exp.If(this=at.copy(), true=N(1))], default=N(0))), **so_far)
        # (a SELECT of its own, put back in the serialized order when no sort gives it: DuckDB
        # returns a partitioned window's rows partition by partition)
        w = exp.Window(this=exp.Sum(this=col(h + "_t")), partition_by=[col(h + "_g")],
                       order=exp.Order(expressions=[exp.Ordered(this=col(h + "_n"))]), **so_far)
        if not order:
            w.meta["reorder"] = h + "_n"
        scope.pre[h + "_s"] = w
        return Typed(cast(col(h + "_s"), rtype), rtype, node.span)
    # a new run: the first row, a restart, or a term unlike the row before's (nulls alike)
    new_run = exp.or_(exp.EQ(this=col(h + "_n"), expression=N(1)),
                      exp.NullSafeNEQ(this=col(h + "_t"), expression=window(exp.Lag(this=col(h + "_t")))),
                      *([at.copy()] if at is not None else []))
    scope.pre[h + "_new"] = new_run
    if at is not None:
        scope.pre[h + "_from"] = window(exp.Max(this=exp.Case(ifs=[exp.If(this=at.copy(), true=col(h + "_n"))])), **so_far)
    if name == "row_rank_min":
        # the position of the run's first row, counted from the last restart
        scope.pre[h + "_run"] = window(exp.Max(this=exp.Case(ifs=[exp.If(this=flag(h + "_new"), true=col(h + "_n"))])),
                                       **so_far)
        base = col(h + "_from") if at is not None else None
    else:
        # the runs so far, counted from the last restart's
        scope.pre[h + "_run"] = window(exp.Sum(this=exp.Case(ifs=[exp.If(this=flag(h + "_new"), true=N(1))],
                                                            default=N(0))), **so_far)
        base = None
        if at is not None:
            scope.pre[h + "_base"] = window(exp.Max(this=exp.Case(ifs=[exp.If(this=at.copy(), true=col(h + "_run"))])),
                                            **so_far)
            base = col(h + "_base")
    e = col(h + "_run")
    if base is not None:
        e = exp.Add(this=exp.Sub(this=e, expression=exp.Coalesce(this=base, expressions=[N(1)])), expression=N(1))
    return Typed(cast(e, T.LONG), T.LONG, node.span)
