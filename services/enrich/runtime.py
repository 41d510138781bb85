"""One provider as a worker sees it: adapter, shared Redis state, local limits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from services.enrich.aimd import Aimd
from services.enrich.gate import BucketGate
from services.enrich.providers.base import Provider
from shared.config_file import ProviderConfig
from shared.redis.health import Health
from shared.redis.state import ProviderState


@dataclass
class Runtime:
    name: str
    config: ProviderConfig
    provider: Provider
    state: ProviderState
    aimd: Aimd
    health: Health | None = None  # None: unknown (Redis unreachable)
    active: int = 0
    _cond: asyncio.Condition = field(default_factory=asyncio.Condition)
    # One pump per worker waits on the fleet's buckets for every queued call, in
    # order, reserving for several at once instead of each polling Redis.
    gate: BucketGate = field(init=False)

    def __post_init__(self) -> None:
        self.gate = BucketGate(self.state.reserve_many, self.state.refund, lambda: self.available)

    @property
    def available(self) -> bool:
        return self.health is not None and self.health.available

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """A call slot under this worker's adaptive concurrency limit."""
        async with self._cond:
            await self._cond.wait_for(lambda: self.active < self.aimd.current)
            self.active += 1
        try:
            yield
        finally:
            async with self._cond:
                self.active -= 1
                self._cond.notify_all()

    async def wake(self) -> None:
        """Re-check waiting slots (the limit may have grown)."""
        async with self._cond:
            self._cond.notify_all()
