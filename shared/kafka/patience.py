"""Broker calls repeated while they fail in a way that passes (I/O, blocking).

    offsets = committed(consumer, parts, deadline)   # the group's offsets, checked
    lo, hi = patiently(lambda: consumer.get_watermark_offsets(tp, 10), deadline)

A pending transaction's offsets, a new topic's leader, a coordinator that moves
or loads: these answer with an error that goes away. A call that keeps
failing past its deadline, or fails in a way that does not pass, raises.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

TRANSIENT = frozenset({
    KafkaError._TIMED_OUT, KafkaError.UNSTABLE_OFFSET_COMMIT, KafkaError._TRANSPORT,
    KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.FENCED_LEADER_EPOCH,
    KafkaError.UNKNOWN_LEADER_EPOCH, KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.NOT_COORDINATOR, KafkaError._WAIT_COORD,
})  # fmt: skip
"""Errors that pass (a pending transaction, a new topic's leader, a moving coordinator)."""

T = TypeVar("T")


def patiently(call: Callable[[], T], deadline: float) -> T:
    """Repeat ``call`` while it fails transiently, until ``deadline`` (monotonic)."""
    while True:
        try:
            return call()
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            transient = isinstance(err, KafkaError) and (err.retriable() or err.code() in TRANSIENT)
            if not transient or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def committed(consumer: Consumer, parts: list[TopicPartition], deadline: float) -> list[TopicPartition]:  # fmt: skip
    """Committed offsets, waiting while a transaction holding some is pending.

    librdkafka answers a partition it could not get an offset for with that
    partition's error and no offset, not with an exception (a pending transaction's
    ``UNSTABLE_OFFSET_COMMIT`` once its own retries are spent): taken as "nothing
    committed", the partition would be read again from its beginning against a
    newer state. Such a partition is asked again like a failed call, and an error
    that does not pass is raised."""

    def ask() -> list[TopicPartition]:
        # one ask waits up to 5 s, never much past the deadline
        timeout = max(0.5, min(5.0, deadline - time.monotonic()))
        got: list[TopicPartition] = consumer.committed(parts, timeout=timeout)
        for tp in got:
            if tp.error is not None:
                raise KafkaException(tp.error)
        return got

    return patiently(ask, deadline)
