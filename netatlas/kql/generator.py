"""Stage 4, generate: Plan -> SQL text for one dialect."""
from __future__ import annotations

from sqlglot import exp

from .dialects import DIALECTS
from .plan import Plan
from .prepare import prepare
from .prune import prune
from .typed import ident


PRUNE = True    # drop the columns nobody reads (prune.py); the tests compare answers with it off


def build(plan: Plan, *, max_rows: int | None = None) -> exp.Expression:
    """The final SQL tree: visible columns, the plan's order, the row cap, and the CTEs.

    Built with node constructors (the tree sqlglot's builders give, without their parsing and
    wrapping checks)."""
    rel = plan.rel
    columns = [exp.Column(this=exp.Identifier(this=c, quoted=True)) for c, _ in rel.cols]
    if _narrowable(rel.sql, columns):
        # the plan's last SELECT only picks columns: the row cap and the order go on it
        args = dict(rel.sql.args, expressions=columns)
    else:
        args = {
            "expressions": columns,
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
    root = exp.Select(**args)
    if PRUNE:
        prune(root)
    if root.args.get("with_") is not None:
        _inline_single_uses(root)
    return root


def _inline_single_uses(root: exp.Select) -> None:
    """A materialized CTE that the SQL reads once is left for the store to inline: materialize()
    computes a let once for all its uses, and with one use there is nothing to share (after
    pruning, a let's other uses may be gone). DuckDB then plans it with its reader: one pipeline
    less, its filters pushed in."""
    ctes = {cte.alias_or_name: cte for cte in root.args["with_"].expressions if cte.args.get("materialized")}
    if not ctes:
        return
    uses = dict.fromkeys(ctes, 0)
    for t in root.find_all(exp.Table):
        if t.name in uses and not t.args.get("db"):
            uses[t.name] += 1
    for name, n in uses.items():
        if n == 1:
            ctes[name].set("materialized", None)


def _narrowable(sql: exp.Expression, columns: list[exp.Column]) -> bool:
    """Whether the result's columns can be picked from ``sql``'s own SELECT list: it only picks
    columns (all of the result's), with no order, row limit, DISTINCT or WITH of its own."""
    if type(sql) is not exp.Select or any(sql.args.get(k) for k in ("order", "limit", "offset", "distinct", "with_")):
        return False
    have = set()
    for e in sql.expressions:
        if type(e) is not exp.Column or e.args.get("table") or type(e.this) is not exp.Identifier:
            return False
        have.add(e.name)
    return all(c.name in have for c in columns)


def render(tree: exp.Expression, dialect: str = "duckdb", *, printer: str | None = None) -> str:
    """Any SQL tree (plan-time helper queries too) as text for a dialect.

    ``printer``: None picks the dialect's fast printer when it has one (DuckDB: printer.py),
    "sqlglot" forces sqlglot's generator; both give the same text."""
    d = DIALECTS[dialect]
    fast = _fast_printer(d, printer, False)
    if fast is not None:
        return fast(d.rewrite(tree.copy(), spell=False) if d.functions or d.transforms else tree)
    return prepare(d.rewrite(prepare(tree.copy()))).sql(dialect=d.sqlglot)


def generate(plan: Plan, dialect: str = "duckdb", *, max_rows: int | None = None, pretty: bool = False,
             printer: str | None = None) -> str:
    """The plan as SQL text. ``printer``: None prints with the dialect's fast printer when it has
    one (DuckDB: printer.py) and ``pretty`` is off; "sqlglot" prints with sqlglot's generator.
    For DuckDB both give the same text (tests/test_printer.py)."""
    d = DIALECTS[dialect]
    tree = build(plan, max_rows=max_rows)
    fast = _fast_printer(d, printer, pretty)
    if fast is not None:
        return fast(d.rewrite(tree, spell=False))      # the fast printer spells the vocabulary
    # shared nodes copied (prepare) before the rewrite, so each place is rewritten
    rewritten = d.rewrite(prepare(tree.copy())) if d.functions or d.transforms or d.spellings else tree   # the plan's nodes untouched
    return prepare(rewritten).sql(dialect=d.sqlglot, pretty=pretty)


def _fast_printer(d, printer: str | None, pretty: bool):
    if printer == "sqlglot" or pretty:
        return None
    if printer not in (None, "fast"):
        raise ValueError(f"unknown printer {printer!r}: 'fast' or 'sqlglot'")
    if printer == "fast" and d.printer is None:
        raise ValueError(f"the {d.name} dialect has no fast printer")
    return d.printer
