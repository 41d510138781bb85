"""The fleet's shared state about one provider, kept in Redis.

:class:`RedisProviderState` implements :class:`shared.provider_state.ProviderState`
over the token buckets, cooldowns, breaker, pause flag, fleet registry and
result cache of one pipeline.

The result cache: a crash, retry or replay never pays twice for one answer.
Entries are keyed by the content hash of the request (which names the provider
kind it was asked of, so the pipeline's providers share one cache), valued by
the bytes the caller chose to keep, with a TTL.

state = RedisProviderState(connect(url), "sluice", "openai", limits=ProviderLimits(rpm=1200))
adm = await state.allow()
batch = await state.reserve_many("gpt-4o-mini", [900])
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from shared.call_stats import CallTally
from shared.provider_state import Admission, Batch, Health, Reservation
from shared.redis import keys
from shared.redis.breaker import Breakers
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.bucket import Limiter, ProviderLimits
from shared.redis.client import translated
from shared.redis.cooldown import Cooldowns
from shared.redis.fleet import DEFAULT_TTL_S, Fleet
from shared.redis.health import provider_health


class RedisProviderState:
    def __init__(
        self,
        r: aioredis.Redis,
        pipeline: str,
        provider_name: str,
        limits: ProviderLimits | None = None,
        breaker: BreakerSpec | None = None,
    ) -> None:
        self.r = r
        self.pipeline = pipeline
        self.name = provider_name
        self.limiter = Limiter(r, pipeline, {provider_name: limits} if limits is not None else {})
        self.cooldowns = Cooldowns(r, pipeline)
        self.breakers = Breakers(r, pipeline, breaker or BreakerSpec())
        self.fleet = Fleet(r, pipeline)

    # token buckets
    async def reserve_many(self, model: str | None, tokens: Sequence[int]) -> Batch:
        return await self.limiter.reserve_many(self.name, model, tokens)

    async def reconcile(self, res: Reservation, actual_tokens: int) -> bool:
        return await self.limiter.reconcile(res, actual_tokens)

    async def refund(self, res: Reservation) -> bool:
        return await self.limiter.refund(res)

    # cooldown
    async def extend_cooldown(self, seconds: float) -> float:
        return await self.cooldowns.extend_cooldown(self.name, seconds)

    # breaker and pause
    async def allow(self) -> Admission:
        return await self.breakers.allow(self.name)

    async def record(self, ok: bool, probe: bool = False) -> str:
        return await self.breakers.record(self.name, ok, probe)

    async def trip(self, reason: str) -> bool:
        return await self.breakers.trip(self.name, reason)

    async def health(self) -> Health:
        return await provider_health(self.r, self.pipeline, self.name)

    # fleet
    async def heartbeat(
        self,
        worker_id: str,
        inflight: int,
        calls: CallTally | None = None,
        ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        await self.fleet.heartbeat(self.name, worker_id, inflight, ttl_s, calls)

    async def leave(self, worker_id: str) -> None:
        await self.fleet.leave(self.name, worker_id)

    # result cache
    async def cached(self, digest: str) -> bytes | None:
        with translated("cache get"):
            value = await self.r.get(keys.cache(self.pipeline, digest))
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def remember(self, digest: str, value: bytes, ttl_s: float) -> None:
        if ttl_s <= 0:
            return
        with translated("cache put"):
            await self.r.set(keys.cache(self.pipeline, digest), value, px=max(1, int(ttl_s * 1000)))
