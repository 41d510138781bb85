"""A provider's shared cooldown: no call may start before it ends.

Set from ``retry-after`` / ``retry-after-ms`` / ``x-ratelimit-reset-*`` /
``anthropic-ratelimit-*-reset``; the whole fleet sees it (the bucket script
checks it on every reserve). It is extended, never shortened: the stored value
is ``max(existing, now + seconds)`` with ``now`` from Redis ``TIME``, computed
inside one Lua script.

EXTEND_LUA
  KEYS[1]  cooldown key (integer ms timestamp, Redis TIME)
  ARGV[1]  seconds (float >= 0)
  reply    {until_ms, remaining_ms} after the update; the key expires 1 s after until_ms
REMAINING_LUA
  KEYS[1]  cooldown key
  reply    {until_ms (0 if none), remaining_ms (0 if over)}
"""

from __future__ import annotations

import redis.asyncio as aioredis

from shared.redis import keys
from shared.redis.bucket_lua import COOLDOWN_LIB
from shared.redis.client import translated

_NOW_MS = r"""
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

EXTEND_LUA = (
    r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
"""
    + _NOW_MS
    + COOLDOWN_LIB
    + r"""
local until_ms = cooldown_extend(KEYS[1], now, tonumber(ARGV[1]))
local rem = until_ms - now
if rem < 0 then rem = 0 end
return {until_ms, rem}
"""
)

REMAINING_LUA = (
    _NOW_MS
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
        self._extend = r.register_script(EXTEND_LUA)
        self._remaining = r.register_script(REMAINING_LUA)

    async def extend_cooldown(self, provider: str, seconds: float) -> float:
        """Cool ``provider`` down for at least ``seconds``; returns the remaining seconds."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with translated(f"cooldown {provider}"):
            _, rem = await self._extend(
                keys=[keys.cooldown(self.pipeline, provider)], args=[repr(float(seconds))]
            )
        return int(rem) / 1000

    async def cooldown_remaining(self, provider: str) -> float:
        """Seconds until ``provider`` may be called again (0 when not cooling down)."""
        with translated(f"cooldown {provider}"):
            _, rem = await self._remaining(keys=[keys.cooldown(self.pipeline, provider)])
        return int(rem) / 1000
