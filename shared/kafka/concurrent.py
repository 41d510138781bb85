"""Many records in flight per partition, a consumer that never stalls.

:class:`ConcurrentConsumer` runs two threads:

* the **Kafka thread** (the caller's) owns the consumer and the producer: it
  polls, pauses partitions when ``max_in_flight`` records are out and resumes
  them when drained (polling all the while, so the group never sees a
  ``max.poll.interval.ms`` breach), produces each record's outcome and
  commits, per partition, only the offset below which every outcome was
  acknowledged by the broker (:class:`shared.watermark.Watermarks`);
* the **asyncio thread** runs :meth:`Handler.handle` for each record.

On revoke, intake for those partitions stops, in-flight records get a grace
period, what is safe is committed and the rest is cancelled uncommitted (the
next owner re-reads it). SIGTERM does the same for every partition.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from shared.errors import DeliveryError
from shared.headers import HeaderError
from shared.headers import read as read_headers
from shared.kafka.consume import consume_available
from shared.kafka.message import TP
from shared.kafka.producer import TrackedProducer, Unit
from shared.kafka.shutdown import StopFlag
from shared.logs import coords
from shared.outcomes import Record
from shared.watermark import Watermarks

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
COMPLETION_WAIT_S = 0.005  # longest a finished record waits to be produced
IDLE_WAIT_S = 0.05
DEFAULT_DRAIN_S = 15.0  # without a grace period (a stop flag made in code)
CLOSE_RESERVE_S = 3.0  # of the grace period: the last flush and commit


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    record: Record


class Handler(Protocol):
    async def handle(self, msg: Record, tp: TP, offset: int) -> Sequence[Output]:
        """Process one record; return what to produce. Must not raise."""
        ...

    def accepting(self) -> bool:
        """False while no new work should be taken (e.g. every provider is down)."""
        ...


@dataclass
class _Done:
    tp: TP
    offset: int
    outputs: Sequence[Output]


@dataclass
class Stats:
    rebalances: int = 0
    paused: bool = False


class ConcurrentConsumer:
    def __init__(
        self,
        consumer: Consumer,
        producer: TrackedProducer,
        handler: Handler,
        loop: asyncio.AbstractEventLoop,
        max_in_flight: int,
        stop: StopFlag,
        revoke_grace_s: float = 10.0,
    ) -> None:
        self.consumer = consumer
        self.producer = producer
        self.handler = handler
        self.loop = loop
        self.max_in_flight = max_in_flight
        self.stop = stop
        self.revoke_grace_s = revoke_grace_s
        self.marks = Watermarks()
        self.stats = Stats()
        self._futures: dict[tuple[TP, int], concurrent.futures.Future[None]] = {}
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._assigned: set[TP] = set()
        self._committed: dict[TP, int] = {}
        self._last_commit = time.monotonic()
        self.failure: DeliveryError | None = None

    # -- the Kafka thread --------------------------------------------------------
    def subscribe(self, topics: list[str]) -> None:
        self.consumer.subscribe(
            topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )

    def run(self) -> None:
        try:
            while not self.stop.is_set() and self.failure is None:
                self.step()
        finally:
            self.drain(self._in_flight_tps(), self._shutdown_drain_s())
            self._commit(asynchronous=False)
        if self.failure is not None:
            raise self.failure

    def step(self) -> None:
        self._collect()
        self._flow_control()
        room = self.max_in_flight - len(self._futures)
        # While records are in flight their outcomes must not wait long for this thread.
        wait = COMPLETION_WAIT_S if self._futures else IDLE_WAIT_S
        if room > 0 and not self.stats.paused:
            msgs = consume_available(self.consumer, min(room, 500), wait)
            for msg in msgs:
                self._start(msg)
        else:
            # Paused: keep polling so the group sees us alive; nothing is returned.
            self.consumer.consume(1, wait)
        self.producer.poll(0)
        if time.monotonic() - self._last_commit >= COMMIT_INTERVAL_S:
            self._commit(asynchronous=True)

    def _start(self, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            if err.code() != KafkaError._PARTITION_EOF:
                if err.fatal():
                    raise KafkaException(err)
                log.warning("consumer error: %s", err)
            return
        tp = (msg.topic() or "", msg.partition() or 0)
        offset = msg.offset() or 0
        self.marks.track(tp, offset)
        try:
            hs = read_headers(msg)
        except HeaderError:
            hs = []  # ingest validated them; a hand-written work record may not be
        record = Record(msg.key(), msg.value(), hs)
        fut = asyncio.run_coroutine_threadsafe(self._run_one(record, tp, offset), self.loop)
        self._futures[(tp, offset)] = fut

    async def _run_one(self, record: Record, tp: TP, offset: int) -> None:
        try:
            outputs = await self.handler.handle(record, tp, offset)
        except asyncio.CancelledError:
            raise
        except Exception:  # a handler bug must not lose the record: leave it uncommitted and stop
            log.exception(
                "handler failed", extra={"record": coords(tp[0], tp[1], offset, record.key)}
            )
            self.stop.set("handler error")
            raise
        self._done.put(_Done(tp, offset, outputs))

    def _collect(self) -> None:
        """Produce the outcomes of finished records (Kafka thread only)."""
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return
            if self._futures.pop((done.tp, done.offset), None) is None:
                continue  # its partition was revoked meanwhile: not ours any more
            unit = Unit(self._acked, (done.tp, done.offset))
            for out in done.outputs:
                r = out.record
                self.producer.produce(out.topic, r.value, r.key, r.headers, unit)
            unit.seal()

    def _acked(self, unit: Unit) -> None:
        tp, offset = unit.payload
        if not unit.ok:
            self.failure = DeliveryError(
                f"outcome of {tp}@{offset} not delivered: {unit.errors[0]}"
            )
            return
        if tp in self._assigned:
            # a partition revoked and re-assigned meanwhile no longer tracks this offset
            with contextlib.suppress(ValueError):
                self.marks.finish(tp, offset)

    def _flow_control(self) -> None:
        n = len(self._futures)
        want_pause = n >= self.max_in_flight or not self.handler.accepting()
        want_resume = n <= self.max_in_flight * 3 // 4 and self.handler.accepting()
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        if want_pause and not self.stats.paused and parts:
            self.consumer.pause(parts)
            self.stats.paused = True
        elif want_resume and self.stats.paused:
            if parts:
                self.consumer.resume(parts)
            self.stats.paused = False

    def _shutdown_drain_s(self) -> float:
        """How long in-flight records may still finish: the stop's grace period
        (``SLUICE_SHUTDOWN_GRACE_S``) less a few seconds for the last produce and commit."""
        deadline = self.stop.deadline()
        if deadline is None:
            return DEFAULT_DRAIN_S
        return max(0.0, deadline - time.monotonic() - CLOSE_RESERVE_S)

    def _in_flight_tps(self) -> set[TP]:
        return {tp for tp, _ in self._futures}

    def in_flight(self) -> int:
        return len(self._futures)

    def drain(self, tps: set[TP], grace_s: float) -> None:
        """Let in-flight records of ``tps`` finish for up to ``grace_s``; cancel the rest."""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(tp in tps for tp, _ in self._futures):
            self._collect()
            self.producer.poll(0.05)
        self._collect()
        for key in [k for k in self._futures if k[0] in tps]:
            self._futures.pop(key).cancel()
        stop_by = self.stop.deadline()
        flush_s = 30.0 if stop_by is None else max(1.0, stop_by - time.monotonic() - 1.0)
        try:
            self.producer.flush(flush_s)
        except DeliveryError:
            log.exception(
                "outcomes not acknowledged while draining; their offsets stay uncommitted"
            )

    def _commit(self, asynchronous: bool, only: set[TP] | None = None) -> None:
        self._last_commit = time.monotonic()
        offsets = []
        for tp in self.marks.partitions():
            if only is not None and tp not in only:
                continue
            safe = self.marks.committable(tp)
            if safe is not None and safe != self._committed.get(tp):
                offsets.append(TopicPartition(tp[0], tp[1], safe))
        if not offsets:
            return
        try:
            if asynchronous:
                self.consumer.commit(offsets=offsets, asynchronous=True)
            else:
                self.consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed (will retry): %s", exc)
            return
        for tpo in offsets:
            self._committed[(tpo.topic, tpo.partition)] = tpo.offset

    def _on_assign(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        tps = {(p.topic, p.partition) for p in parts}
        self._assigned |= tps
        if self.stats.paused:
            consumer.pause(parts)
        log.info("assigned %s", sorted(tps))

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        tps = {(p.topic, p.partition) for p in parts}
        log.info("revoked %s: draining in-flight for up to %.0fs", sorted(tps), self.revoke_grace_s)
        self.drain(tps, self.revoke_grace_s)
        self._commit(asynchronous=False, only=tps)
        self._forget(tps)

    def _on_lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        tps = {(p.topic, p.partition) for p in parts}
        log.warning("partitions lost: %s; in-flight work is cancelled uncommitted", sorted(tps))
        for key in [k for k in self._futures if k[0] in tps]:
            self._futures.pop(key).cancel()
        self._forget(tps)

    def _forget(self, tps: set[TP]) -> None:
        for tp in tps:
            self._assigned.discard(tp)
            self.marks.forget(tp)
            self._committed.pop(tp, None)


def start_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """An event loop running in a daemon thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="sluice-async", daemon=True)
    thread.start()
    return loop, thread


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
