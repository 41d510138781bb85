"""The sequencer against a real broker: order, duplicates, dead records, block and release.

Announcements go into ``P.work`` as ingest writes them (``sluice.attempt=1``)
and outcomes into ``P.results`` as enrich and the router write them
(:func:`shared.outcomes.ok_result`, :func:`shared.outcomes.dead_outcome`),
keyed by the source key with ``murmur2_random`` so both land in the same
partition number. ``P.output`` is read ``read_committed``.
"""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from devtools.stack.resolve import Stack
from services.sequencer.blocked import read_blocked
from services.sequencer.service import Sequencer
from services.sequencer.settings import SequencerSettings
from shared import headers as h
from shared.errors import DeliveryError
from shared.kafka.provision import create_topics
from shared.kafka.shutdown import StopFlag
from shared.kinds import FailureKind
from shared.outcomes import Failure, Record, dead_outcome, failure_record, ok_result
from shared.settings import load
from tests.support.kafka import produce, read_all, wait_for
from tests.support.running import InThread

pytestmark = pytest.mark.integration

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]
TS0 = int(time.time() * 1000)


def key_of(i: int, keys: int = 5) -> bytes | None:
    """Record ``i``'s key: one of ``keys`` keys, and every seventh record has none."""
    return None if i % 7 == 6 else f"key{i % keys}".encode()


def work(i: int, key: bytes | None, attempt: int = 1, part: int = 0) -> Record:
    src = h.SourceId("src", part, i)
    return Record(key, json.dumps({"i": i}).encode(), h.source_headers(src, TS0 + i, attempt))


def raw(r: Record) -> Raw:
    return r.key, r.value, r.headers


def announce(i: int, key: bytes | None, attempt: int = 1) -> Raw:
    return raw(work(i, key, attempt))


def ok(i: int, key: bytes | None) -> Raw:
    return raw(ok_result(work(i, key), "sentiment", {"n": i}, "fakeprov", "m1", 900, 12, 3))


def dead(i: int, key: bytes | None) -> Raw:
    failed = failure_record(work(i, key, 3), 3, Failure(FailureKind.TIMEOUT, "Hang", "hung"), "p")
    return raw(dead_outcome(failed))


def release(i: int, key: bytes | None) -> Raw:
    src = h.SourceId("src", 0, i)
    return key, None, [*h.source_headers(src, TS0 + i), (h.OUTCOME, b"release")]


def ident(m: Message) -> int:
    return h.source_id(m.headers()).offset


def check_order(out: list[Message]) -> dict[bytes, list[int]]:
    """Per key, the in-order (not late, not gap) offsets; they must increase."""
    per_key: dict[bytes, list[int]] = defaultdict(list)
    for m in out:
        if m.key() is not None and h.get(m.headers(), h.LATE) is None:
            per_key[m.key()].append(ident(m))  # type: ignore[index]
    for k, offs in per_key.items():
        assert offs == sorted(offs), f"key {k!r} out of order: {offs}"
    return per_key


class Running(InThread[Sequencer]):
    """A sequencer in a thread of the test process."""

    def __init__(self, settings: SequencerSettings) -> None:
        stop = StopFlag()
        super().__init__(Sequencer(settings, stop), stop, "sequencer", join_s=90)
        self.seq = self.service


@pytest.fixture
def settings(kafka_env: dict[str, str], pipeline: str) -> SequencerSettings:
    s = load(SequencerSettings, worker_id=f"w-{pipeline}")
    create_topics(s)
    return s


@pytest.fixture
def running(settings: SequencerSettings) -> Iterator[Running]:
    with Running(settings) as r:
        yield r


def test_order_duplicates_early_outcomes_and_unkeyed(
    stack: Stack, pipeline: str, running: Running
) -> None:
    n = 300
    rnd = random.Random(1)
    outcomes = [ok(i, key_of(i)) for i in range(n)]
    rnd.shuffle(outcomes)
    early, late = outcomes[: n // 3], outcomes[n // 3 :]
    # a third of the outcomes arrive before any announcement
    produce(stack.bootstrap, f"{pipeline}.results", early)
    anns = [announce(i, key_of(i)) for i in range(n)]
    # ingest re-sends older stretches (at-least-once); retries are not announcements
    anns = anns[:200] + anns[150:250] + anns[200:] + [announce(i, key_of(i), 2) for i in range(9)]
    produce(stack.bootstrap, f"{pipeline}.work", anns)
    produce(stack.bootstrap, f"{pipeline}.results", late + rnd.sample(outcomes, 60))
    out = read_all(stack.bootstrap, f"{pipeline}.output", expect=n, timeout_s=90, idle_s=3)
    assert sorted(ident(m) for m in out) == list(range(n)), "every record exactly once"
    per_key = check_order(out)
    assert sum(len(v) for v in per_key.values()) == n - n // 7
    m0 = next(m for m in out if ident(m) == 0)
    assert json.loads(m0.value()) == {"enrichment": {"n": 0}, "input": {"i": 0},  # type: ignore[arg-type]
                                      "task": "sentiment", "outcome": "ok"}  # fmt: skip
    assert m0.key() == b"key0" and h.get_str(m0.headers(), h.PROVIDER) == "fakeprov"
    assert h.get_str(m0.headers(), h.OUTCOME) == "ok"
    wait_for(lambda: running.seq.txns.commits > 0 and not running.seq.txn.open, 10, what="idle")
    assert sum(r.pending_scopes for r in running.seq.states.values()) == 0


def test_skip_mode_gap_marker_then_late_replay(
    stack: Stack, pipeline: str, running: Running
) -> None:
    k = b"cust"
    produce(stack.bootstrap, f"{pipeline}.work", [announce(i, k) for i in range(4)])
    produce(stack.bootstrap, f"{pipeline}.results", [ok(2, k), dead(1, k), ok(0, k), ok(3, k)])
    out = read_all(stack.bootstrap, f"{pipeline}.output", expect=4, timeout_s=60, idle_s=1)
    assert [(ident(m), h.get_str(m.headers(), h.OUTCOME)) for m in out] == [
        (0, "ok"), (1, "dead"), (2, "ok"), (3, "ok")]  # fmt: skip
    gap = json.loads(out[1].value())  # type: ignore[arg-type]
    assert (
        gap["outcome"] == "dead" and gap["error"]["kind"] == "timeout" and gap["input"] == {"i": 1}
    )
    produce(stack.bootstrap, f"{pipeline}.results", [ok(1, k), ok(1, k)])  # a replay, twice
    out = read_all(stack.bootstrap, f"{pipeline}.output", expect=5, timeout_s=60, idle_s=2)
    assert len(out) == 5
    assert ident(out[4]) == 1 and h.get_str(out[4].headers(), h.LATE) == "true"
    assert json.loads(out[4].value())["outcome"] == "ok"  # type: ignore[arg-type]


def test_block_mode_holds_and_a_release_unblocks_durably(
    stack: Stack, pipeline: str, settings: SequencerSettings
) -> None:
    s = settings.model_copy(update={"dead_mode": "block"})
    a, b = b"held", b"free"
    results = f"{pipeline}.results"
    with Running(s):
        produce(
            stack.bootstrap, f"{pipeline}.work", [announce(i, a if i < 3 else b) for i in range(5)]
        )
        produce(stack.bootstrap, results, [dead(0, a), ok(1, a), ok(2, a), ok(3, b), ok(4, b)])
        out = read_all(stack.bootstrap, f"{pipeline}.output", expect=2, timeout_s=60, idle_s=3)
        assert sorted(ident(m) for m in out) == [3, 4], "the free key flows, the held one waits"
        wait_for(lambda: len(read_blocked(s)) == 1, 30, what="the blocked key in the changelog")
    [blocked] = read_blocked(s)
    assert (blocked.key, blocked.offset, blocked.waiting, blocked.error_kind) == (
        a,
        0,
        3,
        "timeout",
    )
    with Running(s) as again:  # restored from the changelog: still held
        wait_for(lambda: len(again.seq.states) == 3, 60, what="assignment and restore")
        assert [len(r.blocked()) for r in again.seq.states.values()].count(1) == 1
        produce(stack.bootstrap, results, [release(0, a)])
        out = read_all(stack.bootstrap, f"{pipeline}.output", expect=5, timeout_s=60, idle_s=1)
        held = [m for m in out if m.key() == a]
        assert [(ident(m), h.get_str(m.headers(), h.OUTCOME)) for m in held] == [
            (0, "dead"), (1, "ok"), (2, "ok")]  # fmt: skip
    assert read_blocked(s) == []
    with Running(s):  # the release was durable: nothing again, and a replay is late
        produce(stack.bootstrap, results, [release(0, a), ok(0, a)])
        out = read_all(stack.bootstrap, f"{pipeline}.output", expect=6, timeout_s=60, idle_s=3)
    assert len(out) == 6
    assert [ident(m) for m in out if h.get_str(m.headers(), h.LATE) == "true"] == [0]


class FlakyProducer:
    """The real producer, but the ``fail_on``-th commit raises an abortable error, once
    the transaction's records have reached the broker (a commit flushes first; without
    this, the abort could discard them from the local queue and the test would not see
    that an aborted transaction's records stay invisible)."""

    def __init__(self, real: Producer, fail_on: int) -> None:
        self.real, self.fail_on, self.commits = real, fail_on, 0

    def commit_transaction(self, *args: float) -> None:
        self.commits += 1
        if self.commits == self.fail_on:
            assert self.real.flush(30) == 0
            err = KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True)
            raise KafkaException(err)
        self.real.commit_transaction(*args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.real, name)


def test_abortable_error_rewinds_to_the_last_commit(
    stack: Stack, pipeline: str, settings: SequencerSettings
) -> None:
    n = 200
    rnd = random.Random(3)
    running = Running(settings)
    running.seq.txn.producer = FlakyProducer(running.seq.txn.producer, fail_on=2)  # type: ignore[assignment]
    with running:
        for lo in (0, n // 2):  # two rounds: the second transaction with records is aborted
            outs = [ok(i, key_of(i)) for i in range(lo, lo + n // 2)]
            rnd.shuffle(outs)
            produce(stack.bootstrap, f"{pipeline}.work", [announce(i, key_of(i)) for i in range(lo, lo + n // 2)])  # fmt: skip
            produce(stack.bootstrap, f"{pipeline}.results", outs)
            time.sleep(0.5)
        out = read_all(stack.bootstrap, f"{pipeline}.output", expect=n, timeout_s=60, idle_s=2)
        assert running.seq.txns.aborts == 1
    assert sorted(ident(m) for m in out) == list(range(n))
    check_order(out)
    everything = read_all(stack.bootstrap, f"{pipeline}.output", idle_s=1, committed_only=False)
    assert len(everything) > n, "the aborted transaction had written records, now invisible"


def test_a_fenced_instance_stops_and_its_successor_carries_on(
    stack: Stack, pipeline: str, settings: SequencerSettings
) -> None:
    k = b"one"
    produce(stack.bootstrap, f"{pipeline}.work", [announce(i, k) for i in range(3)])
    old = Running(settings).__enter__()
    produce(stack.bootstrap, f"{pipeline}.results", [ok(0, k)])
    assert len(read_all(stack.bootstrap, f"{pipeline}.output", expect=1, timeout_s=60)) == 1
    # a newer instance with the same transactional id takes over the producer
    zombie_killer = Producer({"bootstrap.servers": stack.bootstrap,
                              "transactional.id": settings.transactional_id})  # fmt: skip
    zombie_killer.init_transactions(30)
    produce(stack.bootstrap, f"{pipeline}.results", [ok(1, k)])
    old.thread.join(60)
    assert isinstance(old.error, DeliveryError) and "fenced" in str(old.error).lower()
    with Running(settings):
        produce(stack.bootstrap, f"{pipeline}.results", [ok(2, k)])
        out = read_all(stack.bootstrap, f"{pipeline}.output", expect=3, timeout_s=60, idle_s=2)
    assert [ident(m) for m in out] == [0, 1, 2]
