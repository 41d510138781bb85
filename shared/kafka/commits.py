"""How offsets move: the three commit strategies of :class:`shared.kafka.loop.ConsumerLoop`.

None ever commits an offset before what was produced for the records below it
is durable. The first two keep ``pending``: the next offset to read per
partition, for records handled since the last commit (the stage notes it once
a record's outputs are produced):

* :class:`Checkpoints` (ingest: forwards in order at high rates): about once a
  second, and on revoke and stop, flush the producer (everything produced
  before is acknowledged, or :class:`~shared.errors.DeliveryError`) and then
  commit the offsets noted before the flush;
* :class:`Transactions` (router, sequencer: consume → produce exactly once):
  the records and the offsets go into one Kafka transaction
  (:class:`shared.kafka.txn.TxnProducer`), committed on a
  :class:`TxnSchedule`, on revoke and on stop. An aborted transaction rewinds
  the stage to the last commit (:meth:`TxnHooks.rewind`).

The third keeps a :class:`~shared.watermark.Watermarks` instead, for records
that finish out of order (enrich, :mod:`shared.kafka.concurrent`):

* :class:`Watermarked`: about once a second commit, per partition, the offset
  below which every record's outcome was acknowledged. On revoke, the records
  in flight of those partitions get ``revoke_grace_s`` to finish before what is
  safe is committed; on stop, every record gets what the grace period leaves
  (:func:`drain_budget`). What does not finish stays uncommitted: the next
  owner reads it again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from shared.errors import DeliveryError
from shared.kafka.message import TP
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnAborted, TxnProducer
from shared.watermark import Watermarks

log = logging.getLogger(__name__)


def _offsets(positions: dict[TP, int]) -> list[TopicPartition]:
    return [TopicPartition(t, p, o) for (t, p), o in positions.items()]


class _ConsumerCommits:
    """Offsets committed by the consumer about every ``interval_s`` (no transactions)."""

    rewind_due = False  # nothing is ever rolled back

    def __init__(self, consumer: Consumer, interval_s: float) -> None:
        self.consumer = consumer
        self.interval_s = interval_s
        self.committed: dict[TP, int] = {}
        self.last = time.monotonic()

    def wait(self, default: float) -> float:
        return default

    def due(self, caught_up: bool) -> bool:
        return time.monotonic() - self.last >= self.interval_s

    def aborted(self, exc: TxnAborted, rewind: bool) -> None:
        raise exc  # no transactions here

    def rewind(self) -> None:
        return

    def commit_result(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        """librdkafka's answer to a commit (the consumer's ``on_commit``, served by its poll).

        A background commit is noted as done when sent; if the broker refused it
        (a rebalance, the coordinator moving), its offsets are forgotten here, so
        the next commit sends them again instead of skipping them as committed."""
        refused = [p for p in parts if err is not None or p.error is not None]
        if not refused or (err is not None and err.code() == KafkaError._NO_OFFSET):
            return
        for p in refused:
            tp = (p.topic, p.partition)
            if self.committed.get(tp) == p.offset:
                del self.committed[tp]
        log.warning("commit of %s refused (%s): sent again with the next commit",
                    sorted((p.topic, p.partition) for p in refused), err or refused[0].error)  # fmt: skip

    def _send(self, positions: dict[TP, int], asynchronous: bool) -> bool:
        """Commit the positions not committed yet (False: there were none)."""
        offsets = [tp for tp in _offsets(positions)
                   if self.committed.get((tp.topic, tp.partition)) != tp.offset]  # fmt: skip
        if not offsets:
            return False
        if asynchronous:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        else:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        self.committed.update(positions)
        return True


class Checkpoints(_ConsumerCommits):
    """Commit the offsets noted before a flush, once the flush returned."""

    def __init__(self, consumer: Consumer, flush: Callable[[], None], interval_s: float,
                 on_commit: Callable[[], None] | None = None) -> None:  # fmt: skip
        super().__init__(consumer, interval_s)
        self.flush = flush  # returns once everything produced is acknowledged; else raises
        self.on_commit = on_commit
        self.pending: dict[TP, int] = {}

    def commit(self) -> None:
        self.checkpoint(asynchronous=True)

    def checkpoint(self, asynchronous: bool, only: set[TP] | None = None) -> None:
        """Flush, then commit the positions noted before the flush."""
        self.last = time.monotonic()
        positions = {tp: o for tp, o in self.pending.items() if only is None or tp in only}
        self.flush()
        if self._send(positions, asynchronous) and self.on_commit is not None:
            self.on_commit()

    def final(self) -> None:
        """Flush and commit; a failure commits nothing (the records are read again)."""
        try:
            self.checkpoint(asynchronous=False)
        except (DeliveryError, KafkaException):
            log.exception("final checkpoint failed; uncommitted records will be re-read")
            raise

    def revoke(self, tps: set[TP]) -> None:
        try:
            self.checkpoint(asynchronous=False, only=tps)
        except (DeliveryError, KafkaException):
            log.exception(
                "checkpoint on revoke failed; the next owner re-reads from the last commit"
            )

    def lose(self, tps: set[TP]) -> None:
        for tp in tps:
            self.pending.pop(tp, None)
            self.committed.pop(tp, None)

    def close(self, failed: bool) -> None:
        if failed:  # what was acknowledged before the error may still be committed
            self.final()


@dataclass(frozen=True)
class TxnSchedule:
    """When an open transaction commits (pure).

    Every ``interval_s`` of the transaction's age, or after ``max_events``
    handled records; with ``min_interval_s``, as soon as output waits
    (``urgent``) and nothing more is queued, once ``min_interval_s`` have passed
    since the previous commit ended (``idle``). So a record that arrives after
    a quiet spell is committed at once, and under load commits are at most one
    per ``min_interval_s`` (plus the commit's own time), each taking what
    queued meanwhile: the cadence follows the load.
    """

    interval_s: float
    min_interval_s: float | None = None
    max_events: int | None = None

    def due(self, age: float, events: int, urgent: bool, caught_up: bool, idle: float) -> bool:
        if age >= self.interval_s or (self.max_events is not None and events >= self.max_events):
            return True
        early = self.min_interval_s
        return early is not None and caught_up and urgent and idle >= early

    def wait(self, age: float, urgent: bool, default: float, idle: float) -> float:
        """How long a poll may wait for more input before the commit is due."""
        due = self.interval_s - age
        if urgent and self.min_interval_s is not None:
            due = min(due, self.min_interval_s - idle)
        return max(0.0, min(default, due))


class TxnHooks(Protocol):
    """What a transactional stage does around its transactions (subclass it for the no-op
    defaults)."""

    def before_commit(self) -> None:
        """Last records into the open transaction (state changes)."""
        return None

    def committed(self, offsets: dict[TP, int]) -> None:
        """The transaction is committed, with these offsets."""
        return None

    def aborted(self) -> None:
        """The open transaction is aborted: drop what was noted for it."""
        return None

    def rewind(self) -> None:
        """Back to the last commit (state and consumer positions)."""


class Transactions:
    """Records and offsets in one Kafka transaction; an abort rewinds to the last commit."""

    def __init__(self, consumer: Consumer, txn: TxnProducer, hooks: TxnHooks,
                 schedule: TxnSchedule) -> None:  # fmt: skip
        self.consumer = consumer
        self.txn = txn
        self.hooks = hooks
        self.schedule = schedule
        self.pending: dict[TP, int] = {}
        self.events = 0  # records handled in the open transaction
        self.urgent = False  # output waits in the open transaction
        self.rewind_due = False  # an abort in a rebalance callback left partitions to rewind
        self.commits = self.aborts = 0
        # Monotonic time the last commit or abort ended; a new stage counts from its start.
        self.ended = time.monotonic()

    def age(self) -> float:
        return time.monotonic() - self.txn.started

    def idle(self) -> float:
        """Seconds since the last transaction ended."""
        return time.monotonic() - self.ended

    def wait(self, default: float) -> float:
        if not self.txn.open:
            return default
        return self.schedule.wait(self.age(), self.urgent, default, self.idle())

    def due(self, caught_up: bool) -> bool:
        if not self.txn.open:
            return False
        return self.schedule.due(self.age(), self.events, self.urgent, caught_up, self.idle())

    def commit(self) -> None:
        """Offsets into the open transaction, then commit it (TxnAborted if aborted)."""
        if not self.txn.open:
            return
        self.hooks.before_commit()
        offsets = _offsets(self.pending)
        self.txn.commit(offsets, self.consumer.consumer_group_metadata() if offsets else None)
        self.commits += 1
        self.hooks.committed(self.pending)
        self._reset()

    def aborted(self, exc: TxnAborted, rewind: bool) -> None:
        """Nothing of the open transaction is visible; with ``rewind``, read it again."""
        log.warning("%s: %s", exc, "rewinding to the last commit" if rewind
                    else "its records are read again from the last commit")  # fmt: skip
        self.aborts += 1
        self.hooks.aborted()
        self._reset()
        if rewind:
            self.rewind()

    def rewind(self) -> None:
        self.rewind_due = False
        self.hooks.rewind()

    def final(self) -> None:
        try:
            self.commit()
        except TxnAborted as exc:
            self.aborted(exc, rewind=False)

    def revoke(self, tps: set[TP]) -> None:
        if not self.txn.open:
            return
        try:
            self.commit()
        except TxnAborted as exc:
            self._abandon(tps)
            self.aborted(exc, rewind=False)

    def lose(self, tps: set[TP]) -> None:
        if not self.txn.open:
            return
        self._abandon(tps)
        self.txn.abort_quietly()
        self.aborts += 1
        self.hooks.aborted()
        self._reset()

    def _abandon(self, gone: set[TP]) -> None:
        """Partitions of the aborted transaction that stay ours are rewound in the loop."""
        self.rewind_due = self.rewind_due or bool(set(self.pending) - gone)

    def close(self, failed: bool) -> None:
        if failed:
            self.txn.abort_quietly()

    def _reset(self) -> None:
        self.ended = time.monotonic()
        self.pending.clear()
        self.events = 0
        self.urgent = False


DEFAULT_DRAIN_S = 15.0
"""How long records in flight may finish after a stop without a grace period (made in code)."""
CLOSE_RESERVE_S = 3.0
"""What a stop's grace period keeps, after the drain, for the last flush and commit."""


def drain_budget(deadline: float | None, now: float) -> float:
    """How long records in flight may still finish after a stop (pure): the stop's grace
    period (``SLUICE_SHUTDOWN_GRACE_S``) less :data:`CLOSE_RESERVE_S`, or :data:`DEFAULT_DRAIN_S`."""
    if deadline is None:
        return DEFAULT_DRAIN_S
    return max(0.0, deadline - now - CLOSE_RESERVE_S)


Drain = Callable[[set[TP] | None, float], None]
"""Let the records in flight of these partitions (None: all) finish for up to so many
seconds, have their outcomes acknowledged, and give up the rest."""


class Watermarked(_ConsumerCommits):
    """Commit, per partition, the watermark below which every outcome was acknowledged.

    The stage tracks each record it starts and finishes it once its outcome is
    acknowledged, in :attr:`marks`; ``drain`` waits for records in flight.
    """

    def __init__(self, consumer: Consumer, drain: Drain, stop: StopFlag, interval_s: float,
                 revoke_grace_s: float) -> None:  # fmt: skip
        super().__init__(consumer, interval_s)
        self.drain = drain
        self.stop = stop
        self.revoke_grace_s = revoke_grace_s
        self.marks = Watermarks()

    def commit(self) -> None:
        self._commit(asynchronous=True)

    def _commit(self, asynchronous: bool, only: set[TP] | None = None) -> None:
        self.last = time.monotonic()
        marks = self.marks
        positions = {}
        for tp in marks.partitions():
            safe = marks.committable(tp)
            if safe is not None and (only is None or tp in only):
                positions[tp] = safe
        try:
            self._send(positions, asynchronous)
        except KafkaException as exc:
            log.warning("commit failed (will retry): %s", exc)

    def final(self) -> None:
        """Records in flight get what the grace period leaves; then commit what is safe."""
        self.drain(None, drain_budget(self.stop.deadline(), time.monotonic()))
        self.committed.clear()  # an asynchronous commit may have failed unseen (in a rebalance)
        self._commit(asynchronous=False)

    def revoke(self, tps: set[TP]) -> None:
        log.info("draining %s for up to %.0fs", sorted(tps), self.revoke_grace_s)
        self.drain(tps, self.revoke_grace_s)
        self._commit(asynchronous=False, only=tps)

    def lose(self, tps: set[TP]) -> None:
        for tp in tps:
            self.marks.forget(tp)
            self.committed.pop(tp, None)

    def close(self, failed: bool) -> None:
        if failed:  # what was acknowledged before the error may still be committed
            self.final()
