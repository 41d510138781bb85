"""The fleet's shared state about one provider, kept in Redis.

:class:`RedisProviderState` implements :class:`shared.provider_state.ProviderState`
over the token buckets, cooldowns, breaker, pause flag, fleet registry and
result cache of one pipeline.

The result cache: a crash, retry or replay never pays twice for one answer.
Entries are keyed by the content hash of the request (which names the provider
kind it was asked of, so the pipeline's providers share one cache), valued by
the bytes the caller chose to keep, with a TTL.

A paid call is two round trips, one script each (:mod:`shared.redis.call_lua`):

state = RedisProviderState(connect(url), "sluice", "openai", limits=ProviderLimits(rpm=1200))
first = await state.admit("gpt-4o-mini", [900], lookup=digest)   # cached, or reserved
...call...
await state.settle(res, Settlement(used_tokens=640, outcome="ok", remember=...))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis

from shared.call_stats import CallTally
from shared.provider_state import Admitted, Batch, Health, Reservation, Settlement
from shared.redis import keys
from shared.redis.breaker import Breakers, spec_args
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.bucket import (
    SETTLE_MARK_TTL_MS,
    Limiter,
    ProviderLimits,
    bucket_args,
    check_tokens,
    cost_rows,
    dims_for,
    granted_batch,
    settle_parts,
)
from shared.redis.bucket_math import US
from shared.redis.call_lua import CALL_LUA
from shared.redis.client import translated
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
        self.limits = limits
        self.limiter = Limiter(r, pipeline, {provider_name: limits} if limits is not None else {})
        self.breakers = Breakers(r, pipeline, breaker or BreakerSpec())
        self.fleet = Fleet(r, pipeline)
        self._call = r.register_script(CALL_LUA)
        k = keys
        self._breaker_keys = [k.breaker(pipeline, provider_name), k.window(pipeline, provider_name)]
        self._cooldown_key = k.cooldown(pipeline, provider_name)

    def _bucket_keys(self, dims: Sequence[Any]) -> list[str]:
        return [keys.bucket(self.pipeline, self.name, d.name) for d in dims]

    # before and after a call
    async def admit(
        self,
        model: str | None,
        tokens: Sequence[int],
        lookup: str | None = None,
        ahead_s: float = 0.0,
        pace: bool = False,
    ) -> Admitted:
        check_tokens(tokens)
        dims = dims_for(self.limits, model)
        cache_key = keys.cache(self.pipeline, lookup or "-")
        script_keys = [cache_key, keys.paused(self.pipeline, self.name), *self._breaker_keys,
                       self._cooldown_key, *self._bucket_keys(dims)]  # fmt: skip
        args = ["admit", "1" if lookup else "0", *spec_args(self.breakers.config_for(self.name)),
                *bucket_args([(d, 0.0) for d in dims]), str(len(tokens)), *cost_rows(dims, tokens),
                str(max(0, round(ahead_s * US))), "1" if pace else "0"]  # fmt: skip
        with translated(f"admit {self.name}"):
            reply = list(await self._call(keys=script_keys, args=args))
        status = _text(reply[0])
        if status == "cached":
            value = reply[7]
            return Admitted(
                value if isinstance(value, bytes) else str(value).encode(), _empty(reply)
            )
        if status == "miss":
            return Admitted(None, _empty(reply))
        if status in ("paused", "open"):
            return Admitted(None, _empty(reply, refused_by="paused" if status == "paused" else "breaker"))  # fmt: skip
        granted, wait_us, now_us, blocker = (int(x) for x in reply[1:5])
        batch = granted_batch(
            self.name, model, tokens, dims, (granted, wait_us, now_us, blocker), reply[8:],
            probe=bool(int(reply[5])), unavailable=status == "full",
        )  # fmt: skip
        if status == "full":
            batch.blocked_by = "breaker"  # half-open, every probe out
        return Admitted(None, batch)

    async def lookup(self, digests: Sequence[str]) -> list[bytes | None]:
        if not digests:
            return []
        with translated(f"cache lookup {self.name}"):
            values = await self.r.mget([keys.cache(self.pipeline, d) for d in digests])
        return [v if v is None or isinstance(v, bytes) else str(v).encode() for v in values]

    async def settle(self, res: Reservation, settlement: Settlement) -> str:
        """Settle ``res`` to the call's usage, with the breaker outcome, cooldown and
        cache write in the same script; once per reservation fleet-wide (a marker keyed
        by its id, as :meth:`Limiter.refund`), so a retry after a Redis error repeats
        nothing. Returns the breaker's state afterwards."""
        dims = dims_for(self.limits, res.model)
        parts = settle_parts(dims, 0, res.tokens - max(0, settlement.used_tokens))
        cache = settlement.remember
        script_keys = [keys.settled(self.pipeline, self.name, res.id), *self._breaker_keys,
                       self._cooldown_key, keys.cache(self.pipeline, cache.digest if cache else "-"),
                       *self._bucket_keys([d for d, _ in parts])]  # fmt: skip
        args = ["settle", str(SETTLE_MARK_TTL_MS), *spec_args(self.breakers.config_for(self.name)),
                settlement.outcome or "", "1" if res.probe else "0", repr(float(settlement.cooldown_s)),
                str(max(1, int(cache.ttl_s * 1000)) if cache and cache.ttl_s > 0 else 0),
                cache.value if cache else b"", *bucket_args(parts)]  # fmt: skip
        with translated(f"settle {self.name}"):
            reply = list(await self._call(keys=script_keys, args=args))
        res.settled = True
        return _text(reply[1])

    async def refund(self, res: Reservation) -> bool:
        return await self.limiter.refund(res)

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


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _empty(reply: Sequence[Any], refused_by: str | None = None) -> Batch:
    """Nothing reserved: an answer found, only a lookup asked, or the provider
    unavailable (``refused_by`` "paused" or "breaker")."""
    return Batch([], 0.0, int(reply[3]), blocked_by=refused_by, unavailable=refused_by is not None)
