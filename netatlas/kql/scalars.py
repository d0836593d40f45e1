"""Plan stage, scalar half: syntax-tree expressions -> Typed SQL fragments.

Operators are tables: ARITHMETIC by (op, left type, right type), STRING_OPS by operator name.
Type errors are raised here, pointing at the operator or operand.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from sqlglot import exp

from ..errors import KqlSemanticError, Span, did_you_mean
from . import syntax as s
from . import types as T
from .typed import NOCONST, Typed, cast, col, const, fn, null, sql_literal


@dataclass
class Scope:
    """The row a scalar expression sees: its columns and their types."""
    columns: dict[str, str] = field(default_factory=dict)
    table: str | None = None        # qualifier for column references (joins)
    order: list | None = None       # the row order, for row_number(), prev(), next()
    inline: dict = field(default_factory=dict)   # columns defined earlier in the same extend: name -> Typed
    # helper columns the operator computes on its input first (name -> SQL): window functions that
    # windows of its own expressions partition by (row_number(1, restart): the restart's segment)
    pre: dict = field(default_factory=dict)

    def ref(self, name: str) -> exp.Expression:
        return col(name, self.table)


def type_error(message: str, span: Span | None, hint: str | None = None):
    raise KqlSemanticError(message, span, code="KQL_TYPE", hint=hint)


# ---- conversions ---------------------------------------------------------------------------

def to_string(t: Typed) -> Typed:
    """Kusto's tostring(): never null, empty for null."""
    if t.type == T.STRING:
        return t
    if t.is_const and t.const is None:
        return Typed(exp.Literal.string(""), T.STRING, t.span, "")
    e = t.sql
    conv = {
        T.LONG: lambda: cast(e, T.STRING), T.INT: lambda: cast(e, T.STRING),
        T.REAL: lambda: fn("netatlas_real_str", e),
        T.DECIMAL: lambda: cast(e, T.STRING),
        T.BOOL: lambda: exp.If(this=e, true=exp.Literal.string("true"), false=exp.Literal.string("false")),
        T.DATETIME: lambda: fn("netatlas_datetime_str", e),
        T.TIMESPAN: lambda: fn("netatlas_timespan_str", e),
        T.GUID: lambda: cast(e, T.STRING),
        T.DYNAMIC: lambda: fn("netatlas_dynamic_str", e),
    }[t.type]()
    return Typed(exp.Coalesce(this=conv, expressions=[exp.Literal.string("")]), T.STRING, t.span)


def dynamic_to(t: Typed, typ: str) -> Typed:
    """A dynamic value read as a scalar type (null when it does not convert)."""
    if typ == T.STRING:
        return to_string(t)
    if typ == T.DYNAMIC:
        return t
    if typ == T.BOOL:
        return t.with_sql(exp.TryCast(this=fn("json_text_at", t.sql, exp.Literal.string("$")),
                                      to=T.storage(T.BOOL)), typ)
    if typ == T.DATETIME:
        return t.with_sql(exp.TryCast(this=fn("json_text_at", t.sql, exp.Literal.string("$")),
                                      to=T.storage(T.DATETIME)), typ)
    return t.with_sql(exp.TryCast(this=t.sql, to=T.storage(typ)), typ)


def to_dynamic(t: Typed) -> Typed:
    if t.type == T.DYNAMIC:
        return t
    if t.is_const:
        value = t.const
        if value is not None and t.type in (T.DATETIME, T.TIMESPAN, T.GUID):
            value = to_string(t).const if to_string(t).is_const else str(value)
        return const(value, T.DYNAMIC, t.span)
    if t.type == T.STRING:
        return t.with_sql(fn("as_json", t.sql), T.DYNAMIC)
    if t.type in (T.DATETIME, T.TIMESPAN, T.GUID):      # their text; a null stays a JSON null, not ""
        return t.with_sql(exp.Case(ifs=[exp.If(this=exp.Is(this=t.sql, expression=exp.null()), true=exp.null())],
                                   default=fn("as_json", to_string(t).sql)), T.DYNAMIC)
    return t.with_sql(fn("as_json", t.sql), T.DYNAMIC)


def to_real(t: Typed) -> Typed:
    if t.type == T.REAL:
        return t
    if t.type == T.DYNAMIC:
        return dynamic_to(t, T.REAL)
    return t.with_sql(cast(t.sql, T.REAL), T.REAL)


def to_bool(t: Typed, what: str = "a condition") -> Typed:
    if t.type == T.BOOL:
        return t
    if t.type == T.DYNAMIC:
        return dynamic_to(t, T.BOOL)
    type_error(f"{what} must be bool, but this expression is {t.type}", t.span,
               hint="compare it with ==, or use isnotempty() / isnotnull()")


# Kusto compares a number with a string literal as numbers (workbooks' multi-select parameters
# arrive quoted: where Port in ('443', '80')); a literal that is no number matches nothing
IMPLICIT_NUMBER_COMPARISONS = {"compare (==)", "compare (!=)", "compare (in)", "compare (!in)", "compare (<>)"}
_WHOLE = re.compile(r"\s*[+-]?\d+\s*")


def number_literal(t: Typed) -> Typed:
    """A string literal's number: a long for whole numbers, else a real; NaN when it is none (it
    equals no number, and differs from every one)."""
    text = t.const
    if isinstance(text, str) and _WHOLE.fullmatch(text) and -2**63 <= int(text) < 2**63:
        return const(int(text), T.LONG, t.span)
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    return const(value, T.REAL, t.span)


def unify(a: Typed, b: Typed, span: Span | None, what: str) -> tuple[Typed, Typed, str]:
    """Bring two operands to a common type for comparison or coalescing."""
    if a.type == b.type:
        return a, b, a.type
    if (p := T.promote(a.type, b.type)):
        return a, b, p
    # a typed null literal adopts the other side's type
    if a.is_const and a.const is None:
        return null(b.type), b, b.type
    if b.is_const and b.const is None:
        return a, null(a.type), a.type
    if a.type == T.DYNAMIC:
        return dynamic_to(a, b.type), b, b.type
    if b.type == T.DYNAMIC:
        return a, dynamic_to(b, a.type), a.type
    if what in IMPLICIT_NUMBER_COMPARISONS:
        if a.type in T.NUMERIC and b.type == T.STRING and b.is_const:
            n = number_literal(b)
            return a, n, T.promote(a.type, n.type) or a.type
        if b.type in T.NUMERIC and a.type == T.STRING and a.is_const:
            n = number_literal(a)
            return n, b, T.promote(n.type, b.type) or b.type
    if {a.type, b.type} == {T.GUID, T.STRING}:
        return (a if a.type == T.STRING else to_string(a)), (b if b.type == T.STRING else to_string(b)), T.STRING
    if {a.type, b.type} == {T.DATETIME, T.TIMESPAN}:
        type_error(f"cannot {what} {a.type} and {b.type}", span,
                   hint="a point in time is ago(1h) or now() - 1h, not 1h")
    type_error(f"cannot {what} {a.type} and {b.type}", span, hint=f"convert one side, e.g. to{b.type}(...)")


# ---- arithmetic ----------------------------------------------------------------------------

def _epoch_ticks(e):  # datetime -> ticks since 1970
    return exp.Mul(this=fn("epoch_microseconds", e), expression=exp.Literal.number(10))


def _add_span(dt, ticks, sign=1):
    interval = fn("microseconds", exp.IntDiv(this=ticks, expression=exp.Literal.number(10)))
    return exp.Add(this=dt, expression=interval) if sign > 0 else exp.Sub(this=dt, expression=interval)


def _num(op):
    def build(a: Typed, b: Typed, rtype: str):
        if op == "/" and rtype in T.INTEGER:
            return exp.IntDiv(this=a.sql, expression=b.sql)
        if op == "/" and rtype == T.REAL:
            return exp.Div(this=to_real(a).sql, expression=b.sql, typed=False, safe=False)
        cls = {"+": exp.Add, "-": exp.Sub, "*": exp.Mul, "/": exp.Div, "%": exp.Mod}[op]
        return cls(this=a.sql, expression=b.sql)
    return build


_TS_ARITH = {
    ("-", T.DATETIME, T.DATETIME): (T.TIMESPAN, lambda a, b: exp.Sub(this=_epoch_ticks(a.sql), expression=_epoch_ticks(b.sql))),
    ("+", T.DATETIME, T.TIMESPAN): (T.DATETIME, lambda a, b: _add_span(a.sql, b.sql)),
    ("-", T.DATETIME, T.TIMESPAN): (T.DATETIME, lambda a, b: _add_span(a.sql, b.sql, -1)),
    ("+", T.TIMESPAN, T.DATETIME): (T.DATETIME, lambda a, b: _add_span(b.sql, a.sql)),
    ("+", T.TIMESPAN, T.TIMESPAN): (T.TIMESPAN, lambda a, b: exp.Add(this=a.sql, expression=b.sql)),
    ("-", T.TIMESPAN, T.TIMESPAN): (T.TIMESPAN, lambda a, b: exp.Sub(this=a.sql, expression=b.sql)),
    ("%", T.TIMESPAN, T.TIMESPAN): (T.TIMESPAN, lambda a, b: exp.Mod(this=a.sql, expression=b.sql)),
    ("/", T.TIMESPAN, T.TIMESPAN): (T.REAL, lambda a, b: exp.Div(this=cast(a.sql, T.REAL), expression=b.sql, typed=False, safe=False)),
}
for _n in T.NUMERIC:
    _TS_ARITH[("*", T.TIMESPAN, _n)] = (T.TIMESPAN, lambda a, b: cast(fn(exp.Round, exp.Mul(this=a.sql, expression=b.sql)), T.LONG))
    _TS_ARITH[("*", _n, T.TIMESPAN)] = (T.TIMESPAN, lambda a, b: cast(fn(exp.Round, exp.Mul(this=a.sql, expression=b.sql)), T.LONG))
    _TS_ARITH[("/", T.TIMESPAN, _n)] = (T.TIMESPAN, lambda a, b: cast(fn(exp.Round, exp.Div(this=cast(a.sql, T.REAL), expression=b.sql, typed=False, safe=False)), T.LONG))


def arithmetic(op: str, a: Typed, b: Typed, span: Span) -> Typed:
    if a.type == T.DYNAMIC:
        a = dynamic_to(a, T.REAL if b.type not in T.INTEGER else T.LONG)
    if b.type == T.DYNAMIC:
        b = dynamic_to(b, T.REAL if a.type not in T.INTEGER else T.LONG)
    if (p := T.promote(a.type, b.type)):
        return Typed(exp.Paren(this=_num(op)(a, b, p)), p, span)
    hit = _TS_ARITH.get((op, a.type, b.type))
    if hit:
        rtype, build = hit
        return Typed(exp.Paren(this=build(a, b)), rtype, span)
    if a.is_const and a.const is None:
        return null(b.type if b.type != T.DATETIME or op != "-" else T.TIMESPAN)
    if b.is_const and b.const is None:
        return null(a.type)
    hint = "use strcat() to join strings" if op == "+" and T.STRING in (a.type, b.type) else None
    type_error(f"operator '{op}' cannot be applied to {a.type} and {b.type}", span, hint)


# ---- string operators ----------------------------------------------------------------------

def _lower(e):
    return exp.Lower(this=e)


def _like_escape(s_: str) -> str:
    return s_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _term_regex(term: str) -> str:
    body = re.escape(term)
    pre = r"(^|[^[:alnum:]])" if term[:1].isalnum() else ""
    post = r"($|[^[:alnum:]])" if term[-1:].isalnum() else ""
    return pre + body + post


def _has(a: Typed, b: Typed, cs: bool, kind: str) -> exp.Expression:
    """has / hasprefix / hassuffix: term matching."""
    if b.is_const and isinstance(b.const, str):
        term = b.const if cs else b.const.lower()
        if term == "":
            return exp.true()
        if kind == "has":
            pat = _term_regex(term)
        elif kind == "hasprefix":
            pat = (r"(^|[^[:alnum:]])" if term[:1].isalnum() else "") + re.escape(term)
        else:
            pat = re.escape(term) + (r"($|[^[:alnum:]])" if term[-1:].isalnum() else "")
        lhs = a.sql if cs else _lower(a.sql)
        pre = fn(exp.Contains, lhs, exp.Literal.string(term))
        return exp.And(this=pre, expression=fn(exp.RegexpLike, lhs, exp.Literal.string(pat)))
    # non-constant term: build the pattern in SQL
    term = b.sql if cs else _lower(b.sql)
    esc = fn("regex_quote", term)
    alnum = r"(^|[^[:alnum:]])", r"($|[^[:alnum:]])"
    pieces = {"has": (alnum[0], alnum[1]), "hasprefix": (alnum[0], ""), "hassuffix": ("", alnum[1])}[kind]
    pat = exp.DPipe(this=exp.DPipe(this=exp.Literal.string(pieces[0]), expression=esc), expression=exp.Literal.string(pieces[1]))
    return fn(exp.RegexpLike, a.sql if cs else _lower(a.sql), pat)


def _contains(a, b, cs):
    return fn(exp.Contains, a.sql if cs else _lower(a.sql), b.sql if cs else _lower(b.sql))


def _starts(a, b, cs):
    return fn(exp.StartsWith, a.sql if cs else _lower(a.sql), b.sql if cs else _lower(b.sql))


def _ends(a, b, cs):
    return fn("ends_with", a.sql if cs else _lower(a.sql), b.sql if cs else _lower(b.sql))


def _eq_ci(a, b, cs):
    return exp.EQ(this=_lower(a.sql), expression=_lower(b.sql))


def _like(a, b, cs):
    return exp.Like(this=a.sql, expression=b.sql)


# name -> (builder(a, b, case_sensitive), case_sensitive)
STRING_OPS = {
    "contains": (_contains, False), "contains_cs": (_contains, True),
    "has": (lambda a, b, cs: _has(a, b, cs, "has"), False),
    "has_cs": (lambda a, b, cs: _has(a, b, cs, "has"), True),
    "hasprefix": (lambda a, b, cs: _has(a, b, cs, "hasprefix"), False),
    "hasprefix_cs": (lambda a, b, cs: _has(a, b, cs, "hasprefix"), True),
    "hassuffix": (lambda a, b, cs: _has(a, b, cs, "hassuffix"), False),
    "hassuffix_cs": (lambda a, b, cs: _has(a, b, cs, "hassuffix"), True),
    "startswith": (_starts, False), "startswith_cs": (_starts, True),
    "endswith": (_ends, False), "endswith_cs": (_ends, True),
    "=~": (_eq_ci, False), "like": (_like, True),
}


# Case-insensitive operators whose right side, a constant, has no letter with a case (ASCII digits,
# dots, colons: '127.', ':443'): matching it ignoring case is matching it as it is, without lowering
# the left side of every row.
CASE_FREE = {"contains": _contains, "startswith": _starts, "endswith": _ends,
             "=~": lambda a, b, cs: exp.EQ(this=a.sql, expression=b.sql)}


def _caseless(b: Typed) -> bool:
    return b.is_const and isinstance(b.const, str) and b.const.isascii() and not any(c.isalpha() for c in b.const)


def string_op(op: str, a: Typed, b: Typed, span: Span) -> Typed:
    negated = op.startswith("!") and op not in ("!=",)
    name = op[1:] if negated else op
    if op == "!~":
        negated, name = True, "=~"
    build, cs = STRING_OPS[name]
    a, b = to_string(a), to_string(b)
    if not cs and name in CASE_FREE and _caseless(b):
        build, cs = CASE_FREE[name], True
    e = build(a, b, cs)
    if negated:
        e = exp.Not(this=exp.Paren(this=e))
    return Typed(exp.Paren(this=e), T.BOOL, span)


# Kusto: null != 5 is true (and null == 5 false), hence IS DISTINCT FROM for !=
COMPARISONS = {"==": exp.EQ, "!=": exp.NullSafeNEQ, "<": exp.LT, "<=": exp.LTE, ">": exp.GT, ">=": exp.GTE}


def comparison(op: str, a: Typed, b: Typed, span: Span) -> Typed:
    a2, b2, typ = unify(a, b, span, f"compare ({op})")
    cls = exp.NEQ if op == "!=" and typ == T.STRING else COMPARISONS[op]   # strings are never null
    return Typed(cls(this=a2.sql, expression=b2.sql), T.BOOL, span)


def logical(op: str, a: Typed, b: Typed, span: Span) -> Typed:
    a, b = to_bool(a, f"the left side of '{op}'"), to_bool(b, f"the right side of '{op}'")
    cls = exp.And if op == "and" else exp.Or
    return Typed(exp.Paren(this=cls(this=a.sql, expression=b.sql)), T.BOOL, span)


def regex_match(a: Typed, b: Typed, span: Span) -> Typed:
    from .regex import check_typed
    check_typed(b)
    return Typed(fn(exp.RegexpLike, to_string(a).sql, to_string(b).sql), T.BOOL, span)


def binary(op: str, a: Typed, b: Typed, span: Span) -> Typed:
    if op in ("+", "-", "*", "/", "%"):
        return arithmetic(op, a, b, span)
    if op in COMPARISONS:
        return comparison(op, a, b, span)
    if op in ("and", "or"):
        return logical(op, a, b, span)
    if op == "matches regex":
        return regex_match(a, b, span)
    return string_op(op, a, b, span)


__all__ = ["Scope", "binary", "to_string", "to_bool", "to_real", "to_dynamic", "dynamic_to",
           "unify", "type_error", "NOCONST", "sql_literal", "did_you_mean", "s"]
