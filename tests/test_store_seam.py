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

def planner_calls() -> tuple[set[str], list[str]]:
    """The functions the KQL modules outside kql/dialects/ call by name: the first argument of
    ``fn("...")``, and where they build an ``exp.Anonymous`` themselves (only typed.fn may)."""
    names, anonymous = set(), []
    for p in (PACKAGE / "kql").rglob("*.py"):
        if "dialects" in p.relative_to(PACKAGE / "kql").parts:
            continue
        for node in ast.walk(ast.parse(p.read_text(), str(p))):
            if not isinstance(node, ast.Call):
                continue
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            if name == "fn" and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                names.add(node.args[0].value)
            elif name == "Anonymous":
                anonymous.append(f"{p.relative_to(PACKAGE)}:{node.lineno}")
    return names, anonymous


def test_the_planner_names_only_its_own_vocabulary():
    """No module outside kql/dialects/ names a store's function: the planner builds sqlglot's typed
    nodes, and calls what sqlglot has no node for by the names of its own vocabulary
    (dialects/base.FUNCTIONS); typed.fn refuses any other name."""
    from netatlas.kql.dialects.base import FUNCTIONS
    from netatlas.kql.typed import fn
    names, anonymous = planner_calls()
    assert {"collect_list", "json_at", "netatlas_ipv4_in_range"} <= names          # the scan finds them
    assert sorted(names - set(FUNCTIONS)) == []
    assert [a.split(":")[0] for a in anonymous] == ["kql/typed.py"], anonymous
    with pytest.raises(KeyError, match="vocabulary"):
        fn("regexp_matches")                 # DuckDB's name for exp.RegexpLike: not the planner's to use


def test_every_call_of_the_corpus_is_in_the_vocabulary():
    """The same, at run time: every call by name in the plans of the golden corpus and the seed
    queries (names built from parts, as the set functions' are, too) is in the vocabulary."""
    import sys
    sys.path.insert(0, str(Path(__file__).parent))
    from sqlglot import exp
    import netatlas
    from netatlas.kql.dialects.base import FUNCTIONS
    from netatlas.kql.generator import build
    from test_printer import CORPUS, plan_of
    ws = netatlas.connect()
    try:
        seen = {n.name for _, text in CORPUS for n in build(plan_of(ws, text)).walk() if type(n) is exp.Anonymous}
    finally:
        ws.close()
    assert {"collect_list", "netatlas_set_union"} <= seen
    assert sorted(seen - set(FUNCTIONS)) == []


def vocabulary_handled(dialect, runtime_names: set[str]) -> list[str]:
    from netatlas.kql.dialects.base import FUNCTIONS, RUNTIME_PREFIX
    return sorted(n for n in FUNCTIONS if n not in dialect.spellings and n not in dialect.functions
                  and not (n.startswith(RUNTIME_PREFIX) and n in runtime_names))


def test_every_dialect_spells_every_function_of_the_vocabulary():
    """Each name of the vocabulary is spelled or rewritten by each dialect, but the runtime's own,
    which each store's runtime installs under that name."""
    from netatlas.kql.dialects import DIALECTS
    from netatlas.kql.dialects.clickhouse import runtime as ch_runtime
    from netatlas.kql.dialects.duckdb import runtime as duck_runtime
    assert vocabulary_handled(DIALECTS["duckdb"], set(duck_runtime.MACROS) | {n for n, *_ in duck_runtime.UDFS}) == []
    assert vocabulary_handled(DIALECTS["clickhouse"], set(ch_runtime.FUNCTIONS)) == []


def test_every_spelling_is_a_function_of_its_store():
    """The spellings name functions the engines have: DuckDB's duckdb_functions(), ClickHouse's
    system.functions (chdb), case as each engine wants it."""
    import duckdb
    from netatlas.kql.dialects import DIALECTS
    con = duckdb.connect()
    duck = {r[0] for r in con.execute("SELECT function_name FROM duckdb_functions()").fetchall()}
    assert sorted(set(DIALECTS["duckdb"].spellings.values()) - duck) == []
    try:
        import chdb
    except ImportError as e:
        print(f"skipping ClickHouse's half: chdb is not installed ({e})")
        pytest.skip(f"chdb is not installed: {e}")
    rows = chdb.query("SELECT name, case_insensitive FROM system.functions", "CSV").data().splitlines()
    exact = {r.split(",")[0].strip('"') for r in rows}
    folded = {r.split(",")[0].strip('"').lower() for r in rows if r.endswith(",1")}
    missing = sorted(n for n in set(DIALECTS["clickhouse"].spellings.values()) if n not in exact and n.lower() not in folded)
    assert missing == []
