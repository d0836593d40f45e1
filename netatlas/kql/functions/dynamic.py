"""Dynamic (JSON) functions: arrays and property bags."""
from __future__ import annotations

from sqlglot import exp

from .. import types as T
from ..scalars import to_dynamic
from ..typed import Typed, cast, fn
from . import scalar

L, N = exp.Literal.string, exp.Literal.number


def _list(y: Typed):
    """A dynamic array as a DuckDB JSON[] list (null if not an array)."""
    return fn("netatlas_json_list", y.sql)


def _json(list_sql, of_dynamic: bool = True):
    """A list as a dynamic array; ``of_dynamic``: its elements are dynamic values themselves (a store
    keeping dynamic values as JSON text joins them rather than quoting them: meta "json_list")."""
    to_json = fn("as_json", list_sql)
    to_json.meta["json_list"] = of_dynamic
    return cast(to_json, T.DYNAMIC)


@scalar("array_length", "y", T.LONG)
def array_length(y):
    return exp.Case(ifs=[exp.If(this=exp.EQ(this=fn(exp.JSONType, y.sql), expression=L("ARRAY")),
                                true=cast(fn("json_length", y.sql), T.LONG))], default=exp.null())


@scalar("array_concat", "yy*", T.DYNAMIC)
def array_concat(*arrays):
    out = _list(arrays[0])
    for a in arrays[1:]:
        out = fn(exp.ArrayConcat, out, _list(a))
    return _json(out)


@scalar("array_slice", "yii", T.DYNAMIC)
def array_slice(y, start, end):
    return fn("netatlas_array_slice", y.sql, start.sql, end.sql)


def _index_of(y: Typed, v: Typed, start=None, length=None, occurrence=None):
    """Zero-based position of v in the array y (compared as JSON text), -1 when absent."""
    texts = fn(exp.Transform, _list(y), exp.Lambda(this=cast(exp.column("_e"), T.STRING),
                                                      expressions=[exp.to_identifier("_e")]))
    opt = [x.sql if x is not None else d for x, d in ((start, N(0)), (length, exp.Neg(this=N(1))), (occurrence, N(1)))]
    return cast(fn("netatlas_array_index_of", texts, cast(to_dynamic(v).sql, T.STRING), *opt), T.LONG)


@scalar("array_index_of", "yai?i?i?", T.LONG)
def array_index_of(y, v, start=None, length=None, occurrence=None):
    return _index_of(y, v, start, length, occurrence)


@scalar("array_reverse", "y", T.DYNAMIC)
def array_reverse(y):
    return _json(fn("reverse_list", _list(y)))


@scalar("array_sort_asc", "y", T.DYNAMIC)
def array_sort_asc(y):
    return fn("netatlas_array_sort", y.sql, L("ASC"))


@scalar("array_sort_desc", "y", T.DYNAMIC)
def array_sort_desc(y):
    return fn("netatlas_array_sort", y.sql, L("DESC"))


@scalar("array_sum", "y", T.REAL)
def array_sum(y):
    return fn("sum_list", fn(exp.Transform, _list(y), exp.Lambda(
        this=exp.TryCast(this=exp.column("_e"), to=T.storage(T.REAL)), expressions=[exp.to_identifier("_e")])))


@scalar("bag_keys", "y", T.DYNAMIC)
def bag_keys(y):
    return exp.Case(ifs=[exp.If(this=exp.EQ(this=fn(exp.JSONType, y.sql), expression=L("OBJECT")),
                                true=_json(fn(exp.JSONKeys, y.sql), False))], default=exp.null())


@scalar("bag_merge", "yy*", T.DYNAMIC)
def bag_merge(*bags):
    # the first bag wins on conflicts: patch in reverse order
    out = bags[-1].sql
    for b in reversed(bags[:-1]):
        out = fn("json_merge", out, b.sql)
    return out


@scalar("bag_has_key", "ys", T.BOOL)
def bag_has_key(y, k):
    return fn("json_has", y.sql, exp.DPipe(this=L("$."), expression=fn("as_json", k.sql)))


def _removal_tree(keys: Typed) -> dict:
    """bag_remove_keys()'s keys as a tree: key -> None (remove it) or the tree of its value's keys
    ('$.a.b' removes b inside a; a plain name or '$.name' a first-level key)."""
    from ..scalars import type_error
    items = keys.const if keys.is_const else None
    items = [items] if isinstance(items, str) else items
    if not isinstance(items, list) or not all(isinstance(k, str) for k in items):
        type_error("bag_remove_keys() needs a constant array of key names, e.g. dynamic(['a', '$.b.c'])", keys.span)
    tree: dict = {}
    for k in items:
        path = k[2:].split(".") if k.startswith("$.") else [k]
        if "" in path or any("[" in p for p in path):
            type_error(f"bag_remove_keys(): {k!r} is not a key name or a JSONPath of names ($.a.b; "
                       "array indexing is not supported)", keys.span)
        node = tree
        for part in path[:-1]:
            if node.get(part, {}) is None:
                break                       # the whole value is removed already
            node = node.setdefault(part, {})
        else:
            node[path[-1]] = None
    return tree


def _remove(bag: exp.Expression, tree: dict) -> exp.Expression:
    gone = [k for k, sub in tree.items() if sub is None]
    out = fn("netatlas_bag_drop", bag, exp.Array(expressions=[L(k) for k in gone])) if gone else bag
    for k, sub in tree.items():
        if sub is not None:
            out = fn("netatlas_bag_put", out, L(k), _remove(fn("netatlas_bag_get", bag.copy(), L(k)), sub))
    return out


@scalar("bag_remove_keys", "yy", T.DYNAMIC)
def bag_remove_keys(y, keys):
    """The bag without the keys (first-level names, or JSONPath '$.a.b' for nested ones); a value
    that is not a property bag is returned as it is."""
    return _remove(y.sql, _removal_tree(keys))


@scalar("pack", "aa*", T.DYNAMIC, "bag_pack", "pack_dictionary")
def pack(*args):
    from ..scalars import to_string
    items = []
    for i in range(0, len(args) - 1, 2):
        items += [to_string(args[i]).sql, to_dynamic(args[i + 1]).sql]
    return fn("json_of_pairs", *items)


@scalar("pack_array", "aa*", T.DYNAMIC, "make_array")
def pack_array(*args):
    return fn(exp.JSONArray, *[to_dynamic(a).sql for a in args])


def _set_op(name):
    """set_union / set_intersect / set_difference over any number of arrays (list macros, folded)."""
    def build(*arrays):
        if name == "set_difference":   # a - (b | c | ...)
            rest = _list(arrays[1])
            for a in arrays[2:]:
                rest = fn("netatlas_set_union", rest, _list(a))
            return _json(fn("netatlas_set_difference", _list(arrays[0]), rest))
        out = _list(arrays[0])
        for a in arrays[1:]:
            out = fn("netatlas_" + name, out, _list(a))
        return _json(fn(exp.ArrayDistinct, out))
    scalar(name, "yy*", T.DYNAMIC)(build)


for _name in ("set_union", "set_intersect", "set_difference"):
    _set_op(_name)


@scalar("set_has_element", "ya", T.BOOL)
def set_has_element(y, v):
    return exp.GTE(this=_index_of(y, v), expression=N(0))


@scalar("zip", "yy*", T.DYNAMIC)
def zip_(*arrays):
    return _json(fn(exp.Transform, fn("zip_lists", *[_list(a) for a in arrays]), exp.Lambda(
        this=_as_json(fn(exp.JSONArray, *[fn(exp.StructExtract, exp.column("_z"), N(i + 1)) for i in range(len(arrays))])),
        expressions=[exp.to_identifier("_z")])))


def _as_json(json_sql):
    """to_json of a value that is JSON already: the same value (meta "json_value" tells a store
    keeping JSON as text that there is nothing to encode)."""
    to_json = fn("as_json", json_sql)
    to_json.meta["json_value"] = True
    return to_json


@scalar("range", "aaa?", T.DYNAMIC)
def range_(start, stop, step=None):
    st = step.sql if step is not None else N(1)
    if start.type in T.NUMERIC and T.REAL in (start.type, stop.type, step.type if step is not None else T.LONG):
        # reals: start + i * step for i = 0 .. (stop - start) / step (the stores' series are of integers)
        n = cast(fn(exp.Floor, exp.Div(this=exp.Paren(this=exp.Sub(this=cast(stop.sql, T.REAL), expression=cast(start.sql, T.REAL))),
                                       expression=cast(st, T.REAL))), T.LONG)
        return _json(fn(exp.Transform, fn(exp.GenerateSeries, N(0), n, N(1)), exp.Lambda(
            this=exp.Add(this=cast(start.sql, T.REAL), expression=exp.Mul(this=exp.column("_i"), expression=cast(st, T.REAL))),
            expressions=[exp.to_identifier("_i")])), False)
    if start.type in T.NUMERIC:
        return _json(fn(exp.GenerateSeries, start.sql, stop.sql, st), False)
    return _json(fn(exp.Transform, fn(exp.GenerateSeries, start.sql, stop.sql, fn("microseconds", exp.IntDiv(this=st, expression=N(10)))),
                    exp.Lambda(this=fn("netatlas_datetime_str", exp.column("_d")), expressions=[exp.to_identifier("_d")])), False)
