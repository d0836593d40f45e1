"""Smoke run of bench/azure.py: every benchmark query answers the same rows through /api/query,
the Kusto v2 REST path, the Log Analytics query API and the Kusto SDK, on a small served workspace
(the timings are the benchmark's business, not this test's)."""

from conftest import load_bench


def test_every_query_gives_the_same_rows_on_every_path(tmp_path):
    bench = load_bench("azure")
    lines = []
    out = bench.run(rows=5_000, repeat=1, data_dir=tmp_path, write=lines.append)
    assert [m["name"] for m in out] == [q.name for q in bench.bench_kql.bench_queries(bench.bench_kql.datetime.now())]
    assert all(m["same"] for m in out), "\n".join(lines)
    assert all("sdk" in m for m in out), "\n".join(lines)        # the Kusto SDK answered each one too
    assert any(line.startswith("v2 / api: geometric mean") for line in lines)
