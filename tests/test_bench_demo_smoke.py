"""Smoke run of bench/demo.py: the demo-load benchmark loads a small datacenter both ways (frames,
records) and reports the same records per table."""

from conftest import load_bench


def test_demo_load_benchmark_reports_both_paths(tmp_path):
    from netatlas.demo import MIN_MACHINES
    bench = load_bench("demo")
    lines_a, lines_b = [], []
    a = bench.run(MIN_MACHINES, 1, records=False, data_dir=tmp_path / "a", write=lines_a.append)
    b = bench.run(MIN_MACHINES, 1, records=True, data_dir=tmp_path / "b", write=lines_b.append)
    assert a["counts"] == b["counts"] and a["counts"]["VMConnection"] > 0
    assert any(line.startswith("wall ") and "CPU" in line for line in lines_a)
    assert "frames (Workspace.ingest_frame)" in "\n".join(lines_a)
    assert "records (Workspace.ingest)" in "\n".join(lines_b)
