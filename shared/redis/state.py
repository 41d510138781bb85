"""Everything the fleet shares about one provider, behind one object.

state = ProviderState(connect(url), "sluice", "openai", limits=ProviderLimits(rpm=1200))
adm = await state.allow()
res = await state.reserve("gpt-4o-mini", tokens=900)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.redis.breaker import Breakers, BreakerView
from shared.redis.breaker_logic import Admission, BreakerConfig
from shared.redis.bucket import Batch, Limiter, ProviderLimits, Reservation
from shared.redis.cooldown import Cooldowns
from shared.redis.fleet import DEFAULT_TTL_S, Fleet
from shared.redis.health import Health, provider_health, set_paused


@dataclass(frozen=True)
class ProviderSnapshot:
    """What an operator sees about a provider (admin)."""

    name: str
    paused: bool
    breaker: BreakerView
    cooldown_s: float
    levels: dict[str, float]
    inflight: int


class ProviderState:
    def __init__(
        self,
        r: aioredis.Redis,
        pipeline: str,
        provider_name: str,
        limits: ProviderLimits | None = None,
        breaker: BreakerConfig | None = None,
    ) -> None:
        self.r = r
        self.pipeline = pipeline
        self.name = provider_name
        self.limiter = Limiter(r, pipeline, {provider_name: limits} if limits is not None else {})
        self.cooldowns = Cooldowns(r, pipeline)
        self.breakers = Breakers(r, pipeline, breaker or BreakerConfig())
        self.fleet = Fleet(r, pipeline)

    # token buckets
    async def reserve(self, model: str | None, tokens: int) -> Reservation:
        return await self.limiter.reserve(self.name, model, tokens)

    async def reserve_many(self, model: str | None, tokens: Sequence[int]) -> Batch:
        return await self.limiter.reserve_many(self.name, model, tokens)

    async def reconcile(self, res: Reservation, actual_tokens: int) -> bool:
        return await self.limiter.reconcile(res, actual_tokens)

    async def refund(self, res: Reservation) -> bool:
        return await self.limiter.refund(res)

    async def levels(self, model: str | None = None) -> dict[str, float]:
        return await self.limiter.levels(self.name, model)

    # cooldown
    async def extend_cooldown(self, seconds: float) -> float:
        return await self.cooldowns.extend_cooldown(self.name, seconds)

    async def cooldown_remaining(self) -> float:
        return await self.cooldowns.cooldown_remaining(self.name)

    # breaker and pause
    async def allow(self) -> Admission:
        return await self.breakers.allow(self.name)

    async def record(self, ok: bool, probe: bool = False) -> str:
        return await self.breakers.record(self.name, ok, probe)

    async def trip(self, reason: str) -> bool:
        """Force the breaker open fleet-wide with ``reason``; True when this call opened it."""
        return await self.breakers.trip(self.name, reason)

    async def health(self) -> Health:
        return await provider_health(self.r, self.pipeline, self.name)

    async def set_paused(self, paused: bool) -> None:
        await set_paused(self.r, self.pipeline, self.name, paused)

    # fleet
    async def heartbeat(self, worker_id: str, inflight: int, ttl_s: float = DEFAULT_TTL_S) -> None:
        await self.fleet.heartbeat(self.name, worker_id, inflight, ttl_s)

    async def fleet_inflight(self) -> int:
        return await self.fleet.fleet_inflight(self.name)

    async def list_workers(self) -> dict[str, int]:
        return await self.fleet.list_workers(self.name)

    async def snapshot(self, model: str | None = None) -> ProviderSnapshot:
        health = await self.health()
        return ProviderSnapshot(
            name=self.name,
            paused=health.paused,
            breaker=await self.breakers.view(self.name),
            cooldown_s=await self.cooldown_remaining(),
            levels=await self.levels(model),
            inflight=await self.fleet_inflight(),
        )
