"""Smoke run of bench/kql.py: every benchmark query gives the same result through netatlas as its
hand-written DuckDB SQL, on a small generated VMConnection table."""

import pytest

from conftest import load_bench

pytest.importorskip("netatlas")


def test_every_benchmark_query_matches_hand_written_sql(tmp_path):
    bench = load_bench("kql")
    lines = []
    outcomes = bench.run_benchmark(rows=20_000, repeat=1, data_dir=tmp_path, compile_runs=3, write=lines.append)

    assert [o.query.name for o in outcomes] == [q.name for q in bench.bench_queries(bench.datetime.now())]
    failed = [o for o in outcomes if not o.matched]
    assert not failed, "\n".join(lines)
    assert all(o.compile_ms is not None and o.netatlas_s is not None and o.hand_s for o in outcomes)


def test_generated_table_is_reused_when_the_row_count_matches(tmp_path):
    bench = load_bench("kql")
    first, second = [], []
    bench.run_benchmark(rows=5_000, repeat=1, data_dir=tmp_path, compile_runs=1, only=["top_talkers"],
                        write=first.append)
    bench.run_benchmark(rows=5_000, repeat=1, data_dir=tmp_path, compile_runs=1, only=["top_talkers"],
                        write=second.append)
    assert "generated in" in first[0] and "reused" in second[0]
