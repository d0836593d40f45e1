"""Pieces of the workspace server tested without a socket: timespans, bounded gzip bodies, the
settings catalogue, the metrics text, and error mapping through the ASGI app with a stand-in
workspace (a query past its time limit, a bug)."""
import asyncio
import gzip
import json
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import netatlas.server as server
from netatlas.errors import QueryExecutionError, QueryLimitError
from netatlas.metrics import Metrics
from netatlas.server.http import HttpError, _Gunzip
from netatlas.server.settings import SETTINGS, Settings
from netatlas.server.timespan import TimespanError, parse_timespan

NOW = datetime(2024, 5, 2, tzinfo=timezone.utc)
UTC = timezone.utc


# ---------------------------------------------------------------- timespan

@pytest.mark.parametrize("text, start, end", [
    ("P1D", datetime(2024, 5, 1, tzinfo=UTC), NOW),
    ("PT1H", datetime(2024, 5, 1, 23, tzinfo=UTC), NOW),
    ("P1DT12H", datetime(2024, 4, 30, 12, tzinfo=UTC), NOW),
    ("PT30M", datetime(2024, 5, 1, 23, 30, tzinfo=UTC), NOW),
    ("P2W", datetime(2024, 4, 18, tzinfo=UTC), NOW),
    ("PT0.5S", NOW - timedelta(seconds=0.5), NOW),
    ("2024-05-01T00:00:00Z/2024-05-02T00:00:00Z", datetime(2024, 5, 1, tzinfo=UTC), NOW),
    ("2024-05-01T00:00:00/P1D", datetime(2024, 5, 1, tzinfo=UTC), NOW),
    ("P1D/2024-05-02T02:00:00+02:00", datetime(2024, 5, 1, tzinfo=UTC), NOW),
])
def test_timespans(text, start, end):
    assert parse_timespan(text, NOW) == (start, end)


@pytest.mark.parametrize("text, message", [
    ("P1M", "years and months have no fixed length"),
    ("P1Y", "years and months have no fixed length"),
    ("PT", "not an ISO 8601 duration"),
    ("1 day", "not an ISO 8601 duration"),
    ("P1D/P2D", "at least one datetime"),
    ("2024-05-02/2024-05-01", "is not before the end"),
    ("2024-13-01/P1D", "not an ISO 8601 datetime"),
    ("P999999999D", "outside the datetimes"),
    ("a/b/c", "not an ISO 8601 duration or interval"),
])
def test_bad_timespans_say_why(text, message):
    with pytest.raises(TimespanError, match=message):
        parse_timespan(text, NOW)


# ---------------------------------------------------------------- gzip within a limit

def _gunzip(data: bytes, limit: int, step: int) -> bytes:
    g = _Gunzip(limit)
    for i in range(0, len(data), step):
        g.feed(data[i:i + step])
    return g.finish()


@pytest.mark.parametrize("step", [1, 10, 4096, 10 ** 6])
def test_gzip_is_decompressed_as_it_arrives_including_several_members(step):
    data = gzip.compress(b"[1,2," * 5000) + gzip.compress(b"3]")
    assert _gunzip(data, 10 ** 6, step) == b"[1,2," * 5000 + b"3]"


def test_a_decompression_bomb_stops_at_the_limit():
    bomb = gzip.compress(b"\0" * (50 * 1024 * 1024))
    g = _Gunzip(1024 * 1024)
    with pytest.raises(HttpError) as e:
        g.feed(bomb)
    assert e.value.status == 413 and len(g.out) <= 1024 * 1024 + 1


def test_a_truncated_gzip_stream_is_refused():
    with pytest.raises(ValueError, match="ends early"):
        _gunzip(gzip.compress(b"[1,2,3]" * 100)[:30], 10 ** 6, 7)


# ---------------------------------------------------------------- settings: declared once, documented

def test_every_setting_is_a_field_an_option_an_env_var_and_documented():
    help_text = subprocess.run([sys.executable, "-m", "netatlas", "workspace", "serve", "--help"],
                               capture_output=True, text=True, check=True).stdout
    doc = server.__doc__
    for s in SETTINGS:
        assert getattr(Settings(), s.name) == s.default
        assert s.flag in help_text and s.env in help_text, s.name
        assert s.name in doc, f"setting {s.name} is not in netatlas/server/__init__.py's docstring"
    env = {s.env: "1" for s in SETTINGS if s.kind != "string"}
    loaded = Settings.from_env(env, max_rows=7)
    assert loaded.max_rows == 7 and loaded.port == 1 and loaded.query_timeout == 1.0


def test_a_bad_environment_value_is_named():
    with pytest.raises(ValueError, match="NETATLAS_PORT='eighty'"):
        Settings.from_env({"NETATLAS_PORT": "eighty"})


# ---------------------------------------------------------------- metrics text

def test_metrics_render_in_the_prometheus_text_format():
    m = Metrics(["VMConnection"])
    m.records_ingested.inc(3, table="VMConnection")
    m.batches_rejected.inc(reason='INGEST_"odd"')
    m.query_seconds.observe(0.02)
    m.query_seconds.observe(7)
    text = m.render()
    assert 'netatlas_records_ingested_total{table="VMConnection"} 3\n' in text
    assert 'netatlas_batches_rejected_total{reason="INGEST_\\"odd\\""} 1\n' in text
    assert 'netatlas_query_seconds_bucket{le="0.025"} 1\n' in text
    assert 'netatlas_query_seconds_bucket{le="10"} 2\n' in text
    assert 'netatlas_query_seconds_bucket{le="+Inf"} 2\n' in text
    assert "netatlas_query_seconds_count 2\n" in text
    assert "netatlas_duplicate_batches_total 0\n" in text
    sample = re.compile(r'[a-z_]+(\{([a-z_]+="([^"\\]|\\.)*",?)+\})? [0-9.e+-]+|[a-z_]+\{le="\+Inf"\} \d+')
    for line in text.splitlines():
        assert line.startswith(("# HELP ", "# TYPE ")) or sample.fullmatch(line), line


# ---------------------------------------------------------------- the ASGI app with a stand-in workspace

class StandIn:
    """A workspace whose query fails as told."""

    def __init__(self, error):
        self.error = error

    def query(self, text, **options):
        raise self.error

    def close(self):
        pass


async def _call(app, method, path, headers, body=b""):
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method,
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    sent, messages = [], [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    try:
        await app(scope, receive, send)
    except Exception:
        pass   # Starlette re-raises a bug after answering it with a 500
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    return status, json.loads(b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"))


@pytest.mark.parametrize("error, status, code", [
    (QueryLimitError("the query ran longer than its time limit of 1 s"), 504, "KQL_TIMEOUT"),
    (QueryExecutionError("the query could not run: division"), 400, "KQL_RUNTIME"),
    (RuntimeError("a bug"), 500, "INTERNAL"),
])
def test_query_failures_map_to_statuses_in_the_one_error_shape(tmp_path, error, status, code):
    from netatlas.catalogue import Catalogue
    from netatlas import keys as keys_module
    from netatlas.keys import KeyStore
    from netatlas.server.app import Service, create_app

    app = create_app(tmp_path, settings=Settings())
    store = KeyStore(tmp_path)
    app.state.service = Service(Path(tmp_path), Settings(), StandIn(error), store, Catalogue.load(),
                                Metrics())
    secret = keys_module.create_key(tmp_path, "query").secret     # hashed on disk: a new one
    got = asyncio.run(_call(app, "POST", "/api/query",
                            {"authorization": f"Bearer {secret}", "content-type": "application/json"},
                            json.dumps({"query": "VMConnection | count"}).encode()))
    assert got[0] == status
    assert set(got[1]) == {"error"} and got[1]["error"]["code"] == code
