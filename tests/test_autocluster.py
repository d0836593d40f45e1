"""autocluster's segment search (kql/autocluster.py) beyond the golden files."""
from __future__ import annotations

from netatlas.kql.autocluster import find_segments


def test_a_rarer_pattern_scoring_higher_does_not_end_the_search():
    # 40 rows share (x, p), 20 share (*, q) over varied a; 3 rows repeat (z, r): with a small
    # SizeWeight the 3-row pattern fixes more dimensions and scores higher than (*, q), but it is
    # under 5% of the rows, so (*, q) is still the second segment
    rows = [("x", "p")] * 40 + [(f"a{i}", "q") for i in range(20)] + [("z", "r")] * 3
    rows += [(f"u{i}", f"v{i}") for i in range(5)]
    segments = find_segments(rows, 2, 0.2)
    assert segments[:2] == [({0: "x", 1: "p"}, 40), ({1: "q"}, 20)]
    assert all(n >= 0.05 * len(rows) for _, n in segments)
