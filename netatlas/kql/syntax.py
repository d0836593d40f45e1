"""The product of the parse stage: the Query syntax tree.

Scalar and tabular expressions share one tree: a name may be a column, a scalar `let` or a
table, and only the planner, which knows the catalogue and the scope, decides which. Every
node carries the span of the text it came from.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..errors import Span


@dataclass(slots=True)
class Node:
    span: Span


# ---- scalar (or ambiguous) expressions ----------------------------------------------------

@dataclass(slots=True)
class Literal(Node):
    value: Any
    type: str          # KQL type name; value None means a typed null


@dataclass(slots=True)
class Name(Node):
    name: str


@dataclass(slots=True)
class Star(Node):
    pass


@dataclass(slots=True)
class Member(Node):          # x.name
    target: Node
    name: str


@dataclass(slots=True)
class Index(Node):           # x[expr]
    target: Node
    index: Node


@dataclass(slots=True)
class Call(Node):            # f(args)
    name: str
    args: list[Node]
    name_span: Span


@dataclass(slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node
    op_span: Span


@dataclass(slots=True)
class InList(Node):          # x in (a, b) / x in (tabular)
    op: str                  # in, !in, in~, !in~, has_any, has_all
    left: Node
    items: list[Node]


@dataclass(slots=True)
class Between(Node):
    negated: bool
    left: Node
    low: Node
    high: Node


@dataclass(slots=True)
class TypeOf(Node):          # typeof(long) in mv-expand / parse
    type: str


# ---- tabular expressions -------------------------------------------------------------------

@dataclass(slots=True)
class Pipe(Node):
    source: Node
    op: "Operator"


@dataclass(slots=True)
class Datatable(Node):
    columns: list[tuple[str, str]]
    values: list[Node]


@dataclass(slots=True)
class RangeSource(Node):
    column: str
    start: Node
    stop: Node
    step: Node


@dataclass(slots=True)
class PrintSource(Node):
    items: list["Assign"]


@dataclass(slots=True)
class UnionSource(Node):
    params: dict
    tables: list[Node]


@dataclass(slots=True)
class SearchSource(Node):
    params: dict
    tables: list[Node] | None
    predicate: Node


@dataclass(slots=True)
class Assign(Node):          # [Name =] expr ; names may be a tuple for (a, b) = f()
    names: list[str] | None
    expr: Node


@dataclass(slots=True)
class SortKey(Node):
    expr: Node
    desc: bool
    nulls_first: bool | None


@dataclass(slots=True)
class Operator(Node):
    name: str                # canonical operator name: where, project, summarize, ...
    args: dict = field(default_factory=dict)


# ---- statements ----------------------------------------------------------------------------

@dataclass(slots=True)
class Param(Node):
    name: str
    type: str | None         # a scalar type name, or None for a tabular parameter
    columns: list[tuple[str, str]] | None
    default: Node | None


@dataclass(slots=True)
class FunctionDef(Node):
    params: list[Param]
    body: list["Statement"]  # lets then one expression


@dataclass(slots=True)
class Let(Node):
    name: str
    value: Node              # an expression, or FunctionDef


@dataclass(slots=True)
class DeclareParams(Node):
    params: list[Param]


@dataclass(slots=True)
class Set(Node):
    name: str
    value: Node | None


@dataclass(slots=True)
class ExprStatement(Node):
    expr: Node


Statement = Let | DeclareParams | Set | ExprStatement


@dataclass(slots=True)
class Query(Node):
    statements: list[Statement]
