"""A Redis outage surfaces as ProviderStateUnavailable and heals by itself."""

from __future__ import annotations

import hashlib

import pytest

from devtools.stack.resolve import Stack
from shared.errors import ProviderStateUnavailable
from shared.provider_state import Settlement
from shared.redis.bucket import ProviderLimits
from shared.redis.call_lua import CALL_LUA
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
        [res] = (await state.admit(None, [10])).batch.reservations
        assert await state.settle(res, Settlement(5, "ok", 0.01)) == "closed"
        local.stop()
        try:
            with pytest.raises(ProviderStateUnavailable):
                await state.admit(None, [10], lookup="d")
            with pytest.raises(ProviderStateUnavailable):
                await state.settle(res, Settlement(5, "ok"))
            with pytest.raises(ProviderStateUnavailable):
                await state.health()
            with pytest.raises(ProviderStateUnavailable):
                await state.heartbeat("w", 1)
        finally:
            local.start()
        # same client: reconnects, and the scripts are loaded again (NOSCRIPT fallback)
        assert await r.script_exists(hashlib.sha1(CALL_LUA.encode()).hexdigest()) == [False]
        [res] = (await state.admit(None, [10])).batch.reservations
        assert res.granted
        assert await state.settle(res, Settlement(5, "ok")) == "closed"
        assert (await state.health()).available
    finally:
        await r.aclose()
