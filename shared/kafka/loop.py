"""One consumer loop for every stage: poll, hand the batch to the stage, commit what is durable.

:class:`ConsumerLoop` owns what every poll loop of sluice does the same way:

* the topic check at start (:func:`shared.kafka.startup.check_topics`);
* the subscription and its rebalance callbacks (assign, revoke, lost); an error
  raised in a callback is kept and raised by the loop, as itself;
* polling (:func:`shared.kafka.consume.consume_available`), with a timeout the
  stage and the commit strategy agree on; records of a partition revoked while a
  poll gathered its batch are dropped (:func:`split_stale`) and, if it is
  assigned again, read again from its commit (until the seek back succeeds, its
  records are dropped and the seek retried: a coordinator away does not stop the
  stage);
* consumer errors (:func:`consumer_error`: fatal ones stop the stage; a fence that
  follows the consumer's own session timeout raises :class:`SessionFenced`, so that
  :func:`shared.stage.run_stage` starts the stage over);
* the stop flag: the loop runs until it is set, then makes a last commit; an
  error sets it too, so that the close is bounded by the grace period
  (``SLUICE_SHUTDOWN_GRACE_S``, :mod:`shared.kafka.shutdown`); a
  ``KafkaException`` leaves the loop as a one-line :class:`DeliveryError`;
* committing, through a :class:`Commits` strategy (:mod:`shared.kafka.commits`):
  offsets after a flush (ingest), inside Kafka transactions (router,
  sequencer) or below the acknowledged outcomes of records that finish out of
  order (enrich). Either way no offset passes a record without a durable next hop.

A stage supplies a :class:`Handler`: what to do with a batch of records (and
how it notes them for its commit strategy), what to do before each poll, how
many records the next poll may bring, and what to forget on revoke.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from shared.errors import DeliveryError, SessionFenced
from shared.kafka.consume import consume_available
from shared.kafka.message import TP, Message
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_topics
from shared.kafka.txn import TxnAborted
from shared.metrics import RECORDS_SKIPPED
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

FATAL_CODES = frozenset(
    {KafkaError._FATAL, KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED}
)
"""Consumer errors that stop a stage besides those flagged fatal: librdkafka's fatal event
(``_FATAL``, e.g. a static member fenced: the consumer is unusable, though the event's error
is not flagged fatal itself), a topic it reads vanished or is refused."""

EARLIEST = frozenset({"earliest", "beginning", "smallest"})
COMMITTED_TIMEOUT_S = 10.0  # the group coordinator's answer for a partition read again
REREAD_RETRY_S = 1.0  # a failed seek back to the commit is tried again after this, doubling
REREAD_RETRY_MAX_S = 30.0  # ... up to this (one warning each time)

FENCED_AFTER_LOST_S = 30.0
"""A fatal fence this soon after the consumer lost its partitions (its session timed
out) is the consumer's own stale member id, not another process: see
:class:`~shared.errors.SessionFenced`."""


def fenced_after_own_timeout(exc: BaseException, lost_at: float | None, now: float) -> bool:
    """Whether ``exc`` is librdkafka's fatal event shortly after a session loss (pure).

    A consumer's fatal errors come only from static membership: fenced by a member
    with the same ``group.instance.id``. After its own session timeout that member
    is its former self; otherwise another process holds the id."""
    if not isinstance(exc, KafkaException) or lost_at is None:
        return False
    err = exc.args[0] if exc.args else None
    return (
        isinstance(err, KafkaError)
        and err.code() == KafkaError._FATAL
        and 0.0 <= now - lost_at <= FENCED_AFTER_LOST_S
    )


def consumer_error(err: KafkaError) -> None:
    """A message carrying an error: the end of a partition is none; a fatal error, a
    topic that vanished or a refused authorisation raise ``KafkaException``; anything
    else is transient (librdkafka retries) and logged."""
    code = err.code()
    if code == KafkaError._PARTITION_EOF:
        return
    if err.fatal() or code in FATAL_CODES:
        raise KafkaException(err)
    log.warning("consumer error: %s", err)


def split_stale(
    msgs: Sequence[Message], revoked: Collection[TP]
) -> tuple[list[Message], dict[TP, int]]:
    """The records a stage may handle, and per partition of ``revoked`` the first offset
    dropped (pure).

    A poll makes up to three ``consume`` calls, and a rebalance callback runs inside
    one of them: records that an earlier call (or the same one, before the callback)
    returned belong to the assignment that ended. None of them was handled, so the
    partition's commit is not past them: the partition's next owner (this consumer
    again, or another) reads them from there. Handled now they would be handled twice.
    Records of a partition assigned again within the same poll cannot be told apart
    from those, so every record of a revoked partition is dropped."""
    kept: list[Message] = []
    first: dict[TP, int] = {}
    for m in msgs:
        tp = (m.topic() or "", m.partition() or 0)
        if m.error() is None and tp in revoked:
            offset = m.offset() or 0
            first[tp] = min(offset, first.get(tp, offset))
        else:
            kept.append(m)
    return kept, first


@dataclass(frozen=True)
class Subscription:
    """What a stage reads, and what must exist before it starts."""

    topics: Sequence[str]
    need: Sequence[str] = ()  # besides ``topics``: topics it writes
    co_partitioned: Sequence[str] = ()
    external: Collection[str] = field(default_factory=frozenset)  # not the pipeline's own
    # the consumer's auto.offset.reset: where a partition without a commit starts
    reset: str = "earliest"


class Handler(Protocol):
    """What a stage supplies to the loop. Subclass it to inherit the no-op defaults."""

    def started(self, partitions: dict[str, int]) -> None:
        """After the topic check (partition counts of every needed topic), before subscribing."""
        return None

    def before_poll(self) -> float | None:
        """Work due before each poll; how long the poll may wait (None: the loop's default)."""
        return None

    def max_batch(self, default: int) -> int:
        """At most how many records the next poll may bring (at least 1), after
        :meth:`before_poll`."""
        return default

    def handle(self, msgs: Sequence[Message]) -> None:
        """Handle a batch (errors go to :func:`consumer_error`); note each handled record
        for the commit strategy (the next offset in ``commits.pending`` once its outputs
        are produced; with :class:`~shared.kafka.commits.Watermarked`, its watermarks)."""
        ...

    def after_batch(self) -> None:
        """After each poll (and the batch's handling), before a due commit."""
        return None

    def assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        """Partitions assigned (may ``consumer.assign`` them at chosen offsets)."""
        return None

    def forget(self, tps: set[TP], lost: bool) -> None:
        """Partitions revoked (or ``lost``): drop what is kept about them."""
        return None

    def close(self) -> None:
        """The loop is over (the consumer is closed)."""
        return None


class Commits(Protocol):
    """How a stage makes its offsets move: see :mod:`shared.kafka.commits`."""

    rewind_due: bool

    def wait(self, default: float) -> float:
        """How long the poll may wait, at most ``default``: until the next commit is due."""
        ...

    def due(self, caught_up: bool) -> bool: ...
    def commit(self) -> None: ...
    def aborted(self, exc: TxnAborted, rewind: bool) -> None: ...
    def rewind(self) -> None: ...
    def final(self) -> None:
        """The last commit of a clean stop."""
        ...

    def revoke(self, tps: set[TP]) -> None:
        """Commit what is safe of ``tps`` before they go."""
        ...

    def lose(self, tps: set[TP]) -> None:
        """``tps`` are gone: nothing of them may be committed any more."""
        ...

    def close(self, failed: bool) -> None:
        """Before the consumer closes; ``failed``: the loop ended on an error."""
        ...


@dataclass(eq=False)
class ConsumerLoop:
    """poll → :meth:`Handler.handle` → commit, until the stop flag is set."""

    name: str
    settings: CommonSettings
    consumer: Consumer
    subscription: Subscription
    handler: Handler
    commits: Commits
    stop: StopFlag
    batch_size: int
    wait_s: float  # longest poll, unless the handler or the commit strategy say otherwise
    failed: bool = field(default=False, init=False)
    fenced: bool = field(default=False, init=False)  # see :class:`SessionFenced`
    lost_at: float | None = field(default=None, init=False)  # monotonic: partitions last lost
    callback_error: BaseException | None = field(default=None, init=False)  # from a callback
    revoked_in_poll: set[TP] = field(default_factory=set, init=False)  # see :func:`split_stale`
    # partitions to read again from their commit, with the first offset dropped: see
    # :meth:`drop_stale`; a partition stays here (its records dropped) until its seek succeeds
    reread: dict[TP, int] = field(default_factory=dict, init=False)
    reread_after: float = field(default=0.0, init=False)  # monotonic: next seek back attempt
    reread_backoff_s: float = field(default=REREAD_RETRY_S, init=False)

    def run(self) -> None:
        try:
            self.start()
            while not self.stop.is_set():
                self.step()
            log.info("%s stopping (%s): committing", self.name, self.stop.reason)
            self.commits.final()
        except BaseException as exc:
            self.failed = True
            if fenced_after_own_timeout(exc, self.lost_at, time.monotonic()):
                self.fenced = True
                raise SessionFenced(f"{self.name}: consumer fenced after its session "
                                    f"timed out ({exc})") from exc  # fmt: skip
            self.stop.set(type(exc).__name__)  # bounds the close by the grace period
            if isinstance(exc, KafkaException):
                raise DeliveryError(f"{self.name} stopped: {exc}") from exc
            raise
        finally:
            self.close()

    def start(self) -> None:
        sub = self.subscription
        need = [*sub.topics, *sub.need]
        counts = check_topics(self.consumer, self.settings, need, sub.co_partitioned, sub.external)
        self.handler.started(counts)
        self.consumer.subscribe(list(sub.topics), on_assign=self._on_assign,
                                on_revoke=self._on_revoke, on_lost=self._on_lost)  # fmt: skip

    def step(self) -> None:
        commits = self.commits
        try:
            wait = self.handler.before_poll()
            wait = commits.wait(self.wait_s if wait is None else wait)
            batch = self.handler.max_batch(self.batch_size)
            self.revoked_in_poll.clear()
            got = consume_available(self.consumer, batch, wait)
            self.raise_callback_error()
            msgs: Sequence[Message] = (
                self.drop_stale(got) if self.revoked_in_poll or self.reread else got
            )
            if commits.rewind_due:
                commits.rewind()  # the batch was fetched before the seek: read again
            elif msgs:
                self.handler.handle(msgs)
            self.handler.after_batch()
            if commits.due(len(got) < batch):
                commits.commit()
        except TxnAborted as exc:
            commits.aborted(exc, rewind=True)

    def close(self) -> None:
        try:
            try:
                self.commits.close(self.failed)
            finally:
                self.consumer.close()  # revoke: commits (or aborts, after a failure) what is open
        except (KafkaException, DeliveryError) as exc:
            if not self.fenced:
                raise
            # nothing past the last commit was committed: the stage, started over, reads it again
            log.warning("%s: closing the fenced consumer: %s", self.name, exc)
        finally:
            self.handler.close()

    def drop_stale(self, msgs: Sequence[Message]) -> Sequence[Message]:
        """Drop what :func:`split_stale` says; a partition assigned again within the poll
        is read again from its commit (its records of this batch were dropped with the
        rest). Its position may lie past that commit: the records between were fetched
        for the old assignment and never handled. Until that seek has succeeded
        (:meth:`seek_back`), the partition's records are dropped as well."""
        kept, first = split_stale(msgs, self.revoked_in_poll | self.reread.keys())
        if first:
            RECORDS_SKIPPED.labels("revoked").inc(len(msgs) - len(kept))
            owned = {(p.topic, p.partition) for p in self.consumer.assignment()}
            again = {tp: o for tp, o in first.items() if tp in owned}
            if self.revoked_in_poll:
                log.info("%s: %d records of partitions revoked while they were fetched "
                         "dropped; read again from the commit: %s", self.name,
                         len(msgs) - len(kept),
                         [f"{t}[{p}]" for (t, p) in sorted(again)] or "none of them is ours")  # fmt: skip
            for tp, offset in again.items():
                self.reread[tp] = min(offset, self.reread.get(tp, offset))
        if self.reread and time.monotonic() >= self.reread_after:
            self.seek_back()
        return kept

    def seek_back(self) -> None:
        """Seek each partition of :attr:`reread` to its commit (or the first record
        dropped, if that lies before it or there is no commit and reading starts from
        the end). A failure (the coordinator away, a seek refused) keeps the partition
        here and is tried again after :data:`REREAD_RETRY_S`, doubling up to
        :data:`REREAD_RETRY_MAX_S`: nothing past its commit has been handled, so nothing
        is lost while it waits."""
        parts = [TopicPartition(t, p) for (t, p) in sorted(self.reread)]
        try:
            for c in self.consumer.committed(parts, timeout=COMMITTED_TIMEOUT_S):
                tp = (c.topic, c.partition)
                if c.error is not None:
                    raise KafkaException(c.error)
                if c.offset >= 0:
                    start = min(c.offset, self.reread[tp])
                elif self.subscription.reset in EARLIEST:
                    start = OFFSET_BEGINNING  # no commit yet: where the new assignment started
                else:  # from the end: not after the first record dropped
                    start = self.reread[tp]
                self.consumer.seek(TopicPartition(c.topic, c.partition, start))
                del self.reread[tp]
            self.reread_backoff_s = REREAD_RETRY_S
        except KafkaException as exc:
            wait_s = self.reread_backoff_s
            self.reread_after = time.monotonic() + wait_s
            self.reread_backoff_s = min(REREAD_RETRY_MAX_S, 2 * wait_s)
            log.warning("%s: reading %s again from the commit failed (%s); their records are "
                        "dropped until it succeeds, tried again in %gs", self.name,
                        [f"{t}[{p}]" for (t, p) in sorted(self.reread)], exc, wait_s)  # fmt: skip

    def forget_reread(self, tps: set[TP]) -> None:
        """A partition that leaves needs no seek back: a new assignment starts at the commit."""
        for tp in tps:
            self.reread.pop(tp, None)

    # -- rebalances ------------------------------------------------------------------
    def raise_callback_error(self) -> None:
        """Errors of rebalance callbacks surface here, as themselves (not via librdkafka)."""
        if self.callback_error is not None:
            exc, self.callback_error = self.callback_error, None
            raise exc

    def _failed_in_callback(self, exc: BaseException) -> None:
        self.failed = True
        self.callback_error = exc

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in parts])
        try:
            self.handler.assigned(consumer, parts)
        except Exception as exc:
            self._failed_in_callback(exc)

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in parts}
        if not tps:
            return
        log.info("revoked %s: committing", sorted(tps))
        self.revoked_in_poll |= tps
        self.forget_reread(tps)
        if not self.failed:
            try:
                self.commits.revoke(tps)
            except Exception as exc:
                self._failed_in_callback(exc)
        self.commits.lose(tps)  # whatever could not be committed
        self.handler.forget(tps, lost=False)

    def _on_lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in parts}
        log.warning("partitions lost (no commit possible): %s", sorted(tps))
        self.lost_at = time.monotonic()
        self.revoked_in_poll |= tps
        self.forget_reread(tps)
        self.commits.lose(tps)
        self.handler.forget(tps, lost=True)
