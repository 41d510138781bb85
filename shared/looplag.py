"""How late an event loop runs what is due: ``sluice_event_loop_lag_seconds``.

A task sleeps ``interval_s`` and measures how much later than asked it woke.
That is how long every ready callback on the loop (a token grant, a provider's
answer) waited for its turn: CPU starvation, a long synchronous step or a
garbage collection all show here first. A stall of ``warn_s`` or more is also
logged, with its length.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from prometheus_client import Histogram

log = logging.getLogger(__name__)

LAG = Histogram(
    "sluice_event_loop_lag_seconds",
    "How much later than due the event loop ran a timer (sampled every 100 ms)",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


async def watch(
    interval_s: float = 0.1,
    warn_s: float = 0.5,
    observe: Callable[[float], None] = LAG.observe,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Sample the loop's lag forever (cancel to stop)."""
    while True:
        asked = clock()
        await asyncio.sleep(interval_s)
        lag = max(0.0, clock() - asked - interval_s)
        observe(lag)
        if lag >= warn_s:
            log.warning("event loop stalled for %.0f ms", lag * 1000)
