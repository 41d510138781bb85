"""Histogram quantiles over several processes' scrapes."""

from __future__ import annotations

import math

from bench.promtext import merged_buckets, quantile_le

A = """# HELP w wait
# TYPE w histogram
w_bucket{provider="p",le="0.01"} 90.0
w_bucket{provider="p",le="0.1"} 99.0
w_bucket{provider="p",le="+Inf"} 100.0
w_count{provider="p"} 100.0
w_sum{provider="p"} 2.0
w_bucket{provider="q",le="0.01"} 0.0
w_bucket{provider="q",le="0.1"} 0.0
w_bucket{provider="q",le="+Inf"} 50.0
w_count{provider="q"} 50.0
w_sum{provider="q"} 200.0
"""
B = A.replace("} 90.0", "} 0.0").replace("} 99.0", "} 100.0")


def test_buckets_are_summed_over_processes_for_the_matching_labels() -> None:
    got = merged_buckets([A, B], "w", {"provider": "p"})
    assert got == [(0.01, 90.0), (0.1, 199.0), (math.inf, 200.0)]
    assert quantile_le(got, 0.4) == 0.01
    assert quantile_le(got, 0.99) == 0.1
    assert quantile_le(got, 1.0) == math.inf


def test_all_label_sets_without_a_filter_and_nothing_observed() -> None:
    assert merged_buckets([A], "w")[-1] == (math.inf, 150.0)
    assert quantile_le(merged_buckets([A], "w"), 0.9) == math.inf
    assert quantile_le(merged_buckets([A], "nope"), 0.5) is None


def test_enrich_steps_reports_bucket_bounds_in_ms_per_step() -> None:
    from bench.e2e import enrich_steps

    scrape = """# TYPE sluice_bucket_wait_seconds histogram
sluice_bucket_wait_seconds_bucket{provider="p",le="0.01"} 99.0
sluice_bucket_wait_seconds_bucket{provider="p",le="+Inf"} 100.0
# TYPE sluice_enrich_step_seconds histogram
sluice_enrich_step_seconds_bucket{provider="p",step="breaker",le="0.0025"} 100.0
sluice_enrich_step_seconds_bucket{provider="p",step="breaker",le="+Inf"} 100.0
"""
    got = enrich_steps([scrape])
    assert got["bucket_wait"] == [10.0, 10.0]
    assert got["breaker"] == [2.5, 2.5]
    assert got["cache_lookup"] == [None, None]  # nothing observed
    assert enrich_steps([scrape.replace('le="0.01"} 99.0', 'le="0.01"} 50.0')])["bucket_wait"] == [
        10.0,
        "inf",
    ]
