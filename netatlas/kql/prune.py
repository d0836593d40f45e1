"""Generate's pruning pass: the columns nobody reads dropped from every SELECT under the result.

The planner carries whole rows through lets, ``materialize()`` and joins (``arg_max(TimeGenerated, *)``
keeps every column; a materialized let is planned before its uses are known). DuckDB drops unread
columns inside one query, but not out of a materialized CTE, which it computes whole: the seed's
"outbound dependencies" query materialized all 46 columns of VMConnection where 11 are read.

The pass walks the SQL tree from the result down, parents before children (the tree shares
subtrees: a SELECT used in several places is pruned once, for all of them), and gives each
SELECT the set of its output columns that its readers name. A SELECT keeps only those, plus any
its own clauses name (DuckDB and ClickHouse let WHERE, GROUP BY, QUALIFY and ORDER BY name the
SELECT list's aliases). Whatever cannot be read by name keeps every column: a reader with ``*``, a
row used as a value, a UNION (by position), a subquery inside an expression, a table alias
naming its columns, and SELECTs with DISTINCT, GROUP BY ALL or ordinal references. An item of a
set-returning function (mv-expand's UNNEST) stays whether read or not: it makes the rows. The demand
is over-counted rather than under-counted: a qualified name whose qualifier is no source is
counted as a column of every source (a struct's field), and columns inside nested subqueries are
counted for the SELECT around them.
"""
from __future__ import annotations

from sqlglot import exp

ALL = None     # every column is read


def prune(root: exp.Select) -> None:
    """Drop the unread columns of every SELECT under ``root`` (not root's own: they are the result).
    Changes the tree in place, once for every place a shared SELECT appears."""
    ctes = {}
    with_ = root.args.get("with_")
    if with_ is not None:
        for cte in with_.expressions:
            ctes[cte.alias_or_name] = cte.this
    order = _topological(root, ctes)
    if with_ is not None:       # a CTE nothing reads any more (a datatable listed by `in`): gone
        reached = {id(n) for n in order}
        kept = [cte for cte in with_.expressions if id(cte.this) in reached]
        if len(kept) != len(with_.expressions):
            if kept:
                with_.set("expressions", kept)
            else:
                root.set("with_", None)
    demand: dict[int, set | None] = {id(root): ALL}
    for node in order:
        want = demand.get(id(node), ALL)
        if isinstance(node, exp.Select):
            if node is not root and want is not ALL:
                _narrow(node, want)
            for child, need in _reads(node, ctes, want):
                _add(demand, child, need)
        else:   # a UNION, EXCEPT or INTERSECT: its sides by position
            for child in _query_children(node, ctes):
                _add(demand, child, ALL)


def _add(demand: dict, node: exp.Expression, need) -> None:
    key = id(node)
    if key in demand and demand[key] is ALL:
        return
    if need is ALL:
        demand[key] = ALL
    else:
        demand.setdefault(key, set()).update(need)


def _topological(root: exp.Expression, ctes: dict) -> list[exp.Expression]:
    """Every query node under root (and the CTEs it names), each after all its readers."""
    seen, post = set(), []
    stack = [(root, False)]
    while stack:
        node, done = stack.pop()
        if done:
            post.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        children = ([c for c, _ in _reads(node, ctes)] if isinstance(node, exp.Select)
                    else _query_children(node, ctes))
        for child in children:
            if id(child) not in seen:
                stack.append((child, False))
    return post[::-1]


def _query_children(node: exp.Expression, ctes: dict) -> list[exp.Expression]:
    """A set operation's sides (and anything else that is not a SELECT: all of its queries)."""
    out = []
    for side in (node.this, node.args.get("expression")) if isinstance(node, exp.SetOperation) else ():
        if isinstance(side, exp.Subquery):
            side = side.this
        if isinstance(side, exp.Query):
            out.append(side)
        elif isinstance(side, exp.Table) and side.name in ctes and not side.args.get("db"):
            out.append(ctes[side.name])
    return out


def _sources(sel: exp.Select, ctes: dict) -> list[tuple[str, exp.Expression | None, bool]]:
    """The SELECT's FROM and JOIN sources: (alias, the query it reads or None, named columns)."""
    out = []
    items = []
    if (f := sel.args.get("from_")) is not None:
        items.append(f.this)
    items += [j.this for j in sel.args.get("joins") or ()]
    for src in items:
        alias = src.alias_or_name
        ta = src.args.get("alias")
        renamed = bool(ta is not None and ta.args.get("columns"))
        if isinstance(src, exp.Subquery) and isinstance(src.this, exp.Query):
            out.append((alias, src.this, renamed))
        elif isinstance(src, exp.Table) and src.name in ctes and not src.args.get("db"):
            out.append((alias, ctes[src.name], renamed))
        else:
            out.append((alias, None, renamed))
    return out


def _reads(sel: exp.Select, ctes: dict, want: set | None = ALL) -> list[tuple[exp.Expression, set | None]]:
    """(query, the columns of it this SELECT reads) for every query this SELECT reads from, given
    ``want``, the columns of this SELECT its readers read: a ``*`` (or ``alias.*``) in its list
    reads from its source what is wanted of this SELECT and not made by its other items."""
    sources = _sources(sel, ctes)
    aliases = {a for a, _, _ in sources}
    named: dict[str, set] = {a: set() for a in aliases}
    loose: set = set()           # unqualified names: any source's
    whole: set = set()           # aliases read whole
    everything = False
    nested: list[exp.Expression] = []

    # the SELECT list's stars: what they give is what is wanted and not made here
    stack: list[tuple[exp.Expression, exp.Expression | None]] = []
    made = set()
    starred: set = set()        # aliases whose star gives what is wanted
    for item in sel.expressions:
        if isinstance(item, exp.Star) and not item.args.get("except") and not item.args.get("replace") \
                and not item.args.get("rename") and len(sources) == 1:
            starred.add(sources[0][0])
        elif isinstance(item, exp.Column) and isinstance(item.this, exp.Star) and item.table in aliases \
                and not item.this.args.get("except") and not item.this.args.get("replace"):
            starred.add(item.table)
        else:
            if not isinstance(item, exp.Star):
                made.add(item.alias_or_name)
            stack.append((item, sel))
    if starred and want is not ALL and not sel.args.get("distinct") and not sel.args.get("group"):
        # (DISTINCT and GROUP BY make their rows of every column the star gives)
        for a in starred:
            named[a].update(want - made)
    elif starred:
        whole.update(starred)
    stack += [(clause, sel) for clause in _clauses(sel)]
    # iterative: a chain of 500 terms is 500 levels deep
    while stack:
        node, parent = stack.pop()
        if isinstance(node, exp.Query) and node is not sel:
            nested.append(node)
        if isinstance(node, exp.Star):
            if not isinstance(parent, exp.Count):
                everything = True
            continue
        if isinstance(node, exp.Column):
            parts = [p.name for p in node.parts]
            if isinstance(node.this, exp.Star):
                if node.table in aliases:
                    whole.add(node.table)
                else:
                    everything = True
                continue
            if node.table and node.table in aliases and len(parts) == 2:
                named[node.table].add(node.name)
            else:
                loose.update(parts)
                whole.update(p for p in parts if p in aliases)      # a row used as a value
            continue
        if isinstance(node, exp.Anonymous) and node.name.upper() == "COLUMNS":
            everything = True
        for value in node.args.values():
            for child in value if isinstance(value, list) else (value,):
                if isinstance(child, exp.Expression):
                    stack.append((child, node))

    out = []
    for alias, query, renamed in sources:
        if query is None:
            continue
        if everything or renamed or alias in whole:
            out.append((query, ALL))
        else:
            out.append((query, named[alias] | loose))
    out += [(q, ALL) for q in nested]
    return out


def _clauses(sel: exp.Select) -> list[exp.Expression]:
    """The SELECT's parts besides its list, its WITH and its sources: WHERE, GROUP BY, HAVING,
    QUALIFY, ORDER BY, LIMIT ..., and each join's condition (not the joined source)."""
    out = []
    for key, value in sel.args.items():
        if key in ("expressions", "with_", "from_"):
            continue
        for v in value if isinstance(value, list) else (value,):
            if not isinstance(v, exp.Expression):
                continue
            if key == "joins":
                out += [x for k, x in v.args.items() if k != "this" and isinstance(x, exp.Expression)]
            else:
                out.append(v)
    return out


def _narrow(sel: exp.Select, want: set) -> None:
    """Keep the SELECT list's columns in ``want`` or named by its own clauses."""
    if sel.args.get("distinct") or _positional(sel):
        return
    items = sel.expressions
    names = []
    for e in items:     # a * keeps what it gives (its readers' demand on the source is every column)
        star = isinstance(e, exp.Star) or (isinstance(e, exp.Column) and isinstance(e.this, exp.Star))
        names.append(None if star else e.alias_or_name)
    own = {c.name for clause in _clauses(sel) for c in clause.find_all(exp.Column)}
    keep = [e for e, n in zip(items, names) if n is None or n in want or n in own or multiplies(e)]
    if len(keep) == len(items):
        return
    if not keep:
        keep = items[:1]
    sel.set("expressions", keep)


# Set-returning functions in a SELECT list make one row per element (mv-expand's UNNEST, ClickHouse's
# arrayJoin): an item of one changes the row count even when nobody reads its column.
SET_RETURNING = (exp.Unnest, exp.Explode, exp.Posexplode)


def multiplies(e: exp.Expression) -> bool:
    return e.find(*SET_RETURNING) is not None


def _positional(sel: exp.Select) -> bool:
    """GROUP BY ALL, ORDER BY ALL, or a clause naming a SELECT item by its position."""
    for key in ("group", "order"):
        clause = sel.args.get(key)
        if clause is None:
            continue
        if clause.args.get("all"):
            return True
        for e in clause.expressions:
            e = e.this if isinstance(e, exp.Ordered) else e
            if isinstance(e, exp.Literal) and e.is_int:
                return True
            if isinstance(e, exp.Column) and e.name.upper() == "ALL" and not e.args.get("quoted"):
                return True
    return False
