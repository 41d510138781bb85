"""Fleet-wide in-flight calls and call statistics per provider, from worker heartbeats.

Each worker sets its own key (``SET ... PX``) about every second with its
current in-flight count; a worker that dies stops refreshing and drops out
after ``ttl_s``. Readers SCAN the provider's keys and sum them, which is fine
for fleets of tens of workers.

The same heartbeat carries what the worker counted since the last one (a
:class:`~shared.call_stats.CallTally`): ``HEARTBEAT_LUA`` adds it to the
current second's hash (Redis ``TIME``), so counting a call costs no Redis
round trip of its own. :meth:`Fleet.seconds` reads the last minute of them.

HEARTBEAT_LUA
  KEYS[1]  the worker's in-flight key      KEYS[2]  the provider's calls prefix
  ARGV[1]  in-flight count                 ARGV[2]  its TTL in ms
  ARGV[3]  TTL of a second's hash in ms    ARGV[4..] field, increment, field, increment, ...
  reply    the second the counts went to
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from shared.call_stats import WINDOW_S, CallTally
from shared.redis import keys
from shared.redis.client import translated

DEFAULT_TTL_S = 5.0
SECOND_TTL_MS = 2 * WINDOW_S * 1000  # a second's hash outlives the window it is read in

HEARTBEAT_LUA = r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local sec = tonumber(redis.call('TIME')[1])
if #ARGV > 3 then
  local key = KEYS[2] .. sec
  for i = 4, #ARGV, 2 do
    redis.call('HINCRBY', key, ARGV[i], ARGV[i + 1])
  end
  redis.call('PEXPIRE', key, ARGV[3])
end
return sec
"""


def _counts(raw: dict[Any, Any]) -> dict[str, int]:
    return {(k.decode() if isinstance(k, bytes) else str(k)): int(v) for k, v in raw.items()}


class Fleet:
    def __init__(self, r: aioredis.Redis, pipeline: str) -> None:
        self.r = r
        self.pipeline = pipeline
        self._heartbeat = r.register_script(HEARTBEAT_LUA)

    async def heartbeat(
        self,
        provider: str,
        worker_id: str,
        inflight: int,
        ttl_s: float = DEFAULT_TTL_S,
        calls: CallTally | None = None,
    ) -> None:
        """Publish ``inflight``; with ``calls``, add what they counted to the fleet's totals.

        The tally is emptied once the store has it; after a Redis error its
        counts are still in it for the next heartbeat.
        """
        key = keys.inflight(self.pipeline, provider, worker_id)
        ttl_ms = max(1, int(ttl_s * 1000))
        taken = calls.take() if calls is not None and calls.calls else None
        with translated(f"heartbeat {provider}"):
            try:
                if taken is None:
                    await self.r.set(key, str(max(0, inflight)), px=ttl_ms)
                    return
                args: list[Any] = [max(0, inflight), ttl_ms, SECOND_TTL_MS]
                for name, count in taken.fields():
                    args += [name, count]
                await self._heartbeat(
                    keys=[key, keys.calls_prefix(self.pipeline, provider)], args=args
                )
            except BaseException:
                if calls is not None and taken is not None:
                    calls.merge(taken)
                raise

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

    async def seconds(
        self, provider: str, now_s: int, window_s: int = WINDOW_S
    ) -> list[dict[str, int]]:
        """The per-second call counts of the ``window_s`` seconds up to ``now_s`` (Redis TIME)."""
        with translated(f"call stats {provider}"):
            async with self.r.pipeline(transaction=False) as pipe:
                for sec in range(now_s - window_s + 1, now_s + 1):
                    pipe.hgetall(keys.calls(self.pipeline, provider, sec))
                replies = await pipe.execute()
        return [_counts(raw) for raw in replies if raw]
