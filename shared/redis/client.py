"""Connecting to Redis, and translating its outages into a sluice error.

:func:`connect` returns a ``redis.asyncio.Redis`` with short timeouts, a
periodic health check of idle connections and a few retries with jittered
exponential backoff on connection errors and timeouts; :func:`translated`
turns what is left of those errors into :class:`ProviderStateUnavailable`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from shared.redis.errors import ProviderStateUnavailable

SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 15
RETRIES = 3

UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,  # includes BusyLoadingError (restart replaying the AOF)
    redis.exceptions.TimeoutError,
)


def connect(
    url: str,
    *,
    socket_timeout: float = SOCKET_TIMEOUT_S,
    connect_timeout: float = CONNECT_TIMEOUT_S,
    retries: int = RETRIES,
    max_connections: int | None = None,
) -> aioredis.Redis:
    """An asyncio client for ``url`` (bytes replies; no I/O happens until first use)."""
    return aioredis.Redis.from_url(
        url,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=list(UNAVAILABLE_ERRORS),
        decode_responses=False,
        max_connections=max_connections,
    )


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Raise :class:`ProviderStateUnavailable` for Redis outages inside the block."""
    try:
        yield
    except ProviderStateUnavailable:
        raise
    except UNAVAILABLE_ERRORS as exc:
        raise ProviderStateUnavailable(f"Redis unavailable ({what}): {exc}") from exc
