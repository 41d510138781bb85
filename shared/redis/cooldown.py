"""A provider's shared cooldown: no call may start before it ends.

Set from ``retry-after`` / ``retry-after-ms`` / ``x-ratelimit-reset-*`` /
``anthropic-ratelimit-*-reset``; the whole fleet sees it (the bucket script
checks it on every reserve). It is extended, never shortened: the stored value
is ``max(existing, now + seconds)`` with ``now`` from Redis ``TIME``, computed
inside one Lua script: ``cooldown_extend`` of the bucket library
(:mod:`shared.redis.bucket_lua`), which enrich's ``settle`` script runs after a
response that asks for a wait.

REMAINING_LUA
  KEYS[1]  cooldown key
  reply    {until_ms (0 if none), remaining_ms (0 if over)}
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.redis import keys
from shared.redis.client import translated

NOW_MS = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

REMAINING_LUA = (
    NOW_MS
    + r"""
local until_ms = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
local rem = until_ms - now
if rem < 0 then rem = 0 end
return {until_ms, rem}
"""
)


class Cooldowns:
    def __init__(self, r: aioredis.Redis, pipeline: str) -> None:
        self.r = r
        self.pipeline = pipeline
        self._remaining = r.register_script(REMAINING_LUA)

    async def cooldown_remaining(self, provider: str) -> float:
        """Seconds until ``provider`` may be called again (0 when not cooling down)."""
        with translated(f"cooldown {provider}"):
            _, rem = await self._remaining(keys=[keys.cooldown(self.pipeline, provider)])
        return int(rem) / 1000
