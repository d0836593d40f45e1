"""The product of the execute stage: a Result."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .kql import types as T
from .kql.values import from_json_value, gc_paused, to_json_value

# the limit that cut a result -> what it is, for the message (Kusto: E_QUERY_RESULT_SET_TOO_LARGE)
LIMITS = {"max_rows": "{limit:,} rows", "max_result_bytes": "{limit:,} bytes"}
# types whose Result value is its JSON value (``to_json_value`` returns it as it is)
JSON_AS_IS = frozenset({T.STRING, T.LONG, T.INT, T.BOOL, T.DYNAMIC})
_INF = float("inf")


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[list]
    render: dict | None = None
    truncated: bool = False
    sql: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    truncated_by: str | None = None     # the limit that cut the rows: "max_rows" or "max_result_bytes"
    limit: int | None = None            # its value
    # the results of a query's further tabular statements (Kusto's batch: `T1; T2`), in order; each
    # has its own row limit and an equal share of the byte limit (workspace.result_share); the primary
    # result is this one
    more: list["Result"] = field(default_factory=list)

    def tables(self) -> list["Result"]:
        """Every result table of the query: this one, then ``more``."""
        return [self, *self.more]

    @property
    def truncation(self) -> str | None:
        """Why the result is partial, in words (None when it is whole)."""
        if not self.truncated:
            return None
        if self.truncated_by not in LIMITS:
            return "the result was cut at its row limit"
        what = LIMITS[self.truncated_by].format(limit=self.limit)
        return (f"the result was cut at {self.truncated_by} ({what}): {len(self.rows):,} rows are shown; "
                f"narrow the query (where, project, summarize, take) to see the rest")

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def to_dicts(self) -> list[dict]:
        return [dict(zip(self.columns, r)) for r in self.rows]

    def json_rows(self) -> list[list]:
        """The rows as JSON values (``to_json_value``), built a column at a time: the columns whose
        values are their JSON already are kept, a real is converted only when NaN or infinite, each
        distinct datetime once."""
        return self._json_rows(copy=True)

    def _json_rows(self, copy: bool) -> list[list]:
        """``json_rows``; without ``copy``, the rows themselves when they are their JSON already
        (for an answer that is only read)."""
        rows, types = self.rows, self.types
        if len(rows) < 64 or not types:
            return [[to_json_value(v, t) for v, t in zip(r, types)] for r in rows]
        if self._json_as_is():
            if not copy:
                return rows
            with gc_paused:
                return list(map(list, rows))
        with gc_paused:
            columns = []
            for column, t in zip(zip(*rows), types):
                if t in JSON_AS_IS:
                    columns.append(column)
                elif t == T.REAL:
                    columns.append([v if v is None or -_INF < v < _INF else to_json_value(v, t) for v in column])
                elif t == T.DATETIME:
                    seen: dict = {}
                    columns.append([None if v is None else seen[v] if v in seen else
                                    seen.setdefault(v, to_json_value(v, t)) for v in column])
                else:
                    columns.append([to_json_value(v, t) for v in column])
            return list(map(list, zip(*columns)))

    def _json_as_is(self) -> bool:
        """Whether every value is its JSON value already: the columns are of ``JSON_AS_IS`` types or
        reals without a null, NaN or infinity (their sum is finite; checked in C)."""
        for i, t in enumerate(self.types):
            if t in JSON_AS_IS:
                continue
            if t != T.REAL:
                return False
            column = [r[i] for r in self.rows]
            if None in column:
                return False
            try:
                if not math.isfinite(sum(column)):
                    return False
            except TypeError:
                return False
        return True

    def to_json(self, name: str = "PrimaryResult") -> dict:
        """``tables`` lists every result table: the first named ``name``, the others Table_1,
        Table_2... (their place, as Kusto's v1 protocol numbers its tables); a further table carries
        its own ``render`` and ``statistics`` (rows, truncation). The top-level render and
        statistics are the first table's."""
        rows = self._json_rows(copy=False)
        tables = [{"name": name, "columns": self._columns_json(), "rows": rows}]
        for i, r in enumerate(self.more, 1):
            tables.append({"name": table_name(i), "columns": r._columns_json(), "rows": r._json_rows(copy=False),
                           "render": r.render, "statistics": r._statistics()})
        return {
            "tables": tables,
            "render": self.render,
            "statistics": {**self._statistics(),
                           "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()}},
        }

    def _columns_json(self) -> list[dict]:
        return [{"name": c, "type": t} for c, t in zip(self.columns, self.types)]

    def _statistics(self) -> dict:
        return {"rows": len(self.rows), "truncated": self.truncated,
                **({"truncated_by": self.truncated_by, "limit": self.limit,
                    "message": self.truncation} if self.truncated else {})}

    @classmethod
    def from_json(cls, doc: dict) -> "Result":
        """The Result that ``to_json`` described (every table: the first is the Result, the others
        its ``more``), e.g. an answer of the HTTP API."""
        first, *others = doc["tables"]
        stats = doc.get("statistics") or {}
        res = cls._from_table(first, doc.get("render"), stats)
        res.timings = {k: v / 1000 for k, v in (stats.get("timings_ms") or {}).items()}
        res.more = [cls._from_table(t, t.get("render"), t.get("statistics") or {}) for t in others]
        return res

    @classmethod
    def _from_table(cls, table: dict, render, stats: dict) -> "Result":
        columns = [c["name"] for c in table["columns"]]
        types = [c["type"] for c in table["columns"]]
        rows = [[from_json_value(v, t) for v, t in zip(r, types)] for r in table["rows"]]
        return cls(columns, types, rows, render, bool(stats.get("truncated")),
                   truncated_by=stats.get("truncated_by"), limit=stats.get("limit"))


def table_name(index: int) -> str:
    """The name of a query's result table at ``index`` (0: the first): PrimaryResult, Table_1, ..."""
    return "PrimaryResult" if index == 0 else f"Table_{index}"
