"""LLM result cache: a crash, retry or replay never pays twice for one answer.

Keyed by the content hash of the request (enrich's ``tasks.request_hash``),
valued by the raw bytes the caller chose to keep, with a TTL.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.redis import keys
from shared.redis.client import translated


class ResultCache:
    def __init__(self, r: aioredis.Redis, pipeline: str) -> None:
        self.r = r
        self.pipeline = pipeline

    async def get(self, digest: str) -> bytes | None:
        with translated("cache get"):
            value = await self.r.get(keys.cache(self.pipeline, digest))
        if value is None:
            return None
        return value if isinstance(value, bytes) else str(value).encode()

    async def put(self, digest: str, value: bytes, ttl_s: float) -> None:
        """Store ``value`` for ``ttl_s`` seconds (``ttl_s <= 0``: caching is off, no-op)."""
        if ttl_s <= 0:
            return
        with translated("cache put"):
            await self.r.set(keys.cache(self.pipeline, digest), value, px=max(1, int(ttl_s * 1000)))
