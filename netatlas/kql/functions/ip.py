"""IPv4 and IPv6 functions (SQL macros and UDFs of the DuckDB dialect's runtime, kql/dialects/duckdb/runtime.py)."""
from __future__ import annotations

from sqlglot import exp

from ...errors import KqlSemanticError
from .. import types as T
from ..scalars import to_string
from ..typed import const, fn
from . import scalar

N = exp.Literal.number


@scalar("parse_ipv4", "s", T.LONG)
def parse_ipv4(s):
    return fn("netatlas_parse_ipv4", s.sql)


@scalar("parse_ipv4_mask", "si", T.LONG)
def parse_ipv4_mask(s, bits):
    return fn("netatlas_ipv4_masked", fn("netatlas_parse_ipv4", s.sql), bits.sql)


@scalar("parse_ipv6", "s", T.STRING)
def parse_ipv6(s):
    """An IPv6 or IPv4 address (with /n) as canonical IPv6 text: eight groups of four hex digits."""
    return fn("netatlas_parse_ipv6", s.sql, exp.Cast(this=exp.null(), to=T.storage(T.LONG)))


@scalar("parse_ipv6_mask", "si", T.STRING)
def parse_ipv6_mask(s, bits):
    return exp.Coalesce(this=fn("netatlas_parse_ipv6", s.sql, bits.sql), expressions=[exp.Literal.string("")])


@scalar("ipv4_is_private", "s", T.BOOL)
def ipv4_is_private(s):
    return fn("netatlas_ipv4_is_private", s.sql)


@scalar("ipv4_is_in_range", "ss", T.BOOL)
def ipv4_is_in_range(ip, rng):
    return fn("netatlas_ipv4_in_range", ip.sql, rng.sql)


def _listed(fname: str, args) -> list:
    """The strings a function's trailing arguments give: strings, or constant dynamic arrays of them
    (ipv4_is_in_any_range(ip, dynamic(["10.0.0.0/8", ...])))."""
    out = []
    for a in args:
        if a.type == T.DYNAMIC:
            if not (a.is_const and isinstance(a.const, list)):
                raise KqlSemanticError(f"{fname}() takes strings or a constant dynamic array of them here", a.span,
                                       code="KQL_ARGUMENTS")
            out += [const(x if isinstance(x, str) else str(x), T.STRING, a.span) for x in a.const if x is not None]
        else:
            out.append(to_string(a))
    return out


@scalar("ipv4_is_in_any_range", "aa*", T.BOOL)
def ipv4_is_in_any_range(ip, *ranges):
    ranges = _listed("ipv4_is_in_any_range", ranges)
    ip = to_string(ip)
    if not ranges:
        return exp.false()
    out = fn("netatlas_ipv4_in_range", ip.sql, ranges[0].sql)
    for r in ranges[1:]:
        out = exp.Or(this=out, expression=fn("netatlas_ipv4_in_range", ip.sql, r.sql))
    return exp.Paren(this=out)


# ---- IPv4 addresses in text: has_ipv4(), has_ipv4_prefix(), has_any_ipv4(), has_any_ipv4_prefix() ----
# An address in the text counts when it is properly delimited (no letter or digit right before or
# after it) and valid (four octets of 0-255); a prefix is a whole address or 1-3 octets and a dot.
_OCTET = r"(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_EDGE_BEFORE, _EDGE_AFTER = "(^|[^0-9A-Za-z])", "($|[^0-9A-Za-z])"


def _octets_ok(parts: list[str]) -> bool:
    return all(p.isdigit() and len(p) <= 3 and int(p) <= 255 for p in parts)


def ipv4_pattern(value: str, prefix: bool) -> str | None:
    """The regular expression finding ``value`` (an address, or with ``prefix`` an address prefix)
    as an address of a text; None when ``value`` is no valid address (prefix)."""
    if not isinstance(value, str):
        return None
    if value.count(".") == 3 and _octets_ok(value.split(".")):
        return _EDGE_BEFORE + value.replace(".", r"\.") + _EDGE_AFTER
    if prefix and value.endswith(".") and 1 <= value.count(".") <= 3 and _octets_ok(value[:-1].split(".")):
        rest = 4 - value.count(".")
        return _EDGE_BEFORE + value.replace(".", r"\.") + r"\.".join([_OCTET] * rest) + _EDGE_AFTER
    return None


def _has_ipv4(fname: str, text, wanted, prefix: bool):
    text = to_string(text)
    tests = []
    for w in wanted:
        if not w.is_const:
            raise KqlSemanticError(f"{fname}() needs constant addresses here", w.span, code="KQL_ARGUMENTS")
        pattern = ipv4_pattern(w.const, prefix)
        if pattern is not None:               # an invalid address (prefix) matches nothing
            tests.append(fn(exp.RegexpLike, text.sql, exp.Literal.string(pattern)))
    if not tests:
        return exp.false()
    out = tests[0]
    for t in tests[1:]:
        out = exp.Or(this=out, expression=t)
    return exp.Coalesce(this=exp.Paren(this=out), expressions=[exp.false()])


@scalar("has_ipv4", "ss", T.BOOL)
def has_ipv4(text, ip):
    return _has_ipv4("has_ipv4", text, [ip], prefix=False)


@scalar("has_ipv4_prefix", "ss", T.BOOL)
def has_ipv4_prefix(text, ip):
    return _has_ipv4("has_ipv4_prefix", text, [ip], prefix=True)


@scalar("has_any_ipv4", "saa*", T.BOOL)
def has_any_ipv4(text, *ips):
    return _has_ipv4("has_any_ipv4", text, _listed("has_any_ipv4", ips), prefix=False)


@scalar("has_any_ipv4_prefix", "saa*", T.BOOL)
def has_any_ipv4_prefix(text, *ips):
    return _has_ipv4("has_any_ipv4_prefix", text, _listed("has_any_ipv4_prefix", ips), prefix=True)


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
