"""Group commit: batches that arrive within a few milliseconds of each other are stored in ONE
transaction, each acknowledged only after that commit.

An agent's batch is small (100-500 records); stored alone, each paid DuckDB's planning of the
INSERT (12-13 ms, most of it the billed-size expression) and was parsed twice (orjson, then
read_json). Here each batch is

    prepare   (the request's thread) decode (one gzip layer, inflated at most max_body_bytes),
              parse once (orjson), check (ingest.check: shape, columns, 500 fields), strings over
              32 KB cut (ingest.truncate_long_strings, counted in the report), as columns
              (ingest.to_frame), the billed size of its records in numpy (``sizes``), its remote
              addresses; a batch refused here never reaches a group
    queue     ``Committer.submit``: the batch waits on the committer's queue
    group     (the committer's thread) every batch queued, or arriving within ``WINDOW`` (up to
              ``MAX_WAIT`` while requests are still being prepared: ``Committer.preparing``), up to
              ``MAX_RECORDS``; per table, batch ids already stored answer ``duplicate``, a batch id
              twice in the group is stored once (the others answer ``duplicate``)
    store     one transaction: the batch ids, ONE INSERT of the concatenated frames (enriched
              by enrich.py's FILLS and LOOKUPS, billed sizes given: no per-batch planning), the
              hourly Usage bytes; then each batch's sender learns its result
    alone     a group that fails on a value (a datetime DuckDB cannot cast or outside its window:
              ingest.datetime_checks) is stored again one
              batch at a time through ingest.ingest_records, so only the bad batch is refused,
              with its record and field; a batch to_frame refused goes that way from the start.
              A storage failure (ingest.STORAGE_ERRORS) answers every batch of the group with
              StorageError: nothing of it was stored, and the agent sends it again.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
import uuid
import zlib
from dataclasses import dataclass, field
from datetime import timedelta

import numpy as np

from . import enrich, ingest, rollup
from .catalogue import Catalogue, Table
from .errors import IngestError, StorageError
from .store import duckdb as db

log = logging.getLogger("netatlas.commit")

WINDOW = 0.002            # seconds a group waits for more batches once the queue is empty
MAX_WAIT = 0.010          # ... and at most this long while other batches are still being prepared
MAX_RECORDS = 50_000      # records in one group at most
INFLIGHT = "inflight"     # DIR/inflight: batch files of the JSON path (ingest.serialize)


# ---- prepare --------------------------------------------------------------------------------

@dataclass
class Pending:
    """A batch checked and waiting for its group's commit."""
    table: Table
    records: list
    body: bytes | None
    batch_id: str | None
    context: dict
    frame: dict | None = None          # None: stored alone (to_frame refused it, or no _BilledSize)
    n: int = 0
    sizes: np.ndarray | None = None    # the billed size of each record, the columns numpy sizes
    remote_ips: set = field(default_factory=set)
    done: threading.Event = field(default_factory=threading.Event)
    report: ingest.IngestReport | None = None
    error: BaseException | None = None
    truncated: int = 0                 # string values cut at Azure's 32 KB (ingest.truncate_long_strings)

    def finish(self, report: ingest.IngestReport | None = None, error: BaseException | None = None) -> None:
        self.report, self.error = report, error
        self.done.set()


def prepare(catalogue: Catalogue, table_name: str, body: bytes, *, batch_id: str | None = None,
            context: dict | None = None, content_encoding: str | None = None,
            limit: int | None = ingest.MAX_POST_BYTES) -> Pending:
    """Decode (inflating at most ``limit`` bytes), parse (once) and check a JSON batch, as columns;
    IngestError for what the client must fix."""
    body = ingest.decode(body, content_encoding, limit)
    table = ingest.resolve_table(catalogue, table_name)
    records = ingest.parse(table, body)
    ingest.check(table, records)
    truncated = ingest.truncate_long_strings(table, records, body)   # then the batch file is written from them
    p = Pending(table, records, None if truncated else body, batch_id, dict(context or {}), n=len(records),
                truncated=truncated)
    if "_BilledSize" not in table.column_types or not records:
        return p                        # Usage counted over stored rows: the JSON path
    try:
        p.frame, p.sizes = columns(table, records)
    except IngestError:
        return p                        # the JSON path names the record and field, or stores it
    frame = p.frame
    if table.name == "VMConnection":
        p.remote_ips = ingest.frame_remote_ips(frame, len(records))
    return p


# ingest.frame_column's arrays, built without a Python step per value where a column holds only
# the simple types JSON gives it (str, int, float, bool, None); any other column is left to
# frame_column itself. read type -> the value types taken as they are
SIMPLE = {"VARCHAR": {str, type(None)}, "TIMESTAMPTZ": {str, type(None)}, "UUID": {str, type(None)},
          "DECIMAL(38, 18)": {str, type(None)}, "BIGINT": {int, type(None)}, "INTEGER": {int, type(None)},
          "DOUBLE": {int, float, type(None)}, "BOOLEAN": {bool, type(None)}}


def columns(table: Table, records: list) -> tuple[dict, np.ndarray]:
    """``ingest.to_frame`` of checked records (the same arrays), faster for the common columns, and
    the billed-size terms numpy measures (``numpy_sizes``), from the same lists."""
    n = len(records)
    used = set().union(*records)
    frame, total = {}, np.ones(n, dtype=np.int64)
    for c, t in table.columns:
        if c not in used:
            continue
        read = ingest.READ_AS[t]
        vals = [r.get(c) for r in records]
        kinds = set(map(type, vals))
        if read not in SIMPLE or not kinds <= SIMPLE[read]:
            frame[c] = col = ingest.frame_column([r.get(c, ingest._ABSENT) for r in records], t, table.name, c)
            if read in NUMPY_SIZE:
                absent = _absent(col)
                total += np.where(absent, 0, NUMPY_SIZE[read](col, absent) + len(c.encode()) + 4)
            continue
        kind = ingest.NUMPY_KIND.get(read)
        absent = None
        if type(None) in kinds:
            absent = np.fromiter((v is None for v in vals), dtype=bool, count=n)
        if kind is None:
            frame[c] = np.array(vals, dtype=object)
            if read == "VARCHAR":
                strs = vals if absent is None else ["" if v is None else v for v in vals]
                lens = (np.fromiter(map(len, strs), dtype=np.int64, count=n) if all(map(str.isascii, strs)) else
                        np.fromiter(map(len, map(str.encode, strs)), dtype=np.int64, count=n))
                term = lens + (2 + len(c.encode()) + 4)
            elif read == "UUID":
                term = np.full(n, 38 + len(c.encode()) + 4, dtype=np.int64)
            else:
                continue                  # datetimes, decimals: sql_sizes
        else:
            try:
                arr = np.array(vals if absent is None else [0 if v is None else v for v in vals], dtype=kind)
            except OverflowError:
                raise IngestError(f"{table.name}: {c} out of range", code="INGEST_TYPE") from None  # the JSON path says where
            frame[c] = arr if absent is None else np.ma.masked_array(arr, mask=absent)
            if read not in NUMPY_SIZE:
                continue                  # reals: sql_sizes
            term = NUMPY_SIZE[read](arr, absent) + len(c.encode()) + 4
        total += term if absent is None else np.where(absent, 0, term)
    return frame, total


# ---- the billed size without SQL --------------------------------------------------------------
# ingest.record_size_sql's terms, in numpy, for the read types whose JSON length numpy can tell
# exactly; the others (datetimes, reals, decimals, JSON) are summed by ``sql_sizes`` in the
# group's one small query. tests/test_commit.py compares the result with the JSON path's.

_POW10 = np.array([10 ** k for k in range(1, 19)], dtype=np.int64)


def _absent(col) -> np.ndarray:
    if isinstance(col, np.ma.MaskedArray):
        return np.ma.getmaskarray(col)
    if col.dtype == object:
        return np.equal(col, None)
    return np.zeros(len(col), dtype=bool)


def _int_len(col) -> np.ndarray:
    a = np.ma.getdata(col).astype(np.int64)
    neg = a < 0
    mag = np.abs(a)   # int64 min stays negative: it is 20 characters, counted below
    digits = np.searchsorted(_POW10, mag, side="right") + 1
    return np.where(mag < 0, 20, digits + neg)


def _str_len(col, absent) -> np.ndarray:
    vals = col.tolist()
    if absent.any():
        vals = ["" if v is None else v for v in vals]
    if all(map(str.isascii, vals)):
        return np.fromiter(map(len, vals), dtype=np.int64, count=len(vals)) + 2
    return np.fromiter(map(len, map(str.encode, vals)), dtype=np.int64, count=len(vals)) + 2


NUMPY_SIZE = {"VARCHAR": _str_len, "BIGINT": lambda c, a: _int_len(c), "INTEGER": lambda c, a: _int_len(c),
              "BOOLEAN": lambda c, a: np.where(np.ma.getdata(c).astype(bool), 4, 5),
              "UUID": lambda c, a: np.full(len(c), 38)}


def numpy_sizes(table: Table, frame: dict, n: int) -> np.ndarray:
    """Per record: 1 + the terms of the columns NUMPY_SIZE measures (the rest: ``sql_sizes``)."""
    total = np.ones(n, dtype=np.int64)
    types = table.column_types
    for name, col in frame.items():
        read = ingest.READ_AS[types[name]]
        if read not in NUMPY_SIZE:
            continue
        absent = _absent(col)
        term = NUMPY_SIZE[read](col, absent) + len(name.encode()) + 4
        total += np.where(absent, 0, term)
    return total


def sql_sizes(con, table: Table, name: str, frame: dict) -> tuple[np.ndarray, np.ndarray]:
    """For the registered frame ``name``: per record the hour of TimeGenerated (epoch seconds) and
    the size terms of the columns numpy does not measure; one small projection, rows in order."""
    types = table.column_types
    terms = []
    for c in frame:
        read = ingest.READ_AS[types[c]]
        if read in NUMPY_SIZE or c.startswith("__"):
            continue
        v = f"CAST({ingest._q(c)} AS {read})"
        # a JSON null is absent, as read_json reads it (the frame holds it as the text 'null')
        absent = f"{v} IS NULL" + (f" OR {v} = 'null'" if read == "JSON" else "")
        terms.append(f"CASE WHEN {absent} THEN 0 ELSE {len(c.encode()) + 4} + "
                     f"{ingest.VALUE_SIZE[read].format(c=v)} END")
    hour = ("CAST(epoch(date_trunc('hour', CAST(CAST(\"TimeGenerated\" AS TIMESTAMPTZ) AS TIMESTAMP))) AS BIGINT)"
            if "TimeGenerated" in frame else "0")
    got = con.execute(f"SELECT {hour} AS h, CAST({' + '.join(terms) or '0'} AS BIGINT) AS s "
                      f"FROM {ingest._q(name)}").fetchnumpy()
    return np.asarray(got["h"]), np.asarray(got["s"])


# ---- lookups as registered columns ---------------------------------------------------------------
# A Lookup joins as a relation of bound lists (enrich.Lookup.join); binding a few hundred
# addresses' values costs DuckDB tens of milliseconds per statement, once per group here. The
# same values as numpy columns, registered for the statement, cost nothing to bind.

LOOKUP_KIND = {"VARCHAR": (object, (str,)), "DOUBLE": (np.float64, (float, int)), "INTEGER": (np.int64, (int,))}


@dataclass
class FrameLookup(enrich.Lookup):
    """A Lookup whose values are a registered frame ``name`` (the same join, no parameters)."""
    name: str = ""

    def join(self) -> tuple[str, list]:
        return self.join_relation(self.name), []


def as_frame(lk: enrich.Lookup) -> tuple[enrich.Lookup, dict | None]:
    """The lookup as a FrameLookup and its frame, or itself (and None) when a value is of a type
    the numpy column would not hold as the bound list does."""
    rows = list(lk.values.values())
    frame = {"lk_key": np.array(list(lk.values), dtype=object)}
    for i, (name, sql_type) in enumerate(lk.columns):
        kind = LOOKUP_KIND.get(sql_type)
        vals = [row[i] for row in rows]
        if kind is None or not all(v is None or (type(v) in kind[1]) for v in vals):
            return lk, None
        if kind[0] is object:
            frame[name] = np.array(vals, dtype=object)
        else:
            absent = [v is None for v in vals]
            arr = np.array([0 if v is None else v for v in vals], dtype=kind[0])
            frame[name] = np.ma.masked_array(arr, mask=absent) if any(absent) else arr
    name = f"__lk_{uuid.uuid4().hex[:12]}"
    return FrameLookup(lk.alias, lk.columns, lk.values, lk.exprs, name), frame


# ---- store ----------------------------------------------------------------------------------

def store_group(con, table: Table, items: list[Pending], context: dict) -> list[int]:
    """One transaction for the batches ``items`` (frames): ids, rows, Usage; the bytes of each."""
    frame = ingest.concat_frames([it.frame for it in items])
    n = sum(it.n for it in items)
    name = f"__group_{uuid.uuid4().hex[:12]}"
    con.register(name, frame)
    registered = [name]
    try:
        hours, rest = sql_sizes(con, table, name, frame)
        sizes = np.maximum(2, np.concatenate([it.sizes for it in items]) + rest)
        frame["__nbytes"] = sizes
        con.register(name, frame)
        ctx = dict(context)
        if table.name == "VMConnection":
            ctx["remote_ips"] = set().union(*(it.remote_ips for it in items))
        lookups = []
        for lk in enrich.lookups(table, [], ctx):
            lk, lk_frame = as_frame(lk)
            if lk_frame is not None:
                con.register(lk.name, lk_frame)
                registered.append(lk.name)
            lookups.append(lk)
        cols = ", ".join(f"CAST({ingest._q(c) if c in frame else 'NULL'} AS {ingest.READ_AS[t]}) AS {ingest._q(c)}"
                         for c, t in table.columns)
        source = f"(SELECT {cols}, \"__nbytes\" FROM {ingest._q(name)})"
        select, params = ingest.staged_select(table, source, ingest.finished(table, ctx), lookups, size='"__nbytes"')
        uniq, inverse = np.unique(hours, return_inverse=True)
        per_hour = np.bincount(inverse, weights=sizes, minlength=len(uniq)) if n else []
        ids = [(it.batch_id, it.n) for it in items if it.batch_id is not None]
        outbox = context.get("outbox")
        group = outbox.group() if outbox is not None else None
        con.execute("BEGIN TRANSACTION")
        try:
            if ids:
                con.execute(f"INSERT INTO {ingest.BATCHES} SELECT unnest(?::VARCHAR[]), ?, unnest(?::BIGINT[]), now()",
                            [[i for i, _ in ids], table.name, [k for _, k in ids]])
            insert = ingest.insert_sql(table.name, select, outbox, group)
            if ingest.rolls_up(table, outbox):          # VMConnection's hourly rollup (rollup.py)
                rollup.add(con, rollup.stored(con.execute(f"{insert} RETURNING {rollup.returning()}", params)))
            else:
                con.execute(insert, params)
            if len(uniq):
                con.executemany(ingest.usage_sql(outbox, group),
                                [(ingest._EPOCH + timedelta(seconds=int(h)), table.name,
                                  ingest.SOLUTION.get(table.name, "LogManagement"), int(b))
                                 for h, b in zip(uniq.tolist(), np.asarray(per_hour).tolist())])
            con.execute("COMMIT")
        except Exception as e:
            ingest.rollback(con)
            err = ingest.storage_error(e)
            if err is e:
                raise
            raise err from e
    finally:
        for r in registered:
            con.unregister(r)
    if outbox is not None:
        outbox.forward_quietly(con, group, [table.name, ingest.USAGE_RAW])
    bounds = np.cumsum([0] + [it.n for it in items])
    return [int(sizes[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]


# ---- the committer ----------------------------------------------------------------------------

class Committer:
    """One thread, one DuckDB cursor: stores the batches ``submit`` queues, in groups."""

    def __init__(self, cursor: db.Connection, inflight: str | os.PathLike | None = None):
        self.con = cursor
        # the frames' object columns hold str (or None) only: DuckDB need not sample them for a type
        cursor.execute("SET pandas_analyze_sample = 0")
        self.inflight = inflight
        self.queue: queue.Queue = queue.Queue()
        self.preparing = 0           # batches being prepared (they will be submitted soon)
        self._count = threading.Lock()
        self.groups = 0              # transactions committed (or tried) for groups of frames
        self.batches = 0             # batches stored in them
        self._thread = threading.Thread(target=self._run, name="netatlas-commit", daemon=True)
        self._thread.start()

    def prepare(self, *args, **kwargs) -> Pending:
        """``prepare`` (above), counted in ``preparing`` so that a group waits for it."""
        with self._count:
            self.preparing += 1
        try:
            return prepare(*args, **kwargs)
        finally:
            with self._count:
                self.preparing -= 1

    def submit(self, p: Pending) -> ingest.IngestReport:
        """Queue a prepared batch; its report once its group is committed (or its error, raised)."""
        self.queue.put(p)
        p.done.wait()
        if p.error is not None:
            raise p.error
        return p.report

    def close(self) -> None:
        self.queue.put(None)
        self._thread.join(30)

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self.queue.get()
            if first is None:
                break
            group, rows = [first], first.n
            started = time.monotonic()
            deadline = started + WINDOW
            while rows < MAX_RECORDS:
                try:
                    item = self.queue.get_nowait()
                except queue.Empty:
                    if self.preparing:
                        deadline = max(deadline, started + MAX_WAIT)
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self.queue.get(timeout=left)
                    except queue.Empty:
                        break
                if item is None:
                    stop = True
                    break
                group.append(item)
                rows += item.n
            by_table: dict[str, list[Pending]] = {}
            for it in group:
                by_table.setdefault(it.table.name, []).append(it)
            for items in by_table.values():
                try:
                    self._commit(items)
                except BaseException as e:          # a bug: every batch learns it, none hangs
                    log.exception("group commit failed")
                    for it in items:
                        if not it.done.is_set():
                            it.finish(error=e)

    def _commit(self, items: list[Pending]) -> None:
        table = items[0].table
        con = self.con
        ids = [it.batch_id for it in items if it.batch_id is not None]
        try:
            stored = {r[0] for r in con.execute(f"SELECT batch_id FROM {ingest.BATCHES} WHERE batch_id IN "
                                                f"(SELECT unnest(?::VARCHAR[]))", [ids]).fetchall()} if ids else set()
        except db.Error as e:
            err = ingest.storage_error(e)
            for it in items:
                it.finish(error=err)
            return
        leaders, followers = [], {}
        for it in items:
            if it.batch_id in stored:
                it.finish(ingest.IngestReport(table.name, 0, 0, it.batch_id, True))
            elif it.batch_id is not None and it.batch_id in followers:
                followers[it.batch_id].append(it)
            else:
                leaders.append(it)
                if it.batch_id is not None:
                    followers[it.batch_id] = []
        grouped = [it for it in leaders if it.frame is not None]
        alone = [it for it in leaders if it.frame is None]
        if grouped:
            t0 = time.perf_counter()
            try:
                sizes = store_group(con, table, grouped, grouped[0].context)
            except StorageError as e:
                log.error("STORAGE_UNAVAILABLE: %d batches of %s not stored: %s", len(grouped), table.name,
                          e.__cause__ or e)
                for it in grouped:
                    it.finish(error=e)
            except (db.Error, IngestError):
                alone = grouped + alone              # a bad value somewhere: one batch at a time
            else:
                self.groups += 1
                self.batches += len(grouped)
                took = time.perf_counter() - t0
                for it, b in zip(grouped, sizes):
                    self._senders(it)
                    it.finish(ingest.IngestReport(table.name, it.n, b, it.batch_id, False, {"store": took},
                                                  it.truncated))
        for it in alone:
            try:
                it.finish(self._alone(it))
            except StorageError as e:
                log.error("STORAGE_UNAVAILABLE: a batch of %s not stored: %s", table.name, e.__cause__ or e)
                it.finish(error=e)
            except Exception as e:
                it.finish(error=e)
        for it in leaders:
            for f in followers.get(it.batch_id, []) if it.batch_id is not None else []:
                if it.error is not None:
                    f.finish(error=it.error)
                else:
                    f.finish(ingest.IngestReport(table.name, 0, 0, f.batch_id, True))

    def _alone(self, it: Pending) -> ingest.IngestReport:
        report = ingest.ingest_records(self.con, _OneTable(it.table), it.table.name, it.records,
                                       batch_id=it.batch_id, context=it.context, body=it.body, inflight=self.inflight)
        if not report.duplicate:
            report.truncated = it.truncated    # cut in prepare: ingest_records finds nothing left to cut
        return report

    def _senders(self, it: Pending) -> None:
        if it.context.get("sender") and it.table.name == "VMComputer":
            from .machines import note_senders
            try:
                note_senders(self.con, it.records, it.context["sender"])
            except db.Error as e:
                log.warning("could not note the senders of a VMComputer batch: %s", e)


class _OneTable:
    """The catalogue as ingest_records asks it, for the one table of a prepared batch."""

    def __init__(self, table: Table):
        self.table = table

    def get(self, name: str):
        return self.table if name == self.table.name else None

    def names(self):
        return [self.table.name]


def clean_inflight(directory) -> int:
    """Remove the batch files a stopped server left in DIR/inflight; how many."""
    n = 0
    for entry in os.scandir(directory):
        if entry.name.startswith(ingest.INFLIGHT_PREFIX) and entry.is_file():
            os.unlink(entry.path)
            n += 1
    return n


class Committers:
    """Committers side by side (``COMMITTERS``, each its thread and cursor), so that one group is
    planned and stored while another commits. A batch id always goes to the same committer (one
    thread sees every retry of an id: no two transactions insert the same id), a batch without
    one to the committer with the least waiting."""

    def __init__(self, cursors: list, inflight: str | os.PathLike | None = None):
        self.all = [Committer(c, inflight) for c in cursors]

    def pick(self, batch_id: str | None) -> Committer:
        if batch_id is not None:
            return self.all[zlib.crc32(batch_id.encode()) % len(self.all)]
        return min(self.all, key=lambda c: c.queue.qsize() + c.preparing)

    def ingest(self, catalogue: Catalogue, table_name: str, body: bytes, *, batch_id: str | None = None,
               context: dict | None = None, content_encoding: str | None = None,
               limit: int | None = ingest.MAX_POST_BYTES) -> ingest.IngestReport:
        """Prepare a batch (IngestError for what the client must fix) and store it in a group."""
        committer = self.pick(batch_id)
        pending = committer.prepare(catalogue, table_name, body, batch_id=batch_id, context=context,
                                    content_encoding=content_encoding, limit=limit)
        return committer.submit(pending)

    @property
    def groups(self) -> int:
        return sum(c.groups for c in self.all)

    @property
    def batches(self) -> int:
        return sum(c.batches for c in self.all)

    def stop(self) -> None:
        """Ask every thread to end (without waiting): for a workspace dropped without close()."""
        for c in self.all:
            c.queue.put(None)

    def close(self) -> None:
        for c in self.all:
            c.close()


COMMITTERS = 1   # committer threads; 2 overlapped planning and commit but measured no gain on 2 shared cores
