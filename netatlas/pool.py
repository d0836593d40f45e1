"""The query pool: queries run side by side, each on a DuckDB cursor of its own.

A workspace keeps ``slots`` cursors of its database (opened on first use) for queries, the web
UI's views and the plugins' planning-time queries. A query takes a free cursor for its whole
run (compile and execute), or waits in a queue of at most ``queue`` queries; waiting counts
against its deadline, and a query that finds the queue full is refused at once with
``QueryBusyError`` (HTTP 429 QUERY_BUSY with Retry-After). Ingestion has cursors of its own
(``Workspace._ingest_cursor``) and never waits here. One ``Watchdog`` thread interrupts each
running statement at its own deadline.

A query whose SQL text the pool has run before runs as a statement its cursor prepared the first
time it ran it there (``QueryPool.execute``): DuckDB then skips parsing, binding and planning the
SQL, 2-3 ms of a 20 ms query with a few joins. A text seen once is run as it is (a template of
now() gives a new text at every now, and is never prepared in a server). Each cursor keeps its
``PREPARED_PER_CURSOR`` most recent statements; DuckDB binds one again when a table, view or macro
it reads has changed.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import OrderedDict
from contextlib import contextmanager

from .errors import NetatlasError, QueryBusyError
from .limits import Deadline

SLOTS_PER_CORE = 4      # as Kusto's query throttling sizes its concurrency by the cores (x10)
QUEUE_PER_SLOT = 2      # queries that may wait for a cursor, per cursor
RETRY_AFTER = 1         # seconds a refused client is told to wait
PREPARED_PER_CURSOR = 64    # the statements a cursor keeps prepared, most recently run
SEEN_TEXTS = 1024           # the SQL texts (their hashes) the pool remembers having run


def default_slots() -> int:
    return SLOTS_PER_CORE * (os.cpu_count() or 1)




class Watchdog:
    """Interrupts running statements at their deadlines: one thread for any number of cursors,
    started on first use (a timer thread per query cost a visible share of a 10 ms query).

    Past its deadline a cursor is interrupted again every ``AGAIN`` seconds until disarmed: an
    interrupt that lands before the statement starts (a query armed with a few microseconds left)
    is lost, and the statement would then run unbounded."""

    AGAIN = 0.05

    def __init__(self):
        self._cond = threading.Condition()
        self._armed: dict[int, tuple[float, object]] = {}     # token -> (monotonic deadline, cursor)
        self._next = 0
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._target: float | None = None   # the deadline the thread waits for (None: for an arm)

    def arm(self, cursor, timeout: float) -> int:
        """Interrupt ``cursor`` in ``timeout`` seconds unless disarmed first; returns the token."""
        with self._cond:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="netatlas-query-watchdog", daemon=True)
                self._thread.start()
            self._next += 1
            at = time.monotonic() + timeout
            self._armed[self._next] = (at, cursor)
            if self._target is None or at < self._target:   # else the thread wakes in time anyway:
                self._cond.notify()                          # one wake-up a query cost ~80 us
            return self._next

    def disarm(self, token: int) -> None:
        """After this returns, the watchdog never interrupts for ``token``."""
        with self._cond:
            self._armed.pop(token, None)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._armed.clear()
            self._cond.notify()

    def _run(self) -> None:
        with self._cond:
            while not self._stopped:
                if not self._armed:
                    self._target = None
                    self._cond.wait()
                    continue
                # no cursor is held in this frame while it waits: a daemon thread's frame outlives
                # the interpreter's cleanup, and would keep the cursor (and its database) alive
                at, token = min((at, token) for token, (at, _) in self._armed.items())
                left = at - time.monotonic()
                if left > 0:
                    self._target = at
                    self._cond.wait(left)
                    self._target = None
                    continue
                cursor = self._armed[token][1]
                self._armed[token] = (time.monotonic() + self.AGAIN, cursor)
                try:
                    cursor.interrupt()
                except Exception:
                    pass
                del cursor


class QueryPool:
    """At most ``slots`` queries at once, each on its own cursor (made by ``open_cursor``), and
    at most ``queue`` more waiting for one."""

    def __init__(self, open_cursor, slots: int | None = None, queue: int | None = None):
        self._open = open_cursor
        self.slots = slots or default_slots()
        self.queue = self.slots * QUEUE_PER_SLOT if queue is None else queue
        self._free: list = []
        self._all: list = []
        self._made = 0
        self.running = 0
        self.waiting = 0
        self._cond = threading.Condition()
        self._closed = False
        self._opening = 0                       # cursors being opened (close waits for them)
        self._held = threading.local()          # the cursor this thread holds, for nested use
        self._prepared: dict = {}               # cursor -> OrderedDict(SQL text -> statement name)
        self._seen: OrderedDict = OrderedDict()  # hashes of the SQL texts run, most recent last
        self._seen_lock = threading.Lock()
        self._names = itertools.count(1)
        self.watchdog = Watchdog()

    def configure(self, slots: int | None = None, queue: int | None = None) -> None:
        """Resize (the server's settings); cursors beyond a smaller size are closed as they come back."""
        with self._cond:
            self.slots = slots or default_slots()
            self.queue = self.slots * QUEUE_PER_SLOT if queue is None else queue
            self._cond.notify_all()

    def warm(self) -> None:
        """Open a cursor per core now (each costs ~0.06 s: the runtime's functions), so the first
        queries pay for none; the server calls it in a thread at start. The pool opens the others
        when queries need them (a server that starts often, as the tests' do, pays for no more)."""
        warm = min(self.slots, os.cpu_count() or 1)
        while True:
            with self._cond:
                if self._closed or self._made >= warm:
                    return
                self._made += 1
                self._opening += 1
            try:
                cur = self._open()
            except Exception:           # best effort (closed meanwhile): a query opens its own
                with self._cond:
                    self._made -= 1
                    self._opening -= 1
                    self._cond.notify_all()
                return
            with self._cond:
                self._opening -= 1
                self._cond.notify_all()
                if self._closed:
                    _close(cur)
                    return
                self._all.append(cur)
                self._free.insert(0, cur)       # the warm ones stay at the end, used first
                self._cond.notify()

    @contextmanager
    def cursor(self, deadline: Deadline | None = None):
        """A cursor for this thread until the block ends; the thread's own one when it already
        holds one (a plugin's query inside a query). QueryBusyError when the queue is full,
        the deadline's QueryLimitError when it passes while waiting."""
        held = getattr(self._held, "cursor", None)
        if held is not None:
            yield held
            return
        cur = self._acquire(deadline)
        self._held.cursor = cur
        try:
            yield cur
        finally:
            self._held.cursor = None
            self._release(cur)

    def execute(self, cur, sql: str, *, prepare: bool = False):
        """``cur.execute(sql)``; with ``prepare`` (a query's SQL), once the pool has run the same
        text before, as a statement ``cur`` prepares the first time and executes after. A
        statement that does not prepare runs as it is (its error is the SQL's own); one that
        fails is forgotten."""
        if not prepare:
            return cur.execute(sql)
        names = self._prepared.get(cur)
        if names is None:
            names = self._prepared.setdefault(cur, OrderedDict())
        name = names.get(sql)
        if name is None:
            if not self._seen_before(sql):
                return cur.execute(sql)
            name = f"netatlas_q{next(self._names)}"
            try:
                cur.execute(f"PREPARE {name} AS {sql}")
            except Exception:           # noqa: BLE001 - direct execution says what is wrong
                return cur.execute(sql)
            names[sql] = name
            while len(names) > PREPARED_PER_CURSOR:
                _, old = names.popitem(last=False)
                try:
                    cur.execute(f"DEALLOCATE {old}")
                except Exception:       # noqa: BLE001 - gone with its cursor's state
                    pass
        else:
            names.move_to_end(sql)
        try:
            return cur.execute(f"EXECUTE {name}")
        except BaseException:
            names.pop(sql, None)
            try:
                cur.execute(f"DEALLOCATE {name}")
            except Exception:           # noqa: BLE001 - interrupted or closed: nothing to free
                pass
            raise

    def _seen_before(self, sql: str) -> bool:
        """Whether the pool ran this text before (by its hash: a collision only prepares a
        statement once more than needed); it is remembered now."""
        key = hash(sql)
        with self._seen_lock:
            seen = key in self._seen
            self._seen[key] = None
            self._seen.move_to_end(key)
            while len(self._seen) > SEEN_TEXTS:
                self._seen.popitem(last=False)
        return seen

    def _acquire(self, deadline: Deadline | None):
        with self._cond:
            if self._closed:
                raise NetatlasError("the workspace is closed")
            if not self._free and self._made >= self.slots:
                if self.waiting >= self.queue:
                    raise QueryBusyError(
                        f"too many queries: {self.running} running and {self.waiting} waiting "
                        f"(query_concurrency {self.slots}, query_queue {self.queue}); "
                        f"retry in {RETRY_AFTER} s", RETRY_AFTER)
                self.waiting += 1
                try:
                    while not self._free and self._made >= self.slots:
                        left = None if deadline is None else deadline.left()
                        if left is not None and left <= 0:
                            raise deadline.error()
                        self._cond.wait(left)
                finally:
                    self.waiting -= 1
            self.running += 1
            if self._free:
                return self._free.pop()
            self._made += 1
            self._opening += 1
        try:
            cur = self._open()
        except BaseException:
            with self._cond:
                self._made -= 1
                self.running -= 1
                self._opening -= 1
                self._cond.notify_all()
            raise
        with self._cond:
            self._opening -= 1
            self._all.append(cur)
            self._cond.notify_all()
        return cur

    def _release(self, cur) -> None:
        with self._cond:
            self.running -= 1
            if self._closed or self._made > self.slots:
                self._made -= 1
                if cur in self._all:
                    self._all.remove(cur)
                self._prepared.pop(cur, None)
                _close(cur)
            else:
                self._free.append(cur)
            self._cond.notify()

    def close(self) -> None:
        """Close every cursor, once those being opened are (the main connection cannot close
        while one is being set up)."""
        with self._cond:
            self._closed = True
            self._cond.wait_for(lambda: not self._opening, timeout=30)
            for cur in self._all:
                _close(cur)
            self._all.clear()
            self._prepared.clear()
            self._free.clear()
            self._cond.notify_all()
        self.watchdog.stop()


def _close(cur) -> None:
    try:
        cur.close()
    except Exception:
        pass
