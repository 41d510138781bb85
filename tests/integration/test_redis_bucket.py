"""Token buckets on a real Redis: reserve / reconcile / refund, and Lua == Python."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from shared.redis import bucket_math as bm
from shared.redis import keys
from shared.redis.bucket import Limiter, Limits, ProviderLimits, dims_for
from shared.redis.client import connect
from shared.redis.cooldown import Cooldowns
from shared.stack.resolve import Stack

pytestmark = pytest.mark.integration


@pytest.fixture
async def r(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = connect(stack.redis_url)
    yield client
    await client.aclose()


async def test_reserve_refund_reconcile(r: aioredis.Redis, pipeline: str) -> None:
    lim = Limiter(r, pipeline, {"p": ProviderLimits(rpm=120, tpm=6000)})  # 2 req/s; 100 tok/s
    first = await lim.reserve("p", None, 80)
    assert first.granted and first.requests == 1 and first.tokens == 80
    assert first.levels == {"rpm": 0.0, "tpm": 20.0}
    second = await lim.reserve("p", None, 10)
    assert not second.granted and second.blocked_by == "rpm"
    assert 0.4 < second.wait_s <= 0.5
    assert await lim.refund(first)
    assert not await lim.refund(first)  # settled once
    levels = await lim.levels("p")
    assert levels["rpm"] == 1.0 and levels["tpm"] == 100.0
    third = await lim.reserve("p", None, 90)
    assert third.granted
    assert await lim.reconcile(third, 30)  # used 30 of 90: 60 come back
    assert (await lim.levels("p"))["tpm"] == pytest.approx(70.0, abs=1.0)
    await asyncio.sleep(0.5)
    fourth = await lim.reserve("p", None, 50)
    assert fourth.granted
    assert await lim.reconcile(fourth, 120)  # used more than reserved: the bucket owes 70
    assert (await lim.levels("p"))["tpm"] < 0


async def test_model_buckets_and_unlimited_dimensions(r: aioredis.Redis, pipeline: str) -> None:
    lim = Limiter(
        r, pipeline, {"p": ProviderLimits(rpm=0, tpm=0, models={"small": Limits(rpm=60)})}
    )
    assert (await lim.reserve("p", "big", 10**6)).granted  # nothing configured: unlimited
    assert (await lim.reserve("unknown", None, 5)).granted
    assert (await lim.reserve("p", "small", 5)).granted
    assert (await lim.reserve("p", None, 5)).granted  # the provider's budget is separate
    denied = await lim.reserve("p", "small", 5)
    assert not denied.granted and denied.blocked_by == "rpm:small"
    assert await r.exists(keys.bucket(pipeline, "p", "rpm:small")) == 1
    ttl = await r.pttl(keys.bucket(pipeline, "p", "rpm:small"))
    assert 0 < ttl <= 61_000  # gone once it would be full again


async def test_cooldown_blocks_reserve_with_the_remaining_wait(
    r: aioredis.Redis, pipeline: str
) -> None:
    lim = Limiter(r, pipeline, {"p": ProviderLimits(rpm=6000)})
    await Cooldowns(r, pipeline).extend_cooldown("p", 0.3)
    res = await lim.reserve("p", None, 1)
    assert not res.granted and res.blocked_by == "cooldown" and 0.2 < res.wait_s <= 0.3
    full = bm.spec_per_minute(6000, bm.REQUEST_BURST_S, exact_per_second=True)
    assert full is not None
    assert (await lim.levels("p"))["rpm"] == full.capacity  # nothing was taken
    await asyncio.sleep(res.wait_s)
    assert (await lim.reserve("p", None, 1)).granted


async def _stored(r: aioredis.Redis, key: str) -> bm.Bucket | None:
    level, ts = await r.hmget(key, ["l", "t"])
    if level is None or ts is None:
        return None
    return bm.Bucket(float(level), int(float(ts)))


async def test_lua_matches_the_python_reference(r: aioredis.Redis, pipeline: str) -> None:
    limits = ProviderLimits(
        rpm=120, tpm=600, models={"m": Limits(tpm=300)}, stack_model_limits=True
    )
    lim = Limiter(r, pipeline, {"p": limits})
    dims = dims_for(limits, "m")
    bkeys = [keys.bucket(pipeline, "p", d.name) for d in dims]
    steps: list[tuple[str, int, float]] = [
        ("reserve", 8, 0), ("reserve", 1, 0), ("sleep", 0, 0.2), ("reserve", 3, 0),
        ("reserve", 30, 0), ("sleep", 0, 0.55), ("reserve", 30, 0), ("reconcile", 5, 0),
        ("sleep", 0, 0.1), ("reserve", 2, 0), ("refund", 0, 0), ("reserve", 4, 0),
    ]  # fmt: skip
    last = None
    outcomes: list[bool] = []
    for op, amount, pause in steps:
        if op == "sleep":
            await asyncio.sleep(pause)
            continue
        before = [await _stored(r, k) for k in bkeys]
        if op == "reserve":
            res = await lim.reserve("p", "m", amount)
            costs = [1.0 if d.kind == "requests" else float(amount) for d in dims]
            want = bm.reserve(
                [bm.Take(d.spec, b, c) for d, b, c in zip(dims, before, costs, strict=True)],
                res.now_us,
            )
            assert res.granted == want.granted and round(res.wait_s * bm.US) == want.wait_us
            assert list(res.levels.values()) == list(want.levels)
            if want.granted:
                assert [await _stored(r, k) for k in bkeys] == list(want.buckets)
                last = res
            outcomes.append(res.granted)
        else:
            assert last is not None
            deltas = [(0.0 if d.kind == "tokens" else 1.0) if op == "refund" else 0.0 for d in dims]
            deltas = [
                float(last.tokens - amount) if op == "reconcile" and d.kind == "tokens"
                else float(last.tokens) if d.kind == "tokens" else dl
                for d, dl in zip(dims, deltas, strict=True)
            ]  # fmt: skip
            assert await (lim.reconcile(last, amount) if op == "reconcile" else lim.refund(last))
            after = [await _stored(r, k) for k in bkeys]
            for d, b0, b1, delta in zip(dims, before, after, deltas, strict=True):
                if delta == 0:
                    assert b1 == b0  # untouched
                else:
                    assert b1 is not None
                    assert b1 == bm.adjust(d.spec, b0, delta, b1.ts_us)
    assert len(outcomes) == 7 and any(outcomes) and not all(outcomes)
