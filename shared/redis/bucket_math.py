"""Token-bucket arithmetic (pure): the reference that ``bucket_lua`` implements.

The clock is Redis ``TIME`` in microseconds. A bucket is stored as
``(level, ts_us)``; a missing bucket is full. Refill is continuous at
``rate_per_s`` up to ``capacity``. A take of ``cost`` needs the level to reach
``min(cost, capacity)`` and subtracts the whole ``cost``, so a request larger
than the bucket is admitted when the bucket is full and leaves it in debt
(the long-run rate stays exact; nothing can wait forever).

Capacity (the burst) is ``max(1, rate_per_s * burst_s)``. A token bucket
admits at most ``capacity + rate * T`` in any window of length ``T``. Request
buckets (``REQUEST_BURST_S``) take their burst out of the refill rate (see
``spec_per_minute``), so the fleet never starts more than ``limit / 60``
requests in any 1 s window nor more than ``limit`` in any 60 s window (the
windows a provider or the fake LLM measures). The token dimension defaults to
``burst_s = 1`` (one second's worth), so any 60 s window stays within
``tpm + max(request cost)``.

Every operation here does its float arithmetic in the same order as the Lua
script so both give the same numbers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

US = 1_000_000
# 10 ms of burst: the refill rate keeps 99% of the limit, and a waiter may come
# back up to (capacity - 1) / rate late (5 ms at 200 req/s) without losing any.
# The enrich worker's batched gate (services.enrich.gate) takes everything that
# refilled in one call, so that is enough; 20 ms cost 1% more of the limit.
REQUEST_BURST_S = 0.01
TOKEN_BURST_S = 1.0
TTL_GRACE_MS = 1000


@dataclass(frozen=True)
class BucketSpec:
    rate_per_s: float
    capacity: float


@dataclass(frozen=True)
class Bucket:
    level: float
    ts_us: int


@dataclass(frozen=True)
class Take:
    """One bucket of a reservation: its spec, stored state (None = full) and cost."""

    spec: BucketSpec
    bucket: Bucket | None
    cost: float


@dataclass(frozen=True)
class Decision:
    granted: bool
    wait_us: int  # 0 when granted
    blocker: int  # 0 none, -1 cooldown, i = the i-th take (1-based) that waits longest
    levels: tuple[float, ...]  # levels after the decision (refilled; taken when granted)
    buckets: tuple[Bucket, ...]  # states to store when granted (empty when refused)


def spec_per_minute(
    limit: int, burst_s: float, exact_per_second: bool = False
) -> BucketSpec | None:
    """The bucket for ``limit`` per minute; ``None`` when the limit is 0 (unlimited).

    With ``exact_per_second`` (request buckets) and a burst of at least one
    request, the burst is taken out of the refill rate: capacity ``c`` and
    rate ``limit/60 - c`` let at most
    ``limit/60`` through in any 1-second window, while the small burst
    absorbs the latency between a token appearing and a waiter taking it
    (with a one-token bucket every late take is capacity lost for good).
    """
    if limit <= 0:
        return None
    rate = limit / 60.0
    if exact_per_second and rate * burst_s >= 1.0:
        capacity = rate * burst_s
        return BucketSpec(rate - capacity, capacity)
    # Below that, a one-token bucket: no 1-second window exceeds the rate either.
    return BucketSpec(rate, max(1.0, rate * burst_s))


def level_at(spec: BucketSpec, bucket: Bucket | None, now_us: int) -> float:
    if bucket is None:
        return spec.capacity
    dt = now_us - bucket.ts_us
    if dt < 0:
        dt = 0
    level = bucket.level + dt * spec.rate_per_s / US
    if level > spec.capacity:
        level = spec.capacity
    return level


def needed(spec: BucketSpec, cost: float) -> float:
    return cost if cost < spec.capacity else spec.capacity


def wait_for(spec: BucketSpec, level: float, need: float) -> int:
    """Microseconds until ``level`` refills to ``need`` (0 if it already has)."""
    if level >= need:
        return 0
    return math.ceil((need - level) * US / spec.rate_per_s)


def cooldown_wait_us(cooldown_until_ms: int | None, now_us: int) -> int:
    if cooldown_until_ms is not None and now_us / 1000 < cooldown_until_ms:
        return cooldown_until_ms * 1000 - now_us
    return 0


def reserve(takes: Sequence[Take], now_us: int, cooldown_until_ms: int | None = None) -> Decision:
    """All takes at once, or none (with the wait until all could be had): a batch of one."""
    d = reserve_many(
        [t.spec for t in takes], [t.bucket for t in takes], [[t.cost for t in takes]],
        now_us, cooldown_until_ms,
    )  # fmt: skip
    return Decision(d.granted == 1, d.wait_us, d.blocker, d.levels, d.buckets)


@dataclass(frozen=True)
class BatchDecision:
    """How many of a batch of requests were granted, in order, and the wait for the next."""

    granted: int  # 0..len(batch): the first ``granted`` requests are admitted
    wait_us: int  # until the first refused request could be (0 when all were granted)
    blocker: int  # as in :class:`Decision`, for the first refused request
    levels: tuple[float, ...]  # levels after the granted takes (refilled)
    buckets: tuple[Bucket, ...]  # states to store when ``granted > 0`` (else empty)


def reserve_many(
    specs: Sequence[BucketSpec],
    stored: Sequence[Bucket | None],
    costs: Sequence[Sequence[float]],
    now_us: int,
    cooldown_until_ms: int | None = None,
) -> BatchDecision:
    """The longest prefix of ``costs`` (one row per request, one cost per bucket) that fits now.

    Exactly what ``len(costs)`` calls of :func:`reserve` at the same instant
    would grant, stopping at the first refusal (FIFO: a later request never
    overtakes an earlier one), so every bound of a single take holds.
    """
    cw = cooldown_wait_us(cooldown_until_ms, now_us)
    if cw > 0:
        return BatchDecision(0, cw, -1, (), ())
    levels = [level_at(s, b, now_us) for s, b in zip(specs, stored, strict=True)]
    granted, wait, blocker = 0, 0, 0
    for row in costs:
        for i, (s, level, cost) in enumerate(zip(specs, levels, row, strict=True), start=1):
            w = wait_for(s, level, needed(s, cost))
            if w > wait:
                wait, blocker = w, i
        if wait > 0:
            break
        levels = [level - cost for level, cost in zip(levels, row, strict=True)]
        granted += 1
    buckets = tuple(Bucket(level, now_us) for level in levels) if granted else ()
    return BatchDecision(granted, wait, blocker, tuple(levels), buckets)


def adjust(spec: BucketSpec, bucket: Bucket | None, delta: float, now_us: int) -> Bucket:
    """Give back (``delta > 0``) or take more (``delta < 0``); never above capacity."""
    level = level_at(spec, bucket, now_us) + delta
    if level > spec.capacity:
        level = spec.capacity
    return Bucket(level, now_us)


def ttl_ms(spec: BucketSpec, level: float) -> int:
    """How long to keep a stored bucket: past that it would be full, as a missing one is."""
    return math.ceil((spec.capacity - level) * 1000 / spec.rate_per_s) + TTL_GRACE_MS
