"""The scalar function table: KQL function name -> Function.

Each family lives in its own module and registers with ``@scalar``. A signature is a string
of argument codes, checked and converted before the builder runs:

    s  string (any scalar is converted with tostring())   n  number (int, long, real, decimal)
    i  integer (int or long)                               r  real (numbers converted)
    d  datetime          t  timespan       b  bool         y  dynamic (scalars wrapped)
    a  any (passed as it is)
    ?  after a code: optional;  *  after a code: any number more of that code

A builder gets the converted arguments (``Typed``) and returns a sqlglot expression (its type
is the registered ``returns``, which may be a function of the argument types) or a ``Typed``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlglot import exp

from ...errors import KqlSemanticError, Span
from .. import types as T
from ..scalars import dynamic_to, to_dynamic, to_real, to_string, type_error
from ..typed import Typed

FUNCTIONS: dict[str, "Function"] = {}


@dataclass(slots=True)
class Function:
    name: str
    signature: str
    returns: str | Callable[[list[Typed]], str]
    build: Callable
    min_args: int
    max_args: int | None
    pass_ctx: bool
    keeps_name: bool          # bin(X, 1h) keeps the name X in projections

    def call(self, ctx, args: list[Typed], span: Span, name_span: Span) -> Typed:
        n = len(args)
        if n < self.min_args or (self.max_args is not None and n > self.max_args):
            want = (f"{self.min_args}" if self.min_args == self.max_args else
                    f"{self.min_args} to {self.max_args}" if self.max_args is not None else f"at least {self.min_args}")
            raise KqlSemanticError(f"{self.name}() takes {want} argument{'s' if want != '1' else ''}, got {n}",
                                   span, code="KQL_ARGUMENTS")
        conv = [convert(self.name, code, a) for code, a in zip(self._codes(n), args)]
        out = self.build(ctx, *conv) if self.pass_ctx else self.build(*conv)
        if isinstance(out, Typed):
            out.span = span
            return out
        rtype = self.returns(conv) if callable(self.returns) else self.returns
        name = conv[0].name if self.keeps_name and conv else None
        return Typed(out, rtype, span, name=name)

    def _codes(self, n: int) -> list[str]:
        codes, out = _parse_sig(self.signature), []
        for code, opt, star in codes:
            out.append(code)
            if star:
                while len(out) < n:
                    out.append(code)
        return out[:n]


def _parse_sig(sig: str) -> list[tuple[str, bool, bool]]:
    out = []
    for ch in sig:
        if ch == "?":
            out[-1] = (out[-1][0], True, False)
        elif ch == "*":
            out[-1] = (out[-1][0], True, True)
        else:
            out.append((ch, False, False))
    return out


def _arity(sig: str) -> tuple[int, int | None]:
    codes = _parse_sig(sig)
    lo = sum(1 for _, opt, _ in codes if not opt)
    hi = None if any(star for _, _, star in codes) else len(codes)
    return lo, hi


_NAMES = {"s": "string", "n": "a number", "i": "an integer", "r": "a number", "d": "datetime",
          "t": "timespan", "b": "bool", "y": "dynamic"}


def convert(fname: str, code: str, a: Typed) -> Typed:
    t = a.type
    if code == "a":
        return a
    if code == "s":
        return to_string(a)
    if code == "y":
        return to_dynamic(a)
    if t == T.DYNAMIC and code in "nirdtb":
        return dynamic_to(a, {"n": T.REAL, "i": T.LONG, "r": T.REAL, "d": T.DATETIME, "t": T.TIMESPAN, "b": T.BOOL}[code])
    null_const = a.is_const and a.const is None
    if code == "r":
        if t in T.NUMERIC or null_const:
            return to_real(a)
    elif code == "n":
        if t in T.NUMERIC or null_const:
            return a
    elif code == "i":
        if t in T.INTEGER or null_const:
            return a
        if t in (T.REAL, T.DECIMAL):
            return a.with_sql(exp.Cast(this=a.sql, to=T.storage(T.LONG)), T.LONG)
    elif code == "d":
        if t == T.DATETIME or null_const:
            return a if t == T.DATETIME else a.with_sql(exp.Cast(this=exp.null(), to=T.storage(T.DATETIME)), T.DATETIME)
        if t == T.STRING and a.is_const:
            from ..literals import parse_datetime
            v = parse_datetime(a.const)
            if v is not None:
                from ..typed import const
                return const(v, T.DATETIME, a.span)
    elif code == "t":
        if t == T.TIMESPAN or null_const:
            return a
    elif code == "b":
        if t == T.BOOL or null_const:
            return a
    type_error(f"{fname}() expects {_NAMES[code]} here, not {t}", a.span)


def scalar(name: str, sig: str, returns, *aliases: str, ctx: bool = False, keeps_name: bool = False):
    """Register a scalar function builder under name and aliases."""
    def deco(build):
        lo, hi = _arity(sig)
        f = Function(name, sig, returns, build, lo, hi, ctx, keeps_name)
        for n in (name, *aliases):
            FUNCTIONS[n] = f
        return build
    return deco


def same_as_first(args: list[Typed]) -> str:
    return args[0].type


def common_type(args: list[Typed]) -> str:
    types = [a.type for a in args if not (a.is_const and a.const is None)] or [args[0].type]
    out = types[0]
    for t in types[1:]:
        out = T.promote(out, t) or (out if out == t else out)
    return out


def load_all() -> None:
    from . import conditional, conversion, datetime, dynamic, ip, math, series, strings  # noqa: F401


load_all()
