"""The router loop: one consumer over ``P.failures``, every ``P.retry.<rung>`` and ``P.parked``.

One consumer in one group (``P.router``) and one thread: failures are cheap
to route (no network call but Kafka), so one poll loop keeps up, and a single
loop means one producer, one set of watermarks and one commit path.

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

At-least-once: every routed record is one :class:`Unit` (a DLQ write and its
dead outcome are one unit); its offset is finished in the
:class:`Watermarks` only when the broker acknowledged all of the unit, and
only the finished prefix is committed (about once a second, on revoke after a
flush, and on shutdown). A held record is not tracked, so nothing behind it
is committed. A delivery failure stops the router without committing past it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.router import metrics as m
from services.router import routing
from services.router.drain import Gate, HealthCache, TokenBucket
from services.router.envelope import MALFORMED, Consumed
from services.router.health import RedisHealth
from services.router.pausing import Pauser
from services.router.routing import Role, Wait
from services.router.settings import RouterSettings
from shared.errors import DeliveryError
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.producer import TrackedProducer, Unit
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_topics
from shared.logs import coords
from shared.metrics import lag_stats_callback
from shared.watermark import TP, Watermarks

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
        self.marks = Watermarks()
        self.committed: dict[TP, int] = {}
        self.next_offset: dict[TP, int] = {}  # next record to handle, per partition
        self.generation: dict[TP, int] = {}  # bumped when a partition is dropped
        self.errors: list[str] = []
        self.assignments = self.revocations = 0
        check = health or RedisHealth(settings.redis_url.get_secret_value(), settings.pipeline)
        self._check = check
        self.health = HealthCache(check, settings.health_refresh_s)
        rps = settings.parked_drain_rps
        self.gate = Gate(
            self.health, TokenBucket(rps, max(1.0, rps * settings.min_hold_s), time.time())
        )
        self.producer = TrackedProducer(producer_config(settings))
        tuning = {k: v for k, v in TUNING.items() if k not in settings.kafka_props}
        self.consumer = Consumer(
            consumer_config(
                settings, settings.group, stats_cb=lag_stats_callback(settings.group), **tuning
            )
        )
        self.pauser = Pauser(self.consumer, self.health, settings.min_hold_s)
        self.holds = self.pauser.holds
        self._last_commit = self._last_depth = time.monotonic()

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        try:
            self.check_topics()
            self.consumer.subscribe(list(self.roles), on_assign=self._on_assign,
                                    on_revoke=self._on_revoke, on_lost=self._on_lost)  # fmt: skip
            log.info("router %s → %s, rungs %s", ", ".join(self.roles), self.topics.work,
                     ",".join(r.label for r in self.topics.rungs))  # fmt: skip
            while not self.stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> None:
        self.pauser.release(time.time())
        # poll() returns as soon as a record is there (consume() would wait for a full
        # batch or the timeout, making due records late); then take what else is queued.
        first = self.consumer.poll(self.pauser.timeout(MAX_WAIT_S))
        if first is not None:
            self._handle_batch(
                [first, *self.consumer.consume(max(1, self.settings.batch_size - 1), 0)]
            )
        self.producer.poll(0)
        if self.errors:
            raise DeliveryError(
                f"{len(self.errors)} routed records not delivered: {self.errors[0]}"
            )
        mono = time.monotonic()
        if mono - self._last_commit >= self.settings.commit_interval_s:
            self.commit(asynchronous=True)
        if mono - self._last_depth >= DEPTH_INTERVAL_S:
            self._last_depth = mono
            self._measure_parked()

    def check_topics(self) -> None:
        t = self.topics
        needed = [*self.roles, t.work, t.results, *t.dlqs]
        check_topics(self.consumer, self.settings, needed, t.co_partitioned)

    def close(self) -> None:
        """Flush, commit what is safe, leave the group."""
        log.info("router stopping (%s): flushing and committing", self.stop.reason or "error")
        try:
            self.producer.flush()
        finally:
            try:
                self.commit(asynchronous=False, force=True)
            except KafkaException:
                log.exception("final commit failed; uncommitted records will be re-read")
            self.consumer.close()
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
        self.marks.track(tp, offset)
        unit = Unit(self._done, (tp, offset, self.generation.get(tp, 0), plan, role, c.topic))
        for s in plan.sends:
            r = s.record
            self.producer.produce(s.topic, r.value, r.key, r.headers, unit, s.timestamp)
        unit.seal()

    def _done(self, unit: Unit) -> None:
        tp, offset, gen, plan, role, source = unit.payload
        if not unit.ok:
            self.errors.append(f"{tp[0]}[{tp[1]}]@{offset}: {unit.errors[0]}")
            return
        if self.generation.get(tp, 0) != gen:
            return  # the partition was dropped meanwhile; its next owner re-reads this
        self.marks.finish(tp, offset)
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

    # -- commits, rebalances, depth ---------------------------------------------
    def commit(self, asynchronous: bool, only: set[TP] | None = None, force: bool = False) -> None:
        """Commit, per partition, the offset past the acknowledged prefix."""
        self._last_commit = time.monotonic()
        offsets = []
        for tp in self.marks.partitions():
            safe = self.marks.committable(tp)
            wanted = only is None or tp in only
            if wanted and safe is not None and (force or self.committed.get(tp) != safe):
                offsets.append(TopicPartition(tp[0], tp[1], safe))
        if not offsets:
            return
        if asynchronous:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        else:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        self.committed.update({(o.topic, o.partition): o.offset for o in offsets})
        m.COMMITS.inc()

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
        log.info("revoked %s: flushing and committing", sorted(revoked))
        try:
            self.producer.flush()
            self.commit(asynchronous=False, only=revoked)
        except (DeliveryError, KafkaException):
            log.exception("commit on revoke failed; the next owner re-reads from the last commit")
        self._drop(revoked)

    def _on_lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in parts}
        m.REBALANCES.labels("lost").inc()
        log.warning("partitions lost (no commit possible): %s", sorted(lost))
        self._drop(lost)

    def _drop(self, tps: set[TP]) -> None:
        self.holds.drop(tps)
        for tp in tps:
            self.marks.forget(tp)
            self.committed.pop(tp, None)
            self.next_offset.pop(tp, None)
            self.generation[tp] = self.generation.get(tp, 0) + 1
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
