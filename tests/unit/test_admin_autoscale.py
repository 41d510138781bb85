"""The useful-workers figure (pure): lag, pause, rate cap, partitions, minimum; its inputs; its gauge."""

from __future__ import annotations

from dataclasses import replace

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.admin.autoscale.metrics import UsefulWorkers
from services.admin.autoscale.model import (
    Arrivals,
    Inputs,
    Provider,
    Useful,
    WorkLag,
    mean_latency_s,
    rate_per_s,
    useful_workers,
    work_lag,
)
from services.admin.lag.models import GroupLag, LagReport, PartitionLag
from services.admin.lag.status import Status
from shared.call_stats import CallTally

# 2 s per call, 4 slots a worker: one worker serves 2 calls/s
PRIMARY = Provider("primary", available=True, rate_per_s=None, latency_s=2.0, slots_per_worker=4)
BACKUP = Provider("backup", available=True, rate_per_s=None, latency_s=1.0, slots_per_worker=4)
# 600 records to drain in 60 s: 10 calls/s, 20 in flight, 5 workers
LAGGING = Inputs(chain=(PRIMARY,), backlog=600, arrival_per_s=0.0, partitions=12, workers=1,
                 minimum=1, drain_s=60.0)  # fmt: skip


def paused(p: Provider) -> Provider:
    return replace(p, available=False)


def test_lag_with_a_healthy_provider_asks_for_more_workers() -> None:
    assert useful_workers(LAGGING) == Useful(5, "lag", "primary")
    assert useful_workers(LAGGING).workers > LAGGING.workers


def test_arrivals_count_as_well_as_the_backlog() -> None:
    # 10/s to drain + 6/s arriving = 16 calls/s, 32 in flight, 8 workers
    assert useful_workers(replace(LAGGING, arrival_per_s=6.0)).workers == 8
    # keeping pace with no backlog: 6/s, 12 in flight, 3 workers
    assert useful_workers(replace(LAGGING, backlog=0, arrival_per_s=6.0)) == Useful(3, "lag", "primary")  # fmt: skip


def test_same_lag_with_the_provider_paused_is_no_more_than_now() -> None:
    now = replace(LAGGING, chain=(paused(PRIMARY),), workers=3)
    assert useful_workers(now) == Useful(1, "paused", None)
    assert useful_workers(now).workers <= now.workers


def test_breaker_open_everywhere_is_the_minimum() -> None:
    i = replace(LAGGING, chain=(paused(PRIMARY), paused(BACKUP)), workers=5, minimum=2)
    assert useful_workers(i) == Useful(2, "paused", None)


def test_primary_paused_sizes_by_the_fallback_that_serves() -> None:
    # backup: 10 calls/s at 1 s = 10 in flight, 3 workers of 4 slots
    i = replace(LAGGING, chain=(paused(PRIMARY), BACKUP))
    assert useful_workers(i) == Useful(3, "lag", "backup")
    # both up: every record goes to the primary, the backup adds no capacity
    assert useful_workers(replace(LAGGING, chain=(PRIMARY, BACKUP))) == Useful(5, "lag", "primary")


def test_lag_beyond_the_providers_rate_is_capped_at_what_the_rate_can_use() -> None:
    # 6000 records in 60 s would be 100 calls/s (50 workers); 240 rpm = 4/s, 8 in flight, 2 workers
    capped = replace(PRIMARY, rate_per_s=4.0)
    i = replace(LAGGING, chain=(capped,), backlog=6000)
    assert useful_workers(replace(i, chain=(PRIMARY,))) == Useful(12, "partitions", "primary")
    assert useful_workers(i) == Useful(2, "rate", "primary")
    # a rate above the need does not bind
    assert useful_workers(replace(LAGGING, chain=(capped,))) == Useful(2, "rate", "primary")
    assert useful_workers(replace(LAGGING, chain=(replace(PRIMARY, rate_per_s=50.0),))) == Useful(5, "lag", "primary")  # fmt: skip


def test_never_more_than_the_partitions_of_p_work() -> None:
    assert useful_workers(replace(LAGGING, partitions=3)) == Useful(3, "partitions", "primary")
    # the partition cap wins over the minimum
    assert useful_workers(replace(LAGGING, partitions=2, minimum=4)).workers == 2


def test_zero_lag_is_the_minimum() -> None:
    i = replace(LAGGING, backlog=0, workers=6)
    assert useful_workers(i) == Useful(1, "minimum", "primary")
    assert useful_workers(replace(i, minimum=3)) == Useful(3, "minimum", "primary")
    # a little lag still gives at least the minimum
    assert useful_workers(replace(LAGGING, backlog=1, minimum=2)) == Useful(2, "minimum", "primary")


def test_no_latency_observed_keeps_the_workers_there_are() -> None:
    i = replace(LAGGING, chain=(replace(PRIMARY, latency_s=None),), workers=4)
    assert useful_workers(i) == Useful(4, "unobserved", "primary")
    assert useful_workers(replace(i, workers=0)) == Useful(1, "unobserved", "primary")


def test_whole_workers_without_float_noise() -> None:
    # exactly 2 workers' worth: 4 calls/s x 2 s = 8 in flight / 4 slots
    assert useful_workers(replace(LAGGING, backlog=240)).workers == 2
    assert useful_workers(replace(LAGGING, backlog=241)).workers == 3


def test_rate_is_the_tightest_budget() -> None:
    assert rate_per_s([0, 0]) is None
    assert rate_per_s([600, 0]) == 10.0
    assert rate_per_s([600, 120]) == 2.0


def test_mean_latency_from_the_fleets_histograms() -> None:
    assert mean_latency_s([]) is None
    a, b = CallTally(), CallTally()
    for _ in range(3):
        a.add(1800, failed=False)  # the 1500-2000 ms bucket: 1750 ms
    b.add(20, failed=True)  # the 0-25 ms bucket: 12.5 ms
    seconds = [dict(a.fields()), dict(b.fields())]
    assert mean_latency_s(seconds) == pytest.approx((3 * 1.75 + 0.0125) / 4)
    slow = CallTally()
    slow.add(60_000, failed=True)  # the open bucket counts at its lower edge
    assert mean_latency_s([dict(slow.fields())]) == 30.0


def report(at: float | None, *parts: PartitionLag, group: str = "p.enrich") -> LagReport:
    g = GroupLag(group=group, stage="enrich", state="stable", missing_topics=(), partitions=parts)
    return LagReport(sampled_at=at, interval_s=5, window_s=120, error=None, groups=(g,))


def plag(n: int, committed: int | None, end: int, topic: str = "p.work") -> PartitionLag:
    lag = None if committed is None else end - committed
    return PartitionLag(topic=topic, partition=n, committed=committed, end=end, lag_records=lag,
                        lag_seconds=None, status=Status.OK)  # fmt: skip


def test_work_lag_sums_the_enrich_groups_partitions_of_p_work() -> None:
    r = report(100.0, plag(0, 10, 25), plag(1, None, 7), plag(0, 0, 99, topic="p.other"))
    assert work_lag(r, "p.enrich", "p.work") == WorkLag(100.0, 15 + 7, {0: 25, 1: 7})
    assert work_lag(r, "p.sequencer", "p.work") is None
    assert work_lag(report(None, plag(0, 1, 2)), "p.enrich", "p.work") is None


def test_arrivals_over_the_window() -> None:
    a = Arrivals(window_s=10)
    assert a.observe(WorkLag(0.0, 0, {0: 100, 1: 0})) == 0.0
    assert a.observe(WorkLag(5.0, 0, {0: 150, 1: 0})) == 10.0
    assert a.observe(WorkLag(5.0, 0, {0: 999, 1: 0})) == 10.0  # the same sample again
    assert a.observe(WorkLag(10.0, 0, {0: 200, 1: 50})) == 15.0  # 150 records in 10 s
    # the window is the last 10 s: the samples at 0 and 5 left it
    assert a.observe(WorkLag(20.0, 0, {0: 260, 1: 50})) == 6.0
    # offsets that went back (a recreated topic) and a new partition are no arrival
    assert a.observe(WorkLag(30.0, 0, {0: 0, 1: 50, 2: 9})) == 0.0


def test_the_gauge_has_the_agreed_name_and_label() -> None:
    gauge = UsefulWorkers()
    registry = CollectorRegistry()
    registry.register(gauge)
    assert "sluice_enrich_useful_workers" not in _samples(registry)
    gauge.current["p"] = Useful(3, "rate", "primary")
    samples = _samples(registry)
    assert samples["sluice_enrich_useful_workers"] == {(("pipeline", "p"),): 3.0}
    limited = samples["sluice_enrich_useful_workers_limited_by"]
    assert {k: v for k, v in limited.items() if v} == {(("limit", "rate"), ("pipeline", "p")): 1.0}
    assert len(limited) == 6


def _samples(registry: CollectorRegistry) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    out: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out
