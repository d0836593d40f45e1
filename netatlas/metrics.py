"""Counters and histograms, rendered in the Prometheus text exposition format (version 0.0.4).

Small on purpose: a metric is declared once in ``Metrics`` with its help text; label values are
added as they occur (``inc(table="VMConnection")``) or declared up front with ``touch`` so that a
scrape shows a zero rather than nothing. Thread-safe: the server updates metrics from its event
loop and from the thread pool that runs DuckDB work.
"""
from __future__ import annotations

import math
import threading
import time


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _num(v: float) -> str:
    if v == math.inf:
        return "+Inf"
    return repr(float(v)) if isinstance(v, float) and not v.is_integer() else str(int(v))


class Counter:
    kind = "counter"

    def __init__(self, name: str, help: str, labels: tuple[str, ...] = ()):
        self.name, self.help, self.labels = name, help, labels
        self._values: dict[tuple[str, ...], float] = {}
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, str]) -> tuple[str, ...]:
        if set(labels) != set(self.labels):
            raise ValueError(f"{self.name} takes labels {self.labels}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labels)

    def touch(self, **labels: str) -> None:
        with self._lock:
            self._values.setdefault(self._key(labels), 0)

    def inc(self, amount: float = 1, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0) + amount

    def value(self, **labels: str) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0)

    def samples(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        if not items and not self.labels:
            items = [((), 0)]
        return [f"{self.name}{_labels(self.labels, k)} {_num(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: str) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = value


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, help: str, buckets: tuple[float, ...]):
        self.name, self.help = name, help
        self.buckets = tuple(sorted(buckets)) + (math.inf,)
        self._counts = [0] * len(self.buckets)
        self._sum = 0.0
        self._count = 0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            for i, bound in enumerate(self.buckets):
                if value <= bound:
                    self._counts[i] += 1
            self._sum += value
            self._count += 1

    @property
    def count(self) -> int:
        return self._count

    def samples(self) -> list[str]:
        with self._lock:
            counts, total, n = list(self._counts), self._sum, self._count
        out = [f'{self.name}_bucket{{le="{_num(b)}"}} {c}' for b, c in zip(self.buckets, counts)]
        return out + [f"{self.name}_sum {_num(total)}", f"{self.name}_count {n}"]


QUERY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    """Every metric the workspace server exposes."""

    def __init__(self, tables: list[str] = ()):
        self.started = time.time()
        self.records_ingested = Counter("netatlas_records_ingested_total",
                                        "Records stored, by table.", ("table",))
        self.bytes_ingested = Counter("netatlas_bytes_ingested_total",
                                      "Bytes of JSON (after decompression) stored, by table.", ("table",))
        self.batches_ingested = Counter("netatlas_batches_ingested_total",
                                        "Batches stored, by table (duplicates not counted).", ("table",))
        self.batches_rejected = Counter("netatlas_batches_rejected_total",
                                        "Ingestion requests refused, by error code.", ("reason",))
        self.duplicate_batches = Counter("netatlas_duplicate_batches_total",
                                         "Batches whose x-ms-batch-id was already stored (acknowledged, not stored again).")
        self.queries = Counter("netatlas_queries_total", "Queries answered, by outcome.", ("outcome",))
        self.queries_truncated = Counter("netatlas_queries_truncated_total",
                                         "Query results cut at the server's max_rows.")
        self.query_seconds = Histogram("netatlas_query_seconds",
                                       "Time to answer a query (compile, run, convert).", QUERY_BUCKETS)
        self.retention_deleted = Counter("netatlas_retention_rows_deleted_total",
                                         "Rows removed by retention, by table.", ("table",))
        self.retention_runs = Counter("netatlas_retention_runs_total",
                                      "Retention passes, by outcome.", ("outcome",))
        self.rollup_merged = Counter("netatlas_rollup_hours_merged_total",
                                     "Hours of VMConnection's hourly rollup merged by compaction passes.")
        self.rollup_runs = Counter("netatlas_rollup_runs_total",
                                   "Compaction passes of VMConnection's hourly rollup, by outcome.", ("outcome",))
        self.uptime = Gauge("netatlas_uptime_seconds", "Seconds since the server started.")
        # ingest helper (issue 11, item 17)
        self.fields_truncated = Counter("netatlas_fields_truncated_total",
                                        "String values cut at Azure's 32 KB field limit, by table.", ("table",))
        # alerts (issue 17, server/alerts.py)
        self.alert_evaluations = Counter("netatlas_alert_evaluations_total",
                                         "Alert rule evaluations, by outcome (ok, error).", ("outcome",))
        self.alert_events = Counter("netatlas_alert_events_total",
                                    "Alert history entries, by event (fired, resolved, muted, error, action_failed).",
                                    ("event",))
        for t in tables:
            self.records_ingested.touch(table=t)
            self.bytes_ingested.touch(table=t)
            self.batches_ingested.touch(table=t)
        for outcome in ("ok", "kql_error", "timeout", "runtime_error", "busy"):
            self.queries.touch(outcome=outcome)

    def all(self) -> list:
        return [m for m in vars(self).values() if hasattr(m, "samples")]

    def render(self) -> str:
        self.uptime.set(round(time.time() - self.started, 3))
        out = []
        for m in self.all():
            out += [f"# HELP {m.name} {m.help}", f"# TYPE {m.name} {m.kind}", *m.samples()]
        return "\n".join(out) + "\n"


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


# ---- group commit and storage (commit helper) ----------------------------------------------------

def add_storage_metrics(m: Metrics) -> Metrics:
    """The group committer's and the free-space reserve's metrics, on ``m``."""
    m.commit_groups = Counter("netatlas_commit_groups_total",
                              "Transactions that stored a group of batches at once (group commit).")
    m.commit_batches = Counter("netatlas_commit_batches_total", "Batches stored through group commits.")
    m.storage_full = Counter("netatlas_storage_full_total",
                             "Ingestion requests refused with 507 because free space was below min_free_bytes.")
    m.storage_errors = Counter("netatlas_storage_errors_total",
                               "Ingestion requests answered 503 because the store could not write.")
    m.storage_free = Gauge("netatlas_storage_free_bytes", "Free bytes on the data directory's filesystem.")
    return m
