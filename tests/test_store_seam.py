"""The seam work of issue 13: only the store's own modules (netatlas/store/) name an engine's
package, the ``--store`` text names a store or says which ones this build has, and every error
class the package raises to its callers is defined in netatlas/errors.py."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from netatlas import errors
from netatlas.store import StoreError, open_store, parse_spec

PACKAGE = Path(__file__).resolve().parents[1] / "netatlas"
ENGINES = {"duckdb", "chdb", "clickhouse_connect"}


def engine_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & ENGINES


def test_no_module_outside_store_imports_an_engine():
    offenders = {str(p.relative_to(PACKAGE)): sorted(engine_imports(p)) for p in PACKAGE.rglob("*.py")
                 if "store" not in p.relative_to(PACKAGE).parts[:1] and engine_imports(p)}
    assert offenders == {}
    assert engine_imports(PACKAGE / "store" / "duckdb.py") == {"duckdb"}      # the check sees imports


@pytest.mark.parametrize("spec,expected", [
    (None, ("duckdb", None)),
    ("duckdb:/var/lib/netatlas", ("duckdb", Path("/var/lib/netatlas"))),
    ("/var/lib/netatlas", ("duckdb", Path("/var/lib/netatlas"))),
    ("relative/dir", ("duckdb", Path("relative/dir"))),
    ("chdb:/var/lib/netatlas", ("chdb", Path("/var/lib/netatlas"))),
    ("chdb", ("chdb", None)),
])
def test_a_store_spec_names_duckdb_or_a_directory(spec, expected):
    assert parse_spec(spec) == expected


def test_an_engine_this_build_lacks_is_refused_saying_which_it_has():
    with pytest.raises(StoreError, match=r"unknown store 'clickhouse' in 'clickhouse://h:8123/db': "
                                         r"this build has duckdb, chdb"):
        parse_spec("clickhouse://h:8123/db")


def test_open_store_gives_a_working_duckdb(tmp_path):
    store = open_store(f"duckdb:{tmp_path}")
    try:
        assert store.name == "duckdb" and (tmp_path / "netatlas.duckdb").exists()
        cur = store.cursor()
        # the dialect's runtime is installed on every cursor: a macro and a Python function
        assert cur.execute("SELECT netatlas_timespan_str(36000000000), netatlas_totimespan('1.00:00:00')"
                           ).fetchone() == ("01:00:00", 864000000000)
    finally:
        store.close()


def test_every_netatlas_error_is_defined_in_errors_py():
    """A class deriving from an error class of errors.py, defined anywhere else, is one of these."""
    ours = {name for name, obj in vars(errors).items()
            if isinstance(obj, type) and issubclass(obj, errors.NetatlasError)}
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ClassDef):
                bases = {b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases}
                if bases & ours:
                    offenders.append(f"{path.relative_to(PACKAGE)}: {node.name}")
    assert offenders == []
    assert {"StoreBusyError", "QueryBusyError", "AgentError", "ConfigError"} <= ours


def import_graph() -> dict[str, set[str]]:
    """module -> the package's modules it imports, anywhere in it (function-level imports too)."""
    mods = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    edges = {m: set() for m in mods}
    for m, p in mods.items():
        pkg = m if p.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - (node.level - 1)] if node.level else []
                name = ".".join(base + ([node.module] if node.module else [])) if node.level else node.module or ""
                subs = [f"{name}.{a.name}" for a in node.names if f"{name}.{a.name}" in mods]
                targets = subs or [name]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            edges[m] |= {t for t in targets if t in mods and t != m and not m.startswith(t + ".")}
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iteratively)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges[w]))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_no_import_cycles_in_the_package():
    """kql/'s planner, operators, plugins, make-series and generator, and cli.py with the
    commands around it, import each other in one direction only (plan.py holds the plan's product
    and the operator tables; errors.py the command line's errors; workspace.py opening one)."""
    assert cycles(import_graph()) == []
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]   # the check finds one


# ---- dialects as data -----------------------------------------------------------------------------

def planner_function_names() -> set[str]:
    """Every store function the planner calls by name: the first argument of ``fn("...")`` and of
    ``exp.Anonymous(this="...")`` in the KQL modules outside kql/dialects/."""
    names = set()
    for p in (PACKAGE / "kql").rglob("*.py"):
        if "dialects" in p.relative_to(PACKAGE / "kql").parts:
            continue
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == "fn" and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value.lower())
            elif name == "Anonymous":
                for kw in node.keywords:
                    if kw.arg == "this" and isinstance(kw.value, ast.Constant):
                        names.add(kw.value.value.lower())
                    elif kw.arg == "this" and isinstance(kw.value, ast.IfExp):     # "a" if ... else "b"
                        names |= {v.value.lower() for v in (kw.value.body, kw.value.orelse) if isinstance(v, ast.Constant)}
    return names


def test_every_function_the_planner_names_is_handled_by_every_dialect():
    """The planner's calls by name are DuckDB's spelling: DuckDB runs them as written (its own
    functions, or its runtime's macros and Python functions); ClickHouse must rewrite each one
    (its FUNCTIONS table, a function of its runtime of the same name, or sqlglot's typed node for
    it), so none reaches ClickHouse as an unknown function."""
    from sqlglot import exp
    from netatlas.kql.dialects.base import typed_node
    from netatlas.kql.dialects.clickhouse import FUNCTIONS, runtime as ch_runtime
    from netatlas.kql.dialects.duckdb import runtime as duck_runtime
    names = planner_function_names()
    assert {"regexp_matches", "netatlas_ipv4_in_range", "to_json", "list"} <= names      # the scan finds them
    duck_own = {n for n in names if n.startswith("netatlas_")}
    assert duck_own <= set(duck_runtime.MACROS) | {n for n, *_ in duck_runtime.UDFS}, "DuckDB's runtime lacks some"
    unhandled = sorted(n for n in names if n not in FUNCTIONS and n not in ch_runtime.FUNCTIONS
                       and type(typed_node(exp.Anonymous(this=n, expressions=[exp.column("x")] * 3), "duckdb"))
                       is exp.Anonymous
                       and type(typed_node(exp.Anonymous(this=n, expressions=[exp.column("x")]), "duckdb"))
                       is exp.Anonymous)
    assert unhandled == [], f"the ClickHouse dialect does not handle {unhandled}"
