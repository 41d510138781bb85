"""Connecting to Redis, and translating its outages into a sluice error.

:func:`connect` returns a ``redis.asyncio.Redis`` with short timeouts, a
periodic health check of idle connections and a few retries with jittered
exponential backoff on connection errors and timeouts; :func:`translated`
turns what is left of those errors into :class:`ProviderStateUnavailable`
and counts the request in ``sluice_redis_requests_total{op}``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from shared.errors import ProviderStateUnavailable
from shared.metrics import REDIS_REQUESTS
from shared.redis.address import redis_address

SOCKET_TIMEOUT_S = 2.0
CONNECT_TIMEOUT_S = 2.0
HEALTH_CHECK_INTERVAL_S = 15
RETRIES = 3
MAX_CONNECTIONS = 32
POOL_WAIT_S = 10.0

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
    max_connections: int = MAX_CONNECTIONS,
) -> aioredis.Redis:
    """An asyncio client for ``url`` (bytes replies; no I/O happens until first use).

    The pool blocks (up to ``POOL_WAIT_S``) when all ``max_connections`` are
    busy instead of failing with "Too many connections": hundreds of in-flight
    records share a few dozen connections.

    A ``url`` that is not a Redis URL is a ConfigError naming ``SLUICE_REDIS_URL``.
    """
    redis_address(url)
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=POOL_WAIT_S,
        socket_timeout=socket_timeout,
        socket_connect_timeout=connect_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
        retry=Retry(ExponentialWithJitterBackoff(cap=0.5, base=0.05), retries),
        retry_on_error=list(UNAVAILABLE_ERRORS),
        decode_responses=False,
    )
    return aioredis.Redis(connection_pool=pool)


def request_op(what: str) -> str:
    """The operation label of a :func:`translated` block: the first word of ``what``."""
    return what.split(" ", 1)[0]


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Count one Redis request under ``what``'s first word and raise
    :class:`ProviderStateUnavailable` for Redis outages inside the block.

    Each block sends one request (a command, a pipeline or a script), so the
    counter is this process's round trips to Redis. ``what`` starts with a
    literal operation word (``bucket``, ``breaker``, ``cache``, ...), never a
    key or a provider name: that word is the metric's only label.
    """
    REDIS_REQUESTS.labels(request_op(what)).inc()
    try:
        yield
    except ProviderStateUnavailable:
        raise
    except UNAVAILABLE_ERRORS as exc:
        raise ProviderStateUnavailable(f"Redis unavailable ({what}): {exc}") from exc
