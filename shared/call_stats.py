"""Per-provider call statistics of the fleet: counts and a latency histogram (pure).

A worker counts its calls in a :class:`CallTally` (no I/O, nothing on the
call path but a few integer increments) and adds it to the fleet's
per-second totals with its heartbeat (:mod:`shared.redis.fleet`); the admin
sums the last minute of those seconds with :func:`last_minute`.

One second of one provider is a hash of counts::

    n    calls that ended (answered or failed) in that second
    e    of which failed (timeout, HTTP error, error body, connection error)
    h<i> of which took at most EDGES_MS[i] ms (and more than EDGES_MS[i-1]);
         h<len(EDGES_MS)> took longer than the last edge

Percentiles come from the histogram: linear within the bucket that holds the
rank, so they are estimates within one bucket's width (the last, open bucket
reports its lower edge).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

EDGES_MS: tuple[int, ...] = (
    25, 50, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000, 10000, 30000,
)  # fmt: skip
CALLS = "n"
ERRORS = "e"
BUCKETS = len(EDGES_MS) + 1
WINDOW_S = 60


def bucket_field(i: int) -> str:
    return f"h{i}"


class CallTally:
    """Calls of one worker to one provider since the last flush."""

    __slots__ = ("calls", "errors", "hist")

    def __init__(self) -> None:
        self.calls = 0
        self.errors = 0
        self.hist = [0] * BUCKETS

    def add(self, latency_ms: float, failed: bool) -> None:
        self.calls += 1
        if failed:
            self.errors += 1
        self.hist[bisect_left(EDGES_MS, latency_ms)] += 1

    def take(self) -> CallTally:
        """What was counted so far; this tally starts again from zero."""
        out = CallTally()
        out.calls, out.errors, out.hist = self.calls, self.errors, self.hist
        self.calls, self.errors, self.hist = 0, 0, [0] * BUCKETS
        return out

    def merge(self, other: CallTally) -> None:
        """Add ``other`` back (a flush that did not reach the store)."""
        self.calls += other.calls
        self.errors += other.errors
        self.hist = [a + b for a, b in zip(self.hist, other.hist, strict=True)]

    def fields(self) -> list[tuple[str, int]]:
        """The non-zero counts as (hash field, increment) pairs."""
        out = [(CALLS, self.calls), (ERRORS, self.errors)]
        out += [(bucket_field(i), c) for i, c in enumerate(self.hist)]
        return [(f, c) for f, c in out if c]


@dataclass(frozen=True)
class WindowStats:
    calls: int
    errors: int
    calls_per_s: float
    error_rate: float  # errors / calls; 0 without calls
    p50_ms: float | None  # None without calls
    p99_ms: float | None


def _count(second: Mapping[str, int], name: str) -> int:
    return int(second.get(name, 0))


def quantile_ms(hist: list[int], q: float) -> float | None:
    """The ``q`` quantile (0 < q <= 1) of a histogram over EDGES_MS, interpolated."""
    total = sum(hist)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for i, c in enumerate(hist):
        if c and seen + c >= rank:
            low = 0.0 if i == 0 else float(EDGES_MS[i - 1])
            if i == len(EDGES_MS):
                return low  # the open bucket: at least its lower edge
            return low + (EDGES_MS[i] - low) * (rank - seen) / c
        seen += c
    return float(EDGES_MS[-1])  # pragma: no cover - rank <= total always lands above


def last_minute(seconds: Iterable[Mapping[str, int]], window_s: int = WINDOW_S) -> WindowStats:
    """Totals, rates and p50/p99 over the per-second hashes of one window."""
    calls = errors = 0
    hist = [0] * BUCKETS
    for second in seconds:
        calls += _count(second, CALLS)
        errors += _count(second, ERRORS)
        for i in range(BUCKETS):
            hist[i] += _count(second, bucket_field(i))
    return WindowStats(
        calls=calls,
        errors=errors,
        calls_per_s=calls / window_s,
        error_rate=errors / calls if calls else 0.0,
        p50_ms=quantile_ms(hist, 0.5),
        p99_ms=quantile_ms(hist, 0.99),
    )
