"""A bounded read of one DLQ topic (I/O, blocking: the API runs it in a worker thread).

    scan = read(settings, topic, start, Budget(seconds, records), visit)

One consumer, assigned (no group membership, never commits), reads every
partition ``read_committed`` from ``start`` (the next offset per partition;
a partition not in it, or below the log start, from its first record) up to
the end it had when the read began, handing each record to ``visit`` in
offset order per partition. ``visit`` returns False to stop after that
record (a full page). The read also stops when the time or record budget is
spent, so a huge DLQ never holds a request: :class:`Scan` says where each
partition stopped and whether every partition was read to its end.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.envelope import Consumed
from shared.errors import StackError
from shared.kafka.config import BOUNDED_READ, TAIL_READ, consumer_config
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

Visit = Callable[[Consumed], bool]


@dataclass(frozen=True, slots=True)
class Budget:
    seconds: float
    records: int


@dataclass(frozen=True, slots=True)
class Scan:
    positions: dict[int, int]  # the next offset to read, per partition
    complete: bool  # every partition was read to the end it had when the read began
    scanned: int  # records handed to visit
    size: int  # offsets between each partition's start and end when the read began, summed
    # (transaction markers count: an upper bound of the records)


def reading_consumer(settings: CommonSettings, fetch: Mapping[str, int] = BOUNDED_READ) -> Consumer:  # fmt: skip
    """An assign-only ``read_committed`` consumer that reports each partition's end, and
    whose fetches are answered as soon as there is anything to read (``BOUNDED_READ``)."""
    return Consumer(consumer_config(settings, f"{settings.pipeline}.admin.dlq", **{
        "enable.partition.eof": True, "statistics.interval.ms": 0, **fetch}))  # fmt: skip


def tailing_consumer(settings: CommonSettings) -> Consumer:
    """:func:`reading_consumer` for a :class:`~services.admin.dlq.tail.Tail` of a busy
    topic: its fetches wait up to 100 ms for more records (``TAIL_READ``)."""
    return reading_consumer(settings, TAIL_READ)


def read(settings: CommonSettings, topic: str, start: Mapping[int, int], budget: Budget,
         visit: Visit) -> Scan:  # fmt: skip
    """Read ``topic`` within ``budget`` (see the module doc); StackError if Kafka fails."""
    consumer = reading_consumer(settings)
    try:
        return read_with(consumer, topic, start, budget, visit)
    finally:
        consumer.close()


def read_with(consumer: Consumer, topic: str, start: Mapping[int, int], budget: Budget,
              visit: Visit) -> Scan:  # fmt: skip
    """:func:`read` with a consumer of the caller's (one that reads again and again)."""
    try:
        return _Read(consumer, topic, budget, visit).run(start)
    except KafkaException as exc:
        raise StackError(f"cannot read {topic}: {exc}") from exc


def passing(exc: StackError) -> bool:
    """``exc`` (from :func:`read_with`) came from a Kafka error that is not fatal, such as a
    timeout of a busy broker: reading again later may work."""
    cause = exc.__cause__
    return isinstance(cause, KafkaException) and not cause.args[0].fatal()


def passing_error(err: KafkaError, topic: str, partition: int) -> None:
    """A record-level error of a read: a fatal one is raised; any other is logged and
    passed over (the consumer goes on by itself)."""
    if err.fatal():
        raise KafkaException(err)
    log.warning("reading %s[%d]: %s", topic, partition, err.str())


class _Read:
    def __init__(self, consumer: Consumer, topic: str, budget: Budget, visit: Visit) -> None:
        self.consumer = consumer
        self.topic = topic
        self.budget = budget
        self.visit = visit
        self.deadline = time.monotonic() + budget.seconds
        self.scanned = 0

    def run(self, start: Mapping[int, int]) -> Scan:
        positions, ends = self._bounds(start)
        size = sum(ends[p] - positions[p] for p in positions)
        pending = {p for p in positions if positions[p] < ends[p]}
        if pending:
            self.consumer.assign([TopicPartition(self.topic, p, positions[p]) for p in pending])
            self._consume(positions, ends, pending)
        return Scan(positions, not pending, self.scanned, size)

    def _left(self) -> float:
        return self.deadline - time.monotonic()

    def _bounds(self, start: Mapping[int, int]) -> tuple[dict[int, int], dict[int, int]]:
        timeout = max(0.5, self._left())
        md = self.consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            raise StackError(f"topic {self.topic!r} does not exist: run `sluice topics create`")
        positions, ends = {}, {}
        for p in sorted(md.partitions):
            lo, hi = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=max(0.5, self._left())
            )
            positions[p] = min(max(lo, start.get(p, lo)), hi)
            ends[p] = hi
        return positions, ends

    def _consume(self, positions: dict[int, int], ends: dict[int, int], pending: set[int]) -> None:
        while pending and self.scanned < self.budget.records and (left := self._left()) > 0:
            for m in self.consumer.consume(500, min(left, 0.2)):
                p = m.partition() or 0
                if p not in pending or m.topic() != self.topic:
                    continue  # fetched for an earlier read of this consumer
                err = m.error()
                if err is not None and err.code() == KafkaError._PARTITION_EOF:
                    # the end of what read_committed may read now (an open transaction ends it)
                    positions[p] = max(positions[p], m.offset() or 0)
                    pending.discard(p)
                    continue
                if err is not None:
                    passing_error(err, self.topic, p)
                    continue
                if self.scanned >= self.budget.records:
                    return
                self.scanned += 1
                offset = m.offset() or 0
                positions[p] = offset + 1
                if positions[p] >= ends[p]:
                    pending.discard(p)
                if not self.visit(Consumed.of(m)):
                    return
