"""A replay task's walk over its DLQ (I/O, blocking): records in (partition, offset) order.

    walk = Walk(consumer, topic, ends)
    walk.seek(partition, offset)          # where the task's progress says to go on
    step = walk.next(0.2)                 # a Consumed, PENDING (nothing yet), or None (done)

Partition by partition in ascending order, each from the given offset to its
``end`` (the end it had when the task started; ``read_committed``, so
records of aborted transactions are never seen), which is the order of the
dry run's selection. The consumer is assigned (no group, never commits).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from typing import Final

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.envelope import Consumed


class _Pending:
    """Nothing to hand out yet; ask again."""


PENDING: Final = _Pending()


class Walk:
    def __init__(self, consumer: Consumer, topic: str, ends: Mapping[int, int]) -> None:
        self.consumer = consumer
        self.topic = topic
        self.ends = dict(ends)
        self.partition = -1
        self.offset = 0
        self._assigned: int | None = None
        self._buffer: deque[Consumed] = deque()

    def seek(self, partition: int, offset: int) -> None:
        """Go on from ``offset`` of ``partition`` (later partitions from their start)."""
        self.partition, self.offset = partition, offset
        self._buffer.clear()
        self._assigned = None

    def next(self, timeout: float) -> Consumed | _Pending | None:
        while True:
            if self._buffer:
                return self._buffer.popleft()
            later = [p for p in sorted(self.ends) if p >= self.partition]
            if not later:
                return None
            if later[0] != self.partition:
                self.partition, self.offset = later[0], 0
            if self.offset >= self.ends[self.partition]:
                self.partition, self.offset = self.partition + 1, 0
                continue
            if self._assigned != self.partition:
                self.consumer.assign([TopicPartition(self.topic, self.partition, self.offset)])
                self._assigned = self.partition
            if not self._fetch(timeout):
                return PENDING

    def _fetch(self, timeout: float) -> bool:
        """Buffer what the consumer has of this partition; False if it had nothing yet."""
        end = self.ends[self.partition]
        for m in self.consumer.consume(500, timeout):
            if (m.partition() or 0) != self.partition:
                continue
            err = m.error()
            if err is not None and err.code() == KafkaError._PARTITION_EOF:
                self.offset = end  # read_committed's end now is at or past the task's end
                return True
            if err is not None:
                if err.fatal():
                    raise KafkaException(err)
                continue
            offset = m.offset() or 0
            if offset >= end:
                self.offset = end
                return True
            self._buffer.append(Consumed.of(m))
            self.offset = offset + 1
        return bool(self._buffer) or self.offset >= end
