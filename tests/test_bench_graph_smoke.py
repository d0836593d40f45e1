"""Smoke run of bench/graph.py on a tiny demo (15 machines x 1 day, generated in this process): the
3-hop graph-match counts the same trails as Python does over the graph's edges."""

from conftest import load_bench


def test_graph_bench_counts_agree(tmp_path):
    module = load_bench("graph")
    lines = []
    rc = module.main(["--machines", "15", "--days", "1", "--repeat", "1", "--in-process", "--check",
                      "--data-dir", str(tmp_path / "demo")], write=lines.append)
    text = "\n".join(lines)
    assert rc == 0, text
    assert " trails (ok)" in text and ": 0 trails" not in text, text
