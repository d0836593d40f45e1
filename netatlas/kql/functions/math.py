"""Math functions."""
from __future__ import annotations

from sqlglot import exp

from .. import types as T
from ..typed import Typed, cast, fn
from . import same_as_first, scalar

N = exp.Literal.number


@scalar("abs", "a", same_as_first)
def abs_(x):
    if x.type == T.TIMESPAN:
        return Typed(fn("abs", x.sql), T.TIMESPAN)
    return fn("abs", x.sql)


@scalar("round", "ri?", T.REAL)
def round_(x, digits=None):
    # Kusto rounds half away from zero, as DuckDB's round() does for doubles
    return fn("round", x.sql, digits.sql if digits is not None else N(0))


@scalar("ceiling", "r", T.REAL)
def ceiling(x):
    return fn("ceil", x.sql)


def _unary(name, sql_name):
    def build(x):
        return fn(sql_name, x.sql)
    scalar(name, "r", T.REAL)(build)


for _k, _v in {"sqrt": "sqrt", "exp": "exp", "exp2": "exp2", "log": "ln", "log10": "log10",
               "log2": "log2", "sin": "sin", "cos": "cos", "tan": "tan", "asin": "asin",
               "acos": "acos", "atan": "atan", "degrees": "degrees", "radians": "radians",
               "isnan": "isnan", "isinf": "isinf", "isfinite": "isfinite", "gamma": "gamma"}.items():
    _unary(_k, _v)
for _k in ("isnan", "isinf", "isfinite"):
    from . import FUNCTIONS as _F
    _F[_k].returns = T.BOOL


@scalar("exp10", "r", T.REAL)
def exp10(x):
    return fn("pow", N(10), x.sql)


@scalar("pow", "rr", T.REAL, "power")
def pow_(x, y):
    return fn("pow", x.sql, y.sql)


@scalar("atan2", "rr", T.REAL)
def atan2(y, x):
    return fn("atan2", y.sql, x.sql)


@scalar("pi", "", T.REAL)
def pi():
    return fn("pi")


@scalar("sign", "n", T.REAL)
def sign(x):
    return cast(fn("sign", x.sql), T.REAL)


@scalar("hash", "ai?", T.LONG)
def hash_(x, mod=None):
    from ..scalars import to_string
    h = cast(exp.Mod(this=fn("hash", to_string(x).sql), expression=N(9223372036854775807)), T.LONG)
    if mod is not None:
        h = exp.Mod(this=h, expression=mod.sql)
    return h


@scalar("rand", "n?", T.REAL)
def rand(n=None):
    r = fn("random")
    return cast(fn("floor", exp.Mul(this=r, expression=n.sql)), T.LONG) if n is not None else r


