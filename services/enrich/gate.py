"""A worker's queue in front of one provider's fleet-wide token buckets.

Every call waits here for its reservation in its lane
(:mod:`services.enrich.lanes`: fresh records before a replay's), in arrival
order within the lane. One pump task per provider and worker does the waiting
for all of them:

* it reserves for the head of the queue, up to ``max_batch`` requests in one
  Lua call (the fleet's ``admit``, :meth:`shared.provider_state.ProviderState.admit`:
  the longest prefix that fits now, exactly what one reservation after the
  other at that instant would grant), and hands each grant to its waiter;
* when the bucket refuses, it sleeps exactly as long as the bucket says the
  next request needs (at most ``recheck_s``, so a pause is seen while waiting),
  then asks again; whatever refilled meanwhile is taken in that one call.

So a grant costs one Redis round trip for several waiters and no hand-over
between waiting tasks: the tokens that appear are taken as soon as the pump
wakes, which is what keeps a busy worker close to the configured rate. The
fleet-wide bucket stays the only admission control; the gate adds none.

When the reservations may be scheduled ahead (the worker's ``ahead_s``, see
:meth:`shared.provider_state.ProviderState.admit`), each grant carries its
start and the pump asks again no sooner than ``ask_every_s``: one ask then
takes the schedule's next stretch for every waiter it fits, and a pump that
comes back late loses nothing, since the bucket is taken ahead of the clock.

Each reservation carries its breaker admission (the store grants both at
once). A waiter gets ``None`` when the provider became unavailable (paused,
breaker open, or half-open with every probe out) while it waited. A Redis failure reaches every waiter as the exception.
A grant whose waiter was cancelled before it could use it is refunded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from services.enrich.lanes import FRESH, Lanes
from shared.provider_state import Batch, Reservation

log = logging.getLogger(__name__)

MAX_BATCH = 32
RECHECK_S = 0.25
MIN_SLEEP_S = 0.0005

ReserveMany = Callable[[str | None, Sequence[int]], Awaitable[Batch]]
Refund = Callable[[Reservation], Awaitable[object]]


@dataclass
class _Ticket:
    model: str | None
    tokens: int
    fut: asyncio.Future[Reservation | None]


class BucketGate:
    def __init__(
        self,
        reserve_many: ReserveMany,
        refund: Refund,
        available: Callable[[], bool],
        max_batch: int = MAX_BATCH,
        recheck_s: float = RECHECK_S,
        ask_every_s: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        self._reserve_many = reserve_many
        self._refund = refund
        self._available = available
        self.max_batch = max_batch
        self.recheck_s = recheck_s
        self.ask_every_s = min(ask_every_s, recheck_s)
        self._queue: Lanes[_Ticket] = Lanes()
        self._pump: asyncio.Task[None] | None = None
        self._background: set[asyncio.Task[None]] = set()

    def waiting(self) -> int:
        return sum(1 for t in self._queue if not t.fut.done())

    def idle(self) -> bool:
        """Nobody waits: a new call may reserve on its own without jumping the queue."""
        return all(t.fut.done() for t in self._queue)

    async def acquire(
        self, model: str | None, tokens: int, lane: int = FRESH
    ) -> Reservation | None:
        """A granted reservation, or ``None`` if the provider became unavailable meanwhile."""
        loop = asyncio.get_running_loop()
        ticket = _Ticket(model, tokens, loop.create_future())
        self._queue.append(ticket, lane)
        if self._pump is None or self._pump.done():
            self._pump = loop.create_task(self._run())
        try:
            return await ticket.fut
        except asyncio.CancelledError:
            # Granted, but this waiter will never call: the provider never saw it.
            fut = ticket.fut
            if fut.done() and not fut.cancelled() and fut.exception() is None:
                res = fut.result()
                if res is not None:
                    self.refund_later(res)
            raise

    # -- the pump ------------------------------------------------------------------
    async def _run(self) -> None:
        try:
            while True:
                batch = self._head()
                if not batch:
                    return
                if not self._available():
                    self._finish_all(None)
                    return
                try:
                    got = await self._reserve_many(batch[0].model, [t.tokens for t in batch])
                except Exception as exc:
                    self._finish_all(exc)
                    return
                self._hand_out(batch, got.reservations)
                if got.unavailable:  # paused, or the breaker admits no more: nobody waits
                    self._finish_all(None)
                    return
                if len(got.reservations) < len(batch):
                    floor = max(MIN_SLEEP_S, self.ask_every_s)
                    await asyncio.sleep(min(max(got.wait_s, floor), self.recheck_s))
        finally:
            # Cancelled with the loop: nobody is left to wait for the waiters.
            for t in self._queue:
                t.fut.cancel()
            self._queue.clear()

    def _head(self) -> list[_Ticket]:
        """The live tickets at the front (fresh lane first) with the head's model, at most
        ``max_batch``."""
        for queue in self._queue.queues():
            while queue and queue[0].fut.done():
                queue.popleft()
        batch: list[_Ticket] = []
        for t in self._queue:
            if len(batch) >= self.max_batch:
                break
            if t.fut.done():
                continue
            if batch and t.model != batch[0].model:
                break
            batch.append(t)
        return batch

    def _hand_out(self, batch: list[_Ticket], grants: list[Reservation]) -> None:
        granted = batch[: len(grants)]
        for ticket, res in zip(granted, grants, strict=True):
            if ticket.fut.done():  # cancelled while the pump was asking Redis
                self.refund_later(res)
            else:
                ticket.fut.set_result(res)
        # The granted tickets are the first live ones of their lanes: drop them (and any
        # dead between).
        left = {id(t) for t in granted}
        for queue in self._queue.queues():
            while left and queue and (id(queue[0]) in left or queue[0].fut.done()):
                left.discard(id(queue.popleft()))

    def _finish_all(self, outcome: Exception | None) -> None:
        for t in self._queue:
            if t.fut.done():
                continue
            if outcome is None:
                t.fut.set_result(None)
            else:
                t.fut.set_exception(outcome)
        self._queue.clear()

    def refund_later(self, res: Reservation) -> None:
        """Give ``res`` back in the background (its waiter will not call)."""
        task = asyncio.get_running_loop().create_task(self._refund_quietly(res))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _refund_quietly(self, res: Reservation) -> None:
        with contextlib.suppress(Exception):
            await self._refund(res)
