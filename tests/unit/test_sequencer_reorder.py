"""Reassembly of per-key order (pure): interleavings, duplicates, dead records, unkeyed."""

from __future__ import annotations

import random
from collections import defaultdict

import pytest

from services.sequencer.model import Announcement, Emit, Kind, Outcome, ScopeKey, SkipRef
from services.sequencer.reorder import Reorder
from shared import headers as h

T = "src"
NOW = 1_700_000_000_000


def ann(off: int, key: bytes | None = b"k", part: int = 0) -> Announcement:
    return Announcement(h.SourceId(T, part, off), key)


def out(off: int, key: bytes | None = b"k", kind: Kind = "ok", part: int = 0) -> Outcome:
    hs = ((h.OUTCOME, kind.encode()), (h.SRC_OFFSET, str(off).encode()))
    return Outcome(h.SourceId(T, part, off), key, kind, f"v{off}".encode(), hs)


def offs(emits: list[Emit]) -> list[tuple[int, str, bool]]:
    return [(e.outcome.ident.offset, e.outcome.kind, e.late) for e in emits]


def ok(*o: int) -> list[tuple[int, str, bool]]:
    return [(x, "ok", False) for x in o]


def test_in_order_outcomes_are_emitted_on_arrival() -> None:
    r = Reorder()
    for i in range(3):
        assert r.announce(ann(i), NOW) == []
    assert [offs(r.outcome(out(i), NOW)) for i in range(3)] == [ok(0), ok(1), ok(2)]
    assert r.scopes == {} and r.counts["emitted"] == 3


def test_out_of_order_outcomes_wait_for_the_head() -> None:
    r = Reorder()
    for i in (1, 2, 3):
        r.announce(ann(i), NOW)
    assert r.outcome(out(3), NOW) == []
    assert offs(r.outcome(out(1), NOW)) == ok(1)
    assert offs(r.outcome(out(2), NOW)) == ok(2, 3)
    assert r.scopes == {}


def test_outcome_before_its_announcement_is_buffered() -> None:
    r = Reorder()
    assert r.outcome(out(2), NOW) == []
    assert r.outcome(out(1), NOW) == []
    assert r.scopes[ScopeKey(T, 0, b"k")].buffered == 2
    assert offs(r.announce(ann(1), NOW)) == ok(1)
    assert offs(r.announce(ann(2), NOW)) == ok(2)
    assert r.scopes == {}


def test_announcement_then_buffered_outcome_behind_a_waiting_head() -> None:
    r = Reorder()
    r.announce(ann(1), NOW)
    r.outcome(out(2), NOW)  # not announced yet
    assert r.announce(ann(2), NOW) == []  # head 1 still waits
    assert offs(r.outcome(out(1), NOW)) == ok(1, 2)


def test_duplicate_announcements_are_dropped() -> None:
    r = Reorder()
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    assert r.announce(ann(1), NOW) == [] and r.announce(ann(2), NOW) == []
    assert list(r.scopes[ScopeKey(T, 0, b"k")].fifo) == [1, 2]
    assert r.counts["duplicate_announcements"] == 2
    assert offs(r.outcome(out(1), NOW) + r.outcome(out(2), NOW)) == ok(1, 2)
    # an ingest replay after everything was emitted: nothing comes back
    assert r.announce(ann(1), NOW) == [] and r.scopes == {}


def test_duplicate_outcomes_pending_buffered_and_emitted_are_dropped() -> None:
    r = Reorder()
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    assert r.outcome(out(2), NOW) == [] and r.outcome(out(2), NOW) == []  # pending twice
    assert r.outcome(out(3), NOW) == [] and r.outcome(out(3), NOW) == []  # buffered twice
    assert offs(r.outcome(out(1), NOW)) == ok(1, 2)
    assert r.outcome(out(1), NOW) == [] and r.outcome(out(2), NOW) == []  # emitted
    assert offs(r.announce(ann(3), NOW)) == ok(3)
    assert r.counts["duplicate_outcomes"] == 4 and r.scopes == {}


def test_keys_and_source_partitions_are_independent_scopes() -> None:
    r = Reorder()
    r.announce(ann(1, b"a"), NOW)
    r.announce(ann(2, b"b"), NOW)
    r.announce(ann(1, b"a", part=1), NOW)  # same offset, other source partition
    assert offs(r.outcome(out(2, b"b"), NOW)) == ok(2)  # b does not wait for a
    assert offs(r.outcome(out(1, b"a", part=1), NOW)) == ok(1)
    assert r.pending_scopes == 1
    assert offs(r.outcome(out(1, b"a"), NOW)) == ok(1)
    assert r.announced == {(T, 0): 2, (T, 1): 1}


def test_unkeyed_records_are_emitted_on_outcome_once() -> None:
    r = Reorder()
    assert r.announce(ann(5, None), NOW) == []
    assert offs(r.outcome(out(7, None), NOW)) == ok(7)  # no announcement needed
    assert offs(r.outcome(out(5, None), NOW)) == ok(5)
    assert r.outcome(out(7, None), NOW) == []
    assert r.outcome(out(5, None, "dead"), NOW) == []  # a dead duplicate of an emitted one
    assert r.scopes == {} and r.announced == {}


def test_unkeyed_dead_then_replay_is_late_and_bounded_memory() -> None:
    r = Reorder(unkeyed_max=2)
    assert offs(r.outcome(out(1, None, "dead"), NOW)) == [(1, "dead", False)]
    assert offs(r.outcome(out(1, None), NOW)) == [(1, "ok", True)]
    assert r.outcome(out(1, None), NOW) == []
    for i in (2, 3, 4):
        r.outcome(out(i, None), NOW)
    assert len(r.seen) == 2  # 1 and 2 fell out
    assert r.outcome(out(1, None, "release"), NOW) == []


def test_skip_mode_gap_marker_then_late_replay() -> None:
    r = Reorder("skip")
    for i in (1, 2, 3):
        r.announce(ann(i), NOW)
    r.outcome(out(2), NOW)
    assert offs(r.outcome(out(1, kind="dead"), NOW)) == [(1, "dead", False), (2, "ok", False)]
    assert offs(r.outcome(out(1), NOW)) == [(1, "ok", True)]  # the replay succeeded
    assert r.outcome(out(1), NOW) == []  # once only
    assert r.outcome(out(1, kind="dead"), NOW) == []
    assert offs(r.outcome(out(3), NOW)) == ok(3)
    assert r.counts["late"] == 1 and r.counts["gaps"] == 1 and not r.skipped


def test_skip_mode_without_gap_markers() -> None:
    r = Reorder("skip", gap_markers=False)
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    assert r.outcome(out(1, kind="dead"), NOW) == []
    assert offs(r.outcome(out(2), NOW)) == ok(2)
    assert offs(r.outcome(out(1), NOW)) == [(1, "ok", True)]
    assert r.counts["skipped"] == 1 and r.counts["gaps"] == 0


def test_dead_behind_the_head_replaced_by_ok_is_not_late() -> None:
    for mode in ("skip", "block"):
        r = Reorder(mode)  # type: ignore[arg-type]
        r.announce(ann(1), NOW)
        r.announce(ann(2), NOW)
        r.outcome(out(2, kind="dead"), NOW)
        r.outcome(out(2), NOW)  # replayed before its turn
        r.outcome(out(2, kind="dead"), NOW)  # a dead duplicate does not undo it
        assert offs(r.outcome(out(1), NOW)) == ok(1, 2)


def test_skipped_set_is_bounded() -> None:
    r = Reorder("skip", skipped_max=2)
    for i in (1, 2, 3):
        r.announce(ann(i), NOW)
        r.outcome(out(i, kind="dead"), NOW)
    assert list(r.skipped) == [h.SourceId(T, 0, 2), h.SourceId(T, 0, 3)]
    assert SkipRef(h.SourceId(T, 0, 1)) in r.dirty  # its changelog entry goes too
    assert r.outcome(out(1), NOW) == []  # forgotten: dropped as a duplicate
    assert offs(r.outcome(out(3), NOW)) == [(3, "ok", True)]


def test_block_mode_holds_the_key_until_an_ok_replay() -> None:
    r = Reorder("block")
    for i in (1, 2, 3):
        r.announce(ann(i), NOW)
    r.announce(ann(9, b"other"), NOW)
    r.outcome(out(2), NOW)
    assert r.outcome(out(1, kind="dead"), NOW) == []
    assert r.outcome(out(1, kind="dead"), NOW + 5) == []  # a duplicate keeps the first time
    [(sk, scope)] = r.blocked()
    assert (
        sk == ScopeKey(T, 0, b"k") and scope.blocked_since == NOW and list(scope.fifo) == [1, 2, 3]
    )
    assert offs(r.outcome(out(9, b"other"), NOW)) == ok(9)  # other keys flow
    r.outcome(out(3), NOW)
    assert offs(r.outcome(out(1), NOW + 10)) == ok(1, 2, 3)  # in order, not late
    assert r.blocked() == [] and r.scopes == {}


def test_block_mode_release_skips_and_a_later_replay_is_late() -> None:
    r = Reorder("block")
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    r.outcome(out(2), NOW)
    r.outcome(out(1, kind="dead"), NOW)
    assert offs(r.outcome(out(1, kind="release"), NOW)) == [(1, "dead", False), (2, "ok", False)]
    assert r.outcome(out(1, kind="release"), NOW) == []  # releasing twice is harmless
    assert offs(r.outcome(out(1), NOW)) == [(1, "ok", True)]
    assert r.counts["releases"] == 1 and r.scopes == {}


def test_block_mode_release_ahead_of_the_dead_outcome() -> None:
    r = Reorder("block")
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    r.outcome(out(1, kind="release"), NOW)
    assert r.blocked() == []
    r.outcome(out(2), NOW)
    assert offs(r.outcome(out(1, kind="dead"), NOW)) == [(1, "dead", False), (2, "ok", False)]


def test_block_mode_next_dead_head_blocks_again_with_a_new_time() -> None:
    r = Reorder("block")
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    r.outcome(out(1, kind="dead"), NOW)
    r.outcome(out(2, kind="dead"), NOW)
    assert offs(r.outcome(out(1, kind="release"), NOW + 7)) == [(1, "dead", False)]
    [(_, scope)] = r.blocked()
    assert list(scope.fifo) == [2] and scope.blocked_since == NOW + 7


def test_settle_after_switching_block_to_skip() -> None:
    r = Reorder("block")
    r.announce(ann(1), NOW)
    r.announce(ann(2), NOW)
    r.outcome(out(2), NOW)
    r.outcome(out(1, kind="dead"), NOW)
    assert r.settle(NOW) == []
    r.mode = "skip"
    assert offs(r.settle(NOW)) == [(1, "dead", False), (2, "ok", False)]


def test_orphaned_buffered_outcome_is_emitted_not_held_forever() -> None:
    r = Reorder()
    r.outcome(out(5), NOW)
    r.outcome(out(6, kind="dead"), NOW)
    assert offs(r.announce(ann(7), NOW)) == [(5, "ok", True), (6, "dead", False)]
    assert r.counts["orphans"] == 2
    assert offs(r.outcome(out(7), NOW)) == ok(7)


def test_release_of_an_emitted_identity_is_ignored() -> None:
    r = Reorder("block")
    r.announce(ann(1), NOW)
    r.outcome(out(1), NOW)
    assert r.outcome(out(1, kind="release"), NOW) == [] and r.scopes == {}


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("mode", ["skip", "block"])
def test_random_interleavings_emit_each_identity_once_in_key_order(seed: int, mode: str) -> None:
    """Announcements in order (with ingest replays), outcomes shuffled and duplicated."""
    rnd = random.Random(seed)
    keys = [f"k{i}".encode() for i in range(7)] + [None]
    recs = [(part, off, rnd.choice(keys)) for part in (0, 1) for off in range(60)]
    dead = {(p, o) for p, o, k in recs if rnd.random() < 0.1}
    anns: list[Announcement] = []
    for part in (0, 1):
        mine = [ann(o, k, part) for p, o, k in recs if p == part]
        i = 0
        while i < len(mine):  # forward in order; sometimes re-send an older stretch
            step = rnd.randint(1, 8)
            anns += mine[i : i + step]
            i += step
            if rnd.random() < 0.3:
                back = rnd.randint(1, i)
                anns += mine[i - back : i]
    outs = [out(o, k, "ok", p) for p, o, k in recs if (p, o) not in dead]
    outs += [out(o, k, "dead", p) for p, o, k in recs if (p, o) in dead]
    outs += rnd.sample(outs, len(outs) // 3)  # duplicates
    outs += [out(o, k, "ok", p) for p, o, k in recs if (p, o) in dead]  # successful replays
    rnd.shuffle(outs)
    r = Reorder(mode, skipped_max=1000)  # type: ignore[arg-type]
    emitted: list[Emit] = []
    ai = oi = 0
    while ai < len(anns) or oi < len(outs):
        if oi >= len(outs) or (ai < len(anns) and rnd.random() < 0.5):
            emitted += r.announce(anns[ai], NOW)
            ai += 1
        else:
            emitted += r.outcome(outs[oi], NOW)
            oi += 1
    oks = [e for e in emitted if e.outcome.kind == "ok"]
    idents = [(e.outcome.ident.partition, e.outcome.ident.offset) for e in oks]
    assert sorted(idents) == sorted((p, o) for p, o, _ in recs), "every record once"
    per_key: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for e in emitted:
        if e.outcome.key is not None and not e.late and e.outcome.kind == "ok":
            per_key[(e.outcome.ident.partition, e.outcome.key)].append(e.outcome.ident.offset)
    assert all(v == sorted(v) for v in per_key.values()), "in-order emits follow offsets"
    gaps = [e for e in emitted if e.outcome.kind == "dead"]
    assert len(gaps) == len({(e.outcome.ident.partition, e.outcome.ident.offset) for e in gaps})
    assert r.scopes == {}, "nothing stays pending"
