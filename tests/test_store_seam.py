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
])
def test_a_store_spec_names_duckdb_or_a_directory(spec, expected):
    assert parse_spec(spec) == expected


def test_an_engine_this_build_lacks_is_refused_saying_which_it_has():
    with pytest.raises(StoreError, match=r"unknown store 'chdb' in 'chdb:/data': this build has duckdb"):
        parse_spec("chdb:/data")


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
