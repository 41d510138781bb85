"""Fleet-wide in-flight calls per provider, from worker heartbeats with a TTL.

Each worker sets its own key (``SET ... PX``) about every second with its
current in-flight count; a worker that dies stops refreshing and drops out
after ``ttl_s``. Readers SCAN the provider's keys and sum them, which is fine
for fleets of tens of workers.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.redis import keys
from shared.redis.client import translated

DEFAULT_TTL_S = 5.0


class Fleet:
    def __init__(self, r: aioredis.Redis, pipeline: str) -> None:
        self.r = r
        self.pipeline = pipeline

    async def heartbeat(
        self, provider: str, worker_id: str, inflight: int, ttl_s: float = DEFAULT_TTL_S
    ) -> None:
        with translated(f"heartbeat {provider}"):
            await self.r.set(
                keys.inflight(self.pipeline, provider, worker_id),
                str(max(0, inflight)),
                px=max(1, int(ttl_s * 1000)),
            )

    async def leave(self, provider: str, worker_id: str) -> None:
        """Drop this worker's heartbeat at once (clean shutdown)."""
        with translated(f"heartbeat {provider}"):
            await self.r.delete(keys.inflight(self.pipeline, provider, worker_id))

    async def list_workers(self, provider: str) -> dict[str, int]:
        """Live workers of ``provider`` and their in-flight counts."""
        prefix = keys.inflight_prefix(self.pipeline, provider)
        with translated(f"fleet {provider}"):
            found = [
                k.decode() if isinstance(k, bytes) else str(k)
                async for k in self.r.scan_iter(
                    match=keys.inflight_pattern(self.pipeline, provider), count=500
                )
            ]
            if not found:
                return {}
            values = await self.r.mget(found)
        out: dict[str, int] = {}
        for k, v in zip(found, values, strict=True):
            if v is None:  # expired between SCAN and MGET
                continue
            try:
                out[k[len(prefix) :]] = int(v)
            except ValueError:
                continue
        return out

    async def fleet_inflight(self, provider: str) -> int:
        return sum((await self.list_workers(provider)).values())
