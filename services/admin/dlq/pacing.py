"""How fast a replay task sends (pure): the pace, and when the next record may go.

The pace is the rate asked for (records/s), never faster than the provider's
request buckets refill (the ones enrich takes one request from per call, per
model where configured): a replay that outran them would only pile records
up in ``P.work`` ahead of the enrich fleet's limiter. Without either, there is
no pace (records go as fast as the transactions take them). Every record
counts, cache hits too: whether enrich will find an answer in the cache is
known only when it asks.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared.config_file import ProviderConfig
from shared.redis.bucket import dims_for
from shared.redis.provider_config import bucket_limits


def pace(asked: float | None, provider: ProviderConfig, model: str) -> float | None:
    """Records/s: ``asked``, at most the slowest request bucket's refill; None: no limit."""
    rates = [d.spec.rate_per_s for d in dims_for(bucket_limits(provider), model)
             if d.kind == "requests"]  # fmt: skip
    if asked is not None:
        rates.append(asked)
    return min(rates) if rates else None


CATCH_UP_S = 0.5
"""How much of a stall of the sender (a transaction's commit, a slow read) the pace makes
up afterwards; a longer pause (a provider paused) saves nothing up."""


@dataclass
class Pacer:
    """One record every ``1 / rate`` seconds on average; ``rate`` None: no wait.

    Lateness of up to :data:`CATCH_UP_S` is made up (records go at once until the
    schedule is met again), so stalls shorter than that do not lower the rate; a
    burst is at most ``rate * CATCH_UP_S`` records."""

    rate: float | None
    next_at: float | None = None  # monotonic time the next record may go; None: none sent yet

    def wait_s(self, now: float) -> float:
        if self.rate is None or self.next_at is None:
            return 0.0
        return max(0.0, self.next_at - now)

    def sent(self, now: float) -> None:
        if self.rate is not None:
            base = now if self.next_at is None else max(self.next_at, now - CATCH_UP_S)
            self.next_at = base + 1.0 / self.rate
