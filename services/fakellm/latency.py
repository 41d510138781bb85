"""Draw one call's latency from the configured distribution."""

from __future__ import annotations

import random

from services.fakellm.config import FixedLatency, LognormalLatency, UniformLatency


def sample_ms(
    latency: FixedLatency | UniformLatency | LognormalLatency, rng: random.Random
) -> float:
    """Milliseconds to wait before answering."""
    if isinstance(latency, FixedLatency):
        return latency.ms
    if isinstance(latency, UniformLatency):
        return rng.uniform(latency.min_ms, latency.max_ms)
    if latency.sigma == 0:
        return latency.mean_ms
    return rng.lognormvariate(latency.mu, latency.sigma)
