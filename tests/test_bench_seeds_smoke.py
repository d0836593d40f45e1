"""Smoke run of bench/seeds.py: on a tiny demo datacenter (15 machines x 1 day, generated in this
process by netatlas.demo.generate), every seed query's hand-written DuckDB SQL gives the same
result as netatlas, in process and through the HTTP server."""
import re

import pytest

from conftest import load_bench

pytest.importorskip("netatlas")


bench = load_bench("seeds")

ARGS = ["--machines", "15", "--days", "1", "--seed", "1", "--end", "2026-11-25T00:00:00Z", "--repeat", "1",
        "--in-process", "--check"]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """The tiny demo, generated once for the module by netatlas.demo.generate in this process."""
    path = tmp_path_factory.mktemp("seeds-bench")
    data = bench.ensure_data(path, machines=15, days=1, seed=1, end=bench.END, in_process=True)
    assert data.seconds is not None and data.counts["VMConnection"] > 0
    return path


def table_rows(lines: list[str]) -> dict[str, str]:
    """query name -> its row of the printed table."""
    names = {q.name for q in bench.seed_queries()}
    rows = {}
    for line in lines:
        first = line.split(" ", 1)[0]
        if first in names and first not in rows:
            rows[first] = line
    return rows


def test_every_hand_written_sql_matches_netatlas(data_dir):
    lines = []
    code = bench.main(["--data", str(data_dir)] + ARGS, write=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "reused" in lines[0], text  # the marker the fixture's generation wrote
    queries = bench.seed_queries()
    rows = table_rows(lines)
    assert set(rows) == {q.name for q in queries}, text
    for q in queries:
        if q.hand.sql is None:
            assert "skipped" in rows[q.name], text
        else:
            assert rows[q.name].rstrip().endswith(" ok"), text
    assert sum(q.hand.sql is None for q in queries) == 1  # only autocluster() waits for its plugin
    ran = sum(q.hand.sql is not None for q in queries)
    assert f"results:              {ran}/{ran} match the hand-written SQL" in text, text
    assert not re.search(r"MISMATCH|ERROR", text), text


def test_http_results_match_too(data_dir):
    pytest.importorskip("uvicorn")
    lines = []
    only = ["--query", "connections_by_fqdn", "--query", "all_machines", "--query", "link_status_24h",
            "--query", "outbound_dependencies"]
    code = bench.main(["--data", str(data_dir)] + ARGS + ["--http"] + only, write=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "reused" in lines[0], text
    assert "HTTP results:         4/4 match" in text, text
    assert "link_status_24h" in text and "*" in table_rows(lines)["link_status_24h"], text
