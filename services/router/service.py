"""The router loop: one consumer over ``P.failures``, every ``P.retry.<rung>`` and ``P.parked``.

One consumer in one group (``P.router``) and one thread: failures are cheap
to route (no network call but Kafka), so one poll loop keeps up, and a single
loop means one producer, one open transaction and one commit path.

Delays without stalls: when the first record of a partition may not go yet
(a retry not due; a parked record whose provider is unavailable or that the
drain rate does not allow yet) the loop seeks that partition back to the
record's offset and pauses it (:mod:`services.router.pausing`). The loop keeps polling
(the poll timeout shrinks to the next hold's end, at most 0.25 s), resumes a
timed hold once its time has come and a provider hold once the provider is
available (asked at most every ``health_refresh_s`` per provider), and reads
the held record again. A hold lasts at least ``min_hold_s``, so a partition
is re-read at most once per ``min_hold_s``; the consumer fetches at most 256
KiB per partition, so what a hold throws away is small.

Exactly once per hop: the router's consume → produce runs in Kafka
transactions (:class:`shared.kafka.txn.TxnProducer`, ``transactional.id``
``P.router.<worker_id>``). A transaction holds the records routed since the
last commit (a DLQ write and its dead outcome, a retry, a record forwarded back
to work) and the consumer offsets just past them (with the group metadata,
KIP-447); it commits every ``commit_interval_s`` (0.1 s), on revoke and on
shutdown. A held record is not passed, so nothing behind it is committed. A
router killed between a write and its commit leaves an open transaction that
its restart (same id) aborts: readers that read ``read_committed`` never see
a record routed twice, so a record cannot fork into one copy that succeeds
and one that dies. An abortable error aborts the transaction and seeks back to
the committed offsets; a fatal one (fenced), a transactional call past its
deadline or a failed delivery stops the router with one line (exit 1).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    TopicPartition,
)

from services.router import metrics as m
from services.router import routing
from services.router.drain import DrainGate, HealthCache, TokenBucket
from services.router.envelope import MALFORMED, Consumed
from services.router.health import RedisHealth
from services.router.pausing import Pauser
from services.router.routing import Plan, Role, Wait
from services.router.settings import RouterSettings
from shared.errors import DeliveryError
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.message import TP
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_topics
from shared.kafka.txn import TxnAborted, TxnProducer
from shared.logs import coords
from shared.metrics import lag_stats_callback

log = logging.getLogger(__name__)

MAX_WAIT_S = 0.25
DEPTH_INTERVAL_S = 5.0
TUNING = {"fetch.wait.max.ms": 100, "max.partition.fetch.bytes": 262_144}
"""Consumer defaults of the router; a ``SLUICE_KAFKA_PROP_*`` of the same name wins."""


class Router:
    def __init__(
        self,
        settings: RouterSettings,
        stop: StopFlag | None = None,
        health: Callable[[str], bool] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = settings.topics  # ConfigError on bad rungs
        self.roles = {self.topics.failures: Role.FAILURES, self.topics.parked: Role.PARKED}
        self.rung_of = {self.topics.retry(r): r.label for r in self.topics.rungs}
        self.roles.update(dict.fromkeys(self.rung_of, Role.RETRY))
        self.stop = stop or StopFlag()
        self.committed: dict[TP, int] = {}
        self.next_offset: dict[TP, int] = {}  # next record to handle, per partition
        self.positions: dict[TP, int] = {}  # offsets to commit with the open transaction
        self.routed: list[tuple[Plan, Role, str]] = []  # in the open transaction: counted on commit
        self.errors: list[str] = []  # failed deliveries
        self.failed = False
        self.rewind_due = False  # a transaction was aborted in a rebalance callback
        self.callback_error: BaseException | None = None  # raised in a rebalance callback
        self.assignments = self.revocations = self.commits = self.aborts = 0
        check = health or RedisHealth(settings.redis_url.get_secret_value(), settings.pipeline)
        self._check = check
        self.health = HealthCache(check, settings.health_refresh_s)
        rps = settings.parked_drain_rps
        self.gate = DrainGate(
            self.health, TokenBucket(rps, max(1.0, rps * settings.min_hold_s), time.time())
        )
        self.txn = TxnProducer(producer_config(settings, **{
            "transactional.id": settings.transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            "delivery.report.only.error": True, "on_delivery": self._delivered}),
            settings.txn_call_timeout_s, self.stop)  # fmt: skip
        tuning = {k: v for k, v in TUNING.items() if k not in settings.kafka_props}
        self.consumer = Consumer(
            consumer_config(
                settings, settings.group, stats_cb=lag_stats_callback(settings.group), **tuning
            )
        )
        self.pauser = Pauser(self.consumer, self.health, settings.min_hold_s)
        self.holds = self.pauser.holds
        self._last_depth = time.monotonic()

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        try:
            self.check_topics()
            self.txn.init()  # fences an older instance with the same id, aborts its transaction
            self.consumer.subscribe(list(self.roles), on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_lost)  # fmt: skip
            log.info("router %s → %s, rungs %s", ", ".join(self.roles), self.topics.work,
                     ",".join(r.label for r in self.topics.rungs))  # fmt: skip
            while not self.stop.is_set():
                self.step()
            log.info("router stopping (%s): committing", self.stop.reason)
            self._final_commit()
        except BaseException as exc:
            self.failed = True
            self.stop.set(type(exc).__name__)  # bounds the close by the grace period
            raise
        finally:
            self.close()

    def step(self) -> None:
        self.pauser.release(time.time())
        try:
            # poll() returns as soon as a record is there (consume() would wait for a full
            # batch or the timeout, making due records late); then take what else is queued.
            first = self.consumer.poll(self._wait())
            self._raise_callback_error()
            if self.rewind_due:
                self._rewind()
            elif first is not None:
                self._handle_batch(
                    [first, *self.consumer.consume(max(1, self.settings.batch_size - 1), 0)]
                )
            self.txn.poll(0)
            self._raise_delivery_errors()
            if self.txn.open and self._age() >= self.settings.commit_interval_s:
                self.commit()
        except TxnAborted as exc:
            self._aborted(exc)
        mono = time.monotonic()
        if mono - self._last_depth >= DEPTH_INTERVAL_S:
            self._last_depth = mono
            self._measure_parked()

    def _age(self) -> float:
        return time.monotonic() - self.txn.started

    def _wait(self) -> float:
        """How long the poll may block: until the next hold ends or the commit is due."""
        wait = self.pauser.timeout(MAX_WAIT_S)
        if self.txn.open:
            wait = min(wait, max(0.0, self.settings.commit_interval_s - self._age()))
        return wait

    def check_topics(self) -> None:
        t = self.topics
        needed = [*self.roles, t.work, t.results, *t.dlqs]
        check_topics(self.consumer, self.settings, needed, t.co_partitioned)

    def _final_commit(self) -> None:
        try:
            self.commit()
        except TxnAborted as exc:
            log.warning("%s: its records will be routed again by the next owner", exc)
            m.TXN_ABORTS.inc()

    def close(self) -> None:
        """Leave the group (the transaction is committed or aborted by now)."""
        try:
            if self.failed:
                self.txn.abort_quietly()
            self.consumer.close()
        finally:
            if isinstance(self._check, RedisHealth):
                self._check.close()

    # -- routing ----------------------------------------------------------------
    def _handle_batch(self, msgs: list[Message]) -> None:
        now = time.time()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._consumer_error(err)
                continue
            tp: TP = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            if tp in self.holds or offset < self.next_offset.get(tp, 0):
                continue  # behind a record held in this batch, or fetched before a seek
            self._handle(tp, offset, Consumed.of(msg), now)

    def _handle(self, tp: TP, offset: int, c: Consumed, now: float) -> None:
        role, now_ms = self.roles[c.topic], int(now * 1000)
        plan = routing.decide(role, c, self.topics, now_ms, self.gate)
        if isinstance(plan, Wait):
            self.next_offset[tp] = offset
            self.pauser.hold(tp, offset, plan, "rate" if role is Role.PARKED else "not_due", now)
            return
        self.next_offset[tp] = offset + 1
        if plan.late_ms is not None:
            m.LATENESS.labels(self.rung_of[c.topic]).observe(plan.late_ms / 1000)
        if plan.dlq is not None:
            log.warning("%s → %s: %.200s", plan.kind, plan.dlq, plan.reason,
                        extra={"record": coords(c.topic, c.partition, c.offset, c.key)})  # fmt: skip
        self.txn.begin()
        for s in plan.sends:
            r = s.record
            self.txn.produce(s.topic, r.value, r.key, r.headers, timestamp=s.timestamp)
        self.positions[tp] = offset + 1
        self.routed.append((plan, role, c.topic))

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:  # only failures are reported
            self.errors.append(f"{msg.topic()}: {err}")

    def _raise_delivery_errors(self) -> None:
        if self.errors:
            raise DeliveryError(
                f"{len(self.errors)} routed records not delivered: {self.errors[0]}"
            )

    def _count(self, plan: Plan, role: Role, source: str) -> None:
        """Metrics of a routed record, once its transaction committed."""
        if plan.dlq is not None:
            m.DLQ.labels(plan.dlq, plan.kind).inc()
        if plan.kind == MALFORMED:
            m.MALFORMED.inc()
        if role is Role.FAILURES:
            m.ROUTED.labels(plan.hop, plan.kind).inc()
        elif plan.dlq is None:
            m.FORWARDED.labels(self.rung_of.get(source, "parked")).inc()

    def _consumer_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal() or err.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ):
            raise KafkaException(err)
        log.warning("consumer error: %s", err)

    # -- transactions, rebalances, depth -----------------------------------------
    def commit(self) -> None:
        """The open transaction's offsets into it, then commit it (TxnAborted if aborted)."""
        if not self.txn.open:
            return
        offsets = [TopicPartition(t, p, o) for (t, p), o in self.positions.items()]
        self.txn.commit(offsets, self.consumer.consumer_group_metadata() if offsets else None)
        self._raise_delivery_errors()
        self.committed.update(self.positions)
        self.positions.clear()
        for routed in self.routed:
            self._count(*routed)
        self.routed.clear()
        self.commits += 1
        m.COMMITS.inc()

    def _aborted(self, exc: TxnAborted) -> None:
        """Nothing of the open transaction is visible: read again from the committed offsets."""
        log.warning("%s: rewinding to the last commit", exc)
        m.TXN_ABORTS.inc()
        self.aborts += 1
        self.positions.clear()
        self.routed.clear()
        self._raise_delivery_errors()
        self._rewind()

    def _rewind(self) -> None:
        """Seek every assigned partition back to its committed offset, holds dropped."""
        self.rewind_due = False
        parts = self.consumer.assignment()
        if not parts:
            return
        try:
            committed = self.consumer.committed(parts, timeout=self.settings.txn_call_timeout_s)
            for p in committed:
                tp = (p.topic, p.partition)
                self.holds.drop([tp])
                self.consumer.seek(TopicPartition(p.topic, p.partition,
                                                  p.offset if p.offset >= 0 else OFFSET_BEGINNING))  # fmt: skip
                self.next_offset[tp] = max(p.offset, 0)
            self.consumer.resume(parts)
        except KafkaException as exc:
            raise DeliveryError(f"could not rewind after an aborted transaction: {exc}") from exc

    def _raise_callback_error(self) -> None:
        """Errors of rebalance callbacks surface here, as themselves (not via librdkafka)."""
        if self.callback_error is not None:
            exc, self.callback_error = self.callback_error, None
            raise exc

    def _on_assign(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        if parts:
            self.assignments += 1
            m.REBALANCES.labels("assign").inc()
            self.pauser.fresh.extend(parts)
            log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in parts])

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in parts}
        if not revoked:
            return
        self.revocations += 1
        m.REBALANCES.labels("revoke").inc()
        log.info("revoked %s: committing", sorted(revoked))
        if self.txn.open and not self.failed:
            try:
                self.commit()
            except TxnAborted as exc:
                log.warning("%s on revoke: the next owner re-reads from the last commit", exc)
                self._abandon()
            except Exception as exc:
                self.failed = True
                self.callback_error = exc
        self._drop(revoked)

    def _on_lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in parts}
        m.REBALANCES.labels("lost").inc()
        log.warning("partitions lost (no commit possible): %s", sorted(lost))
        if self.txn.open:
            self.txn.abort_quietly()
            self._abandon()
        self._drop(lost)

    def _abandon(self) -> None:
        """The open transaction was aborted in a callback: rewind the rest in the loop."""
        m.TXN_ABORTS.inc()
        self.aborts += 1
        self.positions.clear()
        self.routed.clear()
        self.rewind_due = True

    def _drop(self, tps: set[TP]) -> None:
        self.holds.drop(tps)
        for tp in tps:
            self.committed.pop(tp, None)
            self.next_offset.pop(tp, None)
            self.positions.pop(tp, None)
            if tp[0] == self.topics.parked:
                with contextlib.suppress(KeyError):
                    m.PARKED_DEPTH.remove(str(tp[1]))

    def _measure_parked(self) -> None:
        """Records in the assigned parked partitions not yet drained (a few broker queries)."""
        parts = [p for p in self.consumer.assignment() if p.topic == self.topics.parked]
        if not parts:
            return
        try:
            group = {(p.topic, p.partition): p.offset for p in self.consumer.committed(parts, 1.0)}
            for p in parts:
                tp = (p.topic, p.partition)
                lo, hi = self.consumer.get_watermark_offsets(p, timeout=1.0, cached=False)
                start = self.next_offset.get(tp, self.committed.get(tp, group.get(tp, -1)))
                m.PARKED_DEPTH.labels(str(p.partition)).set(
                    max(0, hi - (start if start >= 0 else lo))
                )
        except KafkaException as exc:
            log.debug("parked depth not measured: %s", exc)


def run(settings: RouterSettings, stop: StopFlag | None = None) -> None:
    Router(settings, stop).run()
