"""A provider's YAML entry as the Redis side's types: the one translation (pure).

Enrich builds each provider's :class:`~shared.redis.state.RedisProviderState`
from these, and the tests use them too.
"""

from __future__ import annotations

import math

from shared.config_file import BreakerConfig, ProviderConfig
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.bucket import ModelLimits, ProviderLimits


def bucket_limits(cfg: ProviderConfig) -> ProviderLimits:
    """``requests_per_minute``, ``tokens_per_minute`` and ``models`` as bucket limits."""
    return ProviderLimits(
        rpm=cfg.requests_per_minute,
        tpm=cfg.tokens_per_minute,
        models={
            model: ModelLimits(lim.requests_per_minute, lim.tokens_per_minute)
            for model, lim in cfg.models.items()
        },
    )


def breaker_spec(cfg: BreakerConfig) -> BreakerSpec:
    """The ``breaker`` entry as the state machine's parameters.

    The window counts whole seconds: a fractional ``window_s`` is rounded up,
    so the window is never shorter than configured.
    """
    return BreakerSpec(
        window_s=max(1, math.ceil(cfg.window_s)),
        min_requests=cfg.min_requests,
        failure_threshold=cfg.failure_rate,
        open_s=cfg.open_s,
        half_open_probes=cfg.half_open_probes,
    )
