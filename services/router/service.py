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
shutdown. The routed records are handed to Kafka at the commit (the
producer's ``hold``): ingest's fresh records in ``P.work`` and enrich's
outcomes in ``P.results`` share partitions with them, and a ``read_committed``
reader sees nothing of a partition past an open transaction's first record.
A record the loop holds (not due yet) is not passed, so nothing behind it is
committed. A router killed before its commit leaves nothing on the broker, and
one killed during it an open transaction that its restart (same id) aborts:
readers that read ``read_committed`` never see a record routed twice, so a
record cannot fork into one copy that succeeds and one that dies. An abortable
error aborts the transaction and seeks back to the committed offsets (read
checked, :func:`shared.kafka.patience.committed`); a fatal one (fenced), a
transactional call past its deadline or a failed delivery stops the router with
one line (exit 1).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Sequence

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.router import metrics as m
from services.router import routing
from services.router.drain import DrainGate, HealthCache, TokenBucket
from services.router.health import RedisHealth
from services.router.pausing import Pauser
from services.router.routing import Plan, Role, Wait
from services.router.settings import RouterSettings
from shared.envelope import MALFORMED, Consumed
from shared.errors import DeliveryError
from shared.kafka import patience
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

MAX_WAIT_S = 0.25
DEPTH_INTERVAL_S = 5.0
TUNING = {"fetch.wait.max.ms": 100, "max.partition.fetch.bytes": 262_144}
"""Consumer defaults of the router; a ``SLUICE_KAFKA_PROP_*`` of the same name wins."""


class Router(Handler, TxnHooks):
    def __init__(
        self,
        settings: RouterSettings,
        stop: StopFlag | None = None,
        health: Callable[[str], bool] | None = None,
        clients: Clients = KAFKA,
    ) -> None:
        self.settings = settings
        self.topics = t = settings.topics  # ConfigError on bad rungs
        self.roles = {t.failures: Role.FAILURES, t.parked: Role.PARKED}
        self.rung_of = {t.retry(r): r.label for r in t.rungs}
        self.roles.update(dict.fromkeys(self.rung_of, Role.RETRY))
        self.stop = stop or StopFlag()
        self.committed_offsets: dict[TP, int] = {}  # by the last commit
        self.next_offset: dict[TP, int] = {}  # next record to handle, per partition
        self.routed: list[tuple[Plan, Role, str]] = []  # in the open transaction: counted on commit
        self.errors: list[str] = []  # failed deliveries
        self.assignments = self.revocations = 0
        check = health or RedisHealth(settings.redis_url.get_secret_value(), settings.pipeline)
        self._check = check
        self.health = HealthCache(check, settings.health_refresh_s)
        rps = settings.parked_drain_rps
        self.gate = DrainGate(
            self.health, TokenBucket(rps, max(1.0, rps * settings.min_hold_s), time.time())
        )
        self.txn = TxnProducer(prompt_producer_config(settings, **{
            "transactional.id": settings.transactional_id,
            "transaction.timeout.ms": settings.transaction_timeout_ms,
            "delivery.report.only.error": True, "on_delivery": self._delivered}),
            settings.txn_call_timeout_s, self.stop, clients.producer, hold=True)  # fmt: skip
        tuning = {k: v for k, v in TUNING.items() if k not in settings.kafka_props}
        self.consumer = clients.consumer(
            consumer_config(
                settings, settings.group, stats_cb=lag_stats_callback(settings.group), **tuning
            )
        )
        self.pauser = Pauser(self.consumer, self.health, settings.min_hold_s)
        self.holds = self.pauser.holds
        self._last_depth = time.monotonic()
        self.txns = Transactions(
            self.consumer, self.txn, self, TxnSchedule(settings.commit_interval_s)
        )
        subscription = Subscription(
            list(self.roles), [t.work, t.results, *t.dlqs], t.co_partitioned
        )
        self.loop = ConsumerLoop("router", settings, self.consumer, subscription, self, self.txns,
                                 self.stop, settings.batch_size, MAX_WAIT_S)  # fmt: skip

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        self.loop.run()

    def started(self, partitions: dict[str, int]) -> None:
        self.txn.init()  # fences an older instance with the same id, aborts its transaction
        log.info("router %s → %s, rungs %s", ", ".join(self.roles), self.topics.work,
                 ",".join(r.label for r in self.topics.rungs))  # fmt: skip

    def before_poll(self) -> float:
        """Resume the holds that are over; poll until the next one ends."""
        self.pauser.release(time.time())
        return self.pauser.timeout(MAX_WAIT_S)

    def after_batch(self) -> None:
        self.txn.poll(0)
        self._raise_delivery_errors()
        mono = time.monotonic()
        if mono - self._last_depth >= DEPTH_INTERVAL_S:
            self._last_depth = mono
            self._measure_parked()

    def close(self) -> None:
        """After the consumer's close (its last commit): end the producer's call thread."""
        try:
            if isinstance(self._check, RedisHealth):
                self._check.close()
        finally:
            self.txn.close()

    # -- routing ----------------------------------------------------------------
    def handle(self, msgs: Sequence[Message]) -> None:
        now = time.time()
        for msg in msgs:
            err = msg.error()
            if err is not None:
                consumer_error(err)
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
        self.txns.pending[tp] = offset + 1
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

    # -- transactions (TxnHooks) ---------------------------------------------------
    def committed(self, offsets: dict[TP, int]) -> None:
        self._raise_delivery_errors()
        self.committed_offsets.update(offsets)
        for routed in self.routed:
            self._count(*routed)
        self.routed.clear()
        m.COMMITS.inc()

    def aborted(self) -> None:
        m.TXN_ABORTS.inc()
        self.routed.clear()

    def rewind(self) -> None:
        """Seek every assigned partition back to its committed offset, holds dropped."""
        self._raise_delivery_errors()
        parts = self.consumer.assignment()
        if not parts:
            return
        try:
            # checked: a partition answered with an error is not "nothing committed"
            deadline = time.monotonic() + self.settings.txn_call_timeout_s
            for p in patience.committed(self.consumer, parts, deadline):
                tp = (p.topic, p.partition)
                self.holds.drop([tp])
                self.consumer.seek(TopicPartition(p.topic, p.partition,
                                                  p.offset if p.offset >= 0 else OFFSET_BEGINNING))  # fmt: skip
                self.next_offset[tp] = max(p.offset, 0)
            self.consumer.resume(parts)
        except KafkaException as exc:
            raise DeliveryError(f"could not rewind after an aborted transaction: {exc}") from exc

    # -- rebalances, depth -----------------------------------------------------------
    def assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if parts:
            self.assignments += 1
            m.REBALANCES.labels("assign").inc()
            self.pauser.fresh.extend(parts)

    def forget(self, tps: set[TP], lost: bool) -> None:
        if lost:
            m.REBALANCES.labels("lost").inc()
        else:
            self.revocations += 1
            m.REBALANCES.labels("revoke").inc()
        self.holds.drop(tps)
        for tp in tps:
            self.committed_offsets.pop(tp, None)
            self.next_offset.pop(tp, None)
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
                start = self.next_offset.get(tp, self.committed_offsets.get(tp, group.get(tp, -1)))
                m.PARKED_DEPTH.labels(str(p.partition)).set(
                    max(0, hi - (start if start >= 0 else lo))
                )
        except KafkaException as exc:
            log.debug("parked depth not measured: %s", exc)


def run(settings: RouterSettings, stop: StopFlag | None = None) -> None:
    Router(settings, stop).run()
