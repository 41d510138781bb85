"""``bench.peers.score``: one row of the peers table from a run's traces."""

from __future__ import annotations

from bench.peers.score import Provider, Seen, Sent, order_violations, row


def _sent(n: int, failing_key: bytes | None = None) -> list[Sent]:
    # two keys on partition 0 (a, f), one on partition 1 (b); one record every 10 ms
    keys = [b"a", b"b", failing_key or b"a"]
    out, offsets = [], {0: 0, 1: 0}
    for i in range(n):
        key = keys[i % 3]
        part = 1 if key == b"b" else 0
        out.append(Sent(i, key, part, offsets[part], 1000 + 10 * i, key == failing_key))
        offsets[part] += 1
    return out


def test_an_answer_per_record_in_order_is_a_clean_row() -> None:
    sent = _sent(30)
    seen = [Seen(s.id, s.ts_ms + 500, True) for s in sent]
    r = row(sent, seen, Provider(30, 0, 100.0), {0: 20, 1: 10}, set(), warmup_ms=0)
    assert r["answered"] == 30
    assert r["calls_per_record"] == 1.0
    assert r["e2e_p50_ms"] == 500 and r["e2e_p99_ms"] == 500
    assert r["order_violations"] == 0 and r["unfinished"] == 0 and r["lost"] == 0
    # 30 answers from the first send (1000) to the last answer (1790): 0.79 s
    assert r["completed_rps"] == round(30 / 0.79, 1)
    assert r["utilization"] == round(30 / 0.79 / 100, 3)


def test_429s_count_against_calls_but_not_utilization() -> None:
    sent = _sent(10)
    seen = [Seen(s.id, s.ts_ms + 100, True) for s in sent]
    r = row(sent, seen, Provider(15, 5, 100.0), {}, set(), warmup_ms=0)
    assert r["provider_429"] == 5
    assert r["calls_per_record"] == 1.5
    span = (seen[-1].at_ms - sent[0].ts_ms) / 1000
    assert r["utilization"] == round(10 / span / 100, 3)


def test_a_failing_key_is_unfinished_and_its_partition_neighbours_measured() -> None:
    sent = _sent(30, failing_key=b"f")
    healthy = [s for s in sent if not s.failing]
    seen = [Seen(s.id, s.ts_ms + (900 if s.partition == 0 else 100), True) for s in healthy]
    r = row(sent, seen, Provider(40, 0, 100.0), {0: 0, 1: 10}, set(), warmup_ms=0)
    assert r["unfinished"] == 10 and r["lost"] == 0  # nothing committed past them
    assert r["neighbours_p99_ms"] == 900  # key a shares partition 0 with the failing key
    assert r["e2e_p50_ms"] == 900 and r["e2e_p99_ms"] == 900  # 10 of each: the upper one


def test_unfinished_records_committed_past_are_lost_unless_held_durably() -> None:
    sent = _sent(30, failing_key=b"f")
    seen = [Seen(s.id, s.ts_ms + 10, True) for s in sent if not s.failing]
    failing = [s.id for s in sent if s.failing]
    committed = {0: 20, 1: 10}  # past every record
    assert row(sent, seen, Provider(30, 0, 100.0), committed, set(), 0)["lost"] == 10
    held = set(failing[:4])
    assert row(sent, seen, Provider(30, 0, 100.0), committed, held, 0)["lost"] == 6


def test_a_dead_letter_is_an_outcome_not_an_answer() -> None:
    sent = _sent(6, failing_key=b"f")
    seen = [Seen(s.id, s.ts_ms + 10, not s.failing) for s in sent]
    r = row(sent, seen, Provider(8, 0, 100.0), {0: 4, 1: 2}, set(), 0)
    assert r["answered"] == 4 and r["dead_lettered"] == 2 and r["unfinished"] == 0


def test_the_warmup_is_left_out_of_latency_only() -> None:
    sent = _sent(30)
    seen = [Seen(s.id, s.ts_ms + (5000 if s.id < 10 else 50), True) for s in sent]
    r = row(sent, seen, Provider(30, 0, 100.0), {}, set(), warmup_ms=100)
    assert r["e2e_p99_ms"] == 50
    assert r["answered"] == 30


def test_an_answer_after_a_later_record_of_its_key_is_an_order_violation() -> None:
    sent = _sent(9)
    by_id = {s.id: s for s in sent}
    a_ids = [s.id for s in sent if s.key == b"a"]  # 0, 2, 3, 5, 6, 8
    swapped = [a_ids[1], a_ids[0], *a_ids[2:]]
    assert order_violations(by_id, [Seen(i, 0, True) for i in a_ids]) == 0
    assert order_violations(by_id, [Seen(i, 0, True) for i in swapped]) == 1
    assert order_violations(by_id, [Seen(i, 0, True) for i in reversed(a_ids)]) == 5


def test_a_record_seen_twice_counts_once_and_unknown_ids_are_ignored() -> None:
    sent = _sent(3)
    seen = [Seen(0, 1100, True), Seen(0, 1200, True), Seen(99, 1300, True),
            Seen(1, 1100, True), Seen(2, 1100, True)]  # fmt: skip
    r = row(sent, seen, Provider(3, 0, 10.0), {}, set(), 0)
    assert r["answered"] == 3 and r["calls_per_record"] == 1.0
