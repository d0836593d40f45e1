"""The server's periodic work (retention passes, threat-intelligence feeds): one loop for both."""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Awaitable, Callable

log = logging.getLogger("netatlas.server")


async def every(interval: float, work: Callable[[], Awaitable[object]], what: str,
                scheduled: Callable[[float], None]) -> None:
    """Run ``work`` now and then every ``interval`` seconds until cancelled; a run that fails is
    logged and the schedule goes on. ``scheduled(t)`` learns when the next run is due."""
    while True:
        try:
            await work()
        except Exception:
            log.exception("%s failed; trying again in %g s", what, interval)
        scheduled(time.time() + interval)
        await asyncio.sleep(interval)
