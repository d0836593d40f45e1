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
        return Typed(fn(exp.Abs, x.sql), T.TIMESPAN)
    return fn(exp.Abs, x.sql)


def _keep_type(x: Typed, e: exp.Expression) -> exp.Expression:
    """round() and ceiling() return their argument's type (Kusto.Language: ReturnTypeKind.Parameter0)."""
    return cast(e, x.type) if x.type != T.REAL else e


@scalar("round", "ni?", same_as_first)
def round_(x, digits=None):
    # Kusto rounds half away from zero, as DuckDB's round() does
    return _keep_type(x, fn(exp.Round, x.sql, digits.sql if digits is not None else N(0)))


@scalar("ceiling", "n", same_as_first)
def ceiling(x):
    return x.sql if x.type in T.INTEGER else _keep_type(x, fn(exp.Ceil, x.sql))


def _null_if_negative(e, x):
    """sqrt() and log*() of a negative number are null (DuckDB gives NaN)."""
    return exp.Case(ifs=[exp.If(this=exp.LT(this=x, expression=N(0)), true=exp.null())], default=e)


def _unary(name, f):
    def build(x):
        e = fn(f, x.sql)
        return _null_if_negative(e, x.sql) if name in _REAL_DOMAIN_NONNEG else e
    scalar(name, "r", T.REAL)(build)


_REAL_DOMAIN_NONNEG = {"sqrt", "log", "log10", "log2"}
for _k, _v in {"sqrt": exp.Sqrt, "exp": exp.Exp, "log": exp.Ln, "log10": "log10",
               "log2": "log2", "sin": exp.Sin, "cos": exp.Cos, "tan": exp.Tan, "asin": exp.Asin,
               "acos": exp.Acos, "atan": exp.Atan, "degrees": exp.Degrees, "radians": exp.Radians,
               "isnan": exp.IsNan, "isinf": exp.IsInf, "isfinite": "is_finite", "gamma": "gamma"}.items():
    _unary(_k, _v)
for _k in ("isnan", "isinf", "isfinite"):
    from . import FUNCTIONS as _F
    _F[_k].returns = T.BOOL


@scalar("exp2", "r", T.REAL)
def exp2(x):
    return fn("power", N(2), x.sql)


@scalar("exp10", "r", T.REAL)
def exp10(x):
    return fn("power", N(10), x.sql)


@scalar("pow", "rr", T.REAL, "power")
def pow_(x, y):
    return fn("power", x.sql, y.sql)


@scalar("atan2", "rr", T.REAL)
def atan2(y, x):
    return fn(exp.Atan2, y.sql, x.sql)


@scalar("pi", "", T.REAL)
def pi():
    return fn(exp.Pi)


@scalar("sign", "n", T.REAL)
def sign(x):
    return cast(fn(exp.Sign, x.sql), T.REAL)


def _ticks(x: Typed) -> exp.Expression:
    """A datetime's ticks (100 ns since 0001-01-01), as tolong() gives them."""
    return exp.Add(this=exp.Mul(this=fn("epoch_microseconds", x.sql), expression=N(10)),
                   expression=N(621355968000000000))


# Kusto's hash(): XXH64 (seed 0) of the value's bytes (the reference's hash("World") and
# hash(datetime("2015-01-01")) checked): a string's UTF-8 text; a long's, an int's, a timespan's
# and a datetime's ticks as 8 bytes little-endian; a real's IEEE double. Other types (bool, guid,
# dynamic) hash their text (the reference shows none of them).
HASHED = {
    T.STRING: lambda x: fn("netatlas_xxhash64", x.sql),
    T.LONG: lambda x: fn("netatlas_xxhash64_long", x.sql),
    T.INT: lambda x: fn("netatlas_xxhash64_long", exp.Cast(this=x.sql, to=T.storage(T.LONG))),
    T.TIMESPAN: lambda x: fn("netatlas_xxhash64_long", x.sql),
    T.DATETIME: lambda x: fn("netatlas_xxhash64_long", _ticks(x)),
    T.REAL: lambda x: fn("netatlas_xxhash64_real", x.sql),
}


@scalar("hash", "ai?", T.LONG)
def hash_(x, mod=None):
    from ..scalars import to_string
    h = HASHED.get(x.type, lambda v: fn("netatlas_xxhash64", to_string(v).sql))(x)
    if mod is None:
        return h
    # modulo mod of the hash read as an unsigned 64-bit number: 0 .. mod - 1 (a negative hash h is
    # h + 2^64; 2^64 mod m is computed from 2^63 - 1 so that nothing leaves 64 bits)
    m = mod.sql
    r63 = exp.Mod(this=exp.Paren(this=exp.Add(this=exp.Mod(this=N(9223372036854775807), expression=m.copy()),
                                              expression=N(1))), expression=m.copy())
    r64 = exp.Mod(this=exp.Mul(this=exp.Paren(this=r63), expression=N(2)), expression=m.copy())
    low = exp.Mod(this=h.copy(), expression=m.copy())
    negative = exp.Mod(this=exp.Paren(this=exp.Add(this=exp.Add(this=low, expression=r64), expression=m.copy())),
                       expression=m.copy())
    return exp.Case(ifs=[exp.If(this=exp.LT(this=h.copy(), expression=N(0)), true=negative)],
                    default=exp.Mod(this=h, expression=m.copy()))


@scalar("hash_xxhash64", "ai?", T.LONG)
def hash_xxhash64(x, mod=None):
    return hash_(x, mod)     # hash()'s algorithm, under its own name (the same reference examples)


@scalar("rand", "n?", T.REAL)
def rand(n=None):
    r = fn(exp.Rand)
    return cast(fn(exp.Floor, exp.Mul(this=r, expression=n.sql)), T.LONG) if n is not None else r




# ---- bitwise (long) --------------------------------------------------------------------------

def _bitwise(cls):
    def build(a, b):
        return cls(this=cast(a.sql, T.LONG), expression=cast(b.sql, T.LONG))
    return build


scalar("binary_and", "ii", T.LONG)(_bitwise(exp.BitwiseAnd))
scalar("binary_or", "ii", T.LONG)(_bitwise(exp.BitwiseOr))
scalar("binary_xor", "ii", T.LONG)(_bitwise(exp.BitwiseXor))
scalar("binary_shift_left", "ii", T.LONG)(_bitwise(exp.BitwiseLeftShift))
scalar("binary_shift_right", "ii", T.LONG)(_bitwise(exp.BitwiseRightShift))


@scalar("binary_not", "i", T.LONG)
def binary_not(a):
    return exp.BitwiseNot(this=cast(a.sql, T.LONG))


# ---- cryptographic hashes (lower-case hex of the UTF-8 bytes) --------------------------------

for _k, (_f, _flags) in {"hash_sha256": (exp.SHA2, {"length": N(256)}), "hash_sha1": (exp.SHA, {}),
                         "hash_md5": (exp.MD5, {})}.items():
    scalar(_k, "s", T.STRING)(lambda x, _f=_f, _flags=_flags: exp.Coalesce(
        this=fn(_f, x.sql, **{k: v.copy() for k, v in _flags.items()}), expressions=[exp.Literal.string("")]))


# ---- geospatial ------------------------------------------------------------------------------

EARTH_RADIUS_M = 6_371_010     # Kusto's sphere: its reference's Seattle to Los Angeles, 1546754.35197381 m


@scalar("geo_distance_2points", "rrrr", T.REAL)
def geo_distance_2points(lon1, lat1, lon2, lat2):
    """The great-circle distance in metres (haversine on Kusto's sphere); null for a coordinate out
    of range (longitude -180..180, latitude -90..90)."""
    def rad(x):
        return fn(exp.Radians, cast(x.sql, T.REAL))

    def half_sin_sq(a, b):
        return exp.Pow(this=fn(exp.Sin, exp.Div(this=exp.Paren(this=exp.Sub(this=rad(b), expression=rad(a))),
                                                expression=N(2))), expression=N(2))
    h = exp.Add(this=half_sin_sq(lat1, lat2), expression=exp.Mul(
        this=exp.Mul(this=fn(exp.Cos, rad(lat1)), expression=fn(exp.Cos, rad(lat2))),
        expression=half_sin_sq(lon1, lon2)))
    # h can pass 1 by a rounding error for antipodes: asin would be NaN
    h = exp.Case(ifs=[exp.If(this=exp.GT(this=h, expression=N(1)), true=N(1))], default=h)
    d = exp.Mul(this=N(2 * EARTH_RADIUS_M), expression=fn(exp.Asin, fn(exp.Sqrt, h)))

    def outside(x, bound):
        return exp.Not(this=exp.Between(this=cast(x.sql, T.REAL), low=N(-bound), high=N(bound)))
    bad = exp.Or(this=exp.Or(this=outside(lon1, 180), expression=outside(lat1, 90)),
                 expression=exp.Or(this=outside(lon2, 180), expression=outside(lat2, 90)))
    return exp.Case(ifs=[exp.If(this=bad, true=exp.null())], default=d)
