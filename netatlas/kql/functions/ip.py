"""IPv4 and IPv6 functions (SQL macros and UDFs of the DuckDB dialect's runtime, kql/dialects/duckdb/runtime.py)."""
from __future__ import annotations

from sqlglot import exp

from .. import types as T
from ..typed import fn
from . import scalar

N = exp.Literal.number


@scalar("parse_ipv4", "s", T.LONG)
def parse_ipv4(s):
    return fn("netatlas_parse_ipv4", s.sql)


@scalar("parse_ipv4_mask", "si", T.LONG)
def parse_ipv4_mask(s, bits):
    return fn("netatlas_ipv4_masked", fn("netatlas_parse_ipv4", s.sql), bits.sql)


@scalar("ipv4_is_private", "s", T.BOOL)
def ipv4_is_private(s):
    return fn("netatlas_ipv4_is_private", s.sql)


@scalar("ipv4_is_in_range", "ss", T.BOOL)
def ipv4_is_in_range(ip, rng):
    return fn("netatlas_ipv4_in_range", ip.sql, rng.sql)


@scalar("ipv4_is_in_any_range", "sss*", T.BOOL)
def ipv4_is_in_any_range(ip, *ranges):
    out = fn("netatlas_ipv4_in_range", ip.sql, ranges[0].sql)
    for r in ranges[1:]:
        out = exp.Or(this=out, expression=fn("netatlas_ipv4_in_range", ip.sql, r.sql))
    return exp.Paren(this=out)


@scalar("ipv4_compare", "ssi?", T.LONG)
def ipv4_compare(a, b, bits=None):
    return fn("netatlas_ipv4_compare", a.sql, b.sql, bits.sql if bits is not None else N(32))


@scalar("ipv4_is_match", "ssi?", T.BOOL)
def ipv4_is_match(a, b, bits=None):
    return exp.EQ(this=ipv4_compare(a, b, bits), expression=N(0))


def _ipv4_value(ip):
    """An IPv4 address given as text (its own /prefix applied) or as a number."""
    from ..scalars import to_string
    return ip.sql if ip.type in T.INTEGER else fn("netatlas_parse_ipv4", to_string(ip).sql)


def _valid_bits(bits, value):
    """value when the prefix is 0..32, else null (the result is then an empty string)."""
    if bits.is_const and bits.const is not None and 0 <= bits.const <= 32:
        return value
    ok = exp.Between(this=bits.sql, low=N(0), high=N(32))
    return exp.Case(ifs=[exp.If(this=ok, true=value)], default=exp.null())


@scalar("format_ipv4", "ai?", T.STRING)
def format_ipv4(ip, bits=None):
    v = _ipv4_value(ip)
    if bits is not None:
        v = _valid_bits(bits, fn("netatlas_ipv4_masked", v, bits.sql))
    return exp.Coalesce(this=fn("netatlas_format_ipv4", v), expressions=[exp.Literal.string("")])


@scalar("format_ipv4_mask", "ai?", T.STRING)
def format_ipv4_mask(ip, bits=None):
    # the shorter of the argument and the text's own /prefix wins
    b = bits.sql if bits is not None else N(32)
    if ip.type not in T.INTEGER:
        from ..scalars import to_string
        b = fn(exp.Least, b, fn("netatlas_ipv4_prefix", to_string(ip).sql), ignore_nulls=True)
    s = format_ipv4(ip, bits)
    return exp.Case(ifs=[exp.If(this=exp.EQ(this=s, expression=exp.Literal.string("")), true=exp.Literal.string(""))],
                    default=exp.DPipe(this=exp.DPipe(this=s, expression=exp.Literal.string("/")),
                                      expression=exp.Cast(this=b, to=T.storage(T.STRING))))


@scalar("ipv6_compare", "ssi?", T.LONG)
def ipv6_compare(a, b, bits=None):
    return fn("netatlas_ipv6_compare", a.sql, b.sql, bits.sql if bits is not None else N(128))


@scalar("ipv6_is_match", "ssi?", T.BOOL)
def ipv6_is_match(a, b, bits=None):
    return exp.EQ(this=ipv6_compare(a, b, bits), expression=N(0))
