"""The fake's own rate limiter: exact sliding windows of 1 s and 60 s.

Requests per second, requests per minute and tokens per minute are each
checked against the requests admitted in the window ending now. A request
that would exceed one of them is refused, with the time until it would fit;
refused requests use up nothing. Limits are passed to each check so a
configuration change applies at once while the history stays.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from services.fakellm.config import RateLimits

Clock = Callable[[], float]


@dataclass(frozen=True)
class Quota:
    """One limit as the rate-limit headers report it."""

    limit: int
    remaining: int
    reset_s: (
        float  # seconds until the whole limit is free again, as the providers say (0: none used)
    )


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_s: float  # 0 when allowed
    exceeded: str | None  # "requests" or "tokens" when refused
    requests: Quota | None  # None when requests are unlimited
    tokens: Quota | None  # None when tokens are unlimited


def _wait_for_count(times: deque[float], limit: int, window: float, now: float) -> float:
    """Seconds until one more event fits under ``limit`` in ``window``."""
    excess = len(times) - limit + 1
    if excess <= 0:
        return 0.0
    return max(0.0, times[excess - 1] + window - now)


class SlidingLimiter:
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._sec: deque[float] = deque()
        self._min: deque[float] = deque()
        self._tok: deque[tuple[float, int]] = deque()
        self._tok_sum = 0

    def _expire(self, now: float) -> None:
        while self._sec and self._sec[0] <= now - 1.0:
            self._sec.popleft()
        while self._min and self._min[0] <= now - 60.0:
            self._min.popleft()
        while self._tok and self._tok[0][0] <= now - 60.0:
            self._tok_sum -= self._tok.popleft()[1]

    def _wait_for_tokens(self, limit: int, tokens: int, now: float) -> float:
        if tokens > limit:
            return 60.0  # can never fit; a real provider says "request too large"
        need = self._tok_sum + tokens - limit
        if need <= 0:
            return 0.0
        freed = 0
        for t, n in self._tok:
            freed += n
            if freed >= need:
                return max(0.0, t + 60.0 - now)
        return 60.0  # unreachable: everything recorded frees within 60 s

    def check(self, limits: RateLimits, tokens: int) -> Decision:
        """Admit (and record) a request costing ``tokens``, or refuse it."""
        now = self._clock()
        self._expire(now)
        waits = {"requests": 0.0, "tokens": 0.0}
        if limits.rps:
            waits["requests"] = _wait_for_count(self._sec, limits.rps, 1.0, now)
        if limits.rpm:
            rpm_wait = _wait_for_count(self._min, limits.rpm, 60.0, now)
            waits["requests"] = max(waits["requests"], rpm_wait)
        if limits.tpm:
            waits["tokens"] = self._wait_for_tokens(limits.tpm, tokens, now)
        exceeded = max(waits, key=lambda k: waits[k]) if any(waits.values()) else None
        if exceeded is None:
            self._sec.append(now)
            self._min.append(now)
            self._tok.append((now, tokens))
            self._tok_sum += tokens
        return Decision(
            allowed=exceeded is None,
            retry_after_s=max(waits.values()),
            exceeded=exceeded,
            requests=self._requests_quota(limits, now),
            tokens=self._tokens_quota(limits, now),
        )

    def _requests_quota(self, limits: RateLimits, now: float) -> Quota | None:
        if limits.rpm:
            times, limit, window = self._min, limits.rpm, 60.0
        elif limits.rps:
            times, limit, window = self._sec, limits.rps, 1.0
        else:
            return None
        reset = times[-1] + window - now if times else 0.0  # the newest leaves last
        return Quota(limit, max(0, limit - len(times)), max(0.0, reset))

    def _tokens_quota(self, limits: RateLimits, now: float) -> Quota | None:
        if not limits.tpm:
            return None
        reset = self._tok[-1][0] + 60.0 - now if self._tok else 0.0
        return Quota(limits.tpm, max(0, limits.tpm - self._tok_sum), max(0.0, reset))
