"""Provider availability from Redis, asked from the router's synchronous poll loop.

Reuses :func:`shared.redis.health.provider_health` (paused flag and breaker)
on a private event loop; each call is one Redis round trip, bounded by a
short timeout so that a slow Redis never stalls the poll loop for long. When
Redis cannot be asked, the provider counts as unavailable: parked records
stay parked (safe), and the loop asks again at the next refresh.
"""

from __future__ import annotations

import asyncio
import logging

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from shared.errors import ProviderStateUnavailable
from shared.redis.address import redis_address
from shared.redis.health import provider_health

log = logging.getLogger(__name__)


class RedisHealth:
    def __init__(self, url: str, pipeline: str, timeout_s: float = 0.5) -> None:
        self.pipeline = pipeline
        self.timeout_s = timeout_s
        redis_address(url)  # ConfigError on a bad URL, before the loop exists
        self._loop = asyncio.new_event_loop()
        self._redis = aioredis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s
        )

    def __call__(self, provider: str) -> bool:
        """True when records may go back to ``provider`` (not paused, breaker not open)."""
        ask = provider_health(self._redis, self.pipeline, provider)
        try:
            health = self._loop.run_until_complete(asyncio.wait_for(ask, self.timeout_s))
        except (ProviderStateUnavailable, RedisError, OSError, TimeoutError) as exc:
            log.warning(
                "health of provider %s unknown (%s); its parked records wait", provider, exc
            )
            return False
        return health.available

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._redis.aclose())
        except (RedisError, OSError):
            pass
        finally:
            self._loop.close()
