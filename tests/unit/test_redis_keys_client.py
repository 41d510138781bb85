"""Key helpers and the outage translation (no Redis)."""

from __future__ import annotations

import fnmatch

import pytest
import redis.exceptions
from prometheus_client import REGISTRY

from shared.errors import ProviderStateUnavailable, SluiceError
from shared.redis import keys
from shared.redis.client import connect, request_op, translated


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


def _requests(op: str) -> float:
    return REGISTRY.get_sample_value("sluice_redis_requests_total", {"op": op}) or 0.0


def test_a_translated_block_counts_one_request_under_its_first_word() -> None:
    before = {op: _requests(op) for op in ("bucket", "breaker", "cache")}
    with translated("bucket take openai"):
        pass
    assert _requests("bucket") == before["bucket"] + 1
    assert _requests("breaker") == before["breaker"]
    assert _requests("cache") == before["cache"]
    assert _requests("openai") == 0.0  # the provider is never a label
    assert request_op("cache get") == "cache" and request_op("health") == "health"


def test_an_outage_inside_still_counts_and_still_raises() -> None:
    before = _requests("breaker")
    with pytest.raises(ProviderStateUnavailable), translated("breaker record openai"):
        raise redis.exceptions.ConnectionError("refused")
    assert _requests("breaker") == before + 1


async def test_connect_sets_short_timeouts() -> None:
    r = connect("redis://127.0.0.1:1/0")
    try:
        kw = r.connection_pool.connection_kwargs
        assert kw["socket_timeout"] == 2.0 and kw["socket_connect_timeout"] == 2.0
        assert kw["health_check_interval"] > 0
    finally:
        await r.aclose()
