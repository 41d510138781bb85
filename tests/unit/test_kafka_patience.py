"""The checked read of committed offsets (pure: a stand-in consumer)."""

from __future__ import annotations

import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.kafka.patience import committed


class Answers:
    """A consumer whose ``committed`` gives one prepared answer per call."""

    def __init__(self, *answers: list[TopicPartition]) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.timeouts: list[float] = []

    def committed(self, parts: list[TopicPartition], timeout: float) -> list[TopicPartition]:
        self.calls += 1
        self.timeouts.append(timeout)
        return self.answers.pop(0)


def part(offset: int, error: KafkaError | None = None) -> TopicPartition:
    """What librdkafka answers for one partition (its ``error`` cannot be set on a real one)."""
    tp = SimpleNamespace(topic="p.work", partition=0, offset=offset, error=error)
    return cast(TopicPartition, tp)


def ask(consumer: Any, within_s: float = 30.0) -> list[TopicPartition]:
    return committed(cast(Consumer, consumer), [TopicPartition("p.work", 0)],
                     time.monotonic() + within_s)  # fmt: skip


def test_a_partition_answered_with_a_passing_error_is_asked_again() -> None:
    pending = KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT)
    consumer = Answers([part(-1001, pending)], [part(42)])
    [tp] = ask(consumer)
    assert (tp.offset, consumer.calls) == (42, 2)


def test_a_partition_answered_with_an_error_that_does_not_pass_is_raised() -> None:
    consumer = Answers([part(-1001, KafkaError(KafkaError.GROUP_AUTHORIZATION_FAILED))])
    with pytest.raises(KafkaException):
        ask(consumer)
    assert consumer.calls == 1


def test_a_pending_offset_past_the_deadline_is_raised_not_read_from_the_beginning() -> None:
    pending = KafkaError(KafkaError.UNSTABLE_OFFSET_COMMIT)
    consumer = Answers(*[[part(-1001, pending)] for _ in range(3)])
    with pytest.raises(KafkaException):
        ask(consumer, within_s=0.3)


def test_one_ask_waits_at_most_five_seconds_and_not_past_the_deadline() -> None:
    far, near = Answers([part(1)]), Answers([part(2)])
    ask(far, within_s=60)
    ask(near, within_s=2)
    assert far.timeouts == [5.0]
    assert 0.5 <= near.timeouts[0] <= 2.0
