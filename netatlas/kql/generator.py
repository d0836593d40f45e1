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


_NEEDS_PARENS = (exp.Binary, exp.Neg, exp.Not, exp.Between, exp.In, exp.Is)
_TIGHT_PARENTS = (exp.Binary, exp.Neg, exp.Not, exp.Cast, exp.TryCast, exp.Between)


def prepare(tree: exp.Expression) -> exp.Expression:
    """One pass over the tree before rendering.

    - A node that builders reused in two places gets a copy in the second, so each has one parent.
    - Nested operators get explicit parentheses: sqlglot prints trees as built, without
      precedence-driven parens.
    """
    seen: set[int] = set()
    stack = [tree]
    while stack:
        node = stack.pop()
        seen.add(id(node))
        tight = isinstance(node, _TIGHT_PARENTS)
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expression):
                child = _fix(node, key, value, seen, tight)
                if child is not None:
                    stack.append(child)
            elif isinstance(value, list) and any(isinstance(v, exp.Expression) for v in value):
                items = []
                for v in value:
                    if isinstance(v, exp.Expression):
                        if id(v) in seen:
                            v = v.copy()
                        if tight and isinstance(v, _NEEDS_PARENS):
                            v = exp.Paren(this=v)
                        items.append(v)
                        stack.append(v)
                    else:
                        items.append(v)
                node.set(key, items)
    return tree


def _fix(node, key, child, seen, tight):
    if id(child) in seen:
        child = child.copy()
        node.set(key, child)
    elif child.parent is not node:
        node.set(key, child)
    if tight and isinstance(child, _NEEDS_PARENS):
        paren = exp.Paren(this=child)
        node.set(key, paren)
    return child


def render(tree: exp.Expression, dialect: str = "duckdb") -> str:
    """Any SQL tree (plan-time helper queries too) as text for a dialect."""
    d = DIALECTS[dialect]
    return prepare(d.rewrite(tree.copy())).sql(dialect=d.sqlglot)


def generate(plan: Plan, dialect: str = "duckdb", *, max_rows: int | None = None, pretty: bool = False) -> str:
    d = DIALECTS[dialect]
    tree = prepare(d.rewrite(build(plan, max_rows=max_rows)))
    return tree.sql(dialect=d.sqlglot, pretty=pretty)
