import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "netatlas"   # the reference files the package ships (schemas, seed queries)
sys.path.insert(0, str(ROOT))


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true", default=False,
                     help="rewrite the generated-SQL snapshots (<name>.duckdb.sql) of golden files")


@pytest.fixture
def update_golden(request):
    return request.config.getoption("--update-golden")
