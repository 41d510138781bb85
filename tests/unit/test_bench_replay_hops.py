"""Where a fresh record's time went in ``sluice bench replay`` (pure)."""

from __future__ import annotations

from bench.replay import Fresh, Phases, Seen, hops_p50_p99


def test_each_phase_splits_a_fresh_records_time_into_its_hops() -> None:
    phases = Phases(baseline_ms=1_000, replay_ms=2_000, drained_ms=3_000)
    fresh = Fresh()
    # src 1500 -> P.work 1510 -> P.results 1900 (call 300) -> P.output 1950 -> seen 1960
    fresh.seen[("t", 0, 1)] = Seen(src_ts=1_500, seen_ms=1_960, out_ts=1_950, llm_ms=300)
    fresh.result_ts[("t", 0, 1)] = 1_900
    fresh.seen[("t", 0, 2)] = Seen(src_ts=2_500, seen_ms=3_500, out_ts=3_400, llm_ms=300)
    fresh.result_ts[("t", 0, 2)] = 3_000
    fresh.seen[("t", 0, 3)] = Seen(
        src_ts=2_600, seen_ms=2_900, out_ts=2_800, llm_ms=0
    )  # no P.work time
    fresh.result_ts[("t", 0, 3)] = 2_700
    fresh.seen[("t", 0, 4)] = Seen(src_ts=500, seen_ms=900, out_ts=800, llm_ms=0)  # warm-up
    work = {("t", 0, 1): 1_510, ("t", 0, 2): 2_520, ("t", 0, 4): 510}

    hops = fresh.hops(phases, work)

    assert hops["baseline"] == {"ingest": [10], "enrich_minus_llm": [90], "sequencer": [50],
                                "commit_visibility": [10]}  # fmt: skip
    assert hops["replay"] == {"ingest": [20], "enrich_minus_llm": [180], "sequencer": [400],
                              "commit_visibility": [100]}  # fmt: skip
    assert fresh.latencies(phases) == {"baseline": [460], "replay": [300, 1_000]}
    assert hops_p50_p99(hops)["replay"]["sequencer"] == [400, 400]
