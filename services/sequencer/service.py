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
(but not within ``txn_min_interval_ms``, 20 ms, of the previous commit's end:
at once after a quiet spell, and at most one per interval under load), else every
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
from collections.abc import Sequence

from confluent_kafka import Consumer, TopicPartition

from services.sequencer import metrics as m
from services.sequencer import records
from services.sequencer.changelog import Changelog
from services.sequencer.model import Emit, Outcome
from services.sequencer.reorder import Reorder
from services.sequencer.restore import StateReader
from services.sequencer.settings import SequencerSettings
from services.sequencer.txn import start_offset
from shared.kafka.clients import KAFKA, Clients
from shared.kafka.commits import Transactions, TxnHooks, TxnSchedule
from shared.kafka.config import consumer_config, prompt_producer_config
from shared.kafka.loop import ConsumerLoop, Handler, Subscription, consumer_error
from shared.kafka.message import TP, Message
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnProducer
from shared.logs import coords
from shared.metrics import lag_stats_callback

log = logging.getLogger(__name__)

READ_BATCH = 1000


class Sequencer(Handler, TxnHooks):
    def __init__(self, settings: SequencerSettings, stop: StopFlag | None = None,
                 clients: Clients = KAFKA) -> None:  # fmt: skip
        self.settings = s = settings
        self.topics = t = settings.topics
        self.stop = stop or StopFlag()
        self.states: dict[int, Reorder] = {}
        self.logs: dict[int, Changelog] = {}
        self.partitions = 0  # of the co-partitioned topics
        self._commit_started = 0.0
        self.txn = TxnProducer(prompt_producer_config(settings, **{
            "transactional.id": settings.transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms}),
            settings.txn_call_timeout_s, self.stop, clients.producer)  # fmt: skip
        self.consumer = clients.consumer(consumer_config(settings, settings.group, **{
            "partition.assignment.strategy": "range", "isolation.level": "read_committed",
            "stats_cb": lag_stats_callback(settings.group)}))  # fmt: skip
        self.reader = StateReader(settings, t.state, clients)
        schedule = TxnSchedule(
            s.txn_interval_ms / 1000, s.txn_min_interval_ms / 1000, s.txn_max_events
        )
        self.txns = Transactions(self.consumer, self.txn, self, schedule)
        subscription = Subscription([t.work, t.results], [t.state, t.output], t.co_partitioned)
        self.loop = ConsumerLoop("sequencer", settings, self.consumer, subscription, self,
                                 self.txns, self.stop, READ_BATCH, s.txn_interval_ms / 1000)  # fmt: skip

    def run(self) -> None:
        self.loop.run()

    def started(self, partitions: dict[str, int]) -> None:
        self.partitions = partitions[self.topics.results]
        self.txn.init()  # fences an older instance with the same id, aborts its transaction
        log.info("sequencer %s + %s → %s (dead mode %s, txn id %s)", self.topics.work,
                 self.topics.results, self.topics.output, self.settings.dead_mode,
                 self.settings.transactional_id)  # fmt: skip

    def close(self) -> None:
        self.reader.close()

    # -- records -----------------------------------------------------------------
    def handle(self, msgs: Sequence[Message]) -> None:
        now = int(time.time() * 1000)
        work = self.topics.work
        txns = self.txns
        for msg in msgs:
            err = msg.error()
            if err is not None:
                consumer_error(err)
                continue
            topic, n, off = msg.topic() or "", msg.partition() or 0, msg.offset() or 0
            state = self.states.get(n)
            if state is None:
                continue  # no longer ours; the next owner reads it again
            self.txn.begin()
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
            txns.pending[(topic, n)] = off + 1
            txns.events += 1

    def _outcome(self, state: Reorder, o: Outcome, n: int, now: int) -> list[Emit]:
        if o.key is None and (home := records.home(o.ident, self.partitions)) != n:
            m.FORWARDED.inc()
            self.txn.produce(self.topics.results, o.value, None, list(o.headers), home)
            return []
        return state.outcome(o, now)

    def _emit(self, e: Emit) -> None:
        self.txns.urgent = True  # output waits: commit as soon as nothing more is queued
        key, value, headers = records.output_record(e, self.settings.max_message_bytes)
        self.txn.produce(self.topics.output, value, key, headers)

    # -- transactions (TxnHooks) ----------------------------------------------------
    def before_commit(self) -> None:
        """State changes into the open transaction (the offsets follow)."""
        self._commit_started = time.monotonic()
        for n, state in self.states.items():
            for key, value in self.logs[n].changes(state):
                self.txn.produce(self.topics.state, value, key, partition=n)

    def committed(self, offsets: dict[TP, int]) -> None:
        m.TXN_COMMIT.observe(time.monotonic() - self._commit_started)
        for state in self.states.values():
            m.publish(state.counts)
            state.counts.clear()
        m.publish_state(self.states.values())

    def aborted(self) -> None:
        m.TXN_ABORTS.inc()

    def rewind(self) -> None:
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
                self.txn.begin()
                self.txns.events += len(emits)
                for e in emits:
                    self._emit(e)
        m.RESTORE.observe(time.monotonic() - t0)
        log.info("restored partitions %s from %d changelog records in %.2fs", numbers,
                 got.records, time.monotonic() - t0)  # fmt: skip
        m.publish_state(self.states.values())
        return got.offsets

    # -- rebalances ----------------------------------------------------------------
    def assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        numbers = sorted({p.partition for p in parts})
        try:
            offsets = self._restore(numbers)
        except Exception as exc:
            log.error("restore of %s failed: %s", numbers, exc)
            raise
        consumer.assign([start_offset(offsets, p) for p in parts])

    def forget(self, tps: set[TP], lost: bool) -> None:
        for n in {p for _, p in tps}:
            self.states.pop(n, None)
            self.logs.pop(n, None)
        m.publish_state(self.states.values())


def run(settings: SequencerSettings, stop: StopFlag | None = None) -> None:
    Sequencer(settings, stop).run()
