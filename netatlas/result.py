"""The product of the execute stage: a Result."""
from __future__ import annotations

from dataclasses import dataclass, field

from .kql.values import from_json_value, to_json_value


@dataclass
class Result:
    columns: list[str]
    types: list[str]
    rows: list[list]
    render: dict | None = None
    truncated: bool = False
    sql: str = ""
    timings: dict[str, float] = field(default_factory=dict)

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
                           "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()}},
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
        return cls(columns, types, rows, doc.get("render"), bool(stats.get("truncated")), timings=timings)
