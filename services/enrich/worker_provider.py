"""One provider as a worker sees it: adapter, the fleet's shared state, local limits."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

from services.enrich.aimd import Aimd
from services.enrich.breaker_policy import refused
from services.enrich.gate import BucketGate
from services.enrich.lanes import FRESH
from services.enrich.lookups import Lookups
from services.enrich.providers.base import Provider
from services.enrich.slots import Slots
from shared.call_stats import CallTally
from shared.provider_state import Admitted, Batch, Health, ProviderState

# The gate asks again at most every 0.4 x ahead_s: its grants stay ahead of the clock by
# more than half the horizon, and each ask takes that much of the fleet's schedule.
ASK_SHARE = 0.4
# A call that wakes this much after its scheduled start gives the grant back and asks
# again: starting it would put it among later grants' starts, a burst at the provider
# after a stall (what a plain bucket's 10 ms burst bounded); the slot it missed is lost.
LATE_START_S = 0.005


@dataclass
class WorkerProvider:
    name: str
    provider: Provider
    state: ProviderState
    aimd: Aimd
    health: Health | None = None  # None: unknown (the shared state unreachable)
    slots: Slots = field(init=False)
    # One pump per worker waits on the fleet's buckets for every queued call, in
    # order, reserving for several at once instead of each polling Redis.
    gate: BucketGate = field(init=False)
    # The cache lookups of calls that queue, several in one round trip.
    lookups: Lookups = field(init=False)
    # Calls that ended since the last heartbeat, which hands them to the fleet's statistics.
    calls: CallTally = field(default_factory=CallTally)
    # How far ahead of its tokens a call may be granted (it then waits for its start);
    # the gate asks the buckets at most every ASK_SHARE of that while calls queue.
    ahead_s: float = 0.0
    # Answers that pushed back (429, overloaded) so far: a call granted before one of
    # them and not started yet asks again instead (the cooldown may now hold it).
    pushbacks: int = 0

    def __post_init__(self) -> None:
        self.slots = Slots(lambda: self.aimd.current)
        self.gate = BucketGate(
            self._reserve,
            self.state.refund,
            lambda: self.available,
            ask_every_s=self.ahead_s * ASK_SHARE,
        )
        self.lookups = Lookups(self.state.lookup)

    async def admit(
        self,
        model: str | None,
        tokens: Sequence[int],
        lookup: str | None = None,
        pace: bool = False,
    ) -> Admitted:
        """The fleet's ``admit``; a refusal for a pause or the breaker is known here at
        once, so the worker stops taking work before its next health refresh."""
        got = await self.state.admit(model, tokens, lookup, self.ahead_s, pace)
        received = time.monotonic()
        for res in got.batch.reservations:
            res.start_at = received + res.delay_s
        if got.batch.unavailable:
            self.health = refused(self.health, got.batch.blocked_by)
        return got

    async def _reserve(self, model: str | None, tokens: Sequence[int]) -> Batch:
        return (await self.admit(model, tokens, pace=True)).batch

    @property
    def available(self) -> bool:
        return self.health is not None and self.health.available

    @property
    def active(self) -> int:
        """Calls of this worker in flight to the provider."""
        return self.slots.active

    @contextlib.asynccontextmanager
    async def slot(self, lane: int = FRESH) -> AsyncIterator[None]:
        """A call slot under this worker's adaptive concurrency limit (FIFO per lane)."""
        await self.slots.acquire(lane)
        try:
            yield
        finally:
            self.slots.release()

    def start_now(self) -> bool:
        """Take a call slot if one is free and nobody queues for a slot or at the gate:
        the call may then admit itself in one round trip (release with ``slots.release``)."""
        return self.gate.idle() and self.slots.try_acquire()

    async def wake(self) -> None:
        """The limit may have grown: let waiting calls in."""
        self.slots.wake()
