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


def parenthesize(tree: exp.Expression) -> exp.Expression:
    """Make operator nesting explicit: sqlglot prints the tree as built, without precedence parens."""
    for node in list(tree.walk()):
        parent = node.parent
        if isinstance(node, (exp.Binary, exp.Neg, exp.Not, exp.Between, exp.In, exp.Is)) and \
                isinstance(parent, (exp.Binary, exp.Neg, exp.Not, exp.Cast, exp.TryCast, exp.Between)) and \
                not isinstance(node, exp.Paren):
            paren = exp.Paren()
            node.replace(paren)
            paren.set("this", node)
    return tree


def render(tree: exp.Expression, dialect: str = "duckdb") -> str:
    """Any SQL tree (plan-time helper queries too) as text for a dialect."""
    d = DIALECTS[dialect]
    return parenthesize(d.rewrite(tree.copy())).sql(dialect=d.sqlglot)


def generate(plan: Plan, dialect: str = "duckdb", *, max_rows: int | None = None, pretty: bool = False) -> str:
    d = DIALECTS[dialect]
    # copy() also un-shares nodes a builder used twice, so each has one parent
    tree = parenthesize(d.rewrite(build(plan, max_rows=max_rows).copy()))
    return tree.sql(dialect=d.sqlglot, pretty=pretty)
