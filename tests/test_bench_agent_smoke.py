"""Smoke run of bench/agent.py's metric sampling: it takes its looks at this host's /proc and
reports the share of a core one look a minute costs (the goal is judged by the bench, not here)."""
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "agent.py"


def test_the_sampling_bench_runs_and_reports_its_share_of_a_core():
    out = subprocess.run([sys.executable, str(BENCH), "--sampling-only", "--looks", "20"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    m = re.search(r"metric sampling: ([\d.]+) ms of CPU per look \((\d+) records.*= ([\d.]+)% of a core", out.stdout)
    assert m, out.stdout
    assert float(m[1]) > 0 and int(m[2]) >= 20          # processor, memory, a disk, heartbeats at least
