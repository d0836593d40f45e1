"""Smoke run of bench/rollup.py: a few rounds of agent batches stored with and without
VMConnection's hourly rollup, side by side, and the compaction of the hours they made pending."""
import re

from conftest import load_bench


def test_the_rollup_benchmark_reports_its_share_and_the_compaction():
    module = load_bench("rollup")
    lines = []
    assert module.main(["--batches", "60", "--repeat", "2"], write=lines.append) == 0
    text = "\n".join(lines)
    assert re.search(r"rows only \(rollup off\)\s+\d+\.\d+\s+\d+\.\d+\s+[\d,]+", text), text
    assert re.search(r"rows and rollup \(netatlas\)\s+\d+\.\d+\s+\d+\.\d+\s+[\d,]+", text), text
    assert re.search(r"the rollup's share: [+-]\d+% CPU", text), text
    merged = re.search(r"compaction: (\d+) of (\d+) pending hours merged .*: ([\d,]+) rollup rows -> ([\d,]+)", text)
    assert merged and merged.group(1) == merged.group(2) != "0", text
    assert int(merged.group(4).replace(",", "")) < int(merged.group(3).replace(",", "")), text
