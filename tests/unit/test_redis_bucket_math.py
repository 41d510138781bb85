"""Token-bucket arithmetic (pure reference of the Lua script)."""

from __future__ import annotations

import random
from bisect import bisect_right
from dataclasses import replace

import pytest

from shared.redis import bucket_math as bm
from shared.redis.bucket import ModelLimits, ProviderLimits, dims_for

S = bm.US  # one second in microseconds
T0 = 1_700_000_000 * S


def test_specs_from_per_minute_limits() -> None:
    assert bm.spec_per_minute(0, 1.0) is None
    rpm = bm.spec_per_minute(1200, bm.REQUEST_BURST_S, exact_per_second=True)
    assert rpm == bm.BucketSpec(20.0, 1.0)  # a one-token bucket below 100/s
    big = bm.spec_per_minute(12_000, bm.REQUEST_BURST_S, exact_per_second=True)
    assert (
        big is not None
        and big.capacity == pytest.approx(2.0)
        and big.rate_per_s == pytest.approx(198.0)
    )
    assert bm.spec_per_minute(60_000, bm.TOKEN_BURST_S) == bm.BucketSpec(1000.0, 1000.0)
    assert bm.spec_per_minute(30, 10.0) == bm.BucketSpec(0.5, 5.0)
    assert bm.spec_per_minute(6, 1.0) == bm.BucketSpec(0.1, 1.0)  # never below one unit


def test_missing_bucket_is_full_and_refill_is_capped() -> None:
    spec = bm.BucketSpec(10.0, 5.0)
    assert bm.level_at(spec, None, T0) == 5.0
    b = bm.Bucket(0.0, T0)
    assert bm.level_at(spec, b, T0 + S // 10) == pytest.approx(1.0)
    assert bm.level_at(spec, b, T0 + 10 * S) == 5.0
    assert bm.level_at(spec, b, T0 - S) == 0.0  # a clock step back refills nothing


def test_reserve_is_all_or_nothing_and_reports_the_longest_wait() -> None:
    req = bm.BucketSpec(2.0, 1.0)
    tok = bm.BucketSpec(100.0, 100.0)
    takes = [bm.Take(req, None, 1), bm.Take(tok, bm.Bucket(20.0, T0), 50)]
    d = bm.reserve(takes, T0)
    assert not d.granted and d.blocker == 2
    assert d.wait_us == 300_000  # 30 tokens at 100/s
    assert d.levels == (1.0, 20.0) and d.buckets == ()
    d = bm.reserve(takes, T0 + 300_000)
    assert d.granted and d.wait_us == 0 and d.blocker == 0
    assert d.levels == (0.0, 0.0)
    assert d.buckets == (bm.Bucket(0.0, T0 + 300_000), bm.Bucket(0.0, T0 + 300_000))


def test_cooldown_blocks_before_any_bucket() -> None:
    spec = bm.BucketSpec(1.0, 1.0)
    until_ms = T0 // 1000 + 1500
    d = bm.reserve([bm.Take(spec, None, 1)], T0, cooldown_until_ms=until_ms)
    assert (d.granted, d.wait_us, d.blocker) == (False, 1_500_000, -1)
    assert bm.reserve([bm.Take(spec, None, 1)], T0 + 1_500_000, until_ms).granted


def test_request_larger_than_the_bucket_goes_into_debt_when_full() -> None:
    tok = bm.BucketSpec(100.0, 100.0)
    d = bm.reserve([bm.Take(tok, None, 250)], T0)
    assert d.granted and d.levels == (-150.0,)
    d2 = bm.reserve([bm.Take(tok, d.buckets[0], 10)], T0)
    assert not d2.granted and d2.wait_us == 1_600_000  # back to +10 from -150


def test_adjust_gives_back_up_to_capacity_and_can_take_more() -> None:
    tok = bm.BucketSpec(100.0, 100.0)
    b = bm.Bucket(10.0, T0)
    assert bm.adjust(tok, b, 50, T0) == bm.Bucket(60.0, T0)
    assert bm.adjust(tok, b, 500, T0) == bm.Bucket(100.0, T0)
    assert bm.adjust(tok, b, -40, T0) == bm.Bucket(-30.0, T0)


def test_ttl_is_time_to_full_plus_grace() -> None:
    spec = bm.BucketSpec(20.0, 1.0)
    assert bm.ttl_ms(spec, 0.0) == 50 + bm.TTL_GRACE_MS
    assert bm.ttl_ms(spec, 1.0) == bm.TTL_GRACE_MS


def _max_in_window(times: list[int], window_us: int) -> int:
    """Most events in any window (t - w, t] (the fake LLM's definition)."""
    times = sorted(times)
    return max((i + 1 - bisect_right(times, t - window_us) for i, t in enumerate(times)), default=0)


@pytest.mark.parametrize("rpm", [60, 1200, 6000, 12_000, 60_000])
def test_greedy_and_random_clients_never_exceed_the_rate_in_any_window(rpm: int) -> None:
    spec = bm.spec_per_minute(rpm, bm.REQUEST_BURST_S, exact_per_second=True)
    assert spec is not None
    rng = random.Random(rpm)
    bucket: bm.Bucket | None = None
    now, grants = T0, []
    end = T0 + 70 * S
    while now < end:
        d = bm.reserve([bm.Take(spec, bucket, 1)], now)
        if d.granted:
            grants.append(now)
            bucket = d.buckets[0]
            now += rng.choice([0, 1, rng.randrange(1, 3 * S // max(1, rpm // 60))])
        else:
            now += d.wait_us if rng.random() < 0.7 else rng.randrange(1, d.wait_us + 2)
    per_s = rpm // 60
    assert _max_in_window(grants, S) <= max(1, per_s)
    assert _max_in_window(grants, 60 * S) <= rpm
    assert len(grants) >= 0.6 * rpm * 70 / 60  # random clients still use most of it


def test_dims_for_provider_and_model() -> None:
    lim = ProviderLimits(rpm=1200, tpm=0, models={"m": ModelLimits(rpm=60, tpm=6000)})
    assert [d.name for d in dims_for(lim, "m")] == ["rpm:m", "tpm:m"]  # the model's own budget
    assert [d.name for d in dims_for(lim, "other")] == ["rpm"]
    assert [d.name for d in dims_for(lim, None)] == ["rpm"]
    stacked = replace(lim, stack_model_limits=True)
    assert [d.name for d in dims_for(stacked, "m")] == ["rpm", "rpm:m", "tpm:m"]
    assert [d.kind for d in dims_for(stacked, "m")] == ["requests", "requests", "tokens"]
    assert dims_for(None, "m") == []
    assert dims_for(ProviderLimits(), None) == []


def _rows(n: int, tokens: float = 10.0) -> list[list[float]]:
    return [[1.0, tokens] for _ in range(n)]


def test_reserve_many_grants_the_longest_prefix_that_fits() -> None:
    req = bm.BucketSpec(rate_per_s=10.0, capacity=3.0)
    tok = bm.BucketSpec(rate_per_s=100.0, capacity=100.0)
    # full buckets: 3 requests fit, the 4th waits one request's refill (0.1 s)
    d = bm.reserve_many([req, tok], [None, None], _rows(5), T0)
    assert (d.granted, d.wait_us, d.blocker) == (3, 100_000, 1)
    assert d.levels == (0.0, 70.0) and d.buckets == (bm.Bucket(0.0, T0), bm.Bucket(70.0, T0))
    # the tokens bucket stops the batch: FIFO, a cheap later request never overtakes
    d = bm.reserve_many([req, tok], [None, None], [[1.0, 60.0], [1.0, 60.0], [1.0, 1.0]], T0)
    assert (d.granted, d.blocker) == (1, 2) and d.wait_us == 200_000
    # nothing fits: nothing stored
    empty = bm.Bucket(0.0, T0)
    d = bm.reserve_many([req, tok], [empty, None], _rows(2), T0 + 50_000)
    assert (d.granted, d.wait_us, d.buckets) == (0, 50_000, ())


def test_reserve_many_equals_one_reserve_after_the_other_at_one_instant() -> None:
    rng = random.Random(7)
    specs = [bm.BucketSpec(3.92, 0.08 * 50), bm.BucketSpec(50.0, 50.0)]
    stored: list[bm.Bucket | None] = [None, None]
    now = T0
    for _ in range(300):
        rows = [[1.0, float(rng.randrange(0, 30))] for _ in range(rng.randrange(1, 6))]
        batch = bm.reserve_many(specs, stored, rows, now)
        seq, one_by_one, decision = list(stored), 0, None
        for row in rows:
            decision = bm.reserve([bm.Take(s, b, c) for s, b, c in zip(specs, seq, row, strict=True)], now)  # fmt: skip
            if not decision.granted:
                break
            seq, one_by_one = list(decision.buckets), one_by_one + 1
        assert decision is not None
        assert batch.granted == one_by_one
        assert batch.wait_us == (0 if decision.granted else decision.wait_us)
        if batch.granted:
            assert list(batch.buckets) == seq
            stored = list(batch.buckets)
        now += rng.randrange(0, 400_000)


def test_cooldown_blocks_a_whole_batch() -> None:
    spec = bm.BucketSpec(10.0, 3.0)
    d = bm.reserve_many([spec], [None], [[1.0]], T0, cooldown_until_ms=T0 // 1000 + 1500)
    assert (d.granted, d.wait_us, d.blocker, d.buckets) == (0, 1_500_000, -1, ())


@pytest.mark.parametrize("rpm", [12_000, 60_000])
def test_batched_waiters_never_exceed_the_rate_and_use_almost_all_of_it(rpm: int) -> None:
    spec = bm.spec_per_minute(rpm, bm.REQUEST_BURST_S, exact_per_second=True)
    assert spec is not None
    rng = random.Random(rpm)
    bucket: bm.Bucket | None = None
    now, grants = T0, []
    end = T0 + 30 * S
    while now < end:
        d = bm.reserve_many([spec], [bucket], [[1.0]] * rng.randrange(1, 40), now)
        grants += [now] * d.granted
        if d.granted:
            bucket = d.buckets[0]
        # wake when the bucket says, late by up to 5 ms (event-loop jitter)
        now += (d.wait_us if d.wait_us else 1) + rng.randrange(0, 5000)
    assert _max_in_window(grants, S) <= rpm // 60
    # with a backlog, late wake-ups lose nothing: the refill rate is all used
    assert len(grants) >= 0.995 * spec.rate_per_s * 30


def test_a_grant_scheduled_ahead_starts_when_its_tokens_are_there() -> None:
    req = bm.BucketSpec(rate_per_s=10.0, capacity=2.0)
    # two at once from the full bucket, then one every 0.1 s up to the 0.25 s horizon
    d = bm.reserve_many([req], [None], [[1.0]] * 6, T0, horizon_us=250_000)
    assert d.granted == 4 and d.starts_us == (0, 0, 100_000, 200_000)
    assert (d.wait_us, d.blocker) == (50_000, 1)  # the 5th starts at 0.3 s: 0.05 s past it
    assert d.buckets == (bm.Bucket(0.0, T0 + 200_000),)  # stored at the last start
    # a plain take now sees the schedule: nothing until 0.3 s, then one
    assert bm.reserve([bm.Take(req, d.buckets[0], 1.0)], T0 + 10_000).wait_us == 290_000
    later = bm.reserve([bm.Take(req, d.buckets[0], 1.0)], T0 + 300_000)
    assert later.granted and later.buckets == (bm.Bucket(0.0, T0 + 300_000),)
    # a refund of a scheduled grant gives it back at the bucket's time
    assert bm.adjust(req, d.buckets[0], 1.0, T0 + 10_000) == bm.Bucket(1.0, T0 + 200_000)
    assert bm.ttl_ms(req, 0.0, ahead_us=190_000) == 200 + 190 + bm.TTL_GRACE_MS


def test_without_a_horizon_a_batch_is_granted_as_before() -> None:
    req = bm.BucketSpec(rate_per_s=10.0, capacity=3.0)
    d = bm.reserve_many([req], [None], [[1.0]] * 5, T0)
    assert (d.granted, d.wait_us, d.starts_us) == (3, 100_000, (0, 0, 0))


def test_each_bucket_is_taken_at_the_start_its_slowest_bucket_sets() -> None:
    req = bm.BucketSpec(rate_per_s=10.0, capacity=1.0)
    tok = bm.BucketSpec(rate_per_s=100.0, capacity=100.0)
    d = bm.reserve_many([req, tok], [None, bm.Bucket(0.0, T0)], [[1.0, 50.0]], T0, horizon_us=S)
    # tokens are there at 0.5 s; the request bucket, full already, is taken then too
    assert d.granted == 1 and d.starts_us == (500_000,)
    assert d.buckets == (bm.Bucket(0.0, T0 + 500_000), bm.Bucket(0.0, T0 + 500_000))


@pytest.mark.parametrize("rpm", [12_000, 30_000])
def test_scheduled_grants_lose_no_refill_to_late_wake_ups_and_keep_every_window(rpm: int) -> None:
    spec = bm.spec_per_minute(rpm, bm.REQUEST_BURST_S, exact_per_second=True)
    assert spec is not None
    rng = random.Random(rpm)
    bucket: bm.Bucket | None = None
    now, starts = T0, []
    end = T0 + 30 * S
    while now < end:
        d = bm.reserve_many(
            [spec], [bucket], [[1.0]] * rng.randrange(40, 80), now, horizon_us=100_000
        )
        starts += [now + s for s in d.starts_us]
        if d.granted:
            bucket = d.buckets[0]
        # ask again every 40 ms at the soonest, late by up to 30 ms
        now += max(d.wait_us, 40_000) + rng.randrange(0, 30_000)
    assert _max_in_window(starts, S) <= rpm // 60
    # the backlog keeps the schedule ahead of the clock: the whole refill is used
    assert len([t for t in starts if t < end]) >= 0.999 * (spec.capacity + spec.rate_per_s * 30)
