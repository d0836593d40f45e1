"""A fast SQL printer for the sqlglot trees the planner builds (DuckDB text).

sqlglot's generator is general and costs ~5-10 µs per node; the planner only builds a few
dozen node kinds, always the same way. This module prints those kinds from a table
(node class -> small function) and gives the text sqlglot would give: for the same tree,
``to_sql(tree)`` equals ``generator.prepare(tree.copy()).sql(dialect="duckdb")`` character for
character, so the checked-in ``.duckdb.sql`` snapshots hold either way (tests/test_printer.py
compares the two over the golden corpus and the seed queries).

What ``generator.prepare`` does before sqlglot prints is folded in here, without touching the
tree: an operator nested directly in an operator, a cast or a BETWEEN (a "tight" parent) is
printed in parentheses. Sharing a node in two places needs nothing: the printer passes context
down and does not look at ``node.parent`` (but for a VALUES without an alias, as sqlglot does).

Each entry of ``_H`` names the argument keys its function knows. A node with any other
argument set (or with comments), and a node kind missing from the table, is printed by sqlglot
itself (``_fallback``: the subtree is copied, prepared and rendered by a fresh DuckDB generator),
so the output is always right; ``FALLBACKS`` counts those, and the tests assert the corpus needs
none. A function node sqlglot prints generically (``NAME(arg, ...)``, no dialect handler) is
printed the same generic way here.
"""
from __future__ import annotations

from collections import Counter

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect

from ...prepare import CALLS
from .spellings import SPELLINGS

DIALECT = "duckdb"
_DIALECT = Dialect.get_or_raise(DIALECT)
_GEN_CLS = _DIALECT.generator_class
RESERVED = frozenset(getattr(_GEN_CLS, "RESERVED_KEYWORDS", ()) or ())

# generator.prepare's parenthesization rule (kept identical to it)
NEEDS_PARENS = (exp.Binary, exp.Neg, exp.Not, exp.Between, exp.In, exp.Is)
TIGHT_PARENTS = (exp.Binary, exp.Neg, exp.Not, exp.Cast, exp.TryCast, exp.Between)

FALLBACKS: Counter = Counter()  # node class name -> how many subtrees sqlglot printed

_NEEDS: dict[type, bool] = {}
_QUOTED: dict[str, str] = {}
_DATATYPES: dict[tuple, str] = {}


def to_sql(tree: exp.Expression) -> str:
    """``tree`` as DuckDB SQL: the text sqlglot prints for ``prepare(tree)``."""
    return _sql(tree).strip()


# ---- dispatch -------------------------------------------------------------------------------

def _sql(node) -> str:
    entry = _H.get(node.__class__)
    if entry is not None:
        fn, known = entry
        if node.args.keys() <= known and not node.comments:
            return fn(node)
        return _unusual(node, fn, known)
    return _other(node)


def _t(node) -> str:
    """A child of a tight parent: parenthesized when it is an operator."""
    if node is None:
        return ""
    s = _sql(node)
    cls = node.__class__
    needs = _NEEDS.get(cls)
    if needs is None:
        needs = _NEEDS[cls] = issubclass(cls, NEEDS_PARENS) and not _is_call(cls)   # prepare.needs_parens
    return f"({s})" if needs else s


def _is_call(cls) -> bool:
    """An operator class printed as a call (``exp.RegexpLike``): no parentheses around it or its
    arguments (``prepare.is_call``)."""
    return issubclass(cls, CALLS)


def _s(value) -> str:
    """An argument that may be missing or a plain string (sqlglot's ``self.sql(value)``)."""
    if not value:
        return ""
    if isinstance(value, str):
        return value
    return _sql(value)


def _only(args: dict, known: frozenset) -> bool:
    """No argument outside ``known`` is set."""
    return args.keys() <= known or all(args[k] is None or args[k] == [] for k in args.keys() - known)


def _unusual(node, fn, known) -> str:
    if not node.comments and _only(node.args, known):
        return fn(node)
    return _fallback(node)


def _other(node) -> str:
    if node is None:
        return ""
    if isinstance(node, str):
        return node
    cls = node.__class__
    if _SQLGLOT_HANDLED is not None and issubclass(cls, exp.Func) and cls not in _SQLGLOT_HANDLED:
        # sqlglot's function_fallback_sql: NAME(args in arg_types order), bools and None skipped
        _H[cls] = (_generic_func(cls), frozenset(cls.arg_types))
        return _sql(node)
    return _fallback(node)


def _fallback(node) -> str:
    FALLBACKS[node.__class__.__name__] += 1
    return _sqlglot(node)


def _sqlglot(node) -> str:
    from ...prepare import prepare
    from . import DUCKDB
    return _DIALECT.generator().sql(prepare(DUCKDB.rewrite(prepare(node.copy()))))


def _generic_func(cls):
    name = cls.sql_name().upper()
    keys = tuple(cls.arg_types)
    arg = _t if issubclass(cls, TIGHT_PARENTS) and not _is_call(cls) else _sql   # prepare.is_tight

    def generic(node):
        a = node.args
        parts = []
        for k in keys:
            v = a.get(k)
            if v is None or v is True or v is False:
                continue
            if type(v) is list:
                parts.extend(arg(x) for x in v if x is not None and not isinstance(x, bool))
            else:
                parts.append(arg(v))
        return f"{name}({', '.join(parts)})"
    return generic


def _sqlglot_handled() -> frozenset | None:
    """The node classes DuckDB's generator has a handler for (the others print generically)."""
    try:
        return frozenset(_DIALECT.generator()._dispatch)
    except AttributeError:  # another sqlglot: print every unknown function through sqlglot
        return None


# ---- leaves ---------------------------------------------------------------------------------

def _identifier(node) -> str:
    a = node.args
    text = a.get("this") or ""
    if a.get("quoted"):
        out = _QUOTED.get(text)
        if out is None:
            if len(_QUOTED) > 50_000:
                _QUOTED.clear()
            out = _QUOTED[text] = '"' + text.replace('"', '""') + '"'
        return out
    text = text.replace('"', '""')
    if text.lower() in RESERVED or text[:1].isdigit():
        return f'"{text}"'
    return text


def _literal(node) -> str:
    a = node.args
    text = a.get("this") or ""
    if a.get("is_string"):
        return "'" + text.replace("'", "''") + "'"
    return text


def _column(node) -> str:
    a = node.args
    this = a.get("this")
    table = a.get("table")
    if not (a.get("db") or a.get("catalog")):
        if table:
            return f"{_sql(table)}.{_sql(this)}" if this else _sql(table)
        return _sql(this) if this else ""
    return ".".join(_sql(p) for p in (a.get("catalog"), a.get("db"), table, this) if p)


def _datatype(node) -> str:
    a = node.args
    this = a.get("this")
    key = None
    if isinstance(this, exp.DType) and not a.get("nested") and a.keys() <= _DATATYPE_KEYS:
        params = a.get("expressions")
        if not params:
            key = (this,)
        elif all(type(p) is exp.DataTypeParam and p.args.keys() <= _PARAM_KEYS and p.args.get("expression") is None
                 and type(p.args.get("this")) is exp.Literal and not p.comments for p in params):
            key = (this, *((p.this.this, p.this.args.get("is_string")) for p in params))
    if key is None:
        return _fallback(node)
    out = _DATATYPES.get(key)
    if out is None:
        if len(_DATATYPES) > 10_000:
            _DATATYPES.clear()
        out = _DATATYPES[key] = _sqlglot(node)
    return out


_DATATYPE_KEYS = frozenset({"this", "nested", "expressions"})
_PARAM_KEYS = frozenset({"this", "expression"})


def _star(node) -> str:
    return "*"


def _null(node) -> str:
    return "NULL"


def _boolean(node) -> str:
    return "TRUE" if node.args.get("this") else "FALSE"


def _var(node) -> str:
    return _s(node.args.get("this"))


# ---- scalar expressions ---------------------------------------------------------------------

def _binary(op: str):
    def binary(node):
        # a left-deep chain (a + b + c + ...) is printed in a loop: recursion would run out of stack
        chain = [(node, op)]
        left = node.args.get("this")
        while left is not None:
            cand = left
            if type(cand) is exp.Paren and not cand.comments and cand.args.keys() <= _PAREN_KEYS:
                cand = cand.args.get("this")   # (a + b) + c: the same one pair of parentheses
            entry = _H.get(cand.__class__) if cand is not None else None
            inner = getattr(entry[0], "op", None) if entry is not None else None
            if inner is None or not cand.args.keys() <= entry[1] or cand.comments:
                break
            chain.append((cand, inner))
            left = cand.args.get("this")
        s = _t(left)
        for i in range(len(chain) - 1, -1, -1):
            n, o = chain[i]
            s = f"{s} {o} {_t(n.args.get('expression'))}"
            if i:              # an operator inside an operator: parenthesized, as _t does
                s = f"({s})"
        return s
    binary.op = op
    return binary


def _negatable(op: str, negated: str):
    def binary(node):
        a = node.args
        return f"{_t(a.get('this'))} {negated if a.get('negate') else op} {_t(a.get('expression'))}"
    return binary


def _like(node) -> str:
    rhs = node.args.get("expression")
    if isinstance(rhs, (exp.All, exp.Any)):
        return _fallback(node)
    return _LIKE(node)


_LIKE = _negatable("LIKE", "NOT LIKE")


def _div(node) -> str:
    a = node.args
    if a.get("safe") or a.get("typed"):
        return _fallback(node)
    return f"{_t(a.get('this'))} / {_t(a.get('expression'))}"


def _bitwise(op: str):
    def bitwise(node):
        a = node.args
        this, other = a.get("this"), a.get("expression")
        if node._type is not None or (this is not None and this._type is not None) or \
                (other is not None and other._type is not None):
            return _fallback(node)
        return f"{_t(this)} {op} {_t(other)}"
    return bitwise


def _bitwise_xor(node) -> str:
    a = node.args
    this, other = a.get("this"), a.get("expression")
    if node._type is not None or (this is not None and this._type is not None) or \
            (other is not None and other._type is not None):
        return _fallback(node)
    return f"XOR({', '.join(_t(x) for x in (this, other) if x is not None)})"


def _bitwise_not(node) -> str:
    this = node.args.get("this")
    if node._type is not None or this._type is not None:
        return _fallback(node)
    s = _sql(this)
    return f"~({s})" if isinstance(this, exp.Neg) else f"~{s}"


def _paren(node) -> str:
    return f"({_sql(node.args['this'])})"


def _neg(node) -> str:
    s = _t(node.args.get("this"))
    return f"- {s}" if s[0] == "-" else f"-{s}"


def _not(node) -> str:
    return f"NOT {_t(node.args.get('this'))}"


def _cast(node) -> str:
    a = node.args
    to = _t(a.get("to"))
    return f"CAST({_t(a.get('this'))} AS{' ' + to if to else ''})"


def _try_cast(node) -> str:
    a = node.args
    to = _t(a.get("to"))
    return f"TRY_CAST({_t(a.get('this'))} AS{' ' + to if to else ''})"


def _alias(node) -> str:
    a = node.args
    alias = a.get("alias")
    alias = _sql(alias) if alias else ""
    return f"{_sql(a['this'])} AS {alias}" if alias else _sql(a["this"])


def _anonymous(node) -> str:
    a = node.args
    name = a.get("this")
    name = name if isinstance(name, str) else _s(name)
    name = SPELLINGS.get(name, name).upper()
    args = a.get("expressions")
    if not args:
        return f"{name}()"
    return f"{name}({', '.join(_sql(x) for x in args if x is not None and not isinstance(x, bool))})"


def _min_max(name: str):
    def agg(node):  # sqlglot's rename_func: every argument value in args order
        parts = []
        for v in node.args.values():
            if type(v) is list:
                parts.extend(_sql(x) for x in v if x is not None and not isinstance(x, bool))
            elif v is not None and not isinstance(v, bool):
                parts.append(_sql(v))
        return f"{name}({', '.join(parts)})"
    return agg


def _lower_upper(name: str):
    def case(node):
        this = node.args.get("this")
        if node._type is not None or (this is not None and this.type is not None):
            return _fallback(node)  # DuckDB's generator adds casts from type annotations
        return f"{name}({_s(this)})"
    return case


def _case(node) -> str:
    a = node.args
    this = a.get("this")
    out = [f"CASE {_sql(this)}" if this else "CASE"]
    for e in a.get("ifs") or ():
        b = e.args
        out.append(f"WHEN {_s(b.get('this'))}")
        out.append(f"THEN {_s(b.get('true'))}")
    default = a.get("default")
    if default:
        out.append(f"ELSE {_sql(default)}")
    out.append("END")
    return " ".join(out)


def _if(node) -> str:
    a = node.args
    false = a.get("false")
    false = f" ELSE {_sql(false)}" if false else ""
    return f"CASE WHEN {_s(a.get('this'))} THEN {_s(a.get('true'))}{false} END"


def _in(node) -> str:
    a = node.args
    query = a.get("query")
    if query:
        return f"{_s(a.get('this'))} IN {_sql(query)}"
    return f"{_s(a.get('this'))} IN ({', '.join(_sql(x) for x in a.get('expressions') or ())})"


def _between(node) -> str:
    a = node.args
    return f"{_t(a.get('this'))} BETWEEN {_t(a.get('low'))} AND {_t(a.get('high'))}"


def _distinct(node) -> str:
    a = node.args
    exprs = a.get("expressions")
    if exprs and len(exprs) > 1:
        return _fallback(node)  # DuckDB spells multi-argument DISTINCT with a CASE
    this = f" {_sql(exprs[0])}" if exprs else ""
    on = a.get("on")
    return f"DISTINCT{this} ON {_sql(on)}" if on else f"DISTINCT{this}"


def _filter(node) -> str:
    a = node.args
    this = a.get("this")
    if isinstance(this, exp.Corr):
        return _fallback(node)
    return f"{_s(this)} FILTER({_s(a.get('expression')).strip()})"


def _window(node) -> str:
    a = node.args
    this = a.get("this")
    if isinstance(this, exp.Corr) or (isinstance(this, exp.Filter) and isinstance(this.this, exp.Corr)):
        return _fallback(node)
    parts = []
    partition = a.get("partition_by")
    if partition:
        parts.append("PARTITION BY " + ", ".join(_sql(x) for x in partition))
    order = a.get("order")
    if order:
        if not _only(order.args, _ORDER_KEYS):
            return _fallback(node)
        parts.append(_order_flat(order))
    spec = a.get("spec")
    if spec:
        parts.append(_sql(spec))
    return f"{_s(this)} {_s(a.get('over')) or 'OVER'} ({' '.join(p for p in parts if p)})"


def _window_spec(node) -> str:
    a = node.args
    start = " ".join(x for x in (_s(a.get("start")), _s(a.get("start_side"))) if x)
    end = " ".join(x for x in (_s(a.get("end")), _s(a.get("end_side"))) if x) or "CURRENT ROW"
    return f"{_s(a.get('kind'))} BETWEEN {start} AND {end}"


def _interval(node) -> str:
    a = node.args
    unit = a.get("unit")
    unit = f" {_sql(unit)}" if unit else ""
    this = a.get("this")
    s = _sql(this) if this else ""
    if s:
        if not isinstance(this, (exp.Literal, exp.Paren)):
            s = f"({s})"
        s = f" {s}"
    return f"INTERVAL{s}{unit}"


def _lambda(node) -> str:
    a = node.args
    params = ", ".join(x for x in (_sql(p) for p in a.get("expressions") or ()) if x)
    return f"LAMBDA {params} : {_s(a.get('this'))}"


def _struct(node) -> str:
    items = node.args.get("expressions")
    if not items or not all(type(i) is exp.PropertyEQ and not i.comments and i.args.keys() <= _BINARY_KEYS
                            for i in items):
        return _fallback(node)
    out = []
    for item in items:
        b = item.args
        key = b.get("this")
        if isinstance(key, exp.Identifier):
            key = "'" + (key.args.get("this") or "").replace("'", "''") + "'"
        else:
            key = _t(key)
        out.append(f"{key}: {_t(b.get('expression'))}")
    return "{" + ", ".join(out) + "}"


def _exists(node) -> str:
    return f"EXISTS({_s(node.args.get('this'))})"


def _tuple(node) -> str:
    return "(" + ", ".join(_sql(x) for x in node.args.get("expressions") or ()) + ")"


def _array(node) -> str:
    return "[" + ", ".join(_sql(x) for x in node.args.get("expressions") or ()) + "]"


# ---- clauses and queries --------------------------------------------------------------------

_MODIFIER_KEYS = ("prewhere", "where", "group", "having", "qualify", "order", "limit", "offset")


def _modifiers(a: dict, out: list) -> None:
    """sqlglot's query_modifiers for the modifiers the table knows (others fall back)."""
    joins = a.get("joins")
    if joins:
        out.extend(_sql(j) for j in joins)
    laterals = a.get("laterals")
    if laterals:
        out.extend(_sql(x) for x in laterals)
    for k in _MODIFIER_KEYS:
        v = a.get(k)
        if v:
            out.append(_sql(v))


def _with_prefix(a: dict, sql: str) -> str:
    with_ = a.get("with_")
    if with_:
        with_ = _sql(with_)
        if with_:
            return f"{with_} {sql}"
    return sql


def _select(node) -> str:
    if _unprintable_select(node):
        return _fallback(node)
    # SELECT ... FROM (SELECT ... FROM (...)) nests once per operator of a pipeline: the chain is
    # printed in a loop (heads outside-in, then tails inside-out), not by recursion
    heads, tails = [], []
    while True:
        a = node.args
        out = ["SELECT"]
        distinct = a.get("distinct")
        if distinct:
            out.append(" " + _sql(distinct))
        exprs = a.get("expressions")
        if exprs:
            out.append(" " + ", ".join([_sql(e) for e in exprs]))
        frm = a.get("from_")
        inner = _chained_select(frm)
        if inner is None:
            if frm:
                out.append(_sql(frm))
            _modifiers(a, out)
            heads.append(_with_prefix(a, "".join(out)))
            break
        sub = frm.args["this"]
        alias = sub.args.get("alias")
        alias = _sql(alias) if alias else ""
        out.append(" FROM (")
        heads.append(_with_prefix(a, "".join(out)))
        tail = [")" + (" AS " + alias if alias else "")]
        _modifiers(a, tail)
        tails.append("".join(tail))
        node = inner
    return "".join(heads) + "".join(reversed(tails))


def _unprintable_select(node) -> bool:
    a = node.args
    frm = a.get("from_")
    limit = a.get("limit")
    return (frm is not None and isinstance(frm.args.get("this"), exp.TableFromRows)) or \
        (limit is not None and not isinstance(limit, exp.Limit))


def _chained_select(frm):
    """The SELECT of ``FROM (SELECT ...) AS alias`` when _sql would print each part with the plain
    functions of _H (nothing else set, no comments); else None."""
    if frm is None or frm.comments or not frm.args.keys() <= _FROM_KEYS:
        return None
    sub = frm.args.get("this")
    if type(sub) is not exp.Subquery or sub.comments or \
            any(v for k, v in sub.args.items() if k not in ("this", "alias")):
        return None
    inner = sub.args.get("this")
    if type(inner) is not exp.Select or inner.comments or not inner.args.keys() <= _SELECT_KEYS or \
            _unprintable_select(inner):
        return None
    return inner


def _subquery(node) -> str:
    a = node.args
    limit = a.get("limit")
    if limit is not None and not isinstance(limit, exp.Limit):
        return _fallback(node)
    alias = a.get("alias")
    alias = _sql(alias) if alias else ""
    out = [f"({_s(a.get('this'))})"]
    if alias:
        out.append(" AS " + alias)
    _modifiers(a, out)
    return _with_prefix(a, "".join(out))


def _union(node) -> str:
    a = node.args
    limit = a.get("limit")
    if limit is not None and not isinstance(limit, exp.Limit):
        return _fallback(node)
    sqls = []
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, exp.SetOperation):
            if type(n) is not exp.Union or (n is not node and (n.comments or not _only(n.args, _NESTED_UNION_KEYS))):
                return _fallback(node)
            b = n.args
            left = b.get("this")
            if isinstance(left, exp.Subquery) and left.is_wrapper and isinstance(left.this, exp.SetOperation):
                return _fallback(node)
            distinct = b.get("distinct")
            stack.append(b.get("expression"))
            stack.append("UNION" if distinct is None or distinct else "UNION ALL")
            stack.append(left)
        elif isinstance(n, str):
            sqls.append(n)
        else:
            if isinstance(n, exp.Select) and n.args.get("limit"):
                return _fallback(node)  # DuckDB wraps a limited operand
            sqls.append(_s(n))
    out = [" ".join(sqls)]
    _modifiers(a, out)
    return _with_prefix(a, "".join(out))


def _values(node) -> str:
    a = node.args
    alias = a.get("alias")
    alias = _sql(alias) if alias else ""
    rows = ", ".join(_sql(x) for x in a.get("expressions") or ())
    values = f"VALUES {rows}"
    if alias or isinstance(node.parent, (exp.From, exp.Table)):
        values = f"({values})"
    return f"{values} AS {alias}" if alias else values


def _table_alias(node) -> str:
    a = node.args
    this = a.get("this")
    if not this:
        return _fallback(node)  # sqlglot invents a name
    cols = a.get("columns")
    if cols:
        return f"{_sql(this)}({', '.join(x for x in (_sql(c) for c in cols) if x)})"
    return _sql(this)


def _table(node) -> str:
    a = node.args
    name = ".".join(_sql(p) for p in (a.get("catalog"), a.get("db"), a.get("this")) if p is not None)
    alias = a.get("alias")
    alias = _sql(alias) if alias else ""
    return f"{name} AS {alias}" if alias else name


def _from(node) -> str:
    return f" FROM {_s(node.args.get('this'))}"


def _join(node) -> str:
    a = node.args
    on = a.get("on")
    kind = node.kind
    side = node.side
    this = a.get("this")
    if kind in ("MARK", "SINGLE", "SEMI", "ANTI") or isinstance(this, (exp.Unnest, exp.Lateral)):
        return _fallback(node)
    if not on and kind in ("", "INNER", "OUTER"):
        side = kind = ""  # DuckDB's generator drops them: a comma join
    op = " ".join(x for x in (side, kind) if x)
    if on:
        return f" {op + ' JOIN' if op else 'JOIN'} {_s(this)} ON {_sql(on)}"
    if not op:
        return f", {_s(this)}"
    return f" {op} JOIN {_s(this)}"


def _where(node) -> str:
    return f" WHERE {_s(node.args.get('this'))}"


def _having(node) -> str:
    return f" HAVING {_s(node.args.get('this'))}"


def _qualify(node) -> str:
    return f" QUALIFY {_s(node.args.get('this'))}"


def _group(node) -> str:
    exprs = node.args.get("expressions")
    if not exprs:
        return " GROUP BY"
    return " GROUP BY " + ", ".join(_sql(e) for e in exprs)


def _order(node) -> str:
    a = node.args
    if a.get("this"):
        return _order_flat(node)
    exprs = a.get("expressions")
    if not exprs:
        return " ORDER BY"
    return " ORDER BY " + ", ".join(_sql(e) for e in exprs)


def _order_flat(node) -> str:
    a = node.args
    this = a.get("this")
    this = f"{_sql(this)} " if this else ""
    exprs = ", ".join(x for x in (_sql(e) for e in a.get("expressions") or ()) if x)
    return f"{this}ORDER BY {exprs}"


def _ordered(node) -> str:
    a = node.args
    desc = a.get("desc")
    order = " DESC" if desc else (" ASC" if desc is False else "")
    # DuckDB sorts NULLs last either way: sqlglot spells out only NULLS FIRST
    nulls = " NULLS FIRST" if a.get("nulls_first") else ""
    return f"{_s(a.get('this'))}{order}{nulls}"


def _limit(node) -> str:
    a = node.args
    args = ", ".join(_sql(e) for e in (a.get("offset"), a.get("expression")) if e)
    return f" LIMIT {args}"


def _offset(node) -> str:
    return f" OFFSET {_s(node.args.get('expression'))}"


def _cte(node) -> str:
    a = node.args
    materialized = a.get("materialized")
    materialized = "NOT MATERIALIZED " if materialized is False else ("MATERIALIZED " if materialized else "")
    return f"{_s(a.get('alias'))} AS {materialized}({_s(a.get('this'))})"


def _with(node) -> str:
    a = node.args
    ctes = ", ".join(x for x in (_sql(c) for c in a.get("expressions") or ()) if x)
    if not ctes:
        return ""
    return f"WITH RECURSIVE {ctes}" if a.get("recursive") else f"WITH {ctes}"


# ---- the table ------------------------------------------------------------------------------

def _keys(*names: str) -> frozenset:
    return frozenset(names)


_BINARY_KEYS = _keys("this", "expression")
_ORDER_KEYS = _keys("this", "expressions")
_QUERY_KEYS = ("joins", "laterals", *_MODIFIER_KEYS, "with_")
_UNION_KEYS = _keys("this", "expression", "distinct", *_QUERY_KEYS)
_NESTED_UNION_KEYS = _keys("this", "expression", "distinct")

_BINARY_OPS = {
    exp.EQ: "=", exp.NEQ: "<>", exp.GT: ">", exp.GTE: ">=", exp.LT: "<", exp.LTE: "<=",
    exp.Add: "+", exp.Sub: "-", exp.Mul: "*", exp.IntDiv: "//", exp.Mod: "%",
    exp.And: "AND", exp.Or: "OR", exp.PropertyEQ: ":=",
    exp.NullSafeEQ: "IS NOT DISTINCT FROM", exp.NullSafeNEQ: "IS DISTINCT FROM",
}

_FROM_KEYS = _keys("this")
_PAREN_KEYS = _keys("this")
_SELECT_KEYS = _keys("expressions", "from_", "distinct", *_QUERY_KEYS)

_H: dict[type, tuple] = {
    exp.Identifier: (_identifier, _keys("this", "quoted", "global_", "temporary")),
    exp.Literal: (_literal, _keys("this", "is_string")),
    exp.Column: (_column, _keys("this", "table", "db", "catalog", "shadow")),
    exp.DataType: (_datatype, _keys("this", "nested", "expressions", "values", "kind", "nullable", "collate")),
    exp.Star: (_star, _keys()),
    exp.Null: (_null, _keys()),
    exp.Boolean: (_boolean, _keys("this")),
    exp.Var: (_var, _keys("this")),
    exp.Paren: (_paren, _keys("this")),
    exp.Neg: (_neg, _keys("this")),
    exp.Not: (_not, _keys("this")),
    exp.Cast: (_cast, _keys("this", "to", "safe")),
    exp.TryCast: (_try_cast, _keys("this", "to", "safe")),
    exp.Alias: (_alias, _keys("this", "alias")),
    exp.Anonymous: (_anonymous, _keys("this", "expressions")),
    exp.Max: (_min_max("MAX"), _keys("this", "expressions", "count")),
    exp.Min: (_min_max("MIN"), _keys("this", "expressions", "count")),
    exp.Lower: (_lower_upper("LOWER"), _keys("this")),
    exp.Upper: (_lower_upper("UPPER"), _keys("this")),
    exp.Case: (_case, _keys("this", "ifs", "default")),
    exp.If: (_if, _keys("this", "true", "false")),
    exp.In: (_in, _keys("this", "expressions", "query")),
    exp.Between: (_between, _keys("this", "low", "high")),
    exp.Is: (_negatable("IS", "IS NOT"), _keys("this", "expression", "negate")),
    exp.Like: (_like, _keys("this", "expression", "negate")),
    exp.ILike: (_negatable("ILIKE", "NOT ILIKE"), _BINARY_KEYS),
    exp.Div: (_div, _keys("this", "expression", "safe", "typed")),
    exp.DPipe: (_binary("||"), _keys("this", "expression", "safe")),
    exp.BitwiseAnd: (_bitwise("&"), _BINARY_KEYS),
    exp.BitwiseOr: (_bitwise("|"), _BINARY_KEYS),
    exp.BitwiseLeftShift: (_bitwise("<<"), _BINARY_KEYS),
    exp.BitwiseRightShift: (_bitwise(">>"), _BINARY_KEYS),
    exp.BitwiseXor: (_bitwise_xor, _BINARY_KEYS),
    exp.BitwiseNot: (_bitwise_not, _keys("this")),
    exp.Distinct: (_distinct, _keys("expressions", "on")),
    exp.Filter: (_filter, _keys("this", "expression")),
    exp.Window: (_window, _keys("this", "partition_by", "order", "spec", "over")),
    exp.WindowSpec: (_window_spec, _keys("kind", "start", "start_side", "end", "end_side")),
    exp.Interval: (_interval, _keys("this", "unit")),
    exp.Lambda: (_lambda, _keys("this", "expressions")),
    exp.Struct: (_struct, _keys("expressions")),
    exp.Exists: (_exists, _keys("this")),
    exp.Tuple: (_tuple, _keys("expressions")),
    exp.Array: (_array, _keys("expressions")),
    exp.Select: (_select, _SELECT_KEYS),
    exp.Subquery: (_subquery, _keys("this", "alias", *_QUERY_KEYS)),
    exp.Union: (_union, _UNION_KEYS),
    exp.Values: (_values, _keys("expressions", "alias")),
    exp.TableAlias: (_table_alias, _keys("this", "columns")),
    exp.Table: (_table, _keys("this", "db", "catalog", "alias")),
    exp.From: (_from, _FROM_KEYS),
    exp.Join: (_join, _keys("this", "on", "side", "kind")),
    exp.Where: (_where, _keys("this")),
    exp.Having: (_having, _keys("this")),
    exp.Qualify: (_qualify, _keys("this")),
    exp.Group: (_group, _keys("expressions")),
    exp.Order: (_order, _keys("this", "expressions")),
    exp.Ordered: (_ordered, _keys("this", "desc", "nulls_first")),
    exp.Limit: (_limit, _keys("expression", "offset")),
    exp.Offset: (_offset, _keys("expression")),
    exp.CTE: (_cte, _keys("this", "alias", "materialized", "scalar")),
    exp.With: (_with, _keys("expressions", "recursive")),
}
for _cls, _op in _BINARY_OPS.items():
    _H[_cls] = (_binary(_op), _BINARY_KEYS)


# ---- typed function nodes DuckDB's generator spells its own way ---------------------------------
# (the others print generically, ``_generic_func``). Each: DuckDB's name, the argument keys printed
# in order, and the flags the planner sets, which the plain call needs (True, or a literal's text):
# a node without them is printed by sqlglot. A key in ``omit`` is left out when it holds that
# literal (sqlglot drops DuckDB's default).

def _call(name: str, keys: tuple, omit: dict | None = None, **flags):
    omit = omit or {}

    def call(node) -> str:
        a = node.args
        for k, want in flags.items():
            v = a.get(k)
            if not (v is True if want is True else isinstance(v, exp.Literal) and v.name == want):
                return _fallback(node)
        parts = []
        for k in keys:
            v = a.get(k)
            if v is None or (k in omit and isinstance(v, exp.Literal) and v.name == omit[k]):
                continue
            if type(v) is list:
                parts.extend(_sql(x) for x in v)
            else:
                parts.append(_sql(v))
        return f"{name}({', '.join(parts)})"
    return call, frozenset(keys) | frozenset(flags)


CALL_SPELLINGS = {
    exp.AnyValue: ("ANY_VALUE", ("this",)),
    exp.ArrayConcat: ("LIST_CONCAT", ("this", "expressions")),
    exp.ArrayDistinct: ("LIST_DISTINCT", ("this",)),
    exp.ArrayToString: ("ARRAY_TO_STRING", ("this", "expression")),
    exp.Ceil: ("CEIL", ("this",)),
    exp.ConcatWs: ("CONCAT_WS", ("expressions",), None, {"safe": True, "coalesce": True}),
    exp.DateBin: ("TIME_BUCKET", ("this", "expression")),
    exp.DayOfWeek: ("DAYOFWEEK", ("this",)),
    exp.DayOfYear: ("DAYOFYEAR", ("this",)),
    exp.Decode: ("DECODE", ("this",)),
    exp.Encode: ("ENCODE", ("this",)),
    exp.Explode: ("UNNEST", ("this",)),
    exp.Floor: ("FLOOR", ("this",)),
    exp.GenerateSeries: ("GENERATE_SERIES", ("start", "end", "step")),
    exp.Greatest: ("GREATEST", ("this", "expressions"), None, {"ignore_nulls": True}),
    exp.IsInf: ("ISINF", ("this",)),
    exp.IsNan: ("ISNAN", ("this",)),
    exp.JSONArray: ("JSON_ARRAY", ("expressions",)),
    exp.Least: ("LEAST", ("this", "expressions"), None, {"ignore_nulls": True}),
    exp.Length: ("LENGTH", ("this",)),
    exp.PercentileDisc: ("QUANTILE_DISC", ("this", "expression")),
    exp.Rand: ("RANDOM", ()),
    exp.RegexpExtract: ("REGEXP_EXTRACT", ("this", "expression", "group"), {"group": "0"},
                        {"null_if_pos_overflow": True}),
    exp.RegexpExtractAll: ("REGEXP_EXTRACT_ALL", ("this", "expression", "group"), {"group": "0"}),
    exp.RegexpLike: ("REGEXP_MATCHES", ("this", "expression")),
    exp.RegexpReplace: ("REGEXP_REPLACE", ("this", "expression", "replacement", "modifiers")),
    exp.Replace: ("REPLACE", ("this", "expression", "replacement")),
    exp.Reverse: ("REVERSE", ("this",)),
    exp.Round: ("ROUND", ("this", "decimals")),
    exp.SHA: ("SHA1", ("this",)),
    exp.SHA2: ("SHA256", ("this",), None, {"length": "256"}),
    exp.StartsWith: ("STARTS_WITH", ("this", "expression")),
    exp.StrPosition: ("STRPOS", ("this", "substr")),
    exp.Substring: ("SUBSTRING", ("this", "start", "length")),
    exp.TimeToStr: ("STRFTIME", ("this", "format")),
    exp.TimeToUnix: ("EPOCH", ("this",)),
    exp.TimestampFromParts: ("MAKE_TIMESTAMP", ("year", "month", "day", "hour", "min", "sec")),
    exp.Transform: ("LIST_TRANSFORM", ("this", "expression")),
    exp.Trim: ("TRIM", ("this",)),
    exp.Trunc: ("TRUNC", ("this",)),
    exp.Try: ("TRY", ("this",)),
    exp.UnixToTime: ("MAKE_TIMESTAMP", ("this",), None, {"scale": "6"}),
    exp.VariancePop: ("VAR_POP", ("this",)),
    exp.WeekOfYear: ("WEEKOFYEAR", ("this",)),
}
for _cls, (_name, _keys_, *_rest) in CALL_SPELLINGS.items():
    _omit, _flags = (_rest + [None, None])[:2]
    _H[_cls] = _call(_name, _keys_, _omit, **(_flags or {}))

_SQLGLOT_HANDLED = _sqlglot_handled()
