"""What a dialect is, as data: how the plan's SQL tree becomes one store's SQL text.

The planner builds one SQL tree per query (sqlglot nodes; functions sqlglot has no node for are
``exp.Anonymous`` calls named in the planner's vocabulary, ``typed.fn``). A dialect turns that
tree into its store's text in one pass and one print:

- ``functions``: an ``Anonymous`` call's name -> a rewrite of the call (a store that spells or
  shapes a function differently; a name missing here is printed as written);
- ``transforms``: a sqlglot node class -> a rewrite of nodes of that class (types, literals,
  operators whose meaning differs in the store), tried along the class's bases;
- ``sqlglot``: the sqlglot dialect that prints the rewritten tree, or ``printer``, a fast printer
  of our own that gives the same text (DuckDB);
- ``runtime``: the helper functions the store installs so the SQL may call them (DuckDB: macros
  and Python functions; ClickHouse: SQL functions), read by the store's module (``store/``);
- ``flags``: small facts the generate stage asks (e.g. whether a CTE may be ``MATERIALIZED``).

A rewrite returns the node to print instead (or the node itself); rewrites see children already
rewritten, so they compose bottom-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlglot import exp

Rewrite = Callable[[exp.Expression], exp.Expression]


@dataclass(frozen=True)
class Dialect:
    name: str
    sqlglot: str
    functions: dict[str, Rewrite] = field(default_factory=dict)
    transforms: dict[type, Rewrite] = field(default_factory=dict)
    printer: Callable[[exp.Expression], str] | None = None
    runtime: Any = None
    flags: dict[str, Any] = field(default_factory=dict)
    # an Anonymous call no rewrite names becomes sqlglot's typed node for it, as sqlglot's parser
    # of this dialect would build it (``typed_node``), so sqlglot prints the store's spelling
    typed_from: str | None = None

    def rewrite(self, tree: exp.Expression) -> exp.Expression:
        """The tree with this dialect's rewrites applied (in place; the caller copies)."""
        if not self.functions and not self.transforms:
            return tree
        functions, transforms, typed_from = self.functions, self.transforms, self.typed_from
        cache: dict[type, Rewrite | None] = {}

        def by_class(cls):
            if cls not in cache:
                cache[cls] = next((transforms[c] for c in cls.__mro__ if c in transforms), None)
            return cache[cls]

        def visit(node):
            if type(node) is exp.Anonymous:
                f = functions.get(node.name.lower())
                if f is not None:
                    return f(node)
                if typed_from is not None:
                    return typed_node(node, typed_from)
            t = by_class(type(node))
            return t(node) if t is not None else node

        unshare(tree)
        for node in reversed(list(tree.dfs())):      # children first: a rewrite sees them rewritten
            new = visit(node)
            if new is not node:
                if node is tree:
                    tree = new
                else:
                    node.replace(new)
        return tree


def unshare(tree: exp.Expression) -> None:
    """Give every place of the tree a node of its own: the planner reuses a node in several places
    (a bin in SELECT and GROUP BY), and a rewrite in place must reach each of them."""
    seen = {id(tree)}
    stack = [tree]
    while stack:
        node = stack.pop()
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expression):
                if id(value) in seen:
                    value = value.copy()
                if value.parent is not node or value.arg_key != key:
                    node.set(key, value)
                seen.add(id(value))
                stack.append(value)
            elif type(value) is list:
                for i, v in enumerate(value):
                    if isinstance(v, exp.Expression):
                        if id(v) in seen:
                            v = v.copy()
                            node.set(key, v, index=i)
                        elif v.parent is not node:
                            node.set(key, v, index=i)
                        seen.add(id(v))
                        stack.append(v)


def typed_node(node: exp.Anonymous, dialect: str) -> exp.Expression:
    """The typed sqlglot node sqlglot's parser of ``dialect`` builds for a call of this name with
    these arguments (``regexp_matches(x, p)`` -> ``exp.RegexpLike``), or the call unchanged."""
    from sqlglot.dialects.dialect import Dialect as SqlglotDialect
    d = SqlglotDialect.get_or_raise(dialect)
    builder = d.parser_class.FUNCTIONS.get(node.name.upper())
    if builder is None:
        return node
    arguments = list(node.expressions)
    try:
        built = builder(arguments, d) if builder.__code__.co_argcount - hasattr(builder, "__self__") >= 2 else builder(arguments)
    except Exception:           # a builder that wants another shape: print the call as written
        return node
    return built


def args(node: exp.Expression) -> list[exp.Expression]:
    """The arguments of a call (an Anonymous node's expressions)."""
    return list(node.expressions)


def call(name: str, *arguments: exp.Expression) -> exp.Expression:
    """A store function called by name in the store's own spelling (used by dialect modules)."""
    return exp.Anonymous(this=name, expressions=list(arguments))


def rename(name: str) -> Rewrite:
    """A rewrite that calls another function with the same arguments."""
    return lambda node: call(name, *args(node))


__all__ = ["Dialect", "Rewrite", "args", "call", "rename"]
