"""The table catalogue: every table and column of schemas.json, with KQL types.

The schema is data the package ships (netatlas/schemas.json), not code written per table.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .kql import types as T


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]   # (name, KQL type) in order

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)


class Catalogue:
    def __init__(self, tables: dict[str, Table]):
        self.tables = tables

    def get(self, name: str) -> Table | None:
        return self.tables.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def names(self) -> list[str]:
        return list(self.tables)

    @classmethod
    def from_json(cls, data: dict) -> "Catalogue":
        tables = {}
        for name, cols in data.items():
            for col, typ in cols:
                if typ not in T.ALL:
                    raise ValueError(f"schemas.json: {name}.{col} has unknown type {typ!r}")
            tables[name] = Table(name, tuple((c, t) for c, t in cols))
        return cls(tables)

    @classmethod
    @lru_cache(maxsize=1)
    def load(cls) -> "Catalogue":
        text = resources.files("netatlas").joinpath("schemas.json").read_text()
        return cls.from_json(json.loads(text))
