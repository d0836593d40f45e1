"""Fuzzing (issue 11, "Done when"): the ingest decoder/checker and the KQL front end over
thousands of generated inputs, with hypothesis. The only failures allowed are the documented
ones: ``IngestError`` (a 4xx over HTTP) for ingestion; ``KqlError`` and ``QueryLimitError`` for
the KQL front end (and ``QueryExecutionError``, the documented runtime error, when a query runs).

Derandomized (the same examples in every run, so CI is reproducible), no deadline; the example
counts keep the file under a minute on one core. A failure hypothesis finds is kept as an
``@example`` beside its test once fixed.
"""
from __future__ import annotations

import gzip
import json
import re
import string
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import HealthCheck, event, example, given, settings, strategies as st

import netatlas
from netatlas import webmap
from netatlas.catalogue import Catalogue
from netatlas.errors import IngestError, KqlError, QueryExecutionError, QueryLimitError
from netatlas.ingest import decode

from test_server import Server

CATALOGUE = Catalogue.load()
TABLES = CATALOGUE.names()
SCHEMA = webmap.schema(CATALOGUE)
SEEDS = [s["query"] for s in webmap.samples()]
QUERY_ERRORS = (KqlError, QueryLimitError)


def now(delta: timedelta = timedelta()) -> str:
    return (datetime.now(timezone.utc) + delta).isoformat()


def fuzz(n: int):
    """hypothesis settings for one fuzz test: ``n`` examples, reproducible, no per-example deadline."""
    return settings(max_examples=n, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))


# ---------------------------------------------------------------- generated ingest bodies

json_scalars = (st.none() | st.booleans() | st.integers(min_value=-2**70, max_value=2**70)
                | st.floats(allow_nan=False) | st.text(max_size=40))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=12), inner, max_size=4), max_leaves=12)

# Values of each KQL column type: well-formed ones, near misses and any JSON value.
timestamps = st.builds(lambda d, zone: d.isoformat() + zone, st.datetimes(), st.sampled_from(["Z", "", "+02:00"]))

timespans = st.builds(lambda d, h, m, s: f"{d}.{h:02}:{m:02}:{s:02}", st.integers(0, 10**6), st.integers(0, 99),
                      st.integers(0, 99), st.integers(0, 99))
BY_TYPE = {
    "string": st.text(max_size=60),
    "long": st.integers(min_value=-2**64, max_value=2**64),
    "int": st.integers(min_value=-2**33, max_value=2**33),
    "real": st.floats(allow_nan=False),
    "decimal": st.floats(allow_nan=False) | st.decimals(allow_nan=False, places=6).map(str),
    "bool": st.booleans(),
    "datetime": timestamps | st.integers() | st.sampled_from(["", "now", "2026-13-01", "10000-01-01T00:00:00Z"]),
    "timespan": timespans | st.text(max_size=12),
    "dynamic": json_values,
    "guid": st.uuids().map(str) | st.text(max_size=40),
}


@st.composite
def batches(draw):
    """(table, records): records with keys from the table's columns (and some others), each value
    of its column's type or any JSON value."""
    table = draw(st.sampled_from(TABLES))
    columns = list(CATALOGUE.get(table).columns)
    column = st.sampled_from(columns)

    def record():
        keys = draw(st.lists(column, max_size=8, unique_by=lambda c: c[0]))
        rec = {name: draw(BY_TYPE.get(kind, json_values) | json_scalars if draw(st.integers(0, 9)) == 0
                          else BY_TYPE.get(kind, json_values)) for name, kind in keys}
        if draw(st.integers(0, 4)):         # mostly a plausible time, so that records reach the checker
            rec["TimeGenerated"] = draw(st.sampled_from([now(), now(-timedelta(hours=5)), now(timedelta(hours=2))]))
        if draw(st.booleans()):
            rec.update(draw(st.dictionaries(st.text(max_size=10), json_values, max_size=2)))
        return rec

    records = [record() if draw(st.integers(0, 19)) else draw(json_values)
               for _ in range(draw(st.integers(0, 5)))]
    return table, records


def encodings(body: bytes):
    """The ways a body is sent: as is, gzip-compressed (with or without the header), truncated."""
    whole = [(body, None), (gzip.compress(body), "gzip"), (gzip.compress(body), None)]
    broken = [(gzip.compress(body)[:-5], "gzip"), (body[: len(body) // 2], None), (body, "gzip")]
    return st.sampled_from(whole * 3 + broken)


@pytest.fixture(scope="module")
def workspace():
    ws = netatlas.connect(geoip=False)
    yield ws
    ws.close()


def ingest_or_refuse(ws, table: str, body: bytes, encoding: str | None) -> None:
    """Ingest ``body``; an IngestError is a refusal, anything else escapes (a bug)."""
    try:
        ws.ingest_json(table, body, content_encoding=encoding)
        event("stored")
    except IngestError as e:
        assert str(e) and re.fullmatch(r"[A-Z][A-Z0-9_]*", e.code), e
        event(f"refused: {e.code}")


@fuzz(1500)
@given(body=st.binary(max_size=300), table=st.sampled_from(TABLES), gz=st.booleans())
@example(body=b"\x1f\x8b", table="VMConnection", gz=False)
@example(body=b"", table="VMConnection", gz=True)
def test_random_bytes_are_ingested_or_refused(workspace, body, table, gz):
    data = gzip.compress(body) if gz and body[:1] == b"\x00" else body
    try:
        decoded = decode(data, "gzip" if gz else None)
    except IngestError:
        return
    assert isinstance(decoded, bytes)
    ingest_or_refuse(workspace, table, data, "gzip" if gz else None)


@fuzz(1000)
@given(value=json_values, table=st.sampled_from(TABLES + ["NoSuchTable", "Usage", ""]))
@example(value=[{"TimeGenerated": "2026-01-01T00:00:00Z", "BytesSent": -2**63 - 1}], table="VMConnection")
@example(value=[{"AgentId": "", "TimeGenerated": "10000-01-01T00:00:00Z"}], table="VMConnection")  # was a 500
def test_random_json_values_are_ingested_or_refused(workspace, value, table):
    ingest_or_refuse(workspace, table, json.dumps(value).encode(), None)


@fuzz(500)
@given(batch=batches(), data=st.data())
def test_records_with_random_values_of_every_column_type_are_ingested_or_refused(workspace, batch, data):
    table, records = batch
    body, encoding = data.draw(encodings(json.dumps(records).encode()))
    ingest_or_refuse(workspace, table, body, encoding)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = Server(tmp_path_factory.mktemp("fuzz") / "data").start()
    yield s
    s.kill()


@fuzz(200)
@given(batch=batches(), gz=st.booleans(), junk=st.binary(max_size=40))
def test_over_http_every_generated_batch_is_stored_or_refused_with_a_4xx(server, batch, gz, junk):
    client = server.client()
    table, records = batch
    body = json.dumps(records).encode() if junk[:1] != b"\x00" else junk
    r = client.ingest(table, body=body, gzipped=gz)
    event(f"HTTP {r.status}")
    assert r.status == 200 or 400 <= r.status < 500, (r.status, r.body)
    if r.status != 200:
        assert isinstance(r.body, dict) and r.body["error"]["message"], r.body


# ---------------------------------------------------------------- generated KQL texts

IDENTIFIERS = sorted({c for cols in SCHEMA["tables"].values() for c, _ in cols})
VOCABULARY = {
    "table": st.sampled_from(sorted(SCHEMA["tables"]) + ["T", "range", "print", "datatable"]),
    "operator": st.sampled_from(SCHEMA["operators"]),
    "function": st.sampled_from(SCHEMA["functions"]).map(lambda f: f + "("),
    "column": st.sampled_from(IDENTIFIERS),
    "keyword": st.sampled_from(["by", "on", "with", "kind", "let", "and", "or", "not", "in", "!in", "has",
                                "contains", "between", "asc", "desc", "nulls", "first", "last", "to", "step",
                                "typeof", "long", "string", "dynamic", "inner", "leftouter", "fullouter",
                                "$left", "$right", "true", "false", "null", "=~", "!contains", "matches regex"]),
    "punct": st.sampled_from(["|", "(", ")", "[", "]", "{", "}", ",", ";", ".", "=", "==", "!=", "<", ">", "<=",
                              ">=", "+", "-", "*", "/", "%", ":", "..", "=>", "!", "?", "\n", "//"]),
    "literal": st.one_of(st.integers(-2**70, 2**70).map(str), st.floats(allow_nan=False).map(repr),
                         st.text(max_size=8).map(json.dumps), st.text(string.printable, max_size=6).map(repr),
                         st.sampled_from(["1d", "2h", "30s", "1.5m", "0x1F", "1e308", "1e-400", "datetime(2026-01-01)",
                                          "datetime(null)", "timespan(1.02:03:04)", "dynamic({\"a\":[1]})",
                                          "guid(00000000-0000-0000-0000-000000000000)", "ago(1d)", "now()",
                                          "@'c:\\x'", "h'secret'", "```multi```", "long(null)", "int(-1)"])),
}
tokens = st.one_of(*VOCABULARY.values())
pipelines = st.builds(lambda source, stages: source + "".join(f" | {op} {' '.join(args)}" for op, args in stages),
                      VOCABULARY["table"], st.lists(st.tuples(VOCABULARY["operator"], st.lists(tokens, max_size=6)),
                                                    max_size=4))
token_texts = st.lists(tokens, max_size=30).map(" ".join) | pipelines


def mutations(text: str):
    """Edits of a seed query: a cut, a deletion, a duplication, an insertion, a swap of lines."""
    n = len(text)
    pos = st.integers(0, n)
    return st.one_of(
        pos.map(lambda i: text[:i]),
        st.tuples(pos, pos).map(lambda ab: text[:min(ab)] + text[max(ab):]),
        st.tuples(pos, pos).map(lambda ab: text[:max(ab)] + text[min(ab):max(ab)] + text[max(ab):]),
        st.tuples(pos, tokens).map(lambda it: text[:it[0]] + " " + it[1] + " " + text[it[0]:]),
        st.tuples(pos, st.characters()).map(lambda ic: text[:ic[0]] + ic[1] + text[ic[0]:]),
        st.permutations(text.split("\n")).map("\n".join),
    )


seed_mutations = st.sampled_from(SEEDS).flatmap(mutations)


@pytest.fixture(scope="module")
def empty():
    """An empty in-memory workspace: the executor of the queries plugins run while planning."""
    ws = netatlas.connect(geoip=False)
    yield ws
    ws.close()


def compile_or_refuse(ws, text: str) -> None:
    """Workspace.compile: kql.compile with the catalogue and the workspace's executor (for the
    queries plugins run while planning)."""
    try:
        ws.compile(text)
        event("compiled")
    except QUERY_ERRORS as e:
        assert str(e), type(e)
        event(f"refused: {type(e).__name__}")


@fuzz(1500)
@given(text=token_texts)
@example(text="print")
@example(text="T | extend x = 1")
def test_random_token_sequences_compile_or_raise_a_kql_error(empty, text):
    compile_or_refuse(empty, text)


@fuzz(1200)
@given(text=seed_mutations)
def test_mutated_seed_queries_compile_or_raise_a_kql_error(empty, text):
    compile_or_refuse(empty, text)


@fuzz(1000)
@given(text=st.text(max_size=80))
@example(text="²")          # a non-ASCII digit crashed the tokenizer (AttributeError)
@example(text="print .²")
def test_random_text_compiles_or_raises_a_kql_error(empty, text):
    compile_or_refuse(empty, text)


@fuzz(300)
@given(text=st.one_of(seed_mutations, token_texts))
def test_generated_queries_run_or_raise_a_documented_error_on_an_empty_workspace(empty, text):
    try:
        empty.query(text, timeout=5, max_rows=100)
        event("ran")
    except QUERY_ERRORS + (QueryExecutionError,) as e:
        assert str(e), type(e)
        event(f"refused: {type(e).__name__}")
