"""The KQL engine: text -> Tokens -> Query -> Plan -> SQL.

``compile(text)`` runs every stage and reports how long each took. With a ``deadline``
(limits.Deadline) every stage runs under the query's time limit: it is checked between the stages
and every few hundred planner steps, and past it ``compile`` raises QueryLimitError.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import KqlError, Span
from .operators import OPERATORS    # loading it fills plan.OPERATORS and plan.SOURCES
from . import mvapply  # noqa: E402,F401  (registers mv-apply, built on the operators)
from . import iplookup  # noqa: E402,F401  (registers the ipv4_lookup and ipv6_lookup plugins)
from . import pivot  # noqa: E402,F401  (registers the pivot and narrow plugins)
from . import graph  # noqa: E402,F401  (registers make-graph, graph-match, graph-to-table)
from .generator import generate
from .parser import parse
from .plan import Plan
from .planner import Planner
from .tokens import tokenize
from ..limits import DEFAULT_MAX_ROWS, Deadline


@dataclass
class Part:
    """A further result of a query of several tabular statements: its SQL and schema."""
    sql: str
    columns: list[str]
    types: list[str]
    render: dict | None


@dataclass
class Compiled:
    sql: str
    columns: list[str]
    types: list[str]
    render: dict | None
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)
    read_now: bool = False      # the SQL depends on now (now(), ago() were planned)
    ran_sql: bool = False       # planning read the data (a plugin's helper query)
    more: list[Part] = field(default_factory=list)  # the results of the statements after the first


def compile(text: str, catalogue=None, *, dialect: str = "duckdb", params: dict | None = None,
            now: datetime | None = None, executor=None, max_rows: int | None = None,
            timespan=None, deadline: Deadline | None = None) -> Compiled:
    """Compile KQL text to SQL for a dialect; raises KqlError pointing into the text, and
    QueryLimitError past the deadline."""
    from ..catalogue import Catalogue
    timings = {}
    check = deadline.check if deadline is not None else _no_deadline
    t0 = time.perf_counter()
    try:
        tokens = tokenize(text)
        check()
        t1 = time.perf_counter()
        query = parse(text, tokens)
        check()
        t2 = time.perf_counter()
        planner = Planner(catalogue or Catalogue.load(), now=now, params=params, executor=executor,
                          timespan=timespan, deadline=deadline, tokens=len(tokens), dialect=dialect)
        plan = planner.plan(query)
        check()
        t3 = time.perf_counter()
        if plan.more:
            # generate prunes the tree in place (the CTEs too), for its own result's columns: each
            # result is generated from its own copy of the plan
            more = [Part(generate(_copy(Plan(r, plan.ctes, rend)), dialect, max_rows=max_rows),
                         [c for c, _ in r.cols], [t for _, t in r.cols], rend) for r, rend in plan.more]
            sql = generate(_copy(Plan(plan.rel, plan.ctes, plan.render)), dialect, max_rows=max_rows)
        else:
            more = []
            sql = generate(plan, dialect, max_rows=max_rows)
        check()
        t4 = time.perf_counter()
    except KqlError as err:
        raise err.attach(text)
    except RecursionError:
        # the stages bound their own depth (limits.py); this is the last resort, never a traceback
        raise KqlError("the query is nested too deeply to compile", Span(0, len(text)), text=text,
                       code="KQL_QUERY_TOO_COMPLEX", hint="split it with let statements") from None
    timings.update(lex=t1 - t0, parse=t2 - t1, plan=t3 - t2, generate=t4 - t3)
    cols = plan.rel.cols
    return Compiled(sql, [c for c, _ in cols], [t for _, t in cols], plan.render, plan, timings,
                    planner.read_now, planner.ran_sql, more)


def _copy(plan: Plan) -> Plan:
    """The plan with its SQL trees copied (the result's and the CTEs'), for generate to prune."""
    rel = copy.copy(plan.rel)
    rel.sql = plan.rel.sql.copy()
    return Plan(rel, [(name, body.copy(), m) for name, body, m in plan.ctes], plan.render)


def _no_deadline() -> None:
    pass


__all__ = ["compile", "Compiled", "Part", "tokenize", "parse", "generate", "DEFAULT_MAX_ROWS", "OPERATORS", "Plan", "Planner"]
