"""The sequencer loop: per-key order restored, exactly once to ``P.output``.

One consumer (group ``P.sequencer``, ``range`` assignment so partition ``n`` of
``P.work`` and of ``P.results`` land on the same instance, ``read_committed``,
no auto commit) and ONE transactional producer per instance
(``transactional.id`` = ``P.sequencer.<worker_id>``). Each transaction holds
the output records, the changelog records of the state changes (partition
``n`` of ``P.sequencer.state`` for input partition ``n``) and the consumer
offsets of both topics (``send_offsets_to_transaction`` with the consumer's
group metadata, so a zombie of an older generation is fenced, KIP-447). A
transaction commits as soon as it holds output and nothing more is queued
(but not within ``txn_min_interval_ms``, 20 ms, of its start), else every
``txn_interval_ms`` (100 ms) or ``txn_max_events`` input records, and on
revoke and shutdown.

Transactions go through :class:`shared.kafka.txn.TxnProducer`: every
blocking call has a deadline (``txn_call_timeout_s``; within the grace period
once a stop was asked for). Failures: an abortable error, or retriable errors
until the deadline, abort the transaction, rebuild the state from the
changelog and seek back to the committed offsets (nothing of the aborted
transaction is visible to ``read_committed`` readers); a fatal error (fenced
by a newer instance with the same ``transactional.id``, ...), a call still
running at its deadline or an abort that fails stop the service with a
non-zero exit and one line, and a restart recovers the same way.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.sequencer import metrics as m
from services.sequencer import records
from services.sequencer.changelog import Changelog
from services.sequencer.model import Emit, Outcome
from services.sequencer.reorder import Reorder
from services.sequencer.restore import StateReader
from services.sequencer.settings import SequencerSettings
from services.sequencer.txn import start_offset
from shared.errors import DeliveryError
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consume import consume_available
from shared.kafka.message import TP
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_topics
from shared.kafka.txn import TxnAborted, TxnProducer
from shared.logs import coords
from shared.metrics import lag_stats_callback

log = logging.getLogger(__name__)

READ_BATCH = 1000


class Sequencer:
    def __init__(self, settings: SequencerSettings, stop: StopFlag | None = None) -> None:
        self.settings = settings
        self.topics = settings.topics
        self.stop = stop or StopFlag()
        self.states: dict[int, Reorder] = {}
        self.logs: dict[int, Changelog] = {}
        self.positions: dict[TP, int] = {}  # next offset to read, consumed in the open txn
        self.failed = False
        self.events = 0
        self.emitted = 0  # output records in the open transaction
        self.commits = self.aborts = 0
        self.partitions = 0  # of the co-partitioned topics
        self.callback_error: BaseException | None = None  # raised in a rebalance callback
        self.txn = TxnProducer(producer_config(settings, **{
            "transactional.id": settings.transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms}),
            settings.txn_call_timeout_s, self.stop)  # fmt: skip
        self.consumer = Consumer(consumer_config(settings, settings.group, **{
            "partition.assignment.strategy": "range", "isolation.level": "read_committed",
            "stats_cb": lag_stats_callback(settings.group)}))  # fmt: skip
        self.reader = StateReader(settings, self.topics.state)

    @property
    def in_txn(self) -> bool:
        return self.txn.open

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        try:
            t = self.topics
            counts = check_topics(self.consumer, self.settings, [t.work, t.results, t.state, t.output],
                                  t.co_partitioned)  # fmt: skip
            self.partitions = counts[t.results]
            self.txn.init()
            self.consumer.subscribe([self.topics.work, self.topics.results], on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_lost)  # fmt: skip
            log.info("sequencer %s + %s → %s (dead mode %s, txn id %s)", self.topics.work,
                     self.topics.results, self.topics.output, self.settings.dead_mode,
                     self.settings.transactional_id)  # fmt: skip
            while not self.stop.is_set():
                self.step()
            log.info("sequencer stopping (%s): committing", self.stop.reason)
            self.commit(recover=False)
        except KafkaException as exc:
            self.failed = True
            self.stop.set("KafkaException")
            raise DeliveryError(f"sequencer stopped: {exc}") from exc
        except BaseException as exc:
            self.failed = True
            self.stop.set(type(exc).__name__)  # bounds the close by the grace period
            raise
        finally:
            self.close()

    def close(self) -> None:
        try:
            self.consumer.close()  # revoke: commits (or aborts, after a failure) the open txn
        finally:
            self.reader.close()

    def step(self) -> None:
        s = self.settings
        wait = s.txn_interval_ms / 1000
        if self.in_txn:
            # Output waiting: wake up when the group commit may happen, not later.
            due = (s.txn_min_interval_ms if self.emitted else s.txn_interval_ms) / 1000
            wait = max(0.0, due - (time.monotonic() - self.txn.started))
        try:
            msgs = consume_available(self.consumer, READ_BATCH, wait)
            self._raise_callback_error()
            if msgs:
                self._handle(msgs)
            if self.in_txn and self._commit_due(len(msgs) < READ_BATCH):
                self.commit()
        except TxnAborted as exc:
            self._aborted(exc, recover=True)

    def _commit_due(self, caught_up: bool) -> bool:
        """Group commit: at once when output waits and nothing more is queued (after at
        least ``txn_min_interval_ms``), else every ``txn_interval_ms`` or
        ``txn_max_events`` input records. Under load the batches grow by themselves:
        records queue up while a commit is in flight."""
        age = time.monotonic() - self.txn.started
        s = self.settings
        if age >= s.txn_interval_ms / 1000 or self.events >= s.txn_max_events:
            return True
        return caught_up and self.emitted > 0 and age >= s.txn_min_interval_ms / 1000

    # -- records -----------------------------------------------------------------
    def _handle(self, msgs: list[Message]) -> None:
        now = int(time.time() * 1000)
        work = self.topics.work
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._consumer_error(err)
                continue
            topic, n, off = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            state = self.states.get(n)
            if state is None:
                continue  # no longer ours; the next owner reads it again
            self._begin()
            try:
                if topic == work:
                    a = records.announcement(msg)
                    emits = state.announce(a, now) if a is not None else []
                else:
                    emits = self._outcome(state, records.outcome(msg), n, now)
            except records.Malformed as exc:
                m.MALFORMED.inc()
                log.warning("malformed record skipped: %s", exc,
                            extra={"record": coords(topic, n, off, msg.key())})  # fmt: skip
                emits = []
            for e in emits:
                self._emit(e)
            self.positions[(topic, n)] = off + 1
            self.events += 1

    def _outcome(self, state: Reorder, o: Outcome, n: int, now: int) -> list[Emit]:
        if o.key is None and (home := records.home(o.ident, self.partitions)) != n:
            m.FORWARDED.inc()
            self._send(self.topics.results, None, o.value, list(o.headers), partition=home)
            return []
        return state.outcome(o, now)

    def _emit(self, e: Emit) -> None:
        self.emitted += 1
        key, value, headers = records.output_record(e, self.settings.max_message_bytes)
        self._send(self.topics.output, key, value, headers)

    def _send(self, topic: str, key: bytes | None, value: bytes | None,
              headers: list[tuple[str, bytes]] | None = None, partition: int = -1) -> None:  # fmt: skip
        self.txn.produce(topic, value, key, headers, partition)

    def _consumer_error(self, err: KafkaError) -> None:
        if err.fatal() or err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError.TOPIC_AUTHORIZATION_FAILED):  # fmt: skip
            self.failed = True
            raise KafkaException(err)
        log.warning("consumer error: %s", err)

    # -- transactions ------------------------------------------------------------
    def _begin(self) -> None:
        self.txn.begin()

    def commit(self, recover: bool = True) -> None:
        """State changes + offsets into the open transaction, then commit it."""
        if not self.in_txn:
            return
        t0 = time.monotonic()
        try:
            for n, state in self.states.items():
                for key, value in self.logs[n].changes(state):
                    self._send(self.topics.state, key, value, partition=n)
            offsets = [TopicPartition(t, p, o) for (t, p), o in self.positions.items()]
            meta = self.consumer.consumer_group_metadata() if offsets else None
            self.txn.commit(offsets, meta)
        except TxnAborted as exc:
            self._aborted(exc, recover)
            return
        m.TXN_COMMIT.observe(time.monotonic() - t0)
        self.commits += 1
        self._end_txn()
        for state in self.states.values():
            m.publish(state.counts)
            state.counts.clear()
        m.publish_state(self.states.values())

    def _end_txn(self) -> None:
        self.events = self.emitted = 0
        self.positions.clear()

    def _aborted(self, exc: TxnAborted, recover: bool) -> None:
        """The open transaction was aborted: back to the last commit."""
        log.warning("%s: rewinding to the last commit", exc)
        m.TXN_ABORTS.inc()
        self.aborts += 1
        self._end_txn()
        if recover:
            self._rewind()

    def _rewind(self) -> None:
        """Back to the last commit: state from the changelog, positions from the group."""
        parts = self.consumer.assignment()
        offsets = self._restore(sorted({p.partition for p in parts}))
        for p in parts:
            self.consumer.seek(start_offset(offsets, p))

    def _restore(self, numbers: list[int]) -> dict[TP, int]:
        t0 = time.monotonic()
        s, t = self.settings, self.topics
        got = self.reader.restore(self.consumer, [t.work, t.results], numbers, s)
        now = int(time.time() * 1000)
        for n, (state, changelog) in got.states.items():
            self.states[n], self.logs[n] = state, changelog
            emits = state.settle(now)  # only when settings changed (block → skip)
            if emits:
                self._begin()
                self.events += len(emits)
                for e in emits:
                    self._emit(e)
        m.RESTORE.observe(time.monotonic() - t0)
        log.info("restored partitions %s from %d changelog records in %.2fs", numbers,
                 got.records, time.monotonic() - t0)  # fmt: skip
        m.publish_state(self.states.values())
        return got.offsets

    # -- rebalances ----------------------------------------------------------------
    def _raise_callback_error(self) -> None:
        """Errors of rebalance callbacks surface here, as themselves (not via librdkafka)."""
        if self.callback_error is not None:
            exc, self.callback_error = self.callback_error, None
            raise exc

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in parts])
        try:
            offsets = self._restore(sorted({p.partition for p in parts}))
        except Exception as exc:
            self.failed = True
            self.callback_error = exc
            log.error("restore of %s failed: %s", sorted({p.partition for p in parts}), exc)
            return
        consumer.assign([start_offset(offsets, p) for p in parts])

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("revoked %s", [f"{p.topic}[{p.partition}]" for p in parts])
        try:
            if self.in_txn and not self.failed:
                self.commit(recover=False)
        except Exception as exc:
            self.failed = True
            self.callback_error = exc
        self._abort_quietly()
        self._drop({p.partition for p in parts})

    def _on_lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.warning("partitions lost: %s", [f"{p.topic}[{p.partition}]" for p in parts])
        self._abort_quietly()
        self._drop({p.partition for p in parts})

    def _abort_quietly(self) -> None:
        if self.in_txn:
            self.txn.abort_quietly()
            self._end_txn()

    def _drop(self, numbers: set[int]) -> None:
        for n in numbers:
            self.states.pop(n, None)
            self.logs.pop(n, None)
        self.positions = {tp: o for tp, o in self.positions.items() if tp[1] not in numbers}
        m.publish_state(self.states.values())


def run(settings: SequencerSettings, stop: StopFlag | None = None) -> None:
    Sequencer(settings, stop).run()
