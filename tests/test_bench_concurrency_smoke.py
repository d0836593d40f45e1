"""Smoke run of bench/concurrency.py: a real server, a few samples of 'print 1' and of a small
ingest batch idle and beside one heavy query (stopped by a short time limit); the report has
both requests side by side with their ratio and verdict."""
import re

from conftest import load_bench


def test_the_concurrency_benchmark_reports_idle_and_loaded_latencies():
    bench = load_bench("concurrency")
    lines = []
    code = bench.main(["--samples", "20", "--heavy", "1", "--batch-size", "5", "--heavy-timeout", "2",
                       "--rounds", "2"],
                      write=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "in 2 rounds" in text and "1 heavy queries running" in text and "stopped at their 2 s" in text
    for name in ("print 1", "ingest 5 records"):
        line = next(line for line in lines if line.startswith(name))
        assert re.search(r"(\d+\.\dms\s+){4}\d+\.\d\dx\s+(PASS|MISS)$", line), line


def test_bad_arguments_exit_2():
    bench = load_bench("concurrency")
    lines = []
    assert bench.main(["--samples", "0"], write=lines.append) == 2
    assert "--samples" in lines[0]
