"""Key helpers and the outage translation (no Redis)."""

from __future__ import annotations

import fnmatch

import pytest
import redis.exceptions

from shared.errors import ProviderStateUnavailable, SluiceError
from shared.redis import keys
from shared.redis.client import connect, translated


def test_inflight_pattern_matches_only_that_providers_workers() -> None:
    pat = keys.inflight_pattern("p", "prov[1]*")
    assert pat == "sluice:p:provider:prov\\[1\\]\\*:inflight:*"
    assert keys.inflight_prefix("p", "x") + "w1" == keys.inflight("p", "x", "w1")
    plain = keys.inflight_pattern("p", "openai")
    assert fnmatch.fnmatchcase(keys.inflight("p", "openai", "host-1"), plain)
    assert not fnmatch.fnmatchcase(keys.inflight("p", "openai2", "host-1"), plain)


@pytest.mark.parametrize(
    "exc", [redis.exceptions.ConnectionError("refused"), redis.exceptions.TimeoutError("slow"),
            redis.exceptions.BusyLoadingError("loading")],
)  # fmt: skip
def test_outages_become_provider_state_unavailable(exc: Exception) -> None:
    with pytest.raises(ProviderStateUnavailable) as info, translated("test"):
        raise exc
    assert isinstance(info.value, SluiceError)
    assert not isinstance(info.value, redis.exceptions.RedisError)  # callers need no redis
    assert info.value.__cause__ is exc


def test_other_redis_errors_pass_through() -> None:
    with pytest.raises(redis.exceptions.ResponseError), translated("test"):
        raise redis.exceptions.ResponseError("WRONGTYPE")


async def test_connect_sets_short_timeouts() -> None:
    r = connect("redis://127.0.0.1:1/0")
    try:
        kw = r.connection_pool.connection_kwargs
        assert kw["socket_timeout"] == 2.0 and kw["socket_connect_timeout"] == 2.0
        assert kw["health_check_interval"] > 0
    finally:
        await r.aclose()
