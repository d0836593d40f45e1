"""ClickHouse (chdb embedded, or a server): the planner's tree rewritten for ClickHouse, printed by
sqlglot's ClickHouse generator.

How KQL's values live in ClickHouse: string String, long Int64, int Int32, real Float64, decimal
Decimal(38, 18), bool Bool, datetime DateTime64(6, 'UTC'), timespan Int64 ticks, guid UUID, and
dynamic JSON *text* in a String (ClickHouse's JSON type holds objects only); a list of dynamic
values (DuckDB's JSON[]) is an Array(String) of JSON texts. Every column is Nullable.

The planner's vocabulary (``base.FUNCTIONS``) is spelled by ``SPELLINGS`` (same arguments) or
rewritten by ``FUNCTIONS``; its typed nodes are printed by sqlglot's ClickHouse generator, but
those ``CALLS`` rewrites to the meaning the planner wants (ClickHouse's ``length`` counts bytes,
its ``match`` is RE2 without anchors, ...). ``TRANSFORMS`` handles types, casts and the few
operators whose meaning differs. Helpers too long to inline are SQL functions in ``runtime.py``,
which the store installs.
"""
from __future__ import annotations

import re

from sqlglot import exp

from ...literals import timespan_format_tokens
from ..base import Dialect, args, call, rename
from ....errors import KqlError
from . import runtime
from .series import REFUSED as SERIES_REFUSED

L = exp.Literal.string
N = exp.Literal.number


def _type(text: str) -> exp.DataType:
    return exp.DataType.build(text, dialect="clickhouse")


# ---- types and casts -----------------------------------------------------------------------

def _datatype(node: exp.DataType) -> exp.Expression:
    t = node.this
    if t == exp.DataType.Type.JSON:
        return _type("String")
    if t in (exp.DataType.Type.TIMESTAMP, exp.DataType.Type.TIMESTAMPNTZ, exp.DataType.Type.DATETIME,
             exp.DataType.Type.TIMESTAMPTZ):
        return exp.DataType(this=exp.DataType.Type.DATETIME64, expressions=[
            exp.DataTypeParam(this=N(6)), exp.DataTypeParam(this=L("UTC"))])
    return node


def _not_null(node: exp.Expression) -> exp.Expression:
    """A cast without Nullable, casts inside it too (table functions refuse Nullable arguments,
    and with cast_keep_nullable a cast of a Nullable stays Nullable)."""
    if isinstance(node, exp.Cast) and isinstance(node.to, exp.DataType):
        to = node.to.copy()
        to.set("nullable", False)
        return exp.Cast(this=_not_null(node.this), to=to)
    return node


def _cast(node: exp.Cast) -> exp.Expression:
    inner = node.this
    if isinstance(node.to, exp.DataType):
        node.set("to", _datatype(node.to))
    if isinstance(inner, exp.Literal) and inner.is_string and isinstance(node.to, exp.DataType) \
            and node.to.this == exp.DataType.Type.DATETIME64:
        return call("toDateTime64", node.this, N(6), L("UTC"))
    if node.meta.get("json") is None and inner.meta.get("json"):       # CAST(json AS T): a JSON string's value
        return exp.Cast(this=call("netatlas_json_value_str", inner), to=node.to)
    return node


def _try_cast(node: exp.TryCast) -> exp.Expression:
    to = node.to
    if node.this.meta.get("json"):                  # TRY_CAST(json AS T): a JSON string's value
        node.set("this", call("netatlas_json_value_str", node.this))
    if isinstance(to, exp.DataType) and to.this == exp.DataType.Type.DATETIME64:
        return call("parseDateTime64BestEffortOrNull", call("toString", node.this), N(6), L("UTC"))
    return call("accurateCastOrNull", node.this, L(to.sql(dialect="clickhouse") if isinstance(to, exp.DataType) else str(to)))


# ---- JSON (dynamic values are JSON text) --------------------------------------------------------

_PATH_STEP = re.compile(r'\."((?:[^"\\]|\\.)*)"|\.([A-Za-z_][A-Za-z0-9_]*)|\[(-?\d+)\]|\[#-(\d+)\]')


def _json_keys(path: exp.Expression) -> list[exp.Expression] | None:
    """A constant JSON path ('$."a"[0]') as ClickHouse's JSONExtract key arguments ('a', 1)."""
    if not (isinstance(path, exp.Literal) and path.is_string):
        return None
    text = path.this
    if not text.startswith("$"):
        return None
    out, pos = [], 1
    while pos < len(text):
        m = _PATH_STEP.match(text, pos)
        if m is None:
            return None
        if m.group(1) is not None:
            out.append(L(m.group(1).replace('\\"', '"').replace("\\\\", "\\")))
        elif m.group(2) is not None:
            out.append(L(m.group(2)))
        elif m.group(3) is not None:
            i = int(m.group(3))
            out.append(N(i + 1) if i >= 0 else exp.Neg(this=N(-i)))
        else:
            out.append(exp.Neg(this=N(int(m.group(4)))))
        pos = m.end()
    return out


def _json_pointer_key(path: exp.Expression) -> exp.Expression | None:
    """The key of a JSON pointer built as '/' || replace(replace(k, '~', '~0'), '/', '~1')."""
    if isinstance(path, exp.DPipe) and isinstance(path.this, exp.Literal) and path.this.this == "/":
        outer = path.expression
        if isinstance(outer, exp.Anonymous) and outer.name == "replaceAll":
            inner = outer.expressions[0]
            if isinstance(inner, exp.Anonymous) and inner.name == "replaceAll":
                return inner.expressions[0]
    return None


def _json_extract(node):
    a = args(node)
    key = _json_pointer_key(a[1]) if len(a) > 1 else None
    keys = [key] if key is not None else _json_keys(a[1]) if len(a) > 1 else []
    if keys is None:
        return call("netatlas_json_extract_path", a[0], a[1])
    out = call("nullIf", call("JSONExtractRaw", a[0], *keys), L(""))
    out.meta["json"] = True
    return out


def _json_extract_string(node):
    a = args(node)
    keys = _json_keys(a[1]) if len(a) > 1 else []
    if keys is None:
        return call("netatlas_dynamic_str", call("netatlas_json_extract_path", a[0], a[1]))
    return call("netatlas_json_value_str", call("nullIf", call("JSONExtractRaw", a[0], *keys), L("")))


def _json_type(node):
    a = args(node)
    j = a[0] if len(a) == 1 else _json_extract(node)
    return call("netatlas_json_type", j)


def _json_exists(node):
    a = args(node)
    keys = _json_keys(a[1])
    return call("JSONHas", a[0], *keys) if keys else call("isNotNull", call("netatlas_json_extract_path", a[0], a[1]))


def _to_json(node):
    """as_json(x): a list of dynamic values (JSON texts; the planner marks it) is joined, anything
    else encoded."""
    if node.meta.get("json_list"):
        return call("netatlas_json_array", args(node)[0])
    if node.meta.get("json_value"):
        return args(node)[0]
    return call("toJSONString", args(node)[0])


def _json_object(node):
    """json_of_pairs(k1, v1, ...): keys encoded, values (dynamic or plain) as JSON."""
    a = args(node)
    items = [call("concat", call("toJSONString", a[i]), L(":"), call("netatlas_json_value", a[i + 1]))
             for i in range(0, len(a) - 1, 2)]
    return call("concat", L("{"), call("arrayStringConcat", exp.Array(expressions=items), L(",")), L("}"))


def _array_joins(node: exp.Select) -> list[exp.Anonymous]:
    """The arrayJoin() calls of a SELECT's own expressions (not of its subqueries)."""
    out = []
    for e in node.expressions:
        for sub in e.walk(prune=lambda n: isinstance(n, (exp.Subquery, exp.Select)) and n is not e):
            if isinstance(sub, exp.Anonymous) and sub.name == "arrayJoin":
                out.append(sub)
    return out


def _select(node: exp.Select) -> exp.Expression:
    """Several arrayJoin()s in one SELECT expand side by side, as DuckDB's unnest()s do (the shorter
    lists padded with nulls), not as a cross product: one arrayJoin over the zipped lists."""
    joins = _array_joins(node)
    if len(joins) < 2:
        return node
    lists = [j.expressions[0] for j in joins]
    nullable = [call("arrayMap", exp.Lambda(this=call("toNullable", exp.column("_x")), expressions=[exp.to_identifier("_x")]),
                     x.copy()) for x in lists]
    longest = call("greatest", *[call("length", x.copy()) for x in lists])
    zipped = call("arrayZip", *[call("arrayResize", x, longest.copy(), exp.null()) for x in nullable])
    for k, j in enumerate(joins):
        j.replace(call("tupleElement", exp.column("__mvz", quoted=True), N(k + 1)))
    node.set("expressions", [*node.expressions, exp.alias_(call("arrayJoin", zipped), "__mvz", quoted=True)])
    return node


# Inline rows (datatable's UNION ALL of one-row SELECTs, getschema's VALUES) keep their order in
# DuckDB; ClickHouse runs a UNION ALL's branches in parallel. One arrayJoin over an array of
# tuples is one stream, in order.
def _row_select(node) -> list[exp.Expression] | None:
    """The values of a SELECT of constants without FROM (one inline row), else None."""
    if not isinstance(node, exp.Select) or any(node.args.get(k) for k in ("from_", "where", "group", "having", "order",
                                                                            "limit", "joins", "with_", "distinct")):
        return None
    return [e.this if isinstance(e, exp.Alias) else e for e in node.expressions]


def _rows_select(rows: list[list[exp.Expression]], names: list[str]) -> exp.Select:
    arr = exp.Array(expressions=[call("tuple", *r) for r in rows])
    inner = exp.Select(expressions=[exp.alias_(call("arrayJoin", arr), "_r", quoted=True)])
    out = exp.Select(expressions=[exp.alias_(call("tupleElement", exp.column("_r", quoted=True), N(i + 1)), n, quoted=True)
                                  for i, n in enumerate(names)]).from_(exp.Subquery(this=inner, alias=exp.TableAlias(
                                      this=exp.to_identifier("_rows"))), copy=False)
    out.meta["rows"], out.meta["names"] = rows, names
    return out


def _union(node: exp.Union) -> exp.Expression:
    if node.args.get("distinct") or type(node) is not exp.Union:
        return node
    left, right = node.this, node.expression
    right_row = _row_select(right)
    if right_row is None:
        return node
    if isinstance(left, exp.Select) and "rows" in left.meta:
        rows, names = left.meta["rows"], left.meta["names"]
    else:
        first = _row_select(left)
        if first is None or not all(isinstance(e, exp.Alias) for e in left.expressions):
            return node
        rows, names = [first], [e.alias for e in left.expressions]
    if len(right_row) != len(names):
        return node
    return _rows_select(rows + [right_row], names)


def _values(node: exp.Values) -> exp.Expression:
    alias = node.args.get("alias")
    names = [c.name for c in alias.columns] if alias is not None and alias.columns else None
    if not names:
        return node
    rows = [list(t.expressions) if isinstance(t, exp.Tuple) else [t] for t in node.expressions]
    return exp.Subquery(this=_rows_select(rows, names), alias=exp.TableAlias(this=alias.this))


def _nullable(e):
    """An argMax/argMin value made Nullable, so that no row (or only null keys) gives null, not the
    type's default (1970-01-01, 0, '') as ClickHouse's aggregates give over nothing."""
    if isinstance(e, exp.Alias):
        return exp.Alias(this=call("toNullable", e.this), alias=e.args["alias"])
    return call("toNullable", e)


def _arg_extreme(name):
    def spell(node):
        value, key = args(node)[:2]
        if isinstance(value, exp.Anonymous) and str(value.this).lower() == "tuple":   # a row: each field
            value = call("tuple", *[_nullable(e) for e in value.expressions])
        elif isinstance(value, (exp.Tuple, exp.Struct)):
            value = value.__class__(expressions=[_nullable(e) for e in value.expressions])
        else:   # argMax skips a null value as it skips a null key: a tuple of one is never null
            return call("tupleElement", call(name, call("tuple", _nullable(value)), key), N(1))
        return call(name, value, key)
    return spell


def _list_agg(node):
    """collect_list(x [ORDER BY k]) -> groupArray, sorted by the keys when ordered."""
    a = args(node)
    inner = a[0]
    if isinstance(inner, exp.Order):
        value = inner.this
        keys = [o.this for o in inner.expressions]
        desc = any(o.args.get("desc") for o in inner.expressions)
        pairs = call("groupArray", exp.Tuple(expressions=[value, *keys]))
        sort = "arrayReverseSort" if desc else "arraySort"
        key = exp.Tuple(expressions=[call("tupleElement", exp.column("_p"), N(i + 2)) for i in range(len(keys))]) \
            if len(keys) > 1 else call("tupleElement", exp.column("_p"), N(2))
        lam = exp.Lambda(this=key, expressions=[exp.to_identifier("_p")])
        return call("arrayMap", exp.Lambda(this=call("tupleElement", exp.column("_p"), N(1)),
                                           expressions=[exp.to_identifier("_p")]),
                    call(sort, lam, pairs))
    return call("groupArray", inner)


def _filter(node: exp.Filter):
    """An aggregate FILTERed: sqlglot writes the -If combinator onto the outer call, which for an
    ordered list (arrayMap over a sorted groupArray, _list_agg) is no aggregate: the condition goes
    onto its groupArray instead."""
    inner = node.this
    if isinstance(inner, exp.Anonymous) and inner.name == "arrayMap":
        arrays = [g for g in inner.find_all(exp.Anonymous) if g.name == "groupArray"]
        if len(arrays) == 1:
            g = arrays[0]
            g.replace(call("groupArrayIf", *args(g), node.expression.this))
            return inner
    return node


def _lambda_first(name):
    """A lambda last (Transform: list, lambda) -> ClickHouse's lambda first (arrayMap(lambda, list))."""
    def f(node):
        a = args(node)
        return call(name, a[1], a[0], *a[2:])
    return f


def _sum_list(node):
    """The sum of a list's values but its nulls, null when it has none (as DuckDB's list_sum):
    arraySum refuses Nullable elements."""
    x = exp.to_identifier("_x")
    values = call("arrayFilter", exp.Lambda(this=call("isNotNull", exp.column("_x")), expressions=[x]), args(node)[0])
    total = call("arraySum", call("arrayMap", exp.Lambda(this=call("assumeNotNull", exp.column("_x")), expressions=[x]), values))
    return exp.If(this=call("notEmpty", values.copy()), true=total, false=exp.null())


def _generate_series(node):
    """GenerateSeries(a, b, step) as a list (inclusive); over datetimes with a microsecond step."""
    a = args(node)
    start, stop, step = a
    if isinstance(step, exp.Anonymous) and step.name == "toIntervalMicrosecond":     # datetimes
        us = step.expressions[0]
        s, e = call("toUnixTimestamp64Micro", start), call("toUnixTimestamp64Micro", stop)
        return call("arrayMap", exp.Lambda(this=call("fromUnixTimestamp64Micro", exp.column("_u"), L("UTC")),
                                           expressions=[exp.to_identifier("_u")]),
                    call("range", s, exp.Add(this=e, expression=N(1)), us))
    if isinstance(node.parent, exp.Table) and all(_int_literal(x) for x in a):
        return call("generate_series", *map(_not_null, a))   # ClickHouse's table function streams the range
    return call("netatlas_series", start, stop, step)


def _int_literal(e) -> bool:
    while isinstance(e, (exp.Cast, exp.Neg, exp.Paren)):
        if isinstance(e, exp.Neg):
            return False                       # a descending or negative range: the list form
        e = e.this
    return isinstance(e, exp.Literal) and not e.is_string and e.this.isdigit()


def _column(node: exp.Column) -> exp.Expression:
    """A whole row named by its table alias (arg_max(x, *)): a named tuple of its columns."""
    names = node.meta.get("row_columns")
    if names is None:
        return node
    return call("tuple", *[exp.alias_(exp.column(c, table=node.name, quoted=True), c, quoted=True) for c in names])


def _cte(node: exp.CTE) -> exp.Expression:
    """ClickHouse has no MATERIALIZED CTEs: a plain one."""
    node.set("materialized", None)
    return node


def _table(node: exp.Table) -> exp.Expression:
    """A list in FROM (a range the table function cannot give) -> SELECT arrayJoin(list)."""
    this = node.this
    if isinstance(this, exp.Anonymous) and this.name == "generate_series":
        # the table function streams UInt64: a long is Int64 (a default of prev() must fit it)
        sel = exp.Select(expressions=[exp.alias_(call("toInt64", exp.column("generate_series")), "generate_series", quoted=True)],
                         from_=exp.From(this=node.copy()))
        return exp.Subquery(this=sel, alias=node.args.get("alias") or exp.TableAlias(this=exp.to_identifier("_series")))
    if isinstance(this, (exp.Anonymous, exp.Func)):
        sel = exp.Select(expressions=[exp.alias_(call("arrayJoin", this), "generate_series", quoted=True)])
        return exp.Subquery(this=sel, alias=node.args.get("alias") or exp.TableAlias(this=exp.to_identifier("_series")))
    return node


def _round(node):
    a = args(node)
    digits = a[1] if len(a) > 1 else N(0)
    return call("netatlas_round", a[0], digits)


def _regexp_replace(node):
    a = args(node)
    flags = a[3].this if len(a) > 3 and isinstance(a[3], exp.Literal) else ""
    return call("replaceRegexpAll" if "g" in flags else "replaceRegexpOne", a[0], a[1], a[2])


def _regexp_extract_all(node):
    a = args(node)
    group = a[2] if len(a) > 2 else N(0)
    return call("netatlas_extract_all", a[0], a[1], group)


def _date_trunc(node):
    a = args(node)
    unit = a[0].this.lower() if isinstance(a[0], exp.Literal) else None
    fn = {"second": "toStartOfSecond", "minute": "toStartOfMinute", "hour": "toStartOfHour", "day": "toStartOfDay",
          "week": "toMonday", "month": "toStartOfMonth", "quarter": "toStartOfQuarter", "year": "toStartOfYear"}.get(unit)
    if fn is None:
        return call("dateTrunc", a[0], a[1])
    if fn == "toStartOfSecond":
        return call(fn, a[1])
    return call("toDateTime64", call(fn, a[1]), N(6), L("UTC"))


def _time_bucket(node):
    a = args(node)
    interval, ts = a[0], a[1]
    us = interval.this if isinstance(interval, exp.Interval) else interval
    if isinstance(us, exp.Literal) and us.is_string:
        us = N(int(us.this))
    origin = a[2] if len(a) > 2 else None
    base = call("toUnixTimestamp64Micro", origin) if origin is not None else N(0)
    diff = exp.Sub(this=call("toUnixTimestamp64Micro", ts), expression=base)
    floored = exp.Mul(this=call("floor", exp.Div(this=diff, expression=us)), expression=us)
    return call("fromUnixTimestamp64Micro", call("toInt64", exp.Add(this=floored, expression=base)), L("UTC"))


def _microseconds(node):
    return call("toIntervalMicrosecond", args(node)[0])


def _days(node):
    return call("toIntervalDay", args(node)[0])


def _string_split(node):
    a = args(node)
    return call("splitByString", a[1], a[0])


def _contains(node):
    a = args(node)
    return exp.GT(this=call("position", a[0], a[1]), expression=N(0))


def _list_slice(node):
    a = args(node)
    return call("netatlas_list_slice", *a)


def _struct_extract(node):
    a = args(node)
    return call("tupleElement", a[0], a[1])


def _try(node):
    return args(node)[0]


# strftime (the planner's formats) -> Joda (formatDateTimeInJodaSyntax): ClickHouse's own
# formatDateTime has no unpadded fields
_STRFTIME_JODA = {"%Y": "yyyy", "%y": "yy", "%m": "MM", "%-m": "M", "%d": "dd", "%-d": "d", "%H": "HH",
                  "%-H": "H", "%I": "hh", "%-I": "h", "%M": "mm", "%-M": "m", "%S": "ss", "%-S": "s",
                  "%f": "SSSSSS", "%g": "SSS", "%p": "a"}
_STRFTIME = re.compile(r"%-?[A-Za-z%]")


def _joda(fmt: str) -> str | None:
    out, pos = [], 0
    for m in _STRFTIME.finditer(fmt):
        text = fmt[pos:m.start()]
        if text:
            out.append("'" + text.replace("'", "''") + "'")
        code = m.group(0)
        if code == "%%":
            out.append("'%'")
        elif code in _STRFTIME_JODA:
            out.append(_STRFTIME_JODA[code])
        else:
            return None
        pos = m.end()
    if fmt[pos:]:
        out.append("'" + fmt[pos:].replace("'", "''") + "'")
    return "".join(out)


def _strftime(node):
    a = args(node)
    joda = _joda(a[1].this) if isinstance(a[1], exp.Literal) and a[1].is_string else None
    if joda is None:
        return call("formatDateTime", *a)
    return call("formatDateTimeInJodaSyntax", a[0], L(joda))


_DATE_PARTS = {"year": "toYear", "quarter": "toQuarter", "month": "toMonth", "week": "toISOWeek",
               "day": "toDayOfMonth", "dayofyear": "toDayOfYear", "hour": "toHour", "minute": "toMinute",
               "second": "toSecond"}


def _date_part(node):
    a = args(node)
    f = _DATE_PARTS.get(a[0].this.lower()) if isinstance(a[0], exp.Literal) else None
    return call(f, a[1]) if f else call("dateDiff", *a)


def _struct(node: exp.Struct) -> exp.Expression:
    """{'k': v, ...} -> a named tuple (enable_named_columns_in_function_tuple)."""
    items = []
    for e in node.expressions:
        if isinstance(e, exp.PropertyEQ):
            items.append(exp.alias_(e.expression, e.this.name, quoted=True))
        elif isinstance(e, exp.Slice):
            items.append(exp.alias_(e.args["expression"], e.this.name, quoted=True))
        else:
            items.append(e)
    return call("tuple", *items)


def _bitwise(name):
    return lambda node: call(name, node.this, node.expression)


def _quantile(node):
    """quantile_disc(x, p): the nearest rank (DuckDB's and Kusto's), null over no values."""
    a = args(node)
    return call("netatlas_nearest_rank", call("arraySort", call("groupArray", a[0])), a[1])


_TICKS = {"d": (864_000_000_000, None), "h": (36_000_000_000, 24), "H": (36_000_000_000, 24),
          "m": (600_000_000, 60), "s": (10_000_000, 60)}


def _format_timespan(node):
    """format_timespan(t, 'fmt') with a constant format: the format read here, once, into one
    concat() of the parts (DuckDB's runtime does it in Python per row)."""
    a = args(node)
    fmt = a[1].this if isinstance(a[1], exp.Literal) and a[1].is_string else None
    if fmt is None:
        return node
    t = call("abs", a[0])
    parts: list[exp.Expression] = []
    for kind, c, run in timespan_format_tokens(fmt):
        if kind == "text":
            parts.append(L(c))
        elif c in "fF":
            digits = call("substring", call("leftPad", call("toString", exp.Mod(this=t.copy(), expression=N(10_000_000))),
                                              N(7), L("0")), N(1), N(run))
            parts.append(call("trimRight", digits, L("0")) if c == "F" else digits)
        else:
            per, mod = _TICKS[c]
            v = call("intDiv", t.copy(), N(per))
            if mod:
                v = exp.Mod(this=v, expression=N(mod))
            parts.append(call("leftPad", call("toString", v), call("greatest", N(run), call("length", call("toString", v.copy()))), L("0")))
    sign = exp.Case(ifs=[exp.If(this=exp.LT(this=a[0].copy(), expression=N(0)), true=L("-"))], default=L(""))
    body = call("concat", sign, *parts) if parts else L("")
    return exp.Case(ifs=[exp.If(this=exp.Is(this=a[0].copy(), expression=exp.null()), true=L(""))], default=body)


_URL_SAFE = "^[A-Za-z0-9_.!*()-]$"


def _url_encode(node):
    """.NET's UrlEncode, as Kusto's url_encode: byte by byte, lower-case hex, space as '+'."""
    s, plus = args(node)
    byte = exp.column("_c")
    enc = exp.Case(ifs=[exp.If(this=call("match", byte, L(_URL_SAFE)), true=byte.copy()),
                        exp.If(this=exp.And(this=exp.EQ(this=byte.copy(), expression=L(" ")), expression=plus),
                               true=L("+"))],
                   default=call("concat", L("%"), call("lower", call("hex", byte.copy()))))
    chars = call("arrayMap", exp.Lambda(this=call("substring", s.copy(), exp.column("_i"), N(1)),
                                        expressions=[exp.to_identifier("_i")]),
                 call("range", N(1), exp.Add(this=call("length", s.copy()), expression=N(1))))
    return call("arrayStringConcat", call("arrayMap", exp.Lambda(this=enc, expressions=[exp.to_identifier("_c")]), chars))


# the planner's vocabulary (base.FUNCTIONS) that ClickHouse calls by another name, same arguments
SPELLINGS = {
    "zip_lists": "arrayZip",
    "reverse_list": "arrayReverse",
    "list_length": "length",
    "range_list": "range",
    "json_length": "JSONLength",
    "json_merge": "JSONMergePatch",
    "byte_length": "length",
    "ends_with": "endsWith",
    "regex_quote": "regexpQuoteMeta",
    "decode_url": "decodeURLComponent",
    "power": "pow",
    "log10": "log10",
    "log2": "log2",
    "gamma": "tgamma",
    "is_finite": "isFinite",
    "sample_variance": "varSamp",
    "datetime_diff": "dateDiff",
    "epoch_microseconds": "toUnixTimestamp64Micro",
}

# the vocabulary's calls ClickHouse shapes differently
FUNCTIONS = {
    "json_at": _json_extract,
    "json_text_at": _json_extract_string,
    "json_has": _json_exists,
    "json_of_pairs": _json_object,
    "as_json": _to_json,
    "collect_list": _list_agg,
    "value_at_max": _arg_extreme("argMax"),
    "value_at_min": _arg_extreme("argMin"),
    "make_list": lambda n: exp.Array(expressions=args(n)),
    "sublist": _list_slice,
    "sum_list": _sum_list,
    "list_positions": lambda n: call("arrayJoin", call("arrayEnumerate", args(n)[0])),
    "split_string": _string_split,
    "microseconds": _microseconds,
    "datetime_trunc": _date_trunc,
    "datetime_part": _date_part,
    "minute_microseconds": lambda n: exp.Mod(this=call("toUnixTimestamp64Micro", args(n)[0]), expression=N(60_000_000)),
    "minute_milliseconds": lambda n: exp.Mod(this=call("intDiv", call("toUnixTimestamp64Micro", args(n)[0]), N(1000)),
                                             expression=N(60_000)),
    "netatlas_format_timespan": _format_timespan,
    "netatlas_url_encode": _url_encode,
    "netatlas_xxhash64": lambda n: call("reinterpretAsInt64", call("xxHash64", args(n)[0])),
    "netatlas_xxhash64_long": lambda n: call("reinterpretAsInt64", call("xxHash64", call("toInt64", args(n)[0]))),
    "netatlas_xxhash64_real": lambda n: call("reinterpretAsInt64", call("xxHash64", call("toFloat64", args(n)[0]))),
    "netatlas_todatetime": lambda n: call("parseDateTime64BestEffortOrNull", args(n)[0], N(6), L("UTC")),
}

# typed function nodes whose ClickHouse spelling by sqlglot is not the meaning the planner wants
CALLS = {
    # dynamic values: JSON text
    exp.JSONType: _json_type,
    exp.JSONArray: lambda n: call("netatlas_json_array", exp.Array(expressions=[call("netatlas_json_value", x) for x in args(n)])),
    exp.JSONKeys: lambda n: call("JSONExtractKeys", *args(n)),
    # lists
    exp.Transform: _lambda_first("arrayMap"),
    exp.ArrayDistinct: rename("arrayDistinct"),
    exp.ArrayConcat: rename("arrayConcat"),
    exp.Explode: rename("arrayJoin"),
    exp.GenerateSeries: _generate_series,
    exp.StructExtract: _struct_extract,
    exp.ArrayToString: rename("arrayStringConcat"),
    # strings
    exp.Contains: _contains,
    exp.StartsWith: rename("startsWith"),
    exp.Lower: rename("lowerUTF8"),         # lower/upper change ASCII letters only: 'ÉCOLE' kept its É
    exp.Upper: rename("upperUTF8"),
    exp.StrPosition: rename("positionUTF8"),
    exp.Length: rename("lengthUTF8"),
    exp.Replace: rename("replaceAll"),
    exp.Reverse: rename("reverseUTF8"),
    exp.Translate: rename("translateUTF8"),
    exp.Trim: lambda n: call("trimBoth", *args(n)),
    exp.ConcatWs: rename("concatWithSeparator"),
    exp.ToBase64: rename("base64Encode"),
    exp.FromBase64: rename("tryBase64Decode"),
    exp.Encode: lambda n: args(n)[0],
    exp.Decode: lambda n: args(n)[0],
    exp.SHA2: lambda n: _hex(call("SHA256", n.this)),
    exp.SHA: lambda n: _hex(call("SHA1", n.this)),
    exp.MD5: lambda n: _hex(call("MD5", n.this)),
    exp.RegexpLike: lambda n: call("match", n.this, n.expression),
    exp.RegexpFullMatch: lambda n: call("match", n.this, exp.DPipe(this=exp.DPipe(this=L("^(?:"), expression=n.expression), expression=L(")$"))),
    exp.RegexpExtract: lambda n: call("regexpExtract", *args(n)),
    exp.RegexpExtractAll: _regexp_extract_all,
    exp.RegexpReplace: _regexp_replace,
    # numbers
    exp.Round: _round,
    exp.Rand: lambda n: call("randCanonical"),
    exp.Trunc: rename("trunc"),
    exp.VariancePop: rename("varPop"),
    exp.StddevSamp: rename("stddevSamp"),
    exp.StddevPop: rename("stddevPop"),
    exp.AnyValue: rename("any"),
    exp.PercentileDisc: _quantile,
    # datetimes
    exp.TimeToUnix: lambda n: exp.Div(this=call("toUnixTimestamp64Micro", n.this), expression=N("1e6")),
    exp.ToDays: _days,
    exp.UnixToTime: lambda n: call("fromUnixTimestamp64Micro", call("toInt64", n.this), L("UTC")),
    exp.TimestampFromParts: lambda n: call("netatlas_make_datetime", *args(n)),
    exp.DateBin: _time_bucket,
    exp.DayOfWeek: lambda n: call("toDayOfWeek", n.this, N(2)),
    exp.WeekOfYear: lambda n: call("toISOWeek", n.this),
    exp.TimeToStr: _strftime,
    exp.Try: _try,
    # windows: past the frame a value of a type without null gives 0, not null; and a default
    # must have the value's very type (the planner's casts are Nullable)
    exp.Lag: lambda n: _nullable_value(n),
    exp.Lead: lambda n: _nullable_value(n),
}


def _nullable_value(node: exp.Expression) -> exp.Expression:
    node.set("this", call("toNullable", node.this))
    return node


def _hex(digest: exp.Expression) -> exp.Expression:
    """A digest as lower-case hex, as DuckDB's sha256() and Kusto's hash_sha256() give it."""
    return call("lower", call("hex", digest))

TRANSFORMS = {
    exp.DataType: _datatype,
    exp.TryCast: _try_cast,
    exp.Cast: _cast,
    exp.CTE: _cte,
    exp.Table: _table,
    exp.Struct: _struct,
    exp.Select: _select,
    exp.Union: _union,
    exp.Values: _values,
    exp.Column: _column,
    exp.BitwiseAnd: _bitwise("bitAnd"),
    exp.BitwiseOr: _bitwise("bitOr"),
    exp.BitwiseXor: _bitwise("bitXor"),
    exp.BitwiseLeftShift: _bitwise("bitShiftLeft"),
    exp.BitwiseRightShift: _bitwise("bitShiftRight"),
    exp.BitwiseNot: lambda node: call("bitNot", node.this),
    exp.Filter: _filter,
}

def _refuse(name: str):
    def rewrite(node):
        raise KqlError(f"series_{name}() is not supported on the ClickHouse store (its numbers would differ "
                       "from Kusto's); run it on DuckDB", code="KQL_NOT_SUPPORTED")
    return rewrite


FUNCTIONS.update({f"netatlas_series_{name}": _refuse(name) for name in SERIES_REFUSED})

CLICKHOUSE = Dialect("clickhouse", "clickhouse", spellings=SPELLINGS, functions=FUNCTIONS,
                     transforms={**CALLS, **TRANSFORMS}, runtime=runtime, flags={"materialized_cte": False})
