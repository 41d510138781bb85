"""What a dry run asks Redis (I/O): the provider enrich would ask first, and the cache.

Both read only; nothing is written.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import redis.asyncio as aioredis

from services.enrich import cache_entry
from shared.config_file import TaskConfig
from shared.redis import keys
from shared.redis.client import translated
from shared.redis.health import provider_health

CHUNK = 500


async def first_available(
    r: aioredis.Redis, pipeline: str, chain: Sequence[str]
) -> tuple[str, bool]:
    """The first provider of the task's chain that is neither paused nor open (enrich
    skips the others), and whether there is one; none: the chain's first."""
    for name in chain:
        if (await provider_health(r, pipeline, name)).available:
            return name, True
    return chain[0], False


async def cached(r: aioredis.Redis, pipeline: str, task: TaskConfig,
                 digests: Collection[str]) -> set[str]:  # fmt: skip
    """The digests whose result-cache entry enrich would serve now (``cache_entry.usable``)."""
    wanted = sorted(digests)
    hits: set[str] = set()
    for i in range(0, len(wanted), CHUNK):
        chunk = wanted[i : i + CHUNK]
        with translated("cache get"):
            values = await r.mget([keys.cache(pipeline, d) for d in chunk])
        for digest, value in zip(chunk, values, strict=True):
            raw = value.encode() if isinstance(value, str) else value
            if cache_entry.usable(task, raw) is not None:
                hits.add(digest)
    return hits
