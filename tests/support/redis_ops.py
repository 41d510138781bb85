"""The standalone operations of the shared-state scripts that only tests drive.

Enrich takes from the buckets, asks the breaker and extends a cooldown inside
its ``admit`` and ``settle`` scripts (:mod:`shared.redis.call_lua`). The tests
that hold each Lua piece to its pure model (:mod:`shared.redis.bucket_math`,
:mod:`shared.redis.breaker_logic`), or that set a state up, call those pieces
one at a time: these subclasses add the calls, on the production scripts.
"""

from __future__ import annotations

from collections.abc import Sequence

import redis.asyncio as aioredis

from shared.provider_state import Admission, Batch, Reservation
from shared.redis import keys
from shared.redis.breaker import Breakers, _s
from shared.redis.bucket import Limiter, check_tokens, cost_rows, dims_for, granted_batch
from shared.redis.bucket_lua import COOLDOWN_LIB
from shared.redis.client import translated
from shared.redis.cooldown import NOW_MS, Cooldowns

EXTEND_LUA = (
    r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
"""
    + NOW_MS
    + COOLDOWN_LIB
    + r"""
local until_ms = cooldown_extend(KEYS[1], now, tonumber(ARGV[1]))
local rem = until_ms - now
if rem < 0 then rem = 0 end
return {until_ms, rem}
"""
)


class LimiterOps(Limiter):
    async def reserve(self, provider: str, model: str | None, tokens: int) -> Reservation:
        """One request: granted, or refused with the wait and the bucket that blocks it."""
        batch = await self.reserve_many(provider, model, [tokens])
        if batch.reservations:
            res = batch.reservations[0]
            res.levels = batch.levels
            return res
        return Reservation(granted=False, wait_s=batch.wait_s, provider=provider, model=model,
                           tokens=0, requests=0, now_us=batch.now_us, blocked_by=batch.blocked_by,
                           levels=batch.levels)  # fmt: skip

    async def reserve_many(
        self, provider: str, model: str | None, tokens: Sequence[int], horizon_us: int = 0
    ) -> Batch:
        """The longest prefix of ``tokens`` that fits now (or starts within ``horizon_us``),
        one reservation per request."""
        if not tokens:
            raise ValueError("tokens must not be empty")
        check_tokens(tokens)
        dims = dims_for(self.limits.get(provider), model)
        extra = [str(len(tokens)), *cost_rows(dims, tokens), str(horizon_us)]
        reply = await self._run(provider, [(d, 0.0) for d in dims], "reserve_many", extra)
        granted, wait_us, now_us, blocker = (int(x) for x in reply[:4])
        return granted_batch(provider, model, tokens, dims, (granted, wait_us, now_us, blocker), reply[4:])  # fmt: skip

    async def reconcile(self, res: Reservation, actual_tokens: int) -> bool:
        """Settle the token buckets to what the call really used (False if nothing to do)."""
        return await self._settle(res, 0, res.tokens - max(0, actual_tokens))


class BreakersOps(Breakers):
    async def allow(self, provider: str) -> Admission:
        """May a call start now? (In half-open, ``probe`` marks the few calls let through.)"""
        allowed, probe, state, *_ = await self._run(provider, "allow")
        return Admission(bool(int(allowed)), bool(int(probe)), _s(state))

    async def record(self, provider: str, ok: bool, probe: bool = False) -> str:
        """Account a call's outcome; returns the breaker state afterwards."""
        reply = await self._run(provider, "record", ok, probe)
        return _s(reply[2])


class CooldownsOps(Cooldowns):
    def __init__(self, r: aioredis.Redis, pipeline: str) -> None:
        super().__init__(r, pipeline)
        self._extend = r.register_script(EXTEND_LUA)

    async def extend_cooldown(self, provider: str, seconds: float) -> float:
        """Cool ``provider`` down for at least ``seconds``; returns the remaining seconds."""
        if seconds < 0:
            raise ValueError("seconds must be >= 0")
        with translated(f"cooldown {provider}"):
            _, rem = await self._extend(
                keys=[keys.cooldown(self.pipeline, provider)], args=[repr(float(seconds))]
            )
        return int(rem) / 1000
