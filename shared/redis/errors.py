"""Errors of the Redis provider-state layer.

:class:`ProviderStateUnavailable` is what callers see when Redis cannot be
reached (connection refused, reset, timed out, still loading its data set).
It is a :class:`shared.errors.SluiceError`; it also subclasses redis-py's
``ConnectionError`` so code written against the raw client keeps catching it.
"""

from __future__ import annotations

import redis.exceptions

from shared.errors import SluiceError


class ProviderStateUnavailable(SluiceError, redis.exceptions.ConnectionError):
    """Shared provider state (limits, cooldowns, breaker, pause) is unreachable."""
