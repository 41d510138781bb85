"""Kafka helpers of the sequencer loop (I/O): retries, start offsets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, KafkaError, KafkaException, TopicPartition

T = TypeVar("T")
TP = tuple[str, int]


def start_offset(offsets: dict[TP, int], p: TopicPartition) -> TopicPartition:
    """Where to read ``p`` from: its committed offset, else the beginning."""
    off = offsets.get((p.topic, p.partition), -1)
    return TopicPartition(p.topic, p.partition, off if off >= 0 else OFFSET_BEGINNING)


def retry(call: Callable[[], T], attempts: int = 5) -> T:
    """Repeat a transactional call while librdkafka says the error is retriable."""
    for i in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if i == attempts - 1 or not (isinstance(err, KafkaError) and err.retriable()):
                raise
            time.sleep(0.1 * (i + 1))
    raise AssertionError("unreachable")
