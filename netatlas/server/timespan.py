"""The ``timespan`` of a query request: an ISO 8601 duration or interval -> (start, end) in UTC.

| form | example | means |
|---|---|---|
| duration | ``P1D``, ``PT1H``, ``P1DT12H``, ``PT30M``, ``P2W``, ``PT0.5S`` | the last duration up to now |
| start/end | ``2024-05-01T00:00:00Z/2024-05-02T00:00:00Z`` | that interval |
| start/duration | ``2024-05-01T00:00:00Z/P1D`` | from start, for the duration |
| duration/end | ``P1D/2024-05-02T00:00:00Z`` | the duration ending at end |

Years and months (``P1Y``, ``P1M``) are refused: they have no fixed length. A datetime without
an offset is UTC. The start must come before the end.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

_DURATION = re.compile(
    r"P(?:(?P<weeks>\d+(?:\.\d+)?)W)?(?:(?P<days>\d+(?:\.\d+)?)D)?"
    r"(?:T(?:(?P<hours>\d+(?:\.\d+)?)H)?(?:(?P<minutes>\d+(?:\.\d+)?)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE)
_CALENDAR = re.compile(r"P[^T]*\d[YM]", re.IGNORECASE)   # P1Y, P1M, P1Y2M3D (not PT1M)


class TimespanError(ValueError):
    pass


def parse_duration(text: str) -> timedelta:
    m = _DURATION.fullmatch(text.strip())
    if not m or not any(m.groupdict().values()) or text.strip().upper().endswith("T"):
        if _CALENDAR.match(text.strip()):
            raise TimespanError(f"{text!r}: years and months have no fixed length; use weeks or days (P30D)")
        raise TimespanError(f"{text!r} is not an ISO 8601 duration (P1D, PT1H, P1DT12H, PT30M)")
    return timedelta(**{k: float(v) for k, v in m.groupdict().items() if v})


def parse_datetime(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise TimespanError(f"{text!r} is not an ISO 8601 datetime (2024-05-01T00:00:00Z)") from None
    return when.replace(tzinfo=timezone.utc) if when.tzinfo is None else when.astimezone(timezone.utc)


def _is_duration(part: str) -> bool:
    return part.strip()[:1] in ("P", "p")


def parse_timespan(text: str, now: datetime | None = None) -> tuple[datetime, datetime]:
    """(start, end), both tz-aware UTC."""
    try:
        return _parse_timespan(text, now)
    except OverflowError:
        raise TimespanError(f"{text!r} reaches outside the datetimes that can be stored") from None


def _parse_timespan(text: str, now: datetime | None) -> tuple[datetime, datetime]:
    if not isinstance(text, str) or not text.strip():
        raise TimespanError("timespan must be a non-empty string such as 'P1D' or 'start/end'")
    now = now or datetime.now(timezone.utc)
    parts = text.split("/")
    if len(parts) == 1:
        start, end = now - parse_duration(parts[0]), now
    elif len(parts) == 2:
        a, b = parts
        if _is_duration(a) and _is_duration(b):
            raise TimespanError(f"{text!r}: an interval needs at least one datetime")
        if _is_duration(a):
            end = parse_datetime(b)
            start = end - parse_duration(a)
        elif _is_duration(b):
            start = parse_datetime(a)
            end = start + parse_duration(b)
        else:
            start, end = parse_datetime(a), parse_datetime(b)
    else:
        raise TimespanError(f"{text!r} is not an ISO 8601 duration or interval")
    if start >= end:
        raise TimespanError(f"{text!r}: the start ({start.isoformat()}) is not before the end ({end.isoformat()})")
    return start, end
