"""Stage 4, generate: Plan -> SQL text for one dialect."""
from __future__ import annotations

from sqlglot import exp

from .dialects import DIALECTS
from .planner import Plan
from .typed import col, ident


def build(plan: Plan, *, max_rows: int | None = None) -> exp.Expression:
    """The final SQL tree: visible columns, the plan's order, the row cap, and the CTEs."""
    rel = plan.rel
    sel = exp.Select(expressions=[col(c) for c, _ in rel.cols]).from_(rel.sql.subquery("_result", copy=False), copy=False)
    if rel.order:
        sel = sel.order_by(*rel.order, copy=False)
    if max_rows is not None:
        sel = sel.limit(exp.Literal.number(max_rows), copy=False)
    for name, body, materialized in plan.ctes:
        sel = sel.with_(ident(name), as_=body, materialized=materialized, copy=False)
    return sel


def generate(plan: Plan, dialect: str = "duckdb", *, max_rows: int | None = None, pretty: bool = False) -> str:
    d = DIALECTS[dialect]
    tree = d.rewrite(build(plan, max_rows=max_rows))
    return tree.sql(dialect=d.sqlglot, pretty=pretty)
