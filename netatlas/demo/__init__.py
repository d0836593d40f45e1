"""A simulated datacenter, written through the ingestion path: ``netatlas demo``.

Stages (each a module, each with a named product):

    plan        environment.py  seed, size, end -> Environment: machines by tier, their processes
                                and bound ports, and the logical connections (flows) between them
    inventory   inventory.py    Environment -> ServiceMapComputer_CL / VMComputer and
                                ServiceMapProcess_CL / VMProcess records (at start, hourly, at boot)
    traffic     traffic.py      Environment -> per day, VMConnection records (one per logical
                                connection and minute with activity) and VMBoundPort records
    ingest      pipeline.py     records -> ``ws.ingest(table, batch)``, BATCH records at a time

The world itself (tiers, operating systems, process templates, public endpoints, traffic
profiles and the rules of who talks to whom) is the tables of ``catalog.py``. The same seed gives
the same records; numpy is imported only when records are generated.
"""
from __future__ import annotations

from datetime import datetime
from .catalog import SUSPICIOUS_IPS, TIERS

MIN_MACHINES = sum(t["min"] for t in TIERS.values())

__all__ = ["generate", "SUSPICIOUS_IPS", "MIN_MACHINES"]


def generate(ws, *, machines: int = 200, days: int = 7, seed: int = 1, end: datetime | None = None,
             progress=None, columnar: bool | None = None) -> dict[str, int]:
    """Fill `ws` (anything with ``ingest(table, records)``; with ``ingest_frame`` too, it gets
    columns) with `days` days of a datacenter of `machines` machines ending at `end` (default: now,
    to the minute). ``progress``: a netatlas.progress.Progress. Returns records written per table.
    """
    from .pipeline import generate as run
    return run(ws, machines=machines, days=days, seed=seed, end=end, progress=progress, columnar=columnar)
