"""The product of the execute stage: a Result."""
from __future__ import annotations

from dataclasses import dataclass, field

from .kql.values import from_json_value, to_json_value

# the limit that cut a result -> what it is, for the message (Kusto: E_QUERY_RESULT_SET_TOO_LARGE)
LIMITS = {"max_rows": "{limit:,} rows", "max_result_bytes": "{limit:,} bytes"}


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
        return [[to_json_value(v, t) for v, t in zip(r, self.types)] for r in self.rows]

    def to_json(self, name: str = "PrimaryResult") -> dict:
        return {
            "tables": [{"name": name, "columns": [{"name": c, "type": t} for c, t in zip(self.columns, self.types)],
                        "rows": self.json_rows()}],
            "render": self.render,
            "statistics": {"rows": len(self.rows), "truncated": self.truncated,
                           "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()},
                           **({"truncated_by": self.truncated_by, "limit": self.limit,
                               "message": self.truncation} if self.truncated else {})},
        }

    @classmethod
    def from_json(cls, doc: dict) -> "Result":
        """The Result that ``to_json`` described (the first table), e.g. an answer of the HTTP API."""
        table = doc["tables"][0]
        columns = [c["name"] for c in table["columns"]]
        types = [c["type"] for c in table["columns"]]
        rows = [[from_json_value(v, t) for v, t in zip(r, types)] for r in table["rows"]]
        stats = doc.get("statistics") or {}
        timings = {k: v / 1000 for k, v in (stats.get("timings_ms") or {}).items()}
        return cls(columns, types, rows, doc.get("render"), bool(stats.get("truncated")), timings=timings,
                   truncated_by=stats.get("truncated_by"), limit=stats.get("limit"))
