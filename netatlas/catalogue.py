"""The table catalogue: every table and column of schemas.json, with KQL types.

The schema is data the package ships, not code written per table: ``schemas.json`` is Azure's
tables, exactly; ``tables.json`` is netatlas's own tables beside them, each a custom log (name
ending in ``_CL``, as Log Analytics names tables that are not Azure's), e.g. ``VMComputerTags_CL``
(the tags an agent's configuration gives its machine), or a Microsoft Sentinel table the shared
schema does not have (``SENTINEL``: ``ThreatIntelligenceIndicator``, with Sentinel's column names
where Sentinel has the column and VMConnection's names for the rest).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

from .kql import types as T


SENTINEL = ("ThreatIntelligenceIndicator",)

# The columns every record must have (ingest refuses a record without one): the planner knows a
# table's values of them are never null.
REQUIRED = ("TimeGenerated",)

# The tables the workspace computes from others (a view over stored rows): no row of theirs is
# stored, so none has a row identity (the planner's latest-row plan needs one).
COMPUTED = ("Usage",)

# Which key roles may ingest into a table (netatlas.auth): agents' ingest keys reach the Azure
# agent tables and the _CL tables; a table that changes what every machine shows (threat
# intelligence flags any address everywhere) takes an admin key only.
DEFAULT_INGEST_ROLES = ("ingest",)
INGEST_ROLES = {"ThreatIntelligenceIndicator": ("admin",)}


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[tuple[str, str], ...]   # (name, KQL type) in order

    @property
    def column_types(self) -> dict[str, str]:
        return dict(self.columns)


class _Tables(dict):
    """A catalogue's tables by name, counting its changes (the compile cache's key holds the count)."""
    generation = 0

    def _changed(method):
        def changed(self, *args, **kwargs):
            self.generation += 1
            return method(self, *args, **kwargs)
        return changed

    __setitem__ = _changed(dict.__setitem__)
    __delitem__ = _changed(dict.__delitem__)
    update = _changed(dict.update)
    pop = _changed(dict.pop)
    popitem = _changed(dict.popitem)
    setdefault = _changed(dict.setdefault)
    clear = _changed(dict.clear)
    __ior__ = _changed(dict.__ior__)
    del _changed


class Catalogue:
    def __init__(self, tables: dict[str, Table]):
        self.tables = _Tables(tables)

    @property
    def generation(self) -> int:
        """How many times the tables changed: a compile made before a change is not reused after it."""
        return self.tables.generation

    def get(self, name: str) -> Table | None:
        return self.tables.get(name)

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def names(self) -> list[str]:
        return list(self.tables)

    def ingest_roles(self, name: str) -> tuple[str, ...]:
        """The key roles that may ingest into table ``name`` (``INGEST_ROLES``)."""
        return INGEST_ROLES.get(name, DEFAULT_INGEST_ROLES)

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
        azure = json.loads(resources.files("netatlas").joinpath("schemas.json").read_text())
        own = json.loads(resources.files("netatlas").joinpath("tables.json").read_text())
        for name in own:
            if name in azure or not (name.endswith("_CL") or name in SENTINEL):
                raise ValueError(f"tables.json: {name} must be a new custom log table (a name ending in _CL) "
                                 f"or one of {', '.join(SENTINEL)}")
        return cls.from_json(azure | own)
