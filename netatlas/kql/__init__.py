"""The KQL engine: text -> Tokens -> Query -> Plan -> SQL.

``compile(text)`` runs every stage and reports how long each took.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime

from ..errors import KqlError
from .generator import generate
from .parser import parse
from .planner import Plan, Planner
from .tokens import tokenize
from ..limits import DEFAULT_MAX_ROWS


@dataclass
class Compiled:
    sql: str
    columns: list[str]
    types: list[str]
    render: dict | None
    plan: Plan
    timings: dict[str, float] = field(default_factory=dict)


def compile(text: str, catalogue=None, *, dialect: str = "duckdb", params: dict | None = None,
            now: datetime | None = None, executor=None, max_rows: int | None = None,
            timespan=None) -> Compiled:
    """Compile KQL text to SQL for a dialect; raises KqlError pointing into the text."""
    from ..catalogue import Catalogue
    timings = {}
    t0 = time.perf_counter()
    try:
        tokens = tokenize(text)
        t1 = time.perf_counter()
        query = parse(text, tokens)
        t2 = time.perf_counter()
        plan = Planner(catalogue or Catalogue.load(), now=now, params=params, executor=executor,
                       timespan=timespan).plan(query)
        t3 = time.perf_counter()
        sql = generate(plan, dialect, max_rows=max_rows)
        t4 = time.perf_counter()
    except KqlError as err:
        raise err.attach(text)
    timings.update(lex=t1 - t0, parse=t2 - t1, plan=t3 - t2, generate=t4 - t3)
    cols = plan.rel.cols
    return Compiled(sql, [c for c, _ in cols], [t for _, t in cols], plan.render, plan, timings)


__all__ = ["compile", "Compiled", "tokenize", "parse", "generate", "DEFAULT_MAX_ROWS"]
