"""Call statistics: a worker's tally, and p50/p99 over a minute of per-second hashes."""

from __future__ import annotations

import pytest

from shared.call_stats import (
    BUCKETS,
    EDGES_MS,
    CallTally,
    bucket_field,
    last_minute,
    quantile_ms,
)


def test_a_tally_counts_calls_errors_and_latency_buckets() -> None:
    t = CallTally()
    t.add(80, False)
    t.add(80, True)
    t.add(100, False)  # an edge belongs to the bucket it closes
    t.add(40_000, True)  # beyond the last edge: the open bucket
    assert (t.calls, t.errors) == (4, 2)
    assert dict(t.fields()) == {"n": 4, "e": 2, "h2": 3, f"h{len(EDGES_MS)}": 1}


def test_take_empties_the_tally_and_merge_puts_a_failed_flush_back() -> None:
    t = CallTally()
    t.add(10, False)
    taken = t.take()
    assert t.fields() == [] and dict(taken.fields()) == {"n": 1, "h0": 1}
    t.add(600, True)  # counted while the flush was on its way
    t.merge(taken)
    assert dict(t.fields()) == {"n": 2, "e": 1, "h0": 1, "h6": 1}


def test_no_calls_no_percentiles() -> None:
    s = last_minute([])
    assert (s.calls, s.errors, s.calls_per_s, s.error_rate) == (0, 0, 0.0, 0.0)
    assert s.p50_ms is None and s.p99_ms is None


def test_percentiles_interpolate_within_the_bucket_that_holds_the_rank() -> None:
    hist = [0] * BUCKETS
    hist[2] = 100  # 100 calls in (50, 100] ms
    assert quantile_ms(hist, 0.5) == pytest.approx(75.0)
    assert quantile_ms(hist, 0.99) == pytest.approx(99.5)
    hist[len(EDGES_MS)] = 1  # one call over the last edge
    assert quantile_ms(hist, 1.0) == EDGES_MS[-1]  # the open bucket reports its lower edge


def test_a_minute_of_seconds_sums_to_rates_and_percentiles() -> None:
    # 98 fast calls (80 ms) and 2 slow failures (4 s), spread over three seconds
    seconds = [
        {"n": 50, bucket_field(2): 50},
        {"n": 48, bucket_field(2): 48},
        {"n": 2, "e": 2, bucket_field(11): 2},
    ]
    s = last_minute(seconds)
    assert (s.calls, s.errors) == (100, 2)
    assert s.calls_per_s == pytest.approx(100 / 60)
    assert s.error_rate == pytest.approx(0.02)
    assert s.p50_ms is not None and 50 < s.p50_ms <= 100
    assert s.p99_ms is not None and 3000 < s.p99_ms <= 5000
