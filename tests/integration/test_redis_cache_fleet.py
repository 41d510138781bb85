"""Fleet in-flight heartbeats on a real Redis (the result cache: test_redis_call.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from devtools.stack.resolve import Stack
from shared.redis.client import connect
from shared.redis.fleet import Fleet

pytestmark = pytest.mark.integration


@pytest.fixture
async def r(stack: Stack) -> AsyncIterator[aioredis.Redis]:
    client = connect(stack.redis_url)
    yield client
    await client.aclose()


async def test_fleet_inflight_sums_live_workers_and_forgets_dead_ones(
    r: aioredis.Redis, pipeline: str
) -> None:
    fleet = Fleet(r, pipeline)
    await fleet.heartbeat("p", "w1", 3, ttl_s=5)
    await fleet.heartbeat("p", "w:2", 4, ttl_s=0.3)
    await fleet.heartbeat("p2", "w1", 100)  # another provider
    await fleet.heartbeat("p", "w1", 5, ttl_s=5)  # refreshed: replaces, not adds
    assert await fleet.list_workers("p") == {"w1": 5, "w:2": 4}
    assert await fleet.fleet_inflight("p") == 9
    await asyncio.sleep(0.4)  # w:2 stopped heart-beating
    assert await fleet.fleet_inflight("p") == 5
    await fleet.leave("p", "w1")
    assert await fleet.fleet_inflight("p") == 0
    assert await fleet.list_workers("p2") == {"w1": 100}
