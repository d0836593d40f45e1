"""The compile cache: KQL text -> Compiled, kept so that a query run again skips lex, parse, plan
and generate (a workbook refreshing its tiles, the map's and the UI's fixed queries, a
benchmark's repeats). On a query of a few milliseconds those stages are a third of the time.

An entry is found by everything the SQL depends on: the text, the dialect, the parameters, the row
cap, the timespan and the catalogue (its generation, which any new custom table moves). Two kinds
of compile are not kept:

- one whose planning ran SQL (a plugin reading the data: bag_unpack's keys, autocluster's rows):
  its SQL depends on the data;
- one that read now (``now()``, ``ago()``) and is not linear in it.

A compile that read now is compiled a second time at now + ``NOW_PROBE``. When the two SQL texts
are the same but for datetime literals, each either unchanged (not from now) or moved by exactly
NOW_PROBE (now plus a fixed offset), the entry is a template: every moved literal becomes now plus
its offset. It serves any now from the first compile's to NOW_PROBE later. Over that window a
comparison between now and a constant that was folded while planning cannot change its answer
unseen: it is monotonic in now, and was the same at both ends. Anything else (``startofday(now())``,
``bin(now(), 1h)``) moves its literal by another amount and the compile is not kept.
"""
from __future__ import annotations

import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from . import Compiled, compile as compile_kql

CACHE_ENTRIES = 512
CACHE_TEXT_MAX = 64 * 1024      # longer query texts are compiled every time (they are rarely repeated)
# odd in every unit, so that no rounding of now (to a second, minute, hour or day) moves by it
NOW_PROBE = timedelta(hours=1, minutes=1, seconds=1, microseconds=1)
# a datetime literal as typed.sql_literal writes it
_DATETIME = re.compile(r"'(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{6})'")
_FORMAT = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True)
class _Entry:
    compiled: Compiled
    parts: tuple[str, ...] | None = None        # SQL between the now-relative literals (a template)
    offsets: tuple[timedelta, ...] = ()         # each one's distance from now
    since: datetime | None = None               # the now it was compiled at; serves to since + NOW_PROBE

    def serve(self, now: datetime) -> Compiled | None:
        if self.parts is None:
            return self.compiled
        if not self.since <= now <= self.since + NOW_PROBE:
            return None
        try:
            literals = [(now + off).strftime(_FORMAT) for off in self.offsets]
        except OverflowError:
            return None
        sql = self.parts[0] + "".join(f"'{lit}'{part}" for lit, part in zip(literals, self.parts[1:]))
        if not self.compiled.more:
            return replace(self.compiled, sql=sql)
        # a query of several results: the template is over all their SQL texts (_sql_of)
        first, *more = sql.split(_JOIN)
        return replace(self.compiled, sql=first, more=[replace(p, sql=s) for p, s in zip(self.compiled.more, more)])


# between the SQL texts of a query's results in a template (no SQL text holds it)
_JOIN = "\x00"


def _sql_of(compiled: Compiled) -> str:
    """The SQL of every result of ``compiled``, the first's and its ``more``, as one text."""
    return _JOIN.join([compiled.sql, *(p.sql for p in compiled.more)])


def _schema(compiled: Compiled) -> list:
    return [(c.columns, c.types, c.render) for c in (compiled, *compiled.more)]


def _naive_utc(now: datetime | None) -> datetime:
    now = now or datetime.now(timezone.utc)
    return now.astimezone(timezone.utc).replace(tzinfo=None) if now.tzinfo else now


def _template(first: Compiled, second: Compiled, since: datetime) -> _Entry | None:
    """The template of a compile at ``since`` from it and the same compile at since + NOW_PROBE,
    or None when the two differ otherwise than by literals at now plus a fixed offset."""
    if _schema(first) != _schema(second) or any(_JOIN in c.sql for c in (first, *first.more)):
        return None
    a, b = _DATETIME.split(_sql_of(first)), _DATETIME.split(_sql_of(second))
    if len(a) != len(b) or a[0::2] != b[0::2]:
        return None
    parts, offsets = [a[0]], []
    for i in range(1, len(a), 2):
        x, y = datetime.strptime(a[i], _FORMAT), datetime.strptime(b[i], _FORMAT)
        if y - x == NOW_PROBE:
            offsets.append(x - since)
            parts.append(a[i + 1])
        elif x == y:          # a constant: part of the text between now-relative literals
            parts[-1] += f"'{a[i]}'" + a[i + 1]
        else:
            return None
    if not offsets:
        return _Entry(first)
    return _Entry(first, tuple(parts), tuple(offsets), since)


class CompileCache:
    """Compiled queries by what their SQL depends on, the ``size`` most recently used."""

    def __init__(self, size: int = CACHE_ENTRIES):
        self.size = size
        self._entries: OrderedDict = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def compile(self, text: str, catalogue, *, dialect: str = "duckdb", params: dict | None = None,
                now: datetime | None = None, executor=None, max_rows: int | None = None, timespan=None,
                deadline=None) -> Compiled:
        """As ``kql.compile``; a compile found in the cache costs a dictionary look-up."""
        t0 = time.perf_counter()
        if deadline is not None:
            deadline.check()
        now = _naive_utc(now)
        key = _key(text, catalogue, dialect, params, max_rows, timespan)
        with self._lock:
            entry = self._entries.get(key) if key is not None else None
            if entry is not None:
                self._entries.move_to_end(key)
        if entry is not None and (hit := entry.serve(now)) is not None:
            self.hits += 1
            return replace(hit, timings={"cached": time.perf_counter() - t0})
        self.misses += 1
        compiled = compile_kql(text, catalogue, dialect=dialect, params=params, now=now, executor=executor,
                               max_rows=max_rows, timespan=timespan, deadline=deadline)
        if key is None or compiled.ran_sql:
            return compiled
        if not compiled.read_now:
            entry = _Entry(compiled)
        else:
            try:
                probe = compile_kql(text, catalogue, dialect=dialect, params=params, now=now + NOW_PROBE,
                                    executor=executor, max_rows=max_rows, timespan=timespan, deadline=deadline)
            except Exception:       # noqa: BLE001 - a later now that does not compile: not kept
                return compiled
            entry = None if probe.ran_sql else _template(compiled, probe, now)
        if entry is not None:
            # the entry keeps the SQL and the schema, not the plan's trees (large, and read by nobody
            # after generate)
            entry = replace(entry, compiled=replace(entry.compiled, plan=None))
            with self._lock:
                self._entries[key] = entry
                self._entries.move_to_end(key)
                while len(self._entries) > self.size:
                    self._entries.popitem(last=False)
        return compiled

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


def _key(text, catalogue, dialect, params, max_rows, timespan):
    """What a compile's SQL depends on besides now, as a hashable key; None when a parameter's value
    has no stable text or the text is longer than CACHE_TEXT_MAX (it is then compiled every time)."""
    if len(text) > CACHE_TEXT_MAX:
        return None
    try:
        frozen = json.dumps(params, sort_keys=True, default=_param_text) if params else ""
    except (TypeError, ValueError):
        return None
    span = tuple(_naive_utc(x) for x in timespan) if timespan else None
    return (text, dialect, frozen, max_rows, span, id(catalogue), getattr(catalogue, "generation", None))


def _param_text(value):
    if isinstance(value, (datetime, timedelta)):
        return f"{type(value).__name__}:{value!r}"
    raise TypeError(type(value).__name__)
