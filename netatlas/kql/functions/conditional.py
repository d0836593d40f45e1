"""Conditional functions: iff, case, coalesce, isnull, isempty, not, ..."""
from __future__ import annotations

from sqlglot import exp

from ...errors import KqlSemanticError
from .. import types as T
from ..scalars import to_bool, to_string, unify
from ..typed import Typed, fn
from . import scalar


@scalar("iff", "aaa", T.STRING, "iif")
def iff(cond, then, other):
    cond = to_bool(cond, "the condition of iff()")
    a, b, typ = unify(then, other, then.span, "return from iff()")
    e = exp.Case(ifs=[exp.If(this=cond.sql, true=a.sql)], default=b.sql)
    return Typed(e, typ)


@scalar("case", "aaa*", T.STRING)
def case(*args):
    if len(args) % 2 == 0:
        raise KqlSemanticError("case() needs pairs of condition, value and a final else value",
                               args[-1].span, code="KQL_ARGUMENTS")
    values = [args[i] for i in range(1, len(args), 2)] + [args[-1]]
    typ = values[0].type
    for v in values[1:]:
        _, _, typ = unify(Typed(exp.null(), typ), v, v.span, "return from case()")
    conv = []
    for v in values:
        conv.append(unify(v, Typed(exp.null(), typ), v.span, "return from case()")[0] if v.type != typ else v)
    ifs = [exp.If(this=to_bool(args[i], "a condition of case()").sql, true=conv[i // 2].sql)
           for i in range(0, len(args) - 1, 2)]
    return Typed(exp.Case(ifs=ifs, default=conv[-1].sql), typ)


@scalar("coalesce", "aa*", T.STRING)
def coalesce(*args):
    typ = args[0].type
    conv = [args[0]]
    for a in args[1:]:
        x, y, typ = unify(conv[0], a, a.span, "coalesce")
        conv = [c if c.type == typ else unify(c, y, a.span, "coalesce")[0] for c in conv] + [y]
    if typ == T.STRING:   # empty strings count as missing
        vals = [exp.Case(ifs=[exp.If(this=exp.EQ(this=c.sql, expression=exp.Literal.string("")), true=exp.null())],
                         default=c.sql) for c in conv]
        return Typed(exp.Coalesce(this=vals[0], expressions=vals[1:] + [exp.Literal.string("")]), typ)
    return Typed(exp.Coalesce(this=conv[0].sql, expressions=[c.sql for c in conv[1:]]), typ)


@scalar("isnull", "a", T.BOOL)
def isnull(a):
    if a.type == T.STRING:
        return exp.false()
    return exp.Is(this=a.sql, expression=exp.null())


@scalar("isnotnull", "a", T.BOOL, "notnull")
def isnotnull(a):
    if a.type == T.STRING:
        return exp.true()
    return exp.Not(this=exp.Is(this=a.sql, expression=exp.null()))


@scalar("isempty", "a", T.BOOL)
def isempty(a):
    if a.type == T.STRING:
        return exp.Paren(this=exp.Or(this=exp.Is(this=a.sql, expression=exp.null()),
                                     expression=exp.EQ(this=a.sql, expression=exp.Literal.string(""))))
    if a.type == T.DYNAMIC:
        s = to_string(a).sql
        return exp.EQ(this=s, expression=exp.Literal.string(""))
    return exp.Is(this=a.sql, expression=exp.null())


@scalar("isnotempty", "a", T.BOOL, "notempty")
def isnotempty(a):
    return exp.Not(this=exp.Paren(this=isempty(a)))


@scalar("not", "a", T.BOOL)
def not_(a):
    return exp.Not(this=exp.Paren(this=to_bool(a, "the argument of not()").sql))


@scalar("max_of", "aa*", T.STRING)
def max_of(*args):
    return _extreme(exp.Greatest, "max_of", args)


@scalar("min_of", "aa*", T.STRING)
def min_of(*args):
    return _extreme(exp.Least, "min_of", args)


def _extreme(f, name, args):
    conv = list(args)
    typ = conv[0].type
    for a in conv[1:]:
        _, _, typ = unify(conv[0], a, a.span, name)
    conv = [c if c.type == typ else unify(c, Typed(exp.null(), typ), c.span, name)[0] for c in conv]
    return Typed(fn(f, *[c.sql for c in conv], ignore_nulls=True), typ)
