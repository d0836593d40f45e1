"""What a dialect is, as data: how the plan's SQL tree becomes one store's SQL text.

The planner builds one SQL tree per query from sqlglot's typed nodes (``exp.RegexpLike``,
``exp.Round``, ...) wherever sqlglot has one, and for the functions it has none for, calls named
in the planner's own vocabulary, ``FUNCTIONS`` below (``exp.Anonymous`` nodes; ``typed.fn``
builds both and refuses a name not in it). No store's function is named outside ``dialects/``.
A dialect turns that tree into its store's text in one pass and one print:

- ``spellings``: a vocabulary name -> the store's function called with the same arguments;
- ``functions``: a vocabulary name -> a rewrite of the call (a store that shapes it differently);
  every name of ``FUNCTIONS`` is spelled or rewritten by every dialect, but the runtime's own
  (``netatlas_*``), which every store's runtime installs under that name (tests/test_dialects.py);
- ``transforms``: a sqlglot node class -> a rewrite of nodes of that class (typed functions the
  store's sqlglot generator spells with another meaning, types, literals, operators), tried along
  the class's bases;
- ``sqlglot``: the sqlglot dialect that prints the rewritten tree, or ``printer``, a fast printer
  of our own that gives the same text (DuckDB);
- ``runtime``: the helper functions the store installs so the SQL may call them (DuckDB: macros
  and Python functions; ClickHouse: SQL functions), read by the store's module (``store/``);
- ``flags``: small facts the plan and generate stages ask (e.g. whether a CTE may be
  ``MATERIALIZED``; ``row_id``: the name of a stored row's identity, which DuckDB's tables have
  and ClickHouse's do not).

A rewrite returns the node to print instead (or the node itself); rewrites see children already
rewritten, so they compose bottom-up.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from sqlglot import exp

Rewrite = Callable[[exp.Expression], exp.Expression]


SERIES_RUNTIME = (
    "add", "subtract", "multiply", "divide", "pow", "greater", "greater_equals", "less", "less_equals", "equals",
    "not_equals", "abs", "acos", "asin", "atan", "ceiling", "cos", "exp", "floor", "log", "sign", "sin", "tan",
    "sum", "stats", "fit_line", "fill_const", "fill_forward", "fill_backward", "fill_linear",
    "decompose", "decompose_forecast", "iir", "fir", "seasonal", "fit_poly", "fft", "ifft", "dot_product", "cosine_similarity",
    "pearson_correlation", "magnitude", "outliers", "periods_detect", "periods_validate", "decompose_anomalies",
    "fit_2lines")

# The planner's vocabulary for the functions sqlglot has no node for (or none that prints them
# with the meaning wanted): name -> what the call means. The ``netatlas_*`` ones are the runtime's.
FUNCTIONS: dict[str, str] = {
    # lists
    "collect_list": "aggregate: the values (nulls too) as a list, in an ORDER BY given inside",
    "make_list": "the arguments as a list",
    "list_length": "the number of elements of a list",
    "sublist": "list, from, to: the elements from..to (1-based, inclusive)",
    "zip_lists": "a, b: a list of pairs (structs) of the elements at the same place",
    "sum_list": "the sum of a list's elements",
    "reverse_list": "a list's elements, last first",
    "list_positions": "list, dimension: one row per element, its 1-based place (a set-returning call)",
    "range_list": "n: the list 0, 1, ..., n - 1",
    # dynamic values (JSON)
    "json_at": "json, path: the JSON value at a JSONPath ($.a[0]) or JSON pointer, null when absent",
    "json_text_at": "json, path: the value at the path as text (a string's own text), null when absent",
    "json_has": "json, path: whether the path names a value",
    "json_length": "the number of elements of a JSON array",
    "json_merge": "a, b: b's members over a's (RFC 7396 merge patch)",
    "json_of_pairs": "k1, v1, k2, v2, ...: a JSON object",
    "as_json": "any value as JSON (a list of JSON values: a JSON array of them)",
    # strings
    "split_string": "s, separator: the list of the parts (the separator taken literally)",
    "byte_length": "the UTF-8 bytes of a string",
    "ends_with": "s, suffix: whether s ends with suffix",
    "regex_quote": "s: the regular expression that matches s literally",
    "decode_url": "s: percent-decoded (%xx and +)",
    # numbers
    "power": "a, b: a raised to b, as a real",
    "log10": "the base-10 logarithm",
    "log2": "the base-2 logarithm",
    "gamma": "the gamma function",
    "is_finite": "whether a real is neither infinite nor NaN",
    "sample_variance": "aggregate: the sample variance",
    "value_at_max": "aggregate: x (null or not) at the row where y is largest (rows whose y is null skipped)",
    "value_at_min": "aggregate: x (null or not) at the row where y is smallest (rows whose y is null skipped)",
    # datetimes
    "datetime_diff": "part, a, b: whole part boundaries (a string literal unit) from a to b",
    "datetime_part": "part, d: a field of a datetime (a string literal unit)",
    "datetime_trunc": "part, d: d truncated to the unit (a string literal unit)",
    "epoch_microseconds": "a datetime as microseconds since 1970-01-01",
    "microseconds": "n: an interval of n microseconds",
    "minute_microseconds": "d: the microseconds within its minute (seconds included)",
    "minute_milliseconds": "d: the milliseconds within its minute (seconds included)",
    # the runtime's (each store installs them under these names)
    **{f"netatlas_{name}": "the runtime's" for name in (
        "array_index_of", "array_slice", "array_sort", "bag_drop", "bag_get", "bag_put", "countof", "datetime_str", "dynamic_str",
        "format_ipv4", "format_timespan", "gettype", "indexof", "ipv4_compare", "ipv4_in_range", "json_drop_nulls",
        "ipv4_is_private", "ipv4_masked", "ipv4_prefix", "ipv6_compare", "json_list", "make_bag",
        "make_set_dynamic", "make_set_values", "mv_list", "parse_ipv4", "parse_ipv6", "parse_json", "parse_url", "real_str",
        "set_difference", "set_intersect", "set_union", "timespan_str", "todatetime",
        "totimespan", "url_encode", "xxhash64", "xxhash64_long", "xxhash64_real")},
    # the series_* functions (functions/series.py): series as JSON text in, JSON text out
    **{f"netatlas_series_{name}": "the runtime's" for name in SERIES_RUNTIME},
}
RUNTIME_PREFIX = "netatlas_"
AGGREGATES = frozenset(name for name, meaning in FUNCTIONS.items() if meaning.startswith("aggregate:"))


@dataclass(frozen=True)
class Dialect:
    name: str
    sqlglot: str
    spellings: dict[str, str] = field(default_factory=dict)
    functions: dict[str, Rewrite] = field(default_factory=dict)
    transforms: dict[type, Rewrite] = field(default_factory=dict)
    printer: Callable[[exp.Expression], str] | None = None
    runtime: Any = None
    flags: dict[str, Any] = field(default_factory=dict)

    def rewrite(self, tree: exp.Expression, *, spell: bool = True) -> exp.Expression:
        """The tree with this dialect's rewrites applied (in place; the caller copies).
        ``spell=False``: the vocabulary's names left for the fast printer, which spells them."""
        spellings = self.spellings if spell else {}
        if not self.functions and not self.transforms and not spellings:
            return tree
        functions, transforms = self.functions, self.transforms
        cache: dict[type, Rewrite | None] = {}

        def by_class(cls):
            if cls not in cache:
                cache[cls] = next((transforms[c] for c in cls.__mro__ if c in transforms), None)
            return cache[cls]

        def visit(node):
            if type(node) is exp.Anonymous:
                name = node.name
                f = functions.get(name)
                if f is not None:
                    return f(node)
                spelled = spellings.get(name)
                return call(spelled, *node.expressions) if spelled is not None else node
            t = by_class(type(node))
            return t(node) if t is not None else node

        unshare(tree)
        for node in reversed(list(tree.dfs())):      # children first: a rewrite sees them rewritten
            new = visit(node)
            if new is not node:
                if node is tree:
                    tree = new
                else:
                    node.replace(new)
        return tree


def unshare(tree: exp.Expression) -> None:
    """Give every place of the tree a node of its own: the planner reuses a node in several places
    (a bin in SELECT and GROUP BY), and a rewrite in place must reach each of them."""
    seen = {id(tree)}
    stack = [tree]
    while stack:
        node = stack.pop()
        for key, value in list(node.args.items()):
            if isinstance(value, exp.Expression):
                if id(value) in seen:
                    value = value.copy()
                if value.parent is not node or value.arg_key != key:
                    node.set(key, value)
                seen.add(id(value))
                stack.append(value)
            elif type(value) is list:
                for i, v in enumerate(value):
                    if isinstance(v, exp.Expression):
                        if id(v) in seen:
                            v = v.copy()
                            node.set(key, v, index=i)
                        elif v.parent is not node:
                            node.set(key, v, index=i)
                        seen.add(id(v))
                        stack.append(v)


def args(node: exp.Expression) -> list[exp.Expression]:
    """The arguments of a call in order: an Anonymous node's expressions, a typed node's arguments
    in its ``arg_types`` order (flags, which are not expressions, left out)."""
    if type(node) is exp.Anonymous:
        return list(node.expressions)
    out = []
    for key in node.arg_types:
        v = node.args.get(key)
        if isinstance(v, exp.Expression):
            out.append(v)
        elif type(v) is list:
            out.extend(x for x in v if isinstance(x, exp.Expression))
    return out


def call(name: str, *arguments: exp.Expression) -> exp.Expression:
    """A store function called by name in the store's own spelling (used by dialect modules)."""
    return exp.Anonymous(this=name, expressions=list(arguments))


def rename(name: str) -> Rewrite:
    """A rewrite that calls another function with the same arguments."""
    return lambda node: call(name, *args(node))


__all__ = ["AGGREGATES", "Dialect", "FUNCTIONS", "RUNTIME_PREFIX", "Rewrite", "args", "call", "rename"]
