"""The Watermarked commit strategy, on the in-memory consumer (no servers)."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from shared.kafka.commits import CLOSE_RESERVE_S, DEFAULT_DRAIN_S, Watermarked, drain_budget
from shared.kafka.message import TP
from shared.kafka.shutdown import StopFlag
from tests.support.memkafka import MemBroker, MemConsumer

P0: TP = ("in", 0)
P1: TP = ("in", 1)


class Drains:
    """The stage's drain: records what it was asked, and finishes what it is told to."""

    def __init__(self) -> None:
        self.calls: list[tuple[set[TP] | None, float]] = []
        self.finishing: list[tuple[TP, int]] = []  # finished during the next drain
        self.w: Watermarked | None = None

    def __call__(self, tps: set[TP] | None, grace_s: float) -> None:
        self.calls.append((None if tps is None else set(tps), grace_s))
        assert self.w is not None
        for tp, offset in self.finishing:
            self.w.marks.finish(tp, offset)
        self.finishing = []


class FailingOnce(MemConsumer):
    def __init__(self, broker: MemBroker) -> None:
        super().__init__(broker, {"group.id": "g"})
        self.fail = 1

    def commit(self, message: object = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> None:  # fmt: skip
        if self.fail:
            self.fail -= 1
            raise KafkaException(KafkaError(KafkaError.REQUEST_TIMED_OUT, "injected"))
        super().commit(message, offsets, asynchronous)


@pytest.fixture
def broker() -> MemBroker:
    b = MemBroker()
    b.create_topic("in", 2)
    return b


def make(broker: MemBroker, stop: StopFlag | None = None,
         consumer: MemConsumer | None = None) -> tuple[Watermarked, Drains]:  # fmt: skip
    drains = Drains()
    c = consumer or broker.consumer({"group.id": "g"})
    w = Watermarked(c, drains, stop or StopFlag(), 3600, revoke_grace_s=7.0)  # type: ignore[arg-type]
    drains.w = w
    return w, drains


def committed(broker: MemBroker) -> dict[TP, int]:
    return dict(broker.groups.get("g", {}))


def track(w: Watermarked, tp: TP, offsets: range) -> None:
    for o in offsets:
        w.marks.track(tp, o)


def test_commits_only_below_the_first_record_not_acknowledged(broker: MemBroker) -> None:
    w, _ = make(broker)
    track(w, P0, range(5))
    for o in (4, 2, 3, 1):  # out of order; offset 0 is still in flight
        w.marks.finish(P0, o)
    w.commit()
    assert committed(broker) == {}, "committed past a record whose outcome is not acknowledged"
    w.marks.finish(P0, 0)
    w.commit()
    assert committed(broker) == {P0: 5}


def test_commits_each_watermark_once(broker: MemBroker) -> None:
    w, _ = make(broker)
    track(w, P0, range(2))
    w.marks.finish(P0, 0)
    w.commit()
    broker.groups["g"][P0] = -1  # a commit of the same watermark again would show
    w.commit()
    assert committed(broker) == {P0: -1}
    w.marks.finish(P0, 1)
    w.commit()
    assert committed(broker) == {P0: 2}


def test_due_once_the_interval_passed(broker: MemBroker) -> None:
    w, _ = make(broker)
    assert not w.due(caught_up=True)
    w.interval_s = 0.0
    assert w.due(caught_up=False)
    assert w.wait(0.25) == 0.25 and not w.rewind_due


def test_revoke_drains_those_partitions_then_commits_what_is_safe_of_them(
    broker: MemBroker,
) -> None:
    w, drains = make(broker)
    track(w, P0, range(4))
    track(w, P1, range(3))
    w.marks.finish(P1, 0)
    drains.finishing = [(P0, 0), (P0, 1), (P0, 3)]  # offset 2 does not finish within the grace
    w.revoke({P0})
    assert drains.calls == [({P0}, 7.0)]
    assert committed(broker) == {P0: 2}, "the revoke committed too much, or another partition"
    w.lose({P0})
    assert w.marks.committable(P0) is None and P0 not in w.committed


def test_a_lost_partition_commits_nothing_and_starts_afresh(broker: MemBroker) -> None:
    w, _ = make(broker)
    track(w, P0, range(3))
    w.marks.finish(P0, 0)
    w.commit()
    w.lose({P0})
    track(w, P0, range(1))  # re-assigned: read again from the commit
    w.marks.finish(P0, 0)
    broker.groups["g"].clear()
    w.commit()
    assert committed(broker) == {P0: 1}, "the watermark of the lost assignment was kept"


def test_a_stop_drains_everything_within_the_grace_less_the_reserve(broker: MemBroker) -> None:
    stop = StopFlag(grace_s=20.0)
    w, drains = make(broker, stop)
    track(w, P0, range(2))
    track(w, P1, range(2))
    drains.finishing = [(P0, 0), (P1, 0), (P1, 1)]
    stop.set("test")
    w.final()
    [(tps, budget)] = drains.calls
    assert tps is None
    assert 20.0 - CLOSE_RESERVE_S - 5 < budget <= 20.0 - CLOSE_RESERVE_S
    assert committed(broker) == {P0: 1, P1: 2}


def test_close_after_a_failure_commits_what_is_safe_and_a_clean_close_nothing(
    broker: MemBroker,
) -> None:
    w, drains = make(broker)
    track(w, P0, range(2))
    w.marks.finish(P0, 0)
    w.close(failed=False)
    assert drains.calls == [] and committed(broker) == {}
    w.close(failed=True)
    assert drains.calls == [(None, DEFAULT_DRAIN_S)] and committed(broker) == {P0: 1}


def test_a_failed_commit_is_tried_again(broker: MemBroker) -> None:
    w, _ = make(broker, consumer=FailingOnce(broker))
    track(w, P0, range(1))
    w.marks.finish(P0, 0)
    w.commit()
    assert committed(broker) == {} and w.committed == {}
    w.commit()
    assert committed(broker) == {P0: 1}


def test_the_drain_budget() -> None:
    assert drain_budget(None, 100.0) == DEFAULT_DRAIN_S
    assert drain_budget(110.0, 100.0) == pytest.approx(10.0 - CLOSE_RESERVE_S)
    assert drain_budget(101.0, 100.0) == 0.0


def test_a_stop_commits_every_watermark_again(broker: MemBroker) -> None:
    """An asynchronous commit may fail unseen (in a rebalance): the last commit repeats it."""
    w, _ = make(broker)
    track(w, P0, range(1))
    w.marks.finish(P0, 0)
    w.commit()
    broker.groups["g"].clear()  # the broker refused it; nobody told the consumer
    w.final()
    assert committed(broker) == {P0: 1}
