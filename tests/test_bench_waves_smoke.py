"""Smoke run of bench/waves.py: a small planted datacenter, its communities recovered, the waves
the same from the workspace and from the graph alone, Leiden and Louvain both timed (no time goal
asserted here)."""
import sys

from conftest import load_bench


def test_waves_benchmark_small(capsys):
    module = load_bench("waves")
    assert module.main(["--machines", "120", "--pairs", "900", "--community", "20", "--max-wave-size", "8",
                        "--compare"]) == 0
    out = capsys.readouterr().out
    assert "6 communities, recovered exactly: True" in out
    assert "largest 8, cap 8" in out and "same waves: True" in out
    assert out.count("recovered exactly: True") == 3      # the plan, Leiden and Louvain
