"""evaluate plugins: name -> planner function (planner, input Rel, call) -> Rel."""
from __future__ import annotations

from sqlglot import exp

from ..errors import KqlSemanticError
from . import syntax as s
from . import types as T
from .plan import Rel
from .planner import Planner
from .relations import aliased, mv_cast, scope_of
from .typed import col, fn, json_key_path


def bag_unpack(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    """evaluate bag_unpack(Column [, OutputColumnPrefix]): one column per key of the bags."""
    if not call.args:
        raise KqlSemanticError("bag_unpack() needs the dynamic column to unpack", call.span, code="KQL_ARGUMENTS")
    bag = pl.scalar(call.args[0], scope_of(rel))
    if bag.type != T.DYNAMIC:
        raise KqlSemanticError(f"bag_unpack() needs a dynamic column, not {bag.type}", call.args[0].span, code="KQL_TYPE")
    prefix = ""
    if len(call.args) > 1:
        p = pl.scalar(call.args[1], scope_of(rel))
        prefix = p.const if p.is_const and isinstance(p.const, str) else ""
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
    keys = sorted(found)
    drop = bag.name if isinstance(call.args[0], s.Name) else None
    sel, cols = [], []
    for c, t in rel.cols:
        if c != drop:
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
                                   code="KQL_ARGUMENTS", hint="pass an OutputColumnPrefix")
        path = exp.Literal.string(json_key_path(k))
        typ = JSON_TYPES.get(frozenset(found[k]), T.DYNAMIC)
        value = fn("json_at", bag.sql.copy(), path)
        sel.append(aliased(mv_cast(value, typ), name))
        cols.append((name, typ))
    return Rel(pl.wrap(rel, sel), cols, None, rel.name)


# the JSON types seen for a key -> the column's KQL type
JSON_TYPES = {frozenset({"VARCHAR"}): T.STRING, frozenset({"BIGINT"}): T.LONG, frozenset({"UBIGINT"}): T.LONG,
              frozenset({"BIGINT", "UBIGINT"}): T.LONG, frozenset({"DOUBLE"}): T.REAL,
              frozenset({"BIGINT", "DOUBLE"}): T.REAL, frozenset({"BOOLEAN"}): T.BOOL}

def _autocluster(pl: Planner, rel: Rel, call: s.Call) -> Rel:
    from .autocluster import autocluster
    return autocluster(pl, rel, call)


PLUGINS = {"bag_unpack": bag_unpack, "autocluster": _autocluster}


def register(name: str, plugin) -> None:
    """Add an evaluate plugin (analytics modules register autocluster and basket here)."""
    PLUGINS[name] = plugin
