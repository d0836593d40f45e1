"""The plan stage's product, and the tables the planner dispatches through.

``Plan`` is what ``Planner.plan`` returns and ``generator.py`` renders: the final ``Rel`` (a sqlglot
SELECT and the KQL schema of its output), the common table expressions, and the render
properties. ``Binding`` is a name of the ``let`` scope. ``OPERATORS`` (KQL operator name ->
function(planner, rel, operator node) -> Rel) and ``SOURCES`` (syntax node class -> function(planner,
node) -> Rel) are filled by operators.py when the package loads (kql/__init__.py imports it): the
planner reads them here, so it never imports the operators, which import it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp

OPERATORS: dict = {}
SOURCES: dict = {}
GRAPH_OPERATORS: set = set()      # operators that take a graph (graph.py fills it); no other does


@dataclass
class Rel:
    """A planned tabular expression: a SELECT and the KQL schema of its output."""
    sql: exp.Expression
    cols: list[tuple[str, str]]
    order: list[exp.Ordered] | None = None
    name: str | None = None           # a table's name, for union withsource and search $table
    serialized: bool = False
    # rebuild(needed column names) -> a cheaper Rel with at least those columns, when the operator
    # that made this one can drop work for columns nobody reads (arg_max(x, *) keeps whole rows)
    rebuild: object = None
    # what a join was made of (operators.JoinParts), for a summarize directly after it
    # (operators.eager_summarize); never carried by copy(): any other operator in between ends it
    join: object = None
    # columns known to hold no null: a table's columns that ingestion requires (ingest.REQUIRED,
    # TimeGenerated), carried through the operators that keep them as they are (where)
    notnull: frozenset = frozenset()
    # a datatable's rows as SQL literals (up to LITERAL_ROWS_MAX): `x in (T)` lists them instead of
    # reading T, so the store can filter its scan by them; carried where the rows stay the same
    literals: list | None = None

    @property
    def types(self) -> dict[str, str]:
        return dict(self.cols)

    def names(self) -> list[str]:
        return [c for c, _ in self.cols]

    def copy(self) -> "Rel":
        # The SQL tree is shared, not copied: operators only ever wrap a Rel's SQL in a new SELECT,
        # and the printer handles a subtree that appears in several places.
        return Rel(self.sql, list(self.cols), list(self.order) if self.order else self.order,
                   self.name, self.serialized, self.rebuild, notnull=self.notnull, literals=self.literals)


@dataclass
class Plan:
    rel: Rel
    ctes: list[tuple[str, exp.Expression, bool]]
    render: dict | None
    more: list = field(default_factory=list)     # the further results: (Rel, render) in order


@dataclass
class Binding:
    kind: str                 # scalar, table, function, cte
    value: object
    env: dict | None = None   # closure of a function
    size: int = 1             # SQL nodes of a scalar's value: each use copies them (planner steps)
