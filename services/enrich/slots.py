"""A worker's call slots under its adaptive limit (asyncio, no I/O).

At most ``limit()`` holders at once. Waiters queue in their lane
(:mod:`services.enrich.lanes`) in arrival order, and a release (or
:meth:`Slots.wake` after the limit grew) hands slots to exactly as many
waiters as now fit: fresh ones first, oldest first within a lane. A condition variable with
``notify_all`` would wake every waiter on every release to re-check the
limit: after a 429 halves the limit, hundreds of waiters doing that per
release saturate the event loop, delay the calls already granted, and bunch
their arrivals at the provider into more 429s.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from services.enrich.lanes import FRESH, Lanes


class Slots:
    def __init__(self, limit: Callable[[], int]) -> None:
        self._limit = limit
        self.active = 0
        self._waiters: Lanes[asyncio.Future[None]] = Lanes()

    def waiting(self) -> int:
        return sum(1 for f in self._waiters if not f.done())

    def try_acquire(self) -> bool:
        """Take a slot if one is free now and nobody waits for one; never waits."""
        if not self._waiters and self.active < self._limit():
            self.active += 1
            return True
        return False

    async def acquire(self, lane: int = FRESH) -> None:
        if self.try_acquire():
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(fut, lane)
        try:
            await fut  # handed over by _hand_out, already counted in ``active``
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # granted, but its holder is gone
            else:
                with contextlib.suppress(ValueError):
                    self._waiters.remove(fut)
            raise

    def release(self) -> None:
        self.active -= 1
        self._hand_out()

    def wake(self) -> None:
        """The limit may have grown: hand out what now fits."""
        self._hand_out()

    def _hand_out(self) -> None:
        for queue in self._waiters.queues():
            while queue and self.active < self._limit():
                fut = queue.popleft()
                if fut.done():
                    continue  # cancelled while waiting
                self.active += 1
                fut.set_result(None)
