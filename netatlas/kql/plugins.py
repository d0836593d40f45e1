"""evaluate plugins: name -> planner function (planner, input Rel, call) -> Rel."""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .plan import Rel
from .planner import Planner
from .relations import aliased, constant_args, mv_cast, scope_of
from .typed import col, fn, json_key_path


# bag_unpack's arguments after the column, by position and by name
BAG_UNPACK_ARGS = ("OutputColumnPrefix", "columnsConflict", "ignoredProperties")
CONFLICTS = ("error", "replace_source", "keep_source")


def _bag_unpack_args(pl: Planner, rel: Rel, call: s.Call) -> dict:
    out = constant_args(pl, rel, call.args[1:], BAG_UNPACK_ARGS, "bag_unpack", before=1)
    conflict, span = out.get("columnsConflict", ("error", call.span))
    if conflict not in CONFLICTS:
        raise KqlSemanticError(f"bag_unpack(): columnsConflict is one of {', '.join(CONFLICTS)}, not {conflict!r}",
                               span, code="KQL_ARGUMENTS")
    ignored = out.get("ignoredProperties", (None, None))[0]
    if ignored is not None and not (isinstance(ignored, list) and all(isinstance(k, str) for k in ignored)):
        raise KqlSemanticError("bag_unpack(): ignoredProperties is a dynamic array of property names",
                               out["ignoredProperties"][1], code="KQL_ARGUMENTS")
    prefix = out.get("OutputColumnPrefix", ("", None))[0]
    return {"prefix": prefix if isinstance(prefix, str) else "", "conflict": conflict, "ignored": set(ignored or ())}


def bag_unpack(pl: Planner, rel: Rel, call: s.Call, schema: dict | None = None) -> Rel:
    """evaluate bag_unpack(Column [, OutputColumnPrefix] [, columnsConflict] [, ignoredProperties])
    [: OutputSchema]: one column per key of the bags (the keys found in the data, or the schema's)."""
    if not call.args:
        raise KqlSemanticError("bag_unpack() needs the dynamic column to unpack", call.span, code="KQL_ARGUMENTS")
    bag = pl.scalar(call.args[0], scope_of(rel))
    if bag.type != T.DYNAMIC:
        raise KqlSemanticError(f"bag_unpack() needs a dynamic column, not {bag.type}", call.args[0].span, code="KQL_TYPE")
    args = _bag_unpack_args(pl, rel, call)
    prefix = args["prefix"]
    if schema is not None:
        return _bag_unpack_schema(pl, rel, call, bag, prefix, schema)
    if pl.executor is None:
        raise KqlSemanticError("bag_unpack() needs a workspace to discover the bag's keys", call.span,
                               code="KQL_UNSUPPORTED")
    # discover the keys and the JSON types of their values (a key of one type gets that column type)
    inner = exp.Select(expressions=[exp.alias_(bag.sql, "__b", quoted=True),
                                    exp.alias_(fn(exp.Explode, fn(exp.JSONKeys, bag.sql.copy())), "__k", quoted=True)]).from_(
        pl.finish(rel).subquery(pl.fresh(), copy=False), copy=False)
    # a JSON pointer names any key (a key may hold " or \\): / then the key, ~ as ~0 and / as ~1
    path = exp.DPipe(this=exp.Literal.string("/"), expression=fn(exp.Replace, fn(exp.Replace, col("__k"), exp.Literal.string("~"),
                                                                             exp.Literal.string("~0")),
                                                                 exp.Literal.string("/"), exp.Literal.string("~1")))
    keys_sql = exp.Select(expressions=[exp.Distinct(expressions=[col("__k")]), fn(exp.JSONType, fn("json_at", col("__b"), path))]).from_(
        inner.subquery(pl.fresh(), copy=False), copy=False)
    found: dict[str, set] = {}
    for k, jt in pl.run(keys_sql):
        if k is not None:
            found.setdefault(k, set())
            if jt and jt != "NULL":
                found[k].add(jt)
    keys = sorted(k for k in found if k not in args["ignored"])
    drop = bag.name if isinstance(call.args[0], s.Name) else None
    taken = {c for c, _ in rel.cols if c != drop}
    # a slot named as an input column: an error, or (in the slot's place) the slot's value or the input's
    replaced = {prefix + k for k in keys} & taken if args["conflict"] != "error" else set()
    kept = replaced if args["conflict"] == "keep_source" else set()
    types = dict(rel.cols)
    sel, cols = [], []
    for c, t in rel.cols:
        if c != drop and c not in replaced:
            sel.append(col(c))
            cols.append((c, t))
    taken = {c for c, _ in cols}
    for k in keys:
        name = prefix + k
        if not name:
            raise KqlSemanticError("bag_unpack(): a bag has the empty key \"\", which cannot name a column", call.span,
                                   code="KQL_ARGUMENTS", hint="pass an OutputColumnPrefix")
        if name in taken:
            raise KqlSemanticError(f"bag_unpack(): key '{k}' clashes with an existing column", call.span,
                                   code="KQL_ARGUMENTS", hint="pass an OutputColumnPrefix, or "
                                   "columnsConflict='replace_source' or 'keep_source'")
        if name in kept:
            sel.append(col(name))
            cols.append((name, types[name]))
            continue
        path = exp.Literal.string(json_key_path(k))
        typ = JSON_TYPES.get(frozenset(found[k]), T.DYNAMIC)
        value = fn("json_at", bag.sql.copy(), path)
        sel.append(aliased(mv_cast(value, typ), name))
        cols.append((name, typ))
    return Rel(pl.wrap(rel, sel), cols, None, rel.name)


def _bag_unpack_schema(pl: Planner, rel: Rel, call: s.Call, bag, prefix: str, schema: dict) -> Rel:
    """bag_unpack with an output schema: exactly the schema's columns (after the input's others with
    ``*``), each an input column of that name or else the bag's slot (the name less the prefix),
    converted to the schema's type; no look at the data."""
    drop = bag.name if isinstance(call.args[0], s.Name) else None
    inputs = {c: t for c, t in rel.cols if c != drop}
    named = {c for c, _ in schema["columns"]}
    sel, cols = [], []
    if schema["star"]:
        for c, t in inputs.items():
            if c not in named:
                sel.append(col(c))
                cols.append((c, t))
    for name, typ in schema["columns"]:
        if name in inputs:
            value = col(name) if inputs[name] == typ else convert(col(name), inputs[name], typ)
        else:
            key = name[len(prefix):] if prefix and name.startswith(prefix) else name
            value = mv_cast(fn("json_at", bag.sql.copy(), exp.Literal.string(json_key_path(key))), typ)
        sel.append(aliased(value, name))
        cols.append((name, typ))
    return Rel(pl.wrap(rel, sel), cols, None, rel.name)


def convert(e: exp.Expression, source: str, to: str) -> exp.Expression:
    """An input column of type ``source`` as the output schema's type ``to``."""
    if source == T.DYNAMIC:
        return mv_cast(e, to)
    if to == T.STRING:
        return exp.TryCast(this=e, to=exp.DataType.build("VARCHAR"))
    return exp.TryCast(this=e, to=T.storage(to))


def conform(pl: Planner, rel: Rel, schema: dict) -> Rel:
    """A plugin's output as its output schema says: the schema's columns (after the others with
    ``*``), each converted to its type; a schema column the plugin does not give is an error."""
    have = dict(rel.cols)
    missing = [c for c, _ in schema["columns"] if c not in have]
    if missing:
        raise KqlSemanticError(f"the plugin's output has no column {', '.join(repr(c) for c in missing)} "
                               f"(it gives {', '.join(have)})", schema["span"], code="KQL_UNKNOWN_COLUMN")
    named = {c for c, _ in schema["columns"]}
    sel, cols = [], []
    if schema["star"]:
        for c, t in rel.cols:
            if c not in named:
                sel.append(col(c))
                cols.append((c, t))
    for name, typ in schema["columns"]:
        sel.append(aliased(col(name) if have[name] == typ else convert(col(name), have[name], typ), name))
        cols.append((name, typ))
    return Rel(pl.wrap(rel, sel), cols, None, rel.name)


# the JSON types seen for a key -> the column's KQL type
JSON_TYPES = {frozenset({"VARCHAR"}): T.STRING, frozenset({"BIGINT"}): T.LONG, frozenset({"UBIGINT"}): T.LONG,
              frozenset({"BIGINT", "UBIGINT"}): T.LONG, frozenset({"DOUBLE"}): T.REAL,
              frozenset({"BIGINT", "DOUBLE"}): T.REAL, frozenset({"BOOLEAN"}): T.BOOL}

def _autocluster(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    from .autocluster import autocluster
    return autocluster(pl, rel, call)


def _basket(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    from .basket import basket
    return basket(pl, rel, call)


def _diffpatterns(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    from .basket import diffpatterns
    return diffpatterns(pl, rel, call)


def _migration_waves(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    from .migration_waves import migration_waves
    return migration_waves(pl, rel, call)


PLUGINS = {"bag_unpack": bag_unpack, "autocluster": _autocluster, "basket": _basket, "diffpatterns": _diffpatterns,
           "migration_waves": _migration_waves}


def register(name: str, plugin) -> None:
    """Add an evaluate plugin (analytics modules register autocluster and basket here)."""
    PLUGINS[name] = plugin
