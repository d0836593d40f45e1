"""autocluster (kql/autocluster.py) beyond the golden files: its search against the row-by-row
definition, its limits, and the read that drops continuous numbers."""
from __future__ import annotations

import random
from collections import Counter
from itertools import combinations

import pytest

import netatlas
from netatlas import limits
from netatlas.errors import KqlError
from netatlas.kql import autocluster as ac
from netatlas.kql.autocluster import find_segments


@pytest.fixture(scope="module")
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def test_a_rarer_pattern_scoring_higher_does_not_end_the_search():
    # 40 rows share (x, p), 20 share (*, q) over varied a; 3 rows repeat (z, r): with a small
    # SizeWeight the 3-row pattern fixes more dimensions and scores higher than (*, q), but it is
    # under 5% of the rows, so (*, q) is still the second segment
    rows = [("x", "p")] * 40 + [(f"a{i}", "q") for i in range(20)] + [("z", "r")] * 3
    rows += [(f"u{i}", f"v{i}") for i in range(5)]
    segments = find_segments(rows, [1] * len(rows), 2, 0.2, least_rows=2)
    assert segments[:2] == [({0: "x", 1: "p"}, 40), ({1: "q"}, 20)]
    assert all(n >= 0.05 * len(rows) for _, n in segments)


def by_definition(rows: list[tuple], ndims: int, size_weight: float) -> list[tuple[dict, int]]:
    """The module's rule read literally, one row at a time: at each step count every pattern of
    every uncovered row, take the best scoring one of at least 5% of the rows (and 2 rows)."""
    total = len(rows)
    left, chosen = list(rows), []
    while left and len(chosen) < ac.MAX_SEGMENTS and len(left) >= ac.MIN_LEFT * total:
        counts = Counter(tuple((d, r[d]) for d in sub) for r in left
                         for k in range(1, ndims + 1) for sub in combinations(range(ndims), k))
        worthy = [(p, n) for p, n in counts.items() if n >= max(2, ac.MIN_LEFT * total)]
        if not worthy:
            break
        # the highest score; of equal ones, the pattern first in (column, value) order
        best = min(worthy, key=lambda pn: (-(pn[1] / total) ** size_weight * (len(pn[0]) / ndims) ** (1 - size_weight),
                                           pn[0]))[0]
        chosen.append(dict(best))
        left = [r for r in left if any(r[d] != v for d, v in best)]
    return [(p, sum(all(r[d] == v for d, v in p.items()) for r in rows)) for p in chosen]


def test_the_search_over_grouped_rows_gives_the_row_by_row_definition():
    # the search reads the input grouped (each distinct combination once, with its count) and
    # weighs only the frequent closed patterns; on 300 random inputs it picks what counting every
    # pattern of every uncovered row picks
    for seed in range(300):
        rnd = random.Random(seed)
        ndims = rnd.randint(1, 4)
        cards = [rnd.randint(1, 5) for _ in range(ndims)]
        rows = [tuple(f"v{rnd.randint(0, c - 1)}" for c in cards) for _ in range(rnd.randint(1, 120))]
        size_weight = rnd.choice([0.2, 0.5, 0.6, 0.8])
        grouped = Counter(rows)
        got = find_segments(list(grouped), list(grouped.values()), ndims, size_weight, least_rows=2)
        assert got == by_definition(rows, ndims, size_weight), seed


def test_combinations_past_the_limit_are_an_error(ws, monkeypatch):
    monkeypatch.setattr(limits, "PATTERN_MAX_ROWS", 50)
    q = "range i from 1 to {} step 1 | project a = tostring(i % 3), b = strcat('b', i) | evaluate autocluster()"
    with pytest.raises(KqlError) as info:
        ws.query(q.format(51))
    assert info.value.code == "KQL_QUERY_TOO_COMPLEX" and "at most 50 distinct combinations" in str(info.value)
    assert ws.query(q.format(50)).rows          # up to the limit: read


def test_a_continuous_number_past_the_limit_is_dropped_not_an_error(ws, monkeypatch):
    # 90 rows, each with its own n: grouped by every candidate column they pass the limit, so the
    # numbers' distinct counts are read first; n (90 values) is no dimension, and the answer is
    # the one without it
    monkeypatch.setattr(limits, "PATTERN_MAX_ROWS", 50)
    src = "range i from 1 to 90 step 1 | extend a = tostring(i % 3), k = i % 2"
    with_n = ws.query(f"{src} | project a, k, n = i | evaluate autocluster()")
    without = ws.query(f"{src} | project a, k | evaluate autocluster()")
    assert with_n.columns == without.columns == ["SegmentId", "Count", "Percent", "a", "k"]
    assert with_n.rows == without.rows and with_n.rows


def test_num_seeds_changes_nothing(ws):
    # the search considers every frequent pattern: any number of seeds gives the same answer
    data = 'datatable(a:string, b:string) ["x", "p", "x", "p", "x", "q", "y", "q", "x", "p"]'
    plain = ws.query(f"{data} | evaluate autocluster(0.5)").rows
    assert plain
    for seeds in (1, 5, 50):
        assert ws.query(f"{data} | evaluate autocluster(0.5, '~', {seeds})").rows == plain


def test_every_row_is_counted_past_200000(ws):
    # it read the first 200,000 rows and clustered those: 250,000 rows, the last 50,000 "late",
    # gave {early} as 100% of the rows. Now the database groups them all.
    q = ("range i from 1 to 250000 step 1 | project a = iff(i <= 200000, 'early', 'late'), b = 'same' "
         "| evaluate autocluster()")
    assert ws.query(q).rows == [[0, 200000, 80.0, "early", "same"], [1, 50000, 20.0, "late", "same"]]
