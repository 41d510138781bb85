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

Scheduled grants. ``reserve_many`` may grant a request whose tokens are not
there yet, when they will be within ``horizon_us``: the grant carries its
start (microseconds after ``now``), the bucket is taken at that start and
stored with that time (a stored time may lie ahead of ``now``: nothing
before it is the bucket's to give). That is the virtual scheduling of a
token bucket: a caller that starts no earlier than its start keeps every
bound above, and a worker that comes back late loses no refill, since the
bucket stays below capacity while grants are scheduled ahead of it. With
``horizon_us`` 0 a grant is immediate and the bucket works as a plain one.

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


def frontier(spec: BucketSpec, bucket: Bucket | None, now_us: int) -> tuple[int, float]:
    """``(t, level)``: the bucket's time (``now_us``, or its stored time when that lies
    ahead, scheduled) and its level then."""
    if bucket is None:
        return now_us, spec.capacity
    t = bucket.ts_us if bucket.ts_us > now_us else now_us
    return t, level_at(spec, bucket, t)


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
    levels: tuple[float, ...]  # levels after the granted takes (at each bucket's time)
    buckets: tuple[Bucket, ...]  # states to store when ``granted > 0`` (else empty)
    starts_us: tuple[int, ...] = ()  # each grant's start, microseconds after ``now_us``


def reserve_many(
    specs: Sequence[BucketSpec],
    stored: Sequence[Bucket | None],
    costs: Sequence[Sequence[float]],
    now_us: int,
    cooldown_until_ms: int | None = None,
    horizon_us: int = 0,
) -> BatchDecision:
    """The longest prefix of ``costs`` (one row per request, one cost per bucket) that fits
    by ``now_us + horizon_us``.

    Exactly what ``len(costs)`` calls of :func:`reserve` one after the other
    would grant (with ``horizon_us`` 0, at the same instant), stopping at the
    first refusal (FIFO: a later request never overtakes an earlier one), so
    every bound of a single take holds. A request starts when every bucket
    has its tokens (the latest of them), and is refused when that is more
    than ``horizon_us`` away: ``wait_us`` is then how long until it would not
    be.
    """
    cw = cooldown_wait_us(cooldown_until_ms, now_us)
    if cw > 0:
        return BatchDecision(0, cw, -1, (), ())
    state = [frontier(s, b, now_us) for s, b in zip(specs, stored, strict=True)]
    times = [t for t, _ in state]
    levels = [level for _, level in state]
    granted, wait, blocker = 0, 0, 0
    starts: list[int] = []
    for row in costs:
        start, first = now_us, 0
        for i, (s, t, level, cost) in enumerate(zip(specs, times, levels, row, strict=True), start=1):  # fmt: skip
            e = t + wait_for(s, level, needed(s, cost))
            if e > start:
                start, first = e, i
        if start - now_us > horizon_us:
            wait, blocker = start - now_us - horizon_us, first
            break
        for i, (s, cost) in enumerate(zip(specs, row, strict=True)):
            level = levels[i]
            if start > times[i]:
                level = level + (start - times[i]) * s.rate_per_s / US
                if level > s.capacity:
                    level = s.capacity
            levels[i], times[i] = level - cost, start
        granted += 1
        starts.append(start - now_us)
    buckets = (
        tuple(Bucket(level, t) for level, t in zip(levels, times, strict=True)) if granted else ()
    )
    return BatchDecision(granted, wait, blocker, tuple(levels), buckets, tuple(starts))


def adjust(spec: BucketSpec, bucket: Bucket | None, delta: float, now_us: int) -> Bucket:
    """Give back (``delta > 0``) or take more (``delta < 0``) at the bucket's time (now, or
    its scheduled time); never above capacity."""
    t, level = frontier(spec, bucket, now_us)
    level = level + delta
    if level > spec.capacity:
        level = spec.capacity
    return Bucket(level, t)


def ttl_ms(spec: BucketSpec, level: float, ahead_us: int = 0) -> int:
    """How long to keep a stored bucket: past that it would be full, as a missing one is
    (``ahead_us``: its time lies that far ahead of now)."""
    return (
        math.ceil((spec.capacity - level) * 1000 / spec.rate_per_s)
        + math.ceil(ahead_us / 1000)
        + TTL_GRACE_MS
    )
