"""Python values <-> KQL values, for records coming in and results going out.

``python_to_kql(value, type)`` checks and normalises one incoming value (raising ValueError or
TypeError with a readable reason); ``OUTPUT`` converts what DuckDB returns into the Python
types the Result promises.
"""
from __future__ import annotations

import gc
import json
import re
import math
import threading
import uuid
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

from . import types as T
from .literals import Timespan, parse_datetime, parse_timespan, ticks_to_timedelta


def _to_datetime(v):
    if isinstance(v, datetime):
        return v.astimezone(timezone.utc).replace(tzinfo=None) if v.tzinfo else v
    if isinstance(v, date):
        return datetime(v.year, v.month, v.day)
    if isinstance(v, str):
        d = parse_datetime(v)
        if d is None:
            raise ValueError(f"{v!r} is not a datetime (use ISO 8601, e.g. 2024-01-31T10:00:00Z)")
        return d
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        raise TypeError("datetimes are ISO 8601 strings, not numbers")
    raise TypeError(f"expected a datetime, got {type(v).__name__}")


def _to_timespan(v):
    if isinstance(v, timedelta):
        from .literals import timedelta_to_ticks
        return timedelta_to_ticks(v)
    if isinstance(v, str):
        t = parse_timespan(v)
        if t is None:
            raise ValueError(f"{v!r} is not a timespan (e.g. '01:30:00' or '1.02:00:00')")
        return t
    if isinstance(v, int) and not isinstance(v, bool):
        return v
    raise TypeError(f"expected a timespan, got {type(v).__name__}")


def _to_long(v, bits=64):
    if isinstance(v, bool):
        raise TypeError("expected an integer, got bool")
    if isinstance(v, int):
        pass
    elif isinstance(v, float) and v.is_integer():
        v = int(v)
    elif isinstance(v, str) and v.strip().lstrip("-").isdigit():
        v = int(v)
    else:
        raise TypeError(f"expected an integer, got {type(v).__name__} {v!r}")
    if not -(2 ** (bits - 1)) <= v < 2 ** (bits - 1):
        raise ValueError(f"{v} does not fit in {bits} bits")
    return v


def _to_real(v):
    if isinstance(v, bool):
        raise TypeError("expected a number, got bool")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            pass
    raise TypeError(f"expected a number, got {type(v).__name__} {v!r}")


def _to_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    raise TypeError(f"expected a bool, got {type(v).__name__} {v!r}")


def _to_string(v):
    if isinstance(v, str):
        return v
    raise TypeError(f"expected a string, got {type(v).__name__}")


def _to_dynamic(v):
    json.dumps(v)   # must be JSON-representable
    return v


def _to_guid(v):
    return uuid.UUID(str(v))


def _to_decimal(v):
    if isinstance(v, bool):
        raise TypeError("expected a decimal, got bool")
    return Decimal(str(v))


INPUT = {
    T.STRING: _to_string, T.LONG: _to_long, T.INT: lambda v: _to_long(v, 32), T.REAL: _to_real,
    T.DECIMAL: _to_decimal, T.BOOL: _to_bool, T.DATETIME: _to_datetime, T.TIMESPAN: _to_timespan,
    T.DYNAMIC: _to_dynamic, T.GUID: _to_guid,
}


def python_to_kql(v, typ: str):
    if v is None:
        return None
    if isinstance(v, LiteralText):
        return v.to(typ)
    return INPUT[typ](v)


_WRAPPED = re.compile(r"^\s*(bool|boolean|int|long|real|double|decimal|datetime|date|timespan|time|guid|uuid"
                      r"|uniqueid|dynamic|string)\s*\((.*)\)\s*$", re.S | re.I)


class LiteralText(str):
    """A query parameter's value as Kusto's clients send it: text, taken as is for a string
    parameter, else read as a literal of the declared type (``datetime(2024-01-31)`` or
    ``2024-01-31``, ``1h``, ``dynamic([1, 2])`` or ``[1, 2]``, ``guid(...)``, ``true``, ``42``)."""

    def to(self, typ: str):
        if typ == T.STRING:
            return str(self)
        m = _WRAPPED.match(self)
        text = m.group(2).strip() if m else self.strip()
        if text.lower() == "null":
            return None
        if typ == T.DYNAMIC:
            try:
                return json.loads(text)
            except ValueError:
                raise ValueError(f"{text!r} is not a dynamic literal (JSON)") from None
        return INPUT[typ](text)


def _out_datetime(v):
    if v is None:
        return None
    if isinstance(v, datetime):
        return v.replace(tzinfo=timezone.utc) if v.tzinfo is None else v.astimezone(timezone.utc)
    return v


def _out_dynamic(v):
    if v is None:
        return None
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
        except RecursionError:
            from ..errors import QueryExecutionError
            raise QueryExecutionError("a dynamic value in the result is nested too deeply to return "
                                      "(hundreds of levels of arrays or objects)") from None
    return v


def _out_real(v):
    if v is None:
        return None
    return float(v)


def _out_timespan(v):
    return None if v is None else ticks_to_timedelta(int(v))


def _out_guid(v):
    if v is None or isinstance(v, uuid.UUID):
        return v
    return uuid.UUID(str(v))


def _out_string(v):
    return "" if v is None else v


def _out_decimal(v):
    """Kusto shows decimals without trailing zeros: 1.500000000000000000 -> 1.5."""
    if v is None:
        return None
    v = Decimal(v) if not isinstance(v, Decimal) else v
    return Decimal(format(v.normalize(), "f")) if v.is_finite() else v


def _out_int(v):
    return None if v is None else int(v)


# Types whose DuckDB value is already the Python value the Result promises: no conversion.
AS_IS = {T.LONG, T.INT, T.BOOL, T.REAL, T.GUID}   # DOUBLE -> float, UUID -> uuid.UUID already

OUTPUT = {
    T.STRING: _out_string, T.LONG: _out_int, T.INT: _out_int, T.REAL: _out_real,
    T.DECIMAL: _out_decimal, T.BOOL: lambda v: None if v is None else bool(v), T.DATETIME: _out_datetime,
    T.TIMESPAN: _out_timespan, T.DYNAMIC: _out_dynamic, T.GUID: _out_guid,
}


def to_json_value(v, typ: str):
    """A Result value as plain JSON (the HTTP API and golden files)."""
    from .literals import format_datetime_iso, format_timespan
    if v is None:
        return None
    if typ == T.DATETIME:
        return format_datetime_iso(v)
    if typ == T.TIMESPAN:
        from .literals import timedelta_to_ticks
        return format_timespan(timedelta_to_ticks(v))
    if typ == T.GUID:
        return str(v)
    if typ == T.DECIMAL:
        return format(v, "f")
    if typ == T.REAL and (math.isnan(v) or math.isinf(v)):
        return "NaN" if math.isnan(v) else ("Infinity" if v > 0 else "-Infinity")
    return v


def convert_rows(raw: list[tuple], types: list[str], as_is: frozenset | set = AS_IS) -> list[list]:
    """DuckDB rows -> Result rows, converting only the columns whose type needs it (``as_is``: the
    types the store answers as Result values already)."""
    work = [(i, OUTPUT[t]) for i, t in enumerate(types) if t not in as_is]
    rows = [list(r) for r in raw]
    for i, conv in work:
        if conv is _out_string:
            for row in rows:
                if row[i] is None:
                    row[i] = ""
        elif conv is _out_datetime:
            for row in rows:
                v = row[i]
                if v is not None:
                    row[i] = _EPOCH_UTC + (v - _NAIVE_EPOCH) if type(v) is datetime and v.tzinfo is None else _aware(v)
        elif conv is _out_timespan:
            for row in rows:
                v = row[i]
                if v is not None:
                    row[i] = Timespan(v if type(v) is int else int(v))
        else:
            for row in rows:
                row[i] = conv(row[i])
    return rows


def convert_columns(columns: list[list], types: list[str], as_is: frozenset | set = AS_IS) -> list[list]:
    """Columns of store values -> Result rows: ``convert_rows`` a column at a time (for a store
    that answers in columns, as Arrow does); the same values."""
    for i, t in enumerate(types):
        if t in as_is:
            continue
        conv, column = OUTPUT[t], columns[i]
        if conv is _out_string:
            columns[i] = ["" if v is None else v for v in column]
        elif conv is _out_datetime:
            columns[i] = [None if v is None else _EPOCH_UTC + (v - _NAIVE_EPOCH) if type(v) is datetime and v.tzinfo is None
                          else _aware(v) for v in column]
        else:
            columns[i] = [conv(v) for v in column]
    return [list(r) for r in zip(*columns)] if columns else []


_UTC = timezone.utc
# a naive datetime made aware (UTC) as the aware epoch plus its distance from the naive epoch: the
# same instant, exactly (timedelta keeps microseconds), and an eighth of the cost of replace(tzinfo=)
_NAIVE_EPOCH, _EPOCH_UTC = datetime(1970, 1, 1), datetime(1970, 1, 1, tzinfo=_UTC)


def _aware(v):
    """A DuckDB timestamp as an aware datetime; one beyond Python's (and Kusto's) range, year 1 to
    9999, which DuckDB hands over as text, is null, as in Kusto: it must not fail the answer."""
    if isinstance(v, str):
        return None
    return v if v.tzinfo is not None else _EPOCH_UTC + (v - _NAIVE_EPOCH)


def _from_json_datetime(v):
    d = parse_datetime(v) if isinstance(v, str) else None
    return v if d is None else d.replace(tzinfo=timezone.utc)


def _from_json_timespan(v):
    t = parse_timespan(v) if isinstance(v, str) else None
    return v if t is None else ticks_to_timedelta(t)


def _from_json_real(v):
    return float(v) if isinstance(v, (int, float, str)) and not isinstance(v, bool) else v


FROM_JSON = {
    T.DATETIME: _from_json_datetime, T.TIMESPAN: _from_json_timespan, T.GUID: lambda v: uuid.UUID(str(v)),
    T.DECIMAL: lambda v: Decimal(str(v)), T.REAL: _from_json_real,
}


def from_json_value(v, typ: str):
    """The inverse of ``to_json_value``: a value of the HTTP API's JSON back to the Result's Python value."""
    if v is None or typ not in FROM_JSON:
        return v
    return FROM_JSON[typ](v)


# ---------------------------------------------------------------- large answers, a column at a time

class _GcPause:
    """Python's cyclic garbage collector paused while a large answer is built: its hundreds of
    thousands of new lists hold no cycles (they are freed by reference counts), yet every 700 of
    them start a collection that walks them all again (5x the conversion's own time at 500,000
    rows). Re-entrant across threads: the collector runs again when the last holder leaves, if
    it ran before the first came."""

    def __init__(self):
        self._lock = threading.Lock()
        self._holds = 0
        self._restore = False

    def __enter__(self):
        with self._lock:
            if self._holds == 0:
                self._restore = gc.isenabled()
                gc.disable()
            self._holds += 1
        return self

    def __exit__(self, *exc):
        with self._lock:
            self._holds -= 1
            if self._holds == 0 and self._restore:
                gc.enable()


gc_paused = _GcPause()

# DuckDB types whose Arrow form converts to the same Python values as DuckDB's own rows
# (``ArrowAnswer``); an answer with any other column is fetched as rows.
ARROW_TYPES = frozenset({"VARCHAR", "JSON", "BIGINT", "INTEGER", "SMALLINT", "TINYINT", "DOUBLE", "BOOLEAN",
                         "TIMESTAMP"})
_INT64_MAX = 2 ** 63 - 1
_MIN_US = (datetime(1, 1, 1) - _NAIVE_EPOCH) // timedelta(microseconds=1)
_MAX_US = (datetime.max - _NAIVE_EPOCH) // timedelta(microseconds=1)


def _us_aware(v):
    """Microseconds since 1970 (DuckDB's TIMESTAMP in Arrow) -> the aware datetime ``_aware`` gives
    for DuckDB's own value: infinity and -infinity are Python's last and first instants, an
    instant beyond years 1 to 9999 (DuckDB's text) is null."""
    if v == _INT64_MAX:
        return datetime.max.replace(tzinfo=_UTC)
    if v == -_INT64_MAX:
        return datetime.min.replace(tzinfo=_UTC)
    if not _MIN_US <= v <= _MAX_US:
        return None
    return _EPOCH_UTC + timedelta(microseconds=v)


class ArrowAnswer:
    """A large answer as fetched: its first rows (DuckDB's tuples) and the rest as Arrow record
    batches of the same columns (DuckDB types in ``ARROW_TYPES``)."""

    def __init__(self, first: list[tuple], batches: list):
        self.first = first
        self.batches = batches

    def __len__(self) -> int:
        return len(self.first) + sum(b.num_rows for b in self.batches)

    def rows(self, types: list[str], as_is: frozenset | set = AS_IS) -> list[list]:
        """Result rows, the same values ``convert_rows`` makes of DuckDB's rows, built a column at
        a time: Arrow fills null strings and reads timestamps as integers, each instant converted once."""
        import pyarrow as pa
        import pyarrow.compute as pc
        with gc_paused:
            firsts = list(zip(*self.first)) if self.first else [()] * len(types)
            columns = []
            for i, t in enumerate(types):
                chunks = [b.column(i) for b in self.batches]
                head = list(firsts[i])
                if t in as_is:
                    column = head
                    for c in chunks:
                        column += _plain(c)
                    columns.append(column)
                    continue
                conv = OUTPUT[t]
                if conv is _out_string and all(pa.types.is_string(c.type) for c in chunks):
                    column = ["" if v is None else v for v in head]
                    for c in chunks:
                        column += _texts(pc.fill_null(c, ""))
                elif conv is _out_datetime:        # as convert_rows: _aware, each instant once
                    seen: dict = {}
                    column = [None if v is None else (seen.get(v) or seen.setdefault(v, _aware(v))) for v in head]
                    for c in chunks:
                        if pa.types.is_timestamp(c.type) and c.type.tz is None and c.type.unit == "us":
                            us, seen_us = c.cast(pa.int64()).to_pylist(), {}
                            column += [None if v is None else seen_us[v] if v in seen_us else
                                       seen_us.setdefault(v, _us_aware(v)) for v in us]
                        else:
                            column += [None if v is None else (seen.get(v) or seen.setdefault(v, _aware(v)))
                                       for v in c.to_pylist()]
                else:
                    column = [conv(v) for v in head]
                    for c in chunks:
                        column += [conv(v) for v in c.to_pylist()]
                columns.append(column)
            return list(map(list, zip(*columns))) if columns else []


def _plain(array) -> list:
    """An Arrow array's values as Python values: numbers and booleans without nulls through numpy
    (its tolist makes the same ints, floats and bools, 10-20 % faster than Arrow's to_pylist)."""
    import pyarrow as pa
    t = array.type
    if array.null_count == 0 and (pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)):
        return array.to_numpy(zero_copy_only=False).tolist()
    return array.to_pylist()


def _texts(array) -> list:
    """An Arrow text array without nulls as Python strings: a column of few distinct values (as
    a map's machines, processes, countries) makes each distinct string once and repeats it, a
    third of the time of one string per row; else one string per row."""
    import numpy as np
    import pyarrow.compute as pc
    encoded = pc.dictionary_encode(array)
    if 2 * len(encoded.dictionary) > len(array):
        return array.to_pylist()
    values = np.array(encoded.dictionary.to_pylist() + [None], dtype=object)[:-1]   # 1-D, whatever the texts
    return values[encoded.indices.to_numpy(zero_copy_only=False)].tolist()


def convert_answer(raw, types: list[str], as_is: frozenset | set = AS_IS) -> list[list]:
    """``convert_rows`` of DuckDB's rows, or an ``ArrowAnswer``'s rows."""
    if isinstance(raw, ArrowAnswer):
        return raw.rows(types, as_is)
    if len(raw) > 2048:
        with gc_paused:
            return convert_rows(raw, types, as_is)
    return convert_rows(raw, types, as_is)
