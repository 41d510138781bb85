"""``sluice bench replay``'s CPU use per process kind during the replay (pure)."""

from __future__ import annotations

from bench.replay import CpuSample, cpu_during


def test_cpu_ms_per_record_sums_the_enrich_workers_and_skips_a_restarted_process() -> None:
    before = CpuSample({"enrich-1": 10.0, "enrich-2": 20.0, "kafka": 5.0, "router": 9.0,
                        "bench": 1.0}, busy_s=100.0, at=50.0)  # fmt: skip
    after = CpuSample({"enrich-1": 12.0, "enrich-2": 21.0, "kafka": 6.5, "router": 0.5,
                       "bench": 1.5, "admin": 3.0}, busy_s=115.0, at=60.0)  # fmt: skip
    got = cpu_during(before, after, records=1000)
    # enrich 2 + 1 s; the router restarted (0.5 < 9) and the admin was not sampled before
    assert got["cpu_ms_per_record"] == {"bench": 0.5, "enrich": 3.0, "kafka": 1.5}
    assert got["cpu_ms_per_record_total"] == 5.0
    assert got["machine_busy_pct"] == 150.0
    assert got["records"] == 1000


def test_no_records_and_no_time_give_figures_not_a_division_error() -> None:
    s = CpuSample({"kafka": 1.0}, busy_s=1.0, at=1.0)
    got = cpu_during(s, s, records=0)
    assert got["cpu_ms_per_record"] == {"kafka": 0.0}
    assert got["machine_busy_pct"] is None
