"""The KQL engine: text -> Tokens -> Query -> Plan -> SQL.

``compile(text)`` runs every stage and reports how long each took. With a ``deadline``
(limits.Deadline) every stage runs under the query's time limit: it is checked between the stages
and every few hundred planner steps, and past it ``compile`` raises QueryLimitError.
"""
from __future__ import annotations

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
class Compiled:
    sql: str
    columns: list[str]
    types: list[str]
    render: dict | None
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)
    read_now: bool = False      # the SQL depends on now (now(), ago() were planned)
    ran_sql: bool = False       # planning read the data (a plugin's helper query)


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
                    planner.read_now, planner.ran_sql)


def _no_deadline() -> None:
    pass


__all__ = ["compile", "Compiled", "tokenize", "parse", "generate", "DEFAULT_MAX_ROWS", "OPERATORS", "Plan", "Planner"]
