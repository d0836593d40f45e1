"""Smoke run of bench/web.py: on a tiny demo datacenter (15 machines x 2 days, generated in this
process), the map of all machines is timed in process and through a real server against the raw
KQL query, and the report has both lines with a ratio and a verdict; with Chromium installed, the
map drawn in the browser too (--browser)."""
import re

from conftest import load_bench


def test_the_web_benchmark_reports_the_map_against_its_raw_query(tmp_path):
    bench = load_bench("web")
    lines = []
    browser = bench.CHROMIUM.exists()         # the map drawn in Chromium too, where it is installed
    if not browser:
        print(f"bench/web.py --browser not smoke-tested: {bench.CHROMIUM} is absent")
    code = bench.main(["--data", str(tmp_path / "demo"), "--machines", "15", "--days", "2", "--end",
                       "2026-11-25T00:00:00Z", "--repeat", "1", "--in-process", "--check"]
                      + (["--browser"] if browser else []), write=lines.append)
    text = "\n".join(lines)
    assert code == 0, text
    assert "15 machines" in text and "raw-query rows" in text
    for path in ("in process", "HTTP"):
        line = next(line for line in lines if line.startswith(path + " "))
        assert re.search(r"\d+\.\d+x\s+PASS$", line), line
    assert "map steps in process" in text and "flows" in text
    assert re.search(r"without the hourly rollup .*: \d+\.\d+ s \(\d+\.\dx the map's time\)", text), text
    if browser:
        line = next(line for line in lines if line.startswith("Chromium: "))
        assert re.search(r"drawn in \d+\.\d+ s .* goal < 3 s  PASS$", line), line
