"""Benchmark figures from several processes' scrapes: histogram quantiles, counters per call."""

from __future__ import annotations

import math

from bench.common import per_call
from bench.e2e import one_call_per_record, paced
from bench.enrich import command_calls, counter_delta, cpu_s_by_kind, redis_per_call
from bench.promtext import counter_by_label, merged_buckets, quantile_le

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
sluice_enrich_step_seconds_bucket{provider="p",step="admit",le="0.0025"} 100.0
sluice_enrich_step_seconds_bucket{provider="p",step="admit",le="+Inf"} 100.0
"""
    got = enrich_steps([scrape])
    assert got["bucket_wait"] == [10.0, 10.0]
    assert got["admit"] == [2.5, 2.5]
    assert got["settle"] == [None, None]  # nothing observed
    assert enrich_steps([scrape.replace('le="0.01"} 99.0', 'le="0.01"} 50.0')])["bucket_wait"] == [
        10.0,
        "inf",
    ]


def test_commit_times_are_the_sequencers_commit_histogram_in_ms() -> None:
    from bench.e2e import commit_times

    scrape = """# TYPE sluice_sequencer_txn_commit_seconds histogram
sluice_sequencer_txn_commit_seconds_bucket{le="0.005"} 10.0
sluice_sequencer_txn_commit_seconds_bucket{le="0.025"} 98.0
sluice_sequencer_txn_commit_seconds_bucket{le="0.05"} 100.0
sluice_sequencer_txn_commit_seconds_bucket{le="+Inf"} 100.0
"""
    assert commit_times(scrape) == [25.0, 50.0]
    assert commit_times("") == [None, None]  # nothing observed


REDIS = """# HELP sluice_redis_requests_total Requests
# TYPE sluice_redis_requests_total counter
sluice_redis_requests_total{op="bucket"} 30.0
sluice_redis_requests_created{op="bucket"} 1.7e9
sluice_redis_requests_total{op="cache"} 10.0
"""


def test_counters_are_summed_over_processes_by_label() -> None:
    other = REDIS.replace("} 30.0", "} 5.0").replace('"cache"} 10.0', '"breaker"} 2.0')
    got = counter_by_label([REDIS, other], "sluice_redis_requests_total", "op")
    assert got == {"bucket": 35.0, "cache": 10.0, "breaker": 2.0}
    assert counter_by_label([REDIS], "sluice_nope_total", "op") == {}


def test_counter_delta_counts_a_key_new_at_the_end_from_zero() -> None:
    got = counter_delta({"bucket": 30.0, "cache": 10.0}, {"bucket": 50.0, "cache": 10.0, "pause": 3.0})  # fmt: skip
    assert got == {"bucket": 20.0, "cache": 0.0, "pause": 3.0}


def test_per_call_is_none_without_calls() -> None:
    assert per_call(30, 20) == 1.5
    assert per_call(1, 3) == 0.333
    assert per_call(1000 * 0.123456, 10, 2) == 12.35
    assert per_call(5, 0) is None


def test_commandstats_as_redis_py_parses_them() -> None:
    info = {"cmdstat_evalsha": {"calls": 40, "usec": 900, "usec_per_call": 22.5},
            "cmdstat_hmget": {"calls": 7, "usec": 10}, "cmdstat_client|setname": {"calls": 2}}  # fmt: skip
    assert command_calls(info) == {"evalsha": 40.0, "hmget": 7.0, "client|setname": 2.0}


def test_redis_figures_per_call() -> None:
    got = redis_per_call(
        {"bucket": 40.0, "cache": 20.0, "pause": 0.0},
        {"evalsha": 30.0, "eval": 2.0, "hmget": 60.0, "info": 1.0, "get": 8.0},
        20,
    )
    assert got == {
        "redis_roundtrips_per_call": 3.0,
        "redis_roundtrips_per_call_by_op": {"bucket": 2.0, "cache": 1.0},  # ops not used left out
        "redis_scripts_per_call": 1.6,
        "redis_commands_per_call": 5.0,  # the bench's own INFO left out
    }
    nothing = redis_per_call({"bucket": 4.0}, {"evalsha": 3.0}, 0)
    assert nothing["redis_roundtrips_per_call"] is None
    assert nothing["redis_scripts_per_call"] is None


def test_cpu_by_kind_sums_the_windows_workers() -> None:
    cpu = {"enrich-main-0": 2.0, "enrich-main-1": 3.0, "enrich-old-0": 9.0, "fakellm": 1.5,
           "redis": 0.5, "bench": 0.25}  # fmt: skip
    got = cpu_s_by_kind(cpu, ["enrich-main-0", "enrich-main-1"])
    assert got == {"enrich": 5.0, "fakellm": 1.5, "redis": 0.5, "bench": 0.25}  # no kafka sampled


def test_pacing_follows_the_schedule_even_when_waits_return_early() -> None:
    """Record i goes at start + i / rate, however early the producer's poll returns
    (it does on every delivery report)."""
    clock = [100.0]

    def poll(timeout: float) -> None:  # a delivery report after at most 1 ms
        clock[0] += min(timeout, 0.001)

    sent = [(i, clock[0]) for i in paced(50, 10.0, lambda: clock[0], poll)]
    assert [i for i, _ in sent] == list(range(50))
    for i, at in sent:
        assert 100.0 + i / 10.0 <= at < 100.0 + i / 10.0 + 0.002, (i, at)
    assert sent[-1][1] >= 104.9  # 50 records at 10/s take 4.9 s, not 50 ms


def test_pacing_does_not_wait_for_records_already_due() -> None:
    clock = [0.0]
    waits: list[float] = []
    late = iter([5.0])  # the producer falls 5 s behind after the first record

    def now() -> float:
        return clock[0]

    def poll(timeout: float) -> None:
        waits.append(timeout)
        clock[0] += timeout

    got = []
    for i in paced(4, 2.0, now, poll):
        got.append((i, clock[0]))
        clock[0] += next(late, 0.0)
    assert got == [(0, 0.0), (1, 5.0), (2, 5.0), (3, 5.0)]  # catches up, no extra waits
    assert waits == []


def test_one_call_per_record_means_exactly_one() -> None:
    assert one_call_per_record({"llm_requests": 300, "records_completed": 300})
    assert not one_call_per_record({"llm_requests": 301, "records_completed": 300})  # a retry
    assert not one_call_per_record({"llm_requests": 0, "records_completed": 0})
    assert not one_call_per_record({"llm_requests": None, "records_completed": 300})
