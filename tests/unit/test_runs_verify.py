"""The run verifier (pure): lost, duplicates, order, late replays, DLQ repeats."""

from devtools.runs.verify import OutRec, order_violations, verdict

T = "src"


def out(off: int, key: bytes | None = b"k", ok: bool = True, late: bool = False,
        part: int = 0, lat: int | None = 10) -> OutRec:  # fmt: skip
    return OutRec((T, part, off), key, ok, late, lat)


def test_a_clean_run_is_exact() -> None:
    src = [(T, 0, i) for i in range(4)]
    v = verdict(src, [out(0), out(1), out(2, ok=False)], dlq=[(T, 0, 2)], poison=[(T, 0, 3)])
    assert v.exact
    assert (v.records, v.enriched, v.dead, v.poison, v.lost) == (4, 2, 1, 1, 0)


def test_lost_records_are_counted() -> None:
    v = verdict([(T, 0, 0), (T, 0, 1)], [out(0)], dlq=[], poison=[])
    assert v.lost == 1 and not v.exact


def test_a_second_ok_or_gap_marker_is_a_duplicate_but_a_late_replay_is_not() -> None:
    src = [(T, 0, 0), (T, 0, 1)]
    replayed = [out(0, ok=False), out(1), out(0, late=True)]
    assert verdict(src, replayed, dlq=[(T, 0, 0)], poison=[]).duplicates == 0
    twice = [out(0), out(0), out(1, ok=False), out(1, ok=False)]
    assert verdict(src, twice, dlq=[(T, 0, 1)], poison=[]).duplicates == 2


def test_order_is_per_source_partition_and_key_and_skips_late_and_unkeyed() -> None:
    assert order_violations([out(1), out(0)]) == 1
    assert order_violations([out(1, key=b"a"), out(0, key=b"b")]) == 0
    assert order_violations([out(1, part=0), out(0, part=1)]) == 0
    assert order_violations([out(1), out(0, late=True), out(2)]) == 0
    assert order_violations([out(1, key=None), out(0, key=None)]) == 0
    assert order_violations([out(2), out(1), out(3)]) == 1  # one violation, not a cascade


def test_dlq_repeats_are_reported_apart_and_a_dead_record_needs_its_gap_marker() -> None:
    src = [(T, 0, 0)]
    v = verdict(src, [out(0, ok=False)], dlq=[(T, 0, 0), (T, 0, 0)], poison=[])
    assert v.dlq_repeats == 1 and v.duplicates == 0 and v.exact
    missing = verdict(src, [], dlq=[(T, 0, 0)], poison=[])
    assert missing.unsequenced == 1 and missing.lost == 0 and not missing.exact
    assert verdict(src, [], dlq=[(T, 0, 0)], poison=[], gap_markers=False).exact


def test_output_of_another_run_is_flagged_and_latency_percentiles() -> None:
    v = verdict([(T, 0, 0)], [out(0, lat=5), out(9, lat=50)], dlq=[], poison=[])
    assert v.unaccounted_output == 1 and not v.exact
    assert (v.p50_ms, v.p99_ms) == (50, 50)
    many = verdict([(T, 0, i) for i in range(100)], [out(i, lat=i) for i in range(100)], [], [])
    assert (many.p50_ms, many.p99_ms) == (50, 99)
