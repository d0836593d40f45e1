"""DuckDB: the embedded default store. The planner's SQL is already DuckDB's; nothing to rewrite.

Its text comes from the fast printer (netatlas/kql/printer.py), which prints what sqlglot would.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from sqlglot import exp

from ...printer import to_sql


@dataclass(frozen=True)
class Dialect:
    name: str
    sqlglot: str
    # function name -> rewrite of an Anonymous call with that name
    functions: dict[str, Callable[[exp.Anonymous], exp.Expression]] = field(default_factory=dict)
    # a fast printer giving the same text as sqlglot's generator for the planner's trees
    # (``generator.prepare`` applied), or None to print with sqlglot
    printer: Callable[[exp.Expression], str] | None = None

    def rewrite(self, tree: exp.Expression) -> exp.Expression:
        if not self.functions:
            return tree

        def visit(node):
            if isinstance(node, exp.Anonymous):
                f = self.functions.get(node.name.lower())
                if f:
                    return f(node)
            return node
        return tree.transform(visit, copy=False)


DUCKDB = Dialect("duckdb", "duckdb", printer=to_sql)
