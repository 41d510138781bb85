"""The parked drain's brakes (pure): a token bucket and a provider-health cache.

Parked records go back to ``P.work`` at a bounded rate so that a recovering
provider is not hammered, and only while their provider is available. Health
is asked at most once per provider per ``refresh_s``, never per record.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from services.router.routing import Wait


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, now: float) -> bool:
        self._refill(now)
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False

    def ready_at(self, now: float) -> float:
        """When the next token is there."""
        self._refill(now)
        return now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate


class HealthCache:
    """Provider availability, asked through ``check`` at most once per ``refresh_s``."""

    def __init__(self, check: Callable[[str], bool], refresh_s: float) -> None:
        self.check = check
        self.refresh_s = refresh_s
        self._seen: dict[str, tuple[bool, float]] = {}

    def available(self, provider: str, now: float) -> bool:
        seen = self._seen.get(provider)
        if seen is None or now - seen[1] >= self.refresh_s:
            seen = (self.check(provider), now)
            self._seen[provider] = seen
        return seen[0]


class DrainGate:
    """Lets a parked record go when its provider is available and a token is there."""

    def __init__(
        self, health: HealthCache, bucket: TokenBucket, clock: Callable[[], float] = time.time
    ) -> None:
        self.health = health
        self.bucket = bucket
        self.clock = clock

    def __call__(self, provider: str | None) -> Wait | None:
        now = self.clock()
        if provider is not None and not self.health.available(provider, now):
            return Wait(provider=provider)
        if not self.bucket.take(now):
            return Wait(until_ms=int(self.bucket.ready_at(now) * 1000) + 1)
        return None
