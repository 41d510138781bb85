"""Is a provider available to the fleet? (paused flag and breaker state)."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis

from shared.redis import keys


@dataclass(frozen=True)
class Health:
    paused: bool
    breaker: str  # closed | open | half_open

    @property
    def available(self) -> bool:
        """True when new work may be sent to the provider (half-open lets probes through)."""
        return not self.paused and self.breaker != "open"


async def provider_health(r: aioredis.Redis, pipeline: str, name: str) -> Health:
    async with r.pipeline(transaction=False) as pipe:
        pipe.get(keys.paused(pipeline, name))
        pipe.hget(keys.breaker(pipeline, name), "state")
        paused, state = await pipe.execute()
    state_s = state.decode() if isinstance(state, bytes) else (state or "closed")
    return Health(paused=paused in (b"1", "1"), breaker=state_s)


async def set_paused(r: aioredis.Redis, pipeline: str, name: str, paused: bool) -> None:
    if paused:
        await r.set(keys.paused(pipeline, name), "1")
    else:
        await r.delete(keys.paused(pipeline, name))
