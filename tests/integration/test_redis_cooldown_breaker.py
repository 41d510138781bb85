"""Cooldown, circuit breaker and pause flag on a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis

from devtools.stack.resolve import Stack
from shared.provider_state import Health, Settlement
from shared.redis import keys
from shared.redis.breaker_logic import BreakerSpec, BreakerState
from shared.redis.breaker_logic import allow as ref_allow
from shared.redis.breaker_logic import record as ref_record
from shared.redis.breaker_logic import trip as ref_trip
from shared.redis.client import connect
from shared.redis.health import provider_health, set_paused
from shared.redis.pause import Pauses
from shared.redis.state import RedisProviderState
from tests.support.redis_ops import BreakersOps, CooldownsOps

pytestmark = pytest.mark.integration

CFG = BreakerSpec(
    window_s=10, min_requests=4, failure_threshold=0.5, open_s=2.0, half_open_probes=2
)
"""Periods of seconds, so a stalled test process cannot cross one by accident."""


async def until_half_open(read: Callable[[], Awaitable[Health]], timeout_s: float = 10.0) -> None:
    """Wait for the open period to end as a reader sees it (no worker moves the state)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while (await read()).breaker != "half_open":
        assert asyncio.get_running_loop().time() < deadline, "the breaker never became half-open"
        await asyncio.sleep(0.05)


@pytest.fixture
async def r(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = connect(stack.redis_url)
    yield client
    await client.aclose()


async def test_cooldown_is_extended_never_shortened(r: aioredis.Redis, pipeline: str) -> None:
    cd = CooldownsOps(r, pipeline)
    assert await cd.cooldown_remaining("p") == 0.0
    assert 1.0 < await cd.extend_cooldown("p", 2.0) <= 2.0
    assert 1.0 < await cd.extend_cooldown("p", 0.5) <= 2.0  # shorter: ignored
    assert 1.0 < await cd.cooldown_remaining("p") <= 2.0
    assert 4.0 < await cd.extend_cooldown("p", 5.0) <= 5.0  # longer: extended
    assert await cd.cooldown_remaining("other") == 0.0
    ttl = await r.pttl(keys.cooldown(pipeline, "p"))
    assert 4000 < ttl <= 6000  # expires a second after it ends
    await cd.extend_cooldown("q", 0.2)
    await asyncio.sleep(0.25)
    assert await cd.cooldown_remaining("q") == 0.0


async def test_breaker_opens_probes_and_closes(r: aioredis.Redis, pipeline: str) -> None:
    b = BreakersOps(r, pipeline, {"p": CFG})
    assert (await b.allow("p")).allowed
    for ok in (True, True, False):
        assert await b.record("p", ok) == "closed"
    view = await b.view("p")
    assert (view.state, view.calls, view.failures) == ("closed", 3, 1)
    assert await b.record("p", False) == "open"  # 2 of 4 failed
    assert not (await b.allow("p")).allowed
    assert (await provider_health(r, pipeline, "p")).breaker == "open"
    assert not (await provider_health(r, pipeline, "p")).available
    # the open period ends: readers see half-open before any worker moved it
    await until_half_open(lambda: provider_health(r, pipeline, "p"))
    assert (await b.view("p")).state == "half_open"
    adms = await asyncio.gather(*(b.allow("p") for _ in range(6)))
    probes = [a for a in adms if a.allowed]
    assert len(probes) == 2 and all(a.probe and a.state == "half_open" for a in probes)
    assert await b.record("p", False, probe=False) == "half_open"  # ignored
    assert await b.record("p", True, probe=True) == "closed"
    assert (await b.allow("p")).probe is False
    assert (await b.view("p")).calls == 0


async def test_probe_failure_reopens(r: aioredis.Redis, pipeline: str) -> None:
    b = BreakersOps(r, pipeline, CFG)
    for _ in range(4):
        await b.record("p", False)
    await until_half_open(lambda: provider_health(r, pipeline, "p"))
    adm = await b.allow("p")
    assert adm.probe
    assert await b.record("p", False, probe=True) == "open"
    view = await b.view("p")
    assert view.state == "open" and 1.0 < view.open_remaining_s <= 2.0
    assert (await b.view("other")).state == "closed"


async def test_lua_breaker_follows_the_reference(r: aioredis.Redis, pipeline: str) -> None:
    """The same script of events gives the same states in Lua and in Python."""
    cfg = BreakerSpec(
        window_s=5, min_requests=3, failure_threshold=0.6, open_s=1.0, half_open_probes=1
    )
    b = BreakersOps(r, pipeline, cfg)
    ref = BreakerState()
    events = [("rec", True, False), ("rec", False, False), ("rec", False, False),
              ("allow", False, False), ("sleep", False, False), ("allow", False, False),
              ("allow", False, False), ("rec", False, True), ("allow", False, False),
              ("sleep", False, False), ("allow", False, False), ("rec", True, True),
              ("allow", False, False), ("rec", True, False), ("trip", False, False),
              ("allow", False, False), ("trip", False, False), ("sleep", False, False),
              ("allow", False, False), ("trip", False, False), ("sleep", False, False),
              ("allow", False, False), ("rec", True, True), ("rec", False, False)]  # fmt: skip
    for op, ok, probe in events:
        if op == "sleep":
            await asyncio.sleep(1.4)  # 0.4 s past the open period: no step lands near its end
            continue
        sec, usec = await r.time()
        now_ms = int(sec) * 1000 + int(usec) // 1000
        if op == "allow":
            got = await b.allow("p")
            want = ref_allow(ref, cfg, now_ms)
            assert got == want, (op, ok, probe)
        elif op == "trip":
            assert await b.trip("p", "auth") == ref_trip(ref, cfg, now_ms, "auth")
        else:
            assert await b.record("p", ok, probe) == ref_record(ref, cfg, now_ms, ok, probe)
        view = await b.view("p")
        assert view.reason == ref.reason, (op, ok, probe)


async def test_trip_opens_fleet_wide_with_its_reason_until_a_probe_succeeds(
    r: aioredis.Redis, pipeline: str
) -> None:
    state = RedisProviderState(r, pipeline, "p", breaker=CFG)
    assert await state.trip("auth") is True
    assert await state.trip("auth") is False  # already open: the period is not pushed back
    h = await provider_health(r, pipeline, "p")  # what the router and every worker read
    assert (h.breaker, h.reason, h.available) == ("open", "auth", False)
    assert (await state.admit(None, [1])).batch.unavailable
    await until_half_open(state.health)
    [probe] = (await state.admit(None, [1])).batch.reservations
    assert probe.probe
    assert await state.settle(probe, Settlement(1, "ok")) == "closed"
    h = await state.health()
    assert (h.breaker, h.reason, h.available) == ("closed", "", True)


async def test_pause_flag_and_provider_state(r: aioredis.Redis, pipeline: str) -> None:
    state = RedisProviderState(r, pipeline, "p", breaker=CFG)
    h = await state.health()
    assert (h.paused, h.breaker, h.available) == (False, "closed", True)
    await set_paused(r, pipeline, "p", True)
    h = await provider_health(r, pipeline, "p")
    assert h.paused and not h.available
    assert (await RedisProviderState(r, pipeline, "q").health()).available  # other providers
    await set_paused(r, pipeline, "p", False)
    assert (await state.health()).available
    await CooldownsOps(r, pipeline).extend_cooldown("p", 5.0)
    assert 2.0 < await CooldownsOps(r, pipeline).cooldown_remaining("p") <= 5.0
    assert (await state.breakers.view("p")).state == "closed"
    assert await state.limiter.levels("p") == {} and await state.fleet.fleet_inflight("p") == 0


async def test_health_says_since_when_a_provider_is_paused(
    r: aioredis.Redis, pipeline: str
) -> None:
    """An operator's pause carries its start (for the paused-too-long alert); a bare flag has none."""
    change = await Pauses(r, pipeline).pause("p", "ops", "provider incident")
    h = await provider_health(r, pipeline, "p")
    assert h.paused and change.info is not None
    assert h.paused_since_ms == change.info.since_ms > 1_600_000_000_000
    await Pauses(r, pipeline).resume("p")
    assert (await provider_health(r, pipeline, "p")).paused_since_ms == 0
    await set_paused(r, pipeline, "p", True)
    h = await provider_health(r, pipeline, "p")
    assert h.paused and h.paused_since_ms == 0
