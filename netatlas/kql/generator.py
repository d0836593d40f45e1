"""Stage 4, generate: Plan -> SQL text for one dialect."""
from __future__ import annotations

from sqlglot import exp

from .dialects import DIALECTS
from .planner import Plan
from .typed import ident


def build(plan: Plan, *, max_rows: int | None = None) -> exp.Expression:
    """The final SQL tree: visible columns, the plan's order, the row cap, and the CTEs.

    Built with node constructors (the tree sqlglot's builders give, without their parsing and
    wrapping checks)."""
    rel = plan.rel
    args = {
        "expressions": [exp.Column(this=exp.Identifier(this=c, quoted=True)) for c, _ in rel.cols],
        "from_": exp.From(this=exp.Subquery(this=rel.sql, alias=exp.TableAlias(this=exp.Identifier(this="_result", quoted=False)))),
    }
    order = [e for o in rel.order or () for e in (o.expressions if isinstance(o, exp.Order) else (o,))]
    if order and not all(e.meta.get("natural") for e in order):   # a range's own order needs no sort
        args["order"] = exp.Order(expressions=order)
    if max_rows is not None:
        args["limit"] = exp.Limit(expression=exp.Literal.number(max_rows))
    if plan.ctes:
        args["with_"] = exp.With(expressions=[
            exp.CTE(this=body, alias=ident(name), materialized=materialized, scalar=None)
            for name, body, materialized in plan.ctes])
    return exp.Select(**args)


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
            elif type(value) is list and value:
                items = None  # a new list only when an item changes or has another parent
                for i, v in enumerate(value):
                    if isinstance(v, exp.Expression):
                        w = v.copy() if id(v) in seen else v
                        if tight and isinstance(w, _NEEDS_PARENS):
                            w = exp.Paren(this=w)
                        if items is None and (w is not v or v.parent is not node):
                            items = value[:i]
                        if items is not None:
                            items.append(w)
                        stack.append(w)
                    elif items is not None:
                        items.append(v)
                if items is not None:
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


def render(tree: exp.Expression, dialect: str = "duckdb", *, printer: str | None = None) -> str:
    """Any SQL tree (plan-time helper queries too) as text for a dialect.

    ``printer``: None picks the dialect's fast printer when it has one (DuckDB: printer.py),
    "sqlglot" forces sqlglot's generator; both give the same text."""
    d = DIALECTS[dialect]
    fast = _fast_printer(d, printer, False)
    if fast is not None:
        return fast(d.rewrite(tree.copy()) if d.functions else tree)
    return prepare(d.rewrite(tree.copy())).sql(dialect=d.sqlglot)


def generate(plan: Plan, dialect: str = "duckdb", *, max_rows: int | None = None, pretty: bool = False,
             printer: str | None = None) -> str:
    """The plan as SQL text. ``printer``: None prints with the dialect's fast printer when it has
    one (DuckDB: printer.py) and ``pretty`` is off; "sqlglot" prints with sqlglot's generator.
    For DuckDB both give the same text (tests/test_printer.py)."""
    d = DIALECTS[dialect]
    tree = d.rewrite(build(plan, max_rows=max_rows))
    fast = _fast_printer(d, printer, pretty)
    if fast is not None:
        return fast(tree)
    return prepare(tree).sql(dialect=d.sqlglot, pretty=pretty)


def _fast_printer(d, printer: str | None, pretty: bool):
    if printer == "sqlglot" or pretty:
        return None
    if printer not in (None, "fast"):
        raise ValueError(f"unknown printer {printer!r}: 'fast' or 'sqlglot'")
    if printer == "fast" and d.printer is None:
        raise ValueError(f"the {d.name} dialect has no fast printer")
    return d.printer
