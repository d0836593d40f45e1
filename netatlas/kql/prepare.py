"""The tree as sqlglot prints it: the one pass over a SQL tree before sqlglot renders it (the
generate stage's fallback, and the reference the fast printer is checked against)."""
from __future__ import annotations

from sqlglot import exp


_NEEDS_PARENS = (exp.Binary, exp.Neg, exp.Not, exp.Between, exp.In, exp.Is)
_TIGHT_PARENTS = (exp.Binary, exp.Neg, exp.Not, exp.Cast, exp.TryCast, exp.Between)


def needs_parens(node: exp.Expression) -> bool:
    """An operator nested in a tight parent is parenthesized; an operator sqlglot also knows as a
    function (``exp.RegexpLike``) is printed as a call by our dialects: it needs none, and its
    arguments none either (``is_tight``)."""
    return isinstance(node, _NEEDS_PARENS) and not is_call(node)


def is_tight(node: exp.Expression) -> bool:
    return isinstance(node, _TIGHT_PARENTS) and not is_call(node)


# operator classes sqlglot also knows as functions, which our dialects print as calls
CALLS = (exp.RegexpLike, exp.RegexpFullMatch)


def is_call(node: exp.Expression) -> bool:
    """An operator node printed as a call (``CALLS``)."""
    return isinstance(node, CALLS)


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
        tight = is_tight(node)
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
                        if tight and needs_parens(w):
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
    if tight and needs_parens(child):
        paren = exp.Paren(this=child)
        node.set(key, paren)
    return child
