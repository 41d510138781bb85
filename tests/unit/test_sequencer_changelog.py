"""State ↔ changelog records (pure): writes, tombstones, restore, blocked keys."""

from __future__ import annotations

import json
import random

from services.sequencer.blocked import blocked_keys, from_changelog
from services.sequencer.changelog import Change, Changelog, latest, restore
from services.sequencer.reorder import Reorder
from shared import headers as h
from tests.unit.test_sequencer_reorder import NOW, T, ann, offs, ok, out


def test_emitted_within_one_transaction_writes_only_the_counter() -> None:
    r, log = Reorder(), Changelog()
    r.announce(ann(1), NOW)
    r.outcome(out(1), NOW)
    assert [json.loads(k) for k, _ in log.changes(r)] == [["m", T, 0]]
    assert r.dirty == set()


def test_pending_slot_is_written_then_tombstoned() -> None:
    r, log = Reorder(), Changelog()
    r.announce(ann(1), NOW)
    first = dict(log.changes(r))
    slot_key = next(k for k in first if json.loads(k)[0] == "o")
    assert json.loads(first[slot_key]) == {"a": True, "r": False, "b": None, "o": None}
    r.outcome(out(1), NOW)
    assert log.changes(r) == [(slot_key, None)]
    assert log.changes(r) == []  # nothing dirty, nothing written


def test_restore_rebuilds_the_same_state() -> None:
    r, log = Reorder("block", skipped_max=5), Changelog()
    recs: list[Change] = []
    for i in range(1, 6):
        r.announce(ann(i), NOW)  # key k: 1..5
    r.outcome(out(3), NOW)
    r.outcome(out(8, b"z"), NOW)  # buffered, never announced
    r.announce(ann(6, b"d"), NOW)
    r.outcome(out(6, b"d", "dead"), NOW + 1)  # blocks key d
    r.outcome(out(9, None, "dead"), NOW)  # unkeyed: skipped
    r.outcome(out(10, None), NOW)  # unkeyed: seen
    recs += log.changes(r)
    r.outcome(out(1), NOW)  # emits 1; 2 waits
    recs += log.changes(r)
    back, _ = restore(recs, "block", skipped_max=5)
    assert back.announced == r.announced
    assert back.skipped == r.skipped and back.seen == r.seen and back.seq == r.seq
    assert set(back.scopes) == set(r.scopes)
    for sk, scope in r.scopes.items():
        b = back.scopes[sk]
        assert list(b.fifo) == list(scope.fifo) and b.blocked_since == scope.blocked_since
        assert b.slots == scope.slots and sorted(b.early) == sorted(scope.early)
    assert [(b.key, b.offset, b.since_ms) for b in blocked_keys({0: back}, NOW)] == [
        (b"d", 6, NOW + 1)
    ]
    # both go on the same way
    for state in (r, back):
        assert offs(state.outcome(out(2), NOW)) == ok(2, 3)
        assert offs(state.outcome(out(10, None), NOW)) == []
        assert offs(state.outcome(out(9, None), NOW)) == [(9, "ok", True)]


def test_random_runs_restore_at_any_transaction_boundary() -> None:
    rnd = random.Random(7)
    r, log = Reorder(), Changelog()
    recs: list[Change] = []
    pending_outs = []
    for off in range(200):
        key = rnd.choice([b"a", b"b", b"c", None])
        r.announce(ann(off, key), NOW)
        pending_outs.append(out(off, key, rnd.choice(["ok", "ok", "ok", "dead"])))
        rnd.shuffle(pending_outs)
        for _ in range(rnd.randint(0, 2)):
            if pending_outs:
                r.outcome(pending_outs.pop(), NOW)
        if rnd.random() < 0.3:
            recs += log.changes(r)
            back, back_log = restore(recs)
            assert set(back.scopes) == set(r.scopes)
            assert all(back.scopes[s].slots == r.scopes[s].slots for s in r.scopes)
            assert back.announced == r.announced and back.skipped == r.skipped
            assert back_log.persisted == log.persisted
    assert set(latest(recs)) == log.persisted


def test_latest_applies_tombstones_and_last_value() -> None:
    assert latest([(b"a", b"1"), (b"b", b"1"), (b"a", None), (b"b", b"2")]) == {b"b": b"2"}


def test_bad_entries_are_counted_not_fatal() -> None:
    r, _ = restore([(b"not json", b"{}"), (json.dumps(["x"]).encode(), b"{}"),
                    (json.dumps(["m", T, 0]).encode(), b'{"max": 4}')])  # fmt: skip
    assert r.counts["bad_state_entries"] == 2 and r.announced == {(T, 0): 4}


def test_a_lowered_bound_trims_on_restore() -> None:
    r, log = Reorder(skipped_max=10), Changelog()
    for i in range(4):
        r.announce(ann(i), NOW)
        r.outcome(out(i, kind="dead"), NOW)
    back, back_log = restore(log.changes(r), skipped_max=2)
    assert [i.offset for i in back.skipped] == [2, 3]
    assert sum(1 for _, v in back_log.changes(back) if v is None) == 2


def test_blocked_keys_from_changelog_carry_error_and_age() -> None:
    r, log = Reorder("block"), Changelog()
    r.announce(ann(4, b"x"), NOW)
    r.announce(ann(5, b"x"), NOW)
    dead = out(4, b"x", "dead")
    dead = type(dead)(dead.ident, dead.key, "dead", dead.value,
                      (*dead.headers, (h.ERROR_KIND, b"timeout"), (h.ERROR_MESSAGE, b"slow")))  # fmt: skip
    r.outcome(dead, NOW)
    [b] = from_changelog({2: log.changes(r)}, now_ms=NOW + 90_000)
    assert (b.partition, b.key, b.offset, b.waiting) == (2, b"x", 4, 2)
    assert b.ident == h.SourceId(T, 0, 4)
    assert b.age_s == 90 and b.error_kind == "timeout" and b.error_message == "slow"
