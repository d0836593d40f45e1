"""String functions."""
from __future__ import annotations

from sqlglot import exp

from .. import types as T
from ..typed import Typed, fn
from . import scalar

L = exp.Literal.string
N = exp.Literal.number


def _nz(e):
    """Strings are never null: null -> ''."""
    return exp.Coalesce(this=e, expressions=[L("")])


@scalar("strlen", "s", T.LONG)
def strlen(s):
    return exp.Cast(this=fn("length", s.sql), to=T.storage(T.LONG))


@scalar("strcat", "ss*", T.STRING)
def strcat(*args):
    out = args[0].sql
    for a in args[1:]:
        out = exp.DPipe(this=out, expression=a.sql, safe=True)
    return exp.Paren(this=out)


@scalar("strcat_delim", "sss*", T.STRING)
def strcat_delim(delim, *args):
    return fn("concat_ws", delim.sql, *[a.sql for a in args])


@scalar("tolower", "s", T.STRING)
def tolower(s):
    return exp.Lower(this=s.sql)


@scalar("toupper", "s", T.STRING)
def toupper(s):
    return exp.Upper(this=s.sql)


@scalar("substring", "sii?", T.STRING)
def substring(s, start, length=None):
    # Kusto: 0-based start; negative start counts from 0 after clamping
    st = exp.Add(this=fn("greatest", start.sql, N(0)), expression=N(1))
    args = [s.sql, st]
    if length is not None:
        args.append(fn("greatest", length.sql, N(0)))
    return _nz(exp.Anonymous(this="substring", expressions=args))


def _trim_regex(kind):
    def build(regex, s):
        r = regex.sql
        if kind == "both":
            pat = exp.DPipe(this=exp.DPipe(this=L("^(?:"), expression=r), expression=L(")+|(?:"))
            pat = exp.DPipe(this=exp.DPipe(this=pat, expression=r), expression=L(")+$"))
        elif kind == "start":
            pat = exp.DPipe(this=exp.DPipe(this=L("^(?:"), expression=r), expression=L(")+"))
        else:
            pat = exp.DPipe(this=exp.DPipe(this=L("(?:"), expression=r), expression=L(")+$"))
        return _nz(fn("regexp_replace", s.sql, pat, L(""), L("g")))
    return build


scalar("trim", "ss", T.STRING)(_trim_regex("both"))
scalar("trim_start", "ss", T.STRING)(_trim_regex("start"))
scalar("trim_end", "ss", T.STRING)(_trim_regex("end"))


@scalar("split", "ssi?", T.DYNAMIC)
def split(s, delim, index=None):
    arr = fn("to_json", fn("string_split", s.sql, delim.sql))
    if index is None:
        return arr
    return Typed(fn("to_json", fn("list_extract", fn("string_split", s.sql, delim.sql),
                                  exp.Add(this=index.sql, expression=N(1)))), T.DYNAMIC)


@scalar("replace_string", "sss", T.STRING)
def replace_string(s, lookup, rewrite):
    return _nz(fn("replace", s.sql, lookup.sql, rewrite.sql))


@scalar("replace_regex", "sss", T.STRING, "replace")
def replace_regex(s, regex, rewrite):
    # Kusto rewrite uses \1 for groups, as RE2 does
    return _nz(fn("regexp_replace", s.sql, regex.sql, rewrite.sql, L("g")))


@scalar("extract", "sisa?", T.STRING)
def extract(regex, group, s, typ=None):
    e = fn("regexp_extract", s.sql, regex.sql, group.sql)
    e = exp.Case(ifs=[exp.If(this=fn("regexp_matches", s.sql, regex.sql), true=e)], default=exp.null())
    if typ is not None and typ.type != T.STRING:
        return Typed(exp.TryCast(this=e, to=T.storage(typ.type)), typ.type)
    return _nz(e)


@scalar("extract_all", "sas?", T.DYNAMIC)
def extract_all(regex, groups_or_s, s=None):
    if s is None:
        src = groups_or_s
        return fn("to_json", fn("regexp_extract_all", to_s(src), regex.sql, _first_group(regex)))
    return fn("to_json", fn("regexp_extract_all", to_s(s), regex.sql, _first_group(regex)))


def to_s(t):
    from ..scalars import to_string
    return to_string(t).sql


def _first_group(regex):
    if regex.is_const and "(" in str(regex.const):
        return N(1)
    return N(0)


@scalar("indexof", "ssi?i?i?", T.LONG)
def indexof(s, lookup, start=None, length=None, occurrence=None):
    base = s.sql
    if start is not None:
        base = fn("substring", s.sql, exp.Add(this=start.sql, expression=N(1)))
    pos = exp.Sub(this=fn("strpos", base, lookup.sql), expression=N(1))
    if start is not None:
        pos = exp.Case(ifs=[exp.If(this=exp.GTE(this=pos, expression=N(0)),
                                   true=exp.Add(this=pos, expression=start.sql))], default=N(-1))
    return exp.Cast(this=pos, to=T.storage(T.LONG))


@scalar("reverse", "s", T.STRING)
def reverse(s):
    return fn("reverse", s.sql)


@scalar("strrep", "sis?", T.STRING)
def strrep(s, n, delim=None):
    if delim is None:
        return fn("repeat", s.sql, n.sql)
    return fn("array_to_string", fn("list_transform", fn("range", n.sql), exp.Lambda(
        this=s.sql, expressions=[exp.to_identifier("_x")])), delim.sql)


@scalar("countof", "ss", T.LONG)
def countof(s, sub):
    return exp.Cast(this=exp.IntDiv(this=exp.Sub(this=fn("length", s.sql), expression=fn("length", fn("replace", s.sql, sub.sql, L("")))),
                                    expression=fn("greatest", fn("length", sub.sql), N(1))), to=T.storage(T.LONG))


@scalar("url_encode", "s", T.STRING, "url_encode_component")
def url_encode(s):
    return fn("url_encode", s.sql)


@scalar("url_decode", "s", T.STRING)
def url_decode(s):
    return _nz(fn("url_decode", s.sql))


@scalar("base64_encode_tostring", "s", T.STRING, "base64_encodestring")
def b64enc(s):
    return fn("to_base64", fn("encode", s.sql))


@scalar("base64_decode_tostring", "s", T.STRING, "base64_decodestring")
def b64dec(s):
    return _nz(fn("try", fn("decode", fn("from_base64", s.sql))))


@scalar("strcmp", "ss", T.INT)
def strcmp(a, b):
    return exp.Case(ifs=[exp.If(this=exp.LT(this=a.sql, expression=b.sql), true=N(-1)),
                         exp.If(this=exp.GT(this=a.sql, expression=b.sql), true=N(1))], default=N(0))


@scalar("isascii", "s", T.BOOL)
def isascii(s):
    return fn("regexp_full_match", s.sql, L("[\\x00-\\x7F]*"))


@scalar("parse_url", "s", T.DYNAMIC)
def parse_url(s):
    return fn("netatlas_parse_url", s.sql)


@scalar("translate", "sss", T.STRING)
def translate(src, dst, s):
    return fn("translate", s.sql, src.sql, dst.sql)


@scalar("string_size", "s", T.LONG)
def string_size(s):
    return exp.Cast(this=fn("strlen", s.sql), to=T.storage(T.LONG))
