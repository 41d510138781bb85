"""A call's two round trips on a real Redis: ``admit`` before it, ``settle`` after it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from devtools.stack.resolve import Stack
from services.enrich.providers.base import Message, ProviderRequest
from services.enrich.tasks import request_hash
from shared.provider_state import CacheWrite, Reservation, Settlement
from shared.redis import keys
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.bucket import ProviderLimits
from shared.redis.client import connect
from shared.redis.cooldown import Cooldowns
from shared.redis.health import set_paused
from shared.redis.state import RedisProviderState

pytestmark = pytest.mark.integration

# plenty of requests; 100 tokens refilled at 1/s, so levels hold still for seconds
LIMITS = ProviderLimits(rpm=60_000, tpm=60, token_burst_s=100.0)
CFG = BreakerSpec(window_s=10, min_requests=2, failure_threshold=0.5, open_s=2.0, half_open_probes=1)  # fmt: skip
DIGEST = request_hash("openai", ProviderRequest("m", (Message("user", "x"),)))


@pytest.fixture
async def r(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = connect(stack.redis_url)
    yield client
    await client.aclose()


def state_for(r: aioredis.Redis, pipeline: str) -> RedisProviderState:
    return RedisProviderState(r, pipeline, "p", limits=LIMITS, breaker=CFG)


async def scripts_run(r: aioredis.Redis) -> int:
    stats = await r.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k in ("cmdstat_evalsha", "cmdstat_eval"))  # fmt: skip


async def test_a_paid_call_is_two_scripts_and_a_cache_hit_one(
    r: aioredis.Redis, pipeline: str
) -> None:
    state = state_for(r, pipeline)
    await state.admit(None, [1])  # the script is loaded: later calls are EVALSHA only
    before = await scripts_run(r)
    first = await state.admit("m", [20], lookup=DIGEST)
    assert first.cached is None
    [res] = first.batch.reservations
    assert res.granted and not res.probe
    assert first.batch.levels["tpm"] == pytest.approx(100 - 1 - 20, abs=5)
    answer = CacheWrite(DIGEST, b'{"sentiment":"positive"}', 60.0)
    assert await state.settle(res, Settlement(5, "ok", 0.0, answer)) == "closed"
    assert await scripts_run(r) - before == 2
    hit = await state.admit("m", [20], lookup=DIGEST)
    assert hit.cached == b'{"sentiment":"positive"}' and hit.batch.reservations == []
    assert await scripts_run(r) - before == 3
    # what the settle did: 15 of the 20 tokens reserved came back, the answer is shared
    levels = await state.limiter.levels("p", "m")
    assert levels["tpm"] == pytest.approx(100 - 1 - 5, abs=5)
    other = await RedisProviderState(r, pipeline, "q").admit("m", [], lookup=DIGEST)
    assert other.cached == b'{"sentiment":"positive"}'


async def test_queued_lookups_read_many_answers_in_one_request(
    r: aioredis.Redis, pipeline: str
) -> None:
    state = state_for(r, pipeline)
    [res] = (await state.admit("m", [1])).batch.reservations
    await state.settle(res, Settlement(1, "ok", 0.0, CacheWrite(DIGEST, b"answer", 60.0)))
    stats = await r.info("commandstats")
    before = int(stats.get("cmdstat_mget", {}).get("calls", 0))
    assert await state.lookup([DIGEST, "absent", DIGEST]) == [b"answer", None, b"answer"]
    assert await state.lookup([]) == []  # nothing sent
    stats = await r.info("commandstats")
    assert int(stats["cmdstat_mget"]["calls"]) - before == 1
    assert await state_for(r, "other" + pipeline).lookup([DIGEST]) == [None]  # per pipeline


async def test_a_settle_is_applied_once_per_reservation(r: aioredis.Redis, pipeline: str) -> None:
    state = state_for(r, pipeline)
    [res] = (await state.admit("m", [50])).batch.reservations
    once = Settlement(30, "fail", 3.0)  # 20 tokens back
    await state.settle(res, once)
    levels = await state.limiter.levels("p", "m")
    assert levels["tpm"] == pytest.approx(70, abs=5)
    again = Reservation(**{**res.__dict__, "settled": False})  # a retry after a lost reply
    await state.settle(again, once)
    assert (await state.limiter.levels("p", "m"))["tpm"] == pytest.approx(levels["tpm"], abs=5)
    view = await state.breakers.view("p")
    assert (view.calls, view.failures) == (1, 1)  # the outcome counted once
    assert 1.0 < await Cooldowns(r, pipeline).cooldown_remaining("p") <= 3.0


async def test_cache_entries_expire_and_a_zero_ttl_writes_nothing(
    r: aioredis.Redis, pipeline: str
) -> None:
    state = state_for(r, pipeline)
    for digest, ttl in (("short", 3.0), ("off", 0.0)):
        [res] = (await state.admit("m", [1])).batch.reservations
        await state.settle(res, Settlement(1, "ok", 0.0, CacheWrite(digest, b"x", ttl)))
    assert (await state.admit("m", [], lookup="short")).cached == b"x"
    assert (await state.admit("m", [], lookup="off")).cached is None
    assert (await state_for(r, "other" + pipeline).admit("m", [], lookup="short")).cached is None
    await asyncio.sleep(3.5)  # past the TTL; seconds of slack on a busy machine
    assert (await state.admit("m", [], lookup="short")).cached is None


async def test_a_paused_provider_or_an_open_breaker_grants_nothing(
    r: aioredis.Redis, pipeline: str
) -> None:
    state = state_for(r, pipeline)
    await set_paused(r, pipeline, "p", True)
    paused = (await state.admit("m", [1, 1])).batch
    assert paused.reservations == [] and paused.unavailable and paused.blocked_by == "paused"
    await set_paused(r, pipeline, "p", False)
    grants = (await state.admit("m", [1, 1])).batch.reservations
    for res in grants:  # two failures of two calls: the breaker opens
        last = await state.settle(res, Settlement(0, "fail"))
    assert last == "open"
    refused = (await state.admit("m", [1])).batch
    assert refused.reservations == [] and refused.unavailable and refused.levels == {}
    assert refused.blocked_by == "breaker"


async def test_half_open_grants_one_probe_and_its_success_closes(
    r: aioredis.Redis, pipeline: str
) -> None:
    state = state_for(r, pipeline)
    assert await state.trip("auth")
    deadline = asyncio.get_running_loop().time() + 10
    while (batch := (await state.admit("m", [1, 1, 1])).batch).unavailable and not batch.reservations:  # fmt: skip
        assert asyncio.get_running_loop().time() < deadline, "the breaker never let a probe through"
        await asyncio.sleep(0.1)
    [probe] = batch.reservations  # one probe, and the rest cannot be
    assert probe.probe and batch.unavailable and batch.blocked_by == "breaker"
    assert (await state.admit("m", [1])).batch.reservations == []  # the probe is out
    assert await state.settle(probe, Settlement(1, "ok")) == "closed"
    after = (await state.admit("m", [1, 1])).batch
    assert len(after.reservations) == 2 and not any(r.probe for r in after.reservations)


async def test_a_cooldown_refuses_with_its_wait(r: aioredis.Redis, pipeline: str) -> None:
    state = state_for(r, pipeline)
    [res] = (await state.admit("m", [1])).batch.reservations
    await state.settle(res, Settlement(1, None, cooldown_s=5.0))
    batch = (await state.admit("m", [1])).batch
    assert batch.reservations == [] and not batch.unavailable
    assert batch.blocked_by == "cooldown" and 2.0 < batch.wait_s <= 5.0


async def test_pumps_refused_for_the_same_tokens_get_appointments_one_request_apart(
    r: aioredis.Redis, pipeline: str
) -> None:
    # One request a second: three pumps asking at once are told to come back ~1, ~2
    # and ~3 s from now, one request's refill apart, instead of all at ~1 s; a call
    # that is not a pump (pace off) is told the plain wait and takes no appointment.
    state = RedisProviderState(r, pipeline, "p", limits=ProviderLimits(rpm=60))
    key = keys.bucket(pipeline, "p", "rpm")
    assert len((await state.admit(None, [1])).batch.reservations) == 1  # the bucket is empty
    waits, appointments = [], []
    for _ in range(3):
        waits.append((await state.admit(None, [1], pace=True)).batch.wait_s)
        appointments.append(int(float(await r.hget(key, "a"))))  # Redis TIME, us
    plain = (await state.admit(None, [1])).batch
    assert plain.reservations == [] and 0 < plain.wait_s <= 1.0
    assert int(float(await r.hget(key, "a"))) == appointments[-1]  # pace off: none taken
    # Exactly one request's refill (1 s) apart, however long the asks took.
    first, second, third = appointments
    assert (second - first, third - second) == (1_000_000, 1_000_000)
    assert 0 < waits[0] <= 1.0 and waits[0] < waits[1] < waits[2]
    # An appointment holds nothing: whoever asks first when the token is back takes it.
    await asyncio.sleep(waits[0] + 0.1)
    assert len((await state.admit(None, [1])).batch.reservations) == 1
    assert await r.hget(key, "a") is not None and await r.pttl(key) > 0  # it still expires
