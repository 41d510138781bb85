"""A Redis outage surfaces as ProviderStateUnavailable and heals by itself."""

from __future__ import annotations

import hashlib

import pytest

from devtools.stack.resolve import Stack
from shared.errors import ProviderStateUnavailable
from shared.redis.bucket import ProviderLimits
from shared.redis.bucket_lua import BUCKET_LUA
from shared.redis.client import connect
from shared.redis.state import RedisProviderState

pytestmark = pytest.mark.integration


async def test_outage_is_reported_and_recovered(stack: Stack, pipeline: str) -> None:
    if stack.redis is None:
        pytest.skip("Redis is not the local stack's: cannot restart it here")
    local = stack.redis
    r = connect(stack.redis_url)
    state = RedisProviderState(r, pipeline, "p", limits=ProviderLimits(rpm=60_000, tpm=1_000_000))
    try:
        assert (await state.reserve_many(None, [10])).reservations[0].granted
        await state.extend_cooldown(0.01)
        local.stop()
        try:
            with pytest.raises(ProviderStateUnavailable):
                await state.reserve_many(None, [10])
            with pytest.raises(ProviderStateUnavailable):
                await state.health()
            with pytest.raises(ProviderStateUnavailable):
                await state.allow()
            with pytest.raises(ProviderStateUnavailable):
                await state.heartbeat("w", 1)
        finally:
            local.start()
        # same client: reconnects, and the scripts are loaded again (NOSCRIPT fallback)
        assert await r.script_exists(hashlib.sha1(BUCKET_LUA.encode()).hexdigest()) == [False]
        [res] = (await state.reserve_many(None, [10])).reservations
        assert res.granted
        assert await state.reconcile(res, 5)
        assert (await state.allow()).allowed
        assert (await state.health()).available
    finally:
        await r.aclose()
