"""What the benchmarks share: bringing netatlas's and hand-written SQL's values to one form."""
from __future__ import annotations

import math
import uuid
from datetime import datetime, timedelta, timezone
from decimal import Decimal


def _value(v):
    """A value in a form both sides share: naive UTC datetimes, plain timedeltas, floats for decimals,
    str guids."""
    if isinstance(v, datetime) and v.tzinfo is not None:
        return v.astimezone(timezone.utc).replace(tzinfo=None)
    if isinstance(v, timedelta):
        return timedelta(days=v.days, seconds=v.seconds, microseconds=v.microseconds)
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, uuid.UUID):
        return str(v)
    return v


def _sort_key(row):
    return tuple((v is None, float(f"{v:.9g}") if isinstance(v, float) else v) for v in row)


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) and not isinstance(b, bool):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)
    return a == b


HAND_STATEMENT = "bench_hand_sql"


class PreparedHand:
    """The hand-written SQL as a statement prepared on ``con``, as netatlas runs a query run again
    (pool.QueryPool.execute): ``run()`` executes it (columns and rows, as ``execute(sql)`` gives
    them); ``ok`` is False when it does not prepare. Use it in a with block: it is freed after."""

    def __init__(self, con, sql: str):
        self.con = con
        try:
            con.execute(f"PREPARE {HAND_STATEMENT} AS {sql}")
            self.ok = True
        except Exception:  # noqa: BLE001 - then the SQL is timed as SQL only
            self.ok = False

    def run(self):
        cur = self.con.execute(f"EXECUTE {HAND_STATEMENT}")
        return [d[0] for d in cur.description], cur.fetchall()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.ok:
            self.con.execute(f"DEALLOCATE {HAND_STATEMENT}")
