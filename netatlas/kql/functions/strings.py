"""String functions."""
from __future__ import annotations

from sqlglot import exp

from .. import types as T
from ..regex import check_typed
from ..typed import Typed, fn
from . import scalar

L = exp.Literal.string
N = exp.Literal.number


def _nz(e):
    """Strings are never null: null -> ''."""
    return exp.Coalesce(this=e, expressions=[L("")])


@scalar("strlen", "s", T.LONG)
def strlen(s):
    return exp.Cast(this=fn(exp.Length, s.sql), to=T.storage(T.LONG))


@scalar("strcat", "ss*", T.STRING)
def strcat(*args):
    out = args[0].sql
    for a in args[1:]:
        out = exp.DPipe(this=out, expression=a.sql, safe=True)
    return exp.Paren(this=out)


@scalar("strcat_array", "ys", T.STRING)
def strcat_array(arr, delim):
    items = fn(exp.Transform, fn("netatlas_json_list", arr.sql), exp.Lambda(
        this=_nz(fn("netatlas_dynamic_str", exp.column("_e"))), expressions=[exp.to_identifier("_e")]))
    return _nz(fn(exp.ArrayToString, items, delim.sql))


@scalar("strcat_delim", "sss*", T.STRING)
def strcat_delim(delim, *args):
    return fn(exp.ConcatWs, delim.sql, *[a.sql for a in args], safe=True, coalesce=True)


@scalar("tolower", "s", T.STRING)
def tolower(s):
    return exp.Lower(this=s.sql)


@scalar("toupper", "s", T.STRING)
def toupper(s):
    return exp.Upper(this=s.sql)


@scalar("substring", "sii?", T.STRING)
def substring(s, start, length=None):
    # Kusto: 0-based start; negative start counts from 0 after clamping
    st = exp.Add(this=fn(exp.Greatest, start.sql, N(0), ignore_nulls=True), expression=N(1))
    args = [s.sql, st]
    if length is not None:
        args.append(fn(exp.Greatest, length.sql, N(0), ignore_nulls=True))
    return _nz(fn(exp.Substring, *args))


def _trim_regex(kind):
    def build(regex, s):
        check_typed(regex)
        r = regex.sql
        if kind == "both":
            pat = exp.DPipe(this=exp.DPipe(this=L("^(?:"), expression=r), expression=L(")+|(?:"))
            pat = exp.DPipe(this=exp.DPipe(this=pat, expression=r), expression=L(")+$"))
        elif kind == "start":
            pat = exp.DPipe(this=exp.DPipe(this=L("^(?:"), expression=r), expression=L(")+"))
        else:
            pat = exp.DPipe(this=exp.DPipe(this=L("(?:"), expression=r), expression=L(")+$"))
        return _nz(fn(exp.RegexpReplace, s.sql, pat, L(""), modifiers=L("g")))
    return build


scalar("trim", "ss", T.STRING)(_trim_regex("both"))
scalar("trim_start", "ss", T.STRING)(_trim_regex("start"))
scalar("trim_end", "ss", T.STRING)(_trim_regex("end"))


@scalar("split", "ssi?", T.DYNAMIC)
def split(s, delim, index=None):
    parts = fn("split_string", s.sql, delim.sql)
    if index is None:
        return fn("as_json", parts)
    # with an index: a one-element array, empty when the index is out of range
    i = exp.Add(this=index.sql, expression=N(1))
    return fn("as_json", fn("sublist", parts, i, i))


@scalar("replace_string", "sss", T.STRING)
def replace_string(s, lookup, rewrite):
    return _nz(fn(exp.Replace, s.sql, lookup.sql, rewrite.sql))


@scalar("replace_regex", "sss", T.STRING, "replace")
def replace_regex(s, regex, rewrite):
    check_typed(regex)
    # Kusto rewrite uses \1 for groups, as RE2 does
    return _nz(fn(exp.RegexpReplace, s.sql, regex.sql, rewrite.sql, modifiers=L("g")))


@scalar("extract", "sisa?", T.STRING)
def extract(regex, group, s, typ=None):
    check_typed(regex)
    e = fn(exp.RegexpExtract, s.sql, regex.sql, group=group.sql, null_if_pos_overflow=True)
    e = exp.Case(ifs=[exp.If(this=fn(exp.RegexpLike, s.sql, regex.sql), true=e)], default=exp.null())
    if typ is not None and typ.type != T.STRING:
        return Typed(exp.TryCast(this=e, to=T.storage(typ.type)), typ.type)
    return _nz(e)


@scalar("extract_all", "sas?", T.DYNAMIC, "extractall")
def extract_all(regex, groups_or_s, s=None):
    check_typed(regex)
    src, groups = (groups_or_s, None) if s is None else (s, groups_or_s)
    picks = _capture_groups(regex, groups)
    text = to_s(src)
    if len(picks) == 1:    # one group: a flat array of strings
        found = fn(exp.RegexpExtractAll, text, regex.sql, N(picks[0]))
    else:                  # several groups: an array of [g1, g2, ...] per match
        lists = [fn(exp.RegexpExtractAll, text, regex.sql, N(g)) for g in picks]
        found = fn(exp.Transform, fn("zip_lists", *lists), exp.Lambda(
            this=fn("make_list", *[fn(exp.StructExtract, exp.column("_z"), N(i + 1)) for i in range(len(picks))]),
            expressions=[exp.to_identifier("_z")]))
    # no match: null
    return exp.Case(ifs=[exp.If(this=exp.GT(this=fn("list_length", found), expression=N(0)), true=fn("as_json", found))],
                    default=exp.null())


def to_s(t):
    from ..scalars import to_string
    return to_string(t).sql


def _capture_groups(regex, groups) -> list[int]:
    """The capture group numbers extract_all() returns: all of the regex's, or the chosen ones."""
    import re
    count, names = 1, {}
    if regex.is_const and regex.const is not None:
        try:
            compiled = re.compile(str(regex.const))
            count, names = compiled.groups, dict(compiled.groupindex)
        except re.error:
            count = len(re.findall(r"\((?!\?)|\(\?P?<", str(regex.const)))
    if groups is None:
        return list(range(1, count + 1)) or [0]
    if not groups.is_const or not isinstance(groups.const, list) or not groups.const:
        from ..scalars import type_error
        type_error("extract_all() needs a constant array of capture groups, e.g. dynamic([1, 3])", groups.span)
    out = []
    for g in groups.const:
        if isinstance(g, str) and g in names:
            out.append(names[g])
        elif isinstance(g, int) and 0 <= g <= count:
            out.append(g)
        else:
            from ..scalars import type_error
            type_error(f"extract_all(): {g!r} is not a capture group of the regex", groups.span)
    return out


@scalar("indexof", "ssi?i?i?", T.LONG)
def indexof(s, lookup, start=None, length=None, occurrence=None):
    if start is None:
        return exp.Cast(this=exp.Sub(this=fn(exp.StrPosition, s.sql, lookup.sql), expression=N(1)), to=T.storage(T.LONG))
    # start < 0 counts from the end; length -1 = to the end; the occurrence-th match inside the range
    rest = [x.sql if x is not None else d for x, d in ((length, exp.Neg(this=N(1))), (occurrence, N(1)))]
    return exp.Cast(this=fn("netatlas_indexof", s.sql, lookup.sql, start.sql, *rest), to=T.storage(T.LONG))


@scalar("reverse", "s", T.STRING)
def reverse(s):
    return fn(exp.Reverse, s.sql)


@scalar("strrep", "sis?", T.STRING)
def strrep(s, n, delim=None):
    if delim is None:
        return fn(exp.Repeat, s.sql, n.sql)
    return fn(exp.ArrayToString, fn(exp.Transform, fn("range_list", n.sql), exp.Lambda(
        this=s.sql, expressions=[exp.to_identifier("_x")])), delim.sql)


@scalar("countof", "sss?", T.LONG)
def countof(s, sub, kind=None):
    mode = "normal" if kind is None else kind.const if kind.is_const else None
    if mode not in ("normal", "regex"):
        from ..scalars import type_error
        type_error("countof() kind must be the constant 'normal' or 'regex'", kind.span)
    if mode == "regex":    # regex matches do not overlap
        check_typed(sub)
        return exp.Cast(this=fn("list_length", fn(exp.RegexpExtractAll, s.sql, sub.sql)), to=T.storage(T.LONG))
    return exp.Cast(this=fn("netatlas_countof", s.sql, sub.sql), to=T.storage(T.LONG))   # plain matches may overlap


@scalar("url_encode", "s", T.STRING)
def url_encode(s):
    return _nz(fn("netatlas_url_encode", s.sql, exp.true()))


@scalar("url_encode_component", "s", T.STRING)
def url_encode_component(s):
    return _nz(fn("netatlas_url_encode", s.sql, exp.false()))


@scalar("url_decode", "s", T.STRING)
def url_decode(s):
    # '+' is a space in application/x-www-form-urlencoded (a literal '+' arrives as %2b)
    return _nz(fn("decode_url", fn(exp.Replace, s.sql, L("+"), L(" "))))


@scalar("base64_encode_tostring", "s", T.STRING, "base64_encodestring")
def b64enc(s):
    return fn(exp.ToBase64, fn(exp.Encode, s.sql))


@scalar("base64_decode_tostring", "s", T.STRING, "base64_decodestring")
def b64dec(s):
    return _nz(fn(exp.Try, fn(exp.Decode, fn(exp.FromBase64, s.sql))))


@scalar("strcmp", "ss", T.INT)
def strcmp(a, b):
    return exp.Case(ifs=[exp.If(this=exp.LT(this=a.sql, expression=b.sql), true=N(-1)),
                         exp.If(this=exp.GT(this=a.sql, expression=b.sql), true=N(1))], default=N(0))


@scalar("isascii", "s", T.BOOL)
def isascii(s):
    return fn(exp.RegexpFullMatch, s.sql, L("[\\x00-\\x7F]*"))


@scalar("parse_url", "s", T.DYNAMIC)
def parse_url(s):
    return fn("netatlas_parse_url", s.sql)


@scalar("translate", "sss", T.STRING)
def translate(src, dst, s):
    return fn(exp.Translate, s.sql, src.sql, dst.sql)


@scalar("string_size", "s", T.LONG)
def string_size(s):
    return exp.Cast(this=fn("byte_length", s.sql), to=T.storage(T.LONG))
