"""The compile cache (kql/cache.py): a query run again is not compiled again, and what it answers
is what a fresh compile answers: for a later now, other parameters, a new custom table, data a
plugin reads."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import netatlas
from netatlas import kql
from netatlas.kql.cache import NOW_PROBE, CompileCache

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


@pytest.fixture()
def ws():
    w = netatlas.connect()
    yield w
    w.close()


def fresh(ws, text, **kw):
    return kql.compile(text, ws.catalogue, **kw).sql


def test_a_query_run_again_is_not_compiled_again(ws):
    text = "VMConnection | where Computer == 'web-01' | summarize count() by RemoteIp"
    first = ws.query(text, now=NOW)
    second = ws.query(text, now=NOW + timedelta(days=3))      # no now() in it: any now is the same SQL
    assert "plan" in first.timings and "plan" not in second.timings and "cached" in second.timings
    assert second.sql == first.sql == fresh(ws, text, now=NOW, max_rows=kql.DEFAULT_MAX_ROWS + 1)
    assert ws.compile_cache.hits == 1 and ws.compile_cache.misses == 1


def test_what_the_sql_depends_on_is_in_the_key(ws):
    cache = CompileCache()
    text = "declare query_parameters(m:string); VMConnection | where Computer == m"
    a = cache.compile(text, ws.catalogue, params={"m": "web-01"}, now=NOW)
    b = cache.compile(text, ws.catalogue, params={"m": "db-01"}, now=NOW)
    assert "'web-01'" in a.sql and "'db-01'" in b.sql and cache.hits == 0
    assert cache.compile(text, ws.catalogue, params={"m": "db-01"}, now=NOW).sql == b.sql and cache.hits == 1
    capped = cache.compile(text, ws.catalogue, params={"m": "db-01"}, now=NOW, max_rows=10)
    assert "LIMIT 10" in capped.sql and cache.hits == 1
    span = (NOW - timedelta(hours=1), NOW)
    spanned = cache.compile(text, ws.catalogue, params={"m": "db-01"}, now=NOW, timespan=span)
    assert "2026-11-25 11:00:00" in spanned.sql and cache.hits == 1
    misses = cache.misses
    cache.compile(text, ws.catalogue, params={"m": "db-01"}, now=NOW, dialect="clickhouse")
    assert cache.misses == misses + 1


def test_a_new_custom_table_is_seen_by_a_query_that_failed_or_compiled_before(ws):
    text = "union isfuzzy=true VMComputer, Fresh_CL | count"
    before = ws.query(text, now=NOW)
    assert "Fresh_CL" not in before.sql
    generation = ws.catalogue.generation
    ws.define_table("Fresh_CL", [("TimeGenerated", "datetime"), ("x_s", "string")])
    ws.ingest("Fresh_CL", [{"TimeGenerated": "2026-11-25T11:00:00Z", "x_s": "a"}])
    assert ws.catalogue.generation > generation
    after = ws.query(text, now=NOW)
    assert '"Fresh_CL"' in after.sql and after.rows == [[1]]


@pytest.mark.parametrize("text", [
    "VMConnection | where TimeGenerated > ago(1h) | count",
    "VMConnection | where TimeGenerated between (ago(2d) .. now()) and TimeGenerated < datetime(2026-01-01) | count",
    "print a = now(), b = ago(1d), c = now(-5m), d = datetime(2026-11-25 12:00)",
    "VMConnection | make-series n = count() default = 0 on TimeGenerated from ago(1d) to now() step 1h",
])
def test_a_query_that_reads_now_is_a_template_for_a_later_now(ws, text):
    """Compiled at NOW, the entry serves NOW + 20 minutes with the SQL a fresh compile writes then."""
    cache = CompileCache()
    cache.compile(text, ws.catalogue, now=NOW)
    later = NOW + timedelta(minutes=20, seconds=7, microseconds=3)
    got = cache.compile(text, ws.catalogue, now=later)
    assert cache.hits == 1, "the entry was not kept"
    assert got.sql == fresh(ws, text, now=later)
    # past the window it is compiled again, and right
    far = NOW + NOW_PROBE + timedelta(seconds=1)
    assert cache.compile(text, ws.catalogue, now=far).sql == fresh(ws, text, now=far) and cache.hits == 1
    earlier = NOW - timedelta(minutes=1)
    assert cache.compile(text, ws.catalogue, now=earlier).sql == fresh(ws, text, now=earlier)


@pytest.mark.parametrize("text", [
    "print d = startofday(now())",
    "print h = bin(now(), 1h)",
    "print y = getyear(now()), s = tostring(now()), odd = datetime_part('second', now()) % 2",
])
def test_functions_of_now_run_in_the_sql_and_follow_a_later_now(ws, text):
    """The functions of now() run in the SQL on its literal: the template moves the literal, and every
    later now inside the window gets what a fresh compile gives (a new day, hour or second too)."""
    cache = CompileCache()
    start = NOW - timedelta(minutes=30, seconds=0.5)
    cache.compile(text, ws.catalogue, now=start)
    for seconds in (1, 599, 1799, 1800.5, 3601):
        at = start + timedelta(seconds=seconds)
        assert cache.compile(text, ws.catalogue, now=at).sql == fresh(ws, text, now=at)
    assert cache.hits == 5


def test_a_comparison_with_now_crossing_its_constant_inside_the_window_is_right(ws):
    """now() against a constant: compiled 30 minutes before the constant, asked 10 minutes after."""
    cut = datetime(2026, 11, 25, 12, 30, tzinfo=timezone.utc)
    text = f"print a = iff(now() > datetime({cut:%Y-%m-%d %H:%M}), 'after', 'before'), b = now() < datetime({cut:%Y-%m-%d %H:%M})"
    assert ws.query(text, now=cut - timedelta(minutes=30)).rows == [["before", True]]
    assert ws.query(text, now=cut + timedelta(minutes=10)).rows == [["after", False]]
    assert ws.query(text, now=cut - timedelta(minutes=5)).rows == [["before", True]]


def test_a_plan_that_reads_the_data_is_not_kept(ws):
    """bag_unpack reads the bags' keys while planning: new keys in the data give new columns."""
    ws.define_table("Bags_CL", [("TimeGenerated", "datetime"), ("p_s", "string")])
    ws.ingest("Bags_CL", [{"TimeGenerated": "2026-11-25T11:00:00Z", "p_s": '{"a": 1}'}])
    text = "Bags_CL | project d = parse_json(p_s) | evaluate bag_unpack(d)"
    assert ws.query(text, now=NOW).columns == ["a"]
    ws.ingest("Bags_CL", [{"TimeGenerated": "2026-11-25T11:01:00Z", "p_s": '{"b": 2}'}])
    assert sorted(ws.query(text, now=NOW).columns) == ["a", "b"]


def test_mistakes_are_reported_every_time(ws):
    for _ in range(2):
        with pytest.raises(netatlas.KqlError) as e:
            ws.query("VMConnection | wher x", now=NOW)
        assert e.value.code == "KQL_UNKNOWN_OPERATOR" and "wher" in str(e.value)
    assert len(ws.compile_cache) == 0


def test_the_cache_keeps_its_most_recent_entries(ws):
    cache = CompileCache(size=3)
    for i in range(5):
        cache.compile(f"print x = {i}", ws.catalogue, now=NOW)
    assert len(cache) == 3
    cache.compile("print x = 4", ws.catalogue, now=NOW)
    cache.compile("print x = 0", ws.catalogue, now=NOW)
    assert cache.hits == 1 and cache.misses == 6


def test_clickhouse_sql_is_a_template_too(ws):
    cache = CompileCache()
    text = "VMConnection | where TimeGenerated > ago(1h) | summarize count() by bin(TimeGenerated, 5m)"
    cache.compile(text, ws.catalogue, now=NOW, dialect="clickhouse")
    later = NOW + timedelta(minutes=3)
    assert cache.compile(text, ws.catalogue, now=later, dialect="clickhouse").sql == \
        kql.compile(text, ws.catalogue, now=later, dialect="clickhouse").sql
    assert cache.hits == 1
