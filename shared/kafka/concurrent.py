"""Many records in flight per partition, a consumer that never stalls.

:class:`Dispatcher` is a :class:`~shared.kafka.loop.Handler` of the shared
consumer loop, committing through :class:`~shared.kafka.commits.Watermarked`.
It spans two threads:

* the **Kafka thread** (the loop's) owns the consumer and the producer: it
  hands each polled record to the asyncio thread, pauses the assigned
  partitions when ``max_in_flight`` records are out (or the
  :class:`RecordHandler` takes no work) and resumes them when drained, polling
  all the while so the group never sees a ``max.poll.interval.ms`` breach; it
  produces each finished record's outcome and finishes the record's offset in
  the watermarks once the broker acknowledged every record of that outcome;
* the **asyncio thread** runs :meth:`RecordHandler.handle` for each record.

On revoke and on stop the commit strategy drains: records in flight get a grace
period (:meth:`Dispatcher.drain`), what is safe is committed and the rest is
cancelled uncommitted (the next owner reads it again).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from confluent_kafka import Consumer, TopicPartition

from shared.errors import DeliveryError
from shared.eventloop import LoopKind, new_event_loop
from shared.headers import HeaderError, HeaderList
from shared.headers import read as read_headers
from shared.kafka.commits import Watermarked
from shared.kafka.loop import ConsumerLoop, Handler, Subscription, consumer_error
from shared.kafka.message import TP, Message
from shared.kafka.producer import TrackedProducer, Unit
from shared.kafka.shutdown import StopFlag
from shared.logs import coords
from shared.metrics import RECORDS_SKIPPED
from shared.outcomes import Record
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0
COMPLETION_WAIT_S = 0.005  # longest a finished record waits to be produced
IDLE_WAIT_S = 0.05
MAX_BATCH = 500


@dataclass(frozen=True, slots=True)
class Output:
    topic: str
    record: Record


class RecordHandler(Protocol):
    """What runs on the asyncio thread, one record at a time."""

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
    rebalances: int = 0  # rebalance callbacks (assign, revoke, lost)
    paused: bool = False


class Dispatcher(Handler):
    """Records to the asyncio thread, their outcomes to Kafka, offsets below the acknowledged."""

    def __init__(self, name: str, settings: CommonSettings, consumer: Consumer,
                 producer: TrackedProducer, handler: RecordHandler,
                 event_loop: asyncio.AbstractEventLoop, subscription: Subscription,
                 max_in_flight: int, stop: StopFlag, revoke_grace_s: float = 10.0,
                 gives_way: Callable[[HeaderList], bool] | None = None) -> None:  # fmt: skip
        """``gives_way`` tells the records that make room for the others (a replay's):
        they do not count toward ``max_in_flight``, so a worker whose slots they fill
        goes on reading the records behind them, up to twice ``max_in_flight`` in all.
        The handler serves the others first; these only take what is left."""
        self.consumer = consumer
        self.producer = producer
        self.handler = handler
        self.event_loop = event_loop
        self.max_in_flight = max_in_flight
        self.stop = stop
        self.stats = Stats()
        self.commits = Watermarked(consumer, self.drain, stop, COMMIT_INTERVAL_S, revoke_grace_s)
        self.marks = self.commits.marks
        self.loop = ConsumerLoop(name, settings, consumer, subscription, self, self.commits,
                                 stop, MAX_BATCH, IDLE_WAIT_S)  # fmt: skip
        self._futures: dict[tuple[TP, int], concurrent.futures.Future[None]] = {}
        self._gives_way = gives_way
        self._giving_way: set[tuple[TP, int]] = set()  # of the records in _futures
        self._done: queue.SimpleQueue[_Done] = queue.SimpleQueue()
        self._assigned: set[TP] = set()
        self.failure: DeliveryError | None = None

    def run(self) -> None:
        self.loop.run()

    # -- the Kafka thread --------------------------------------------------------
    def before_poll(self) -> float:
        self._collect()
        self._flow_control()
        # While records are in flight their outcomes must not wait long for this thread.
        return COMPLETION_WAIT_S if self._futures else IDLE_WAIT_S

    def max_batch(self, default: int) -> int:
        room = self._room()
        # Paused: keep polling so the group sees us alive; nothing is returned.
        return min(room, default) if room > 0 and not self.stats.paused else 1

    def handle(self, msgs: Sequence[Message]) -> None:
        track, taken, futures = self.marks.track, self.marks.taken, self._futures
        run_one, event_loop = self._run_one, self.event_loop
        again: list[tuple[TP, int]] = []
        for msg in msgs:
            err = msg.error()
            if err is not None:
                consumer_error(err)
                continue
            tp = (msg.topic() or "", msg.partition() or 0)
            offset = msg.offset() or 0
            if taken(tp, offset):
                # The consumer went back within the assignment: this record is in flight
                # or finished already (its offset is not committed before it is acknowledged).
                again.append((tp, offset))
                continue
            track(tp, offset)
            try:
                hs = read_headers(msg)
            except HeaderError:
                hs = []  # ingest validated them; a hand-written work record may not be
            record = Record(msg.key(), msg.value(), hs)
            futures[(tp, offset)] = asyncio.run_coroutine_threadsafe(
                run_one(record, tp, offset), event_loop
            )
            if self._gives_way is not None and self._gives_way(hs):
                self._giving_way.add((tp, offset))
        if again:
            RECORDS_SKIPPED.labels("redelivered").inc(len(again))
            log.warning("%d records delivered again by the consumer skipped (taken already), "
                        "first %s@%d", len(again), again[0][0], again[0][1])  # fmt: skip

    def after_batch(self) -> None:
        self.producer.poll(0)
        if self.failure is not None:
            raise self.failure

    def _collect(self) -> None:
        """Produce the outcomes of finished records (Kafka thread only)."""
        while True:
            try:
                done = self._done.get_nowait()
            except queue.Empty:
                return
            if self._pop((done.tp, done.offset)) is None:
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

    def _pop(self, key: tuple[TP, int]) -> concurrent.futures.Future[None] | None:
        self._giving_way.discard(key)
        return self._futures.pop(key, None)

    def _room(self) -> int:
        """How many more records may be read now (records giving way count only toward
        the bound of twice ``max_in_flight``)."""
        n = len(self._futures)
        counted = n - len(self._giving_way)
        return min(self.max_in_flight - counted, 2 * self.max_in_flight - n)

    def _flow_control(self) -> None:
        n = len(self._futures)
        counted = n - len(self._giving_way)
        accepting = self.handler.accepting()
        want_pause = self._room() <= 0 or not accepting
        want_resume = (counted <= self.max_in_flight * 3 // 4
                       and n <= self.max_in_flight * 3 // 2 and accepting)  # fmt: skip
        parts = [TopicPartition(t, p) for t, p in self._assigned]
        if want_pause and not self.stats.paused and parts:
            self.consumer.pause(parts)
            self.stats.paused = True
        elif want_resume and self.stats.paused:
            if parts:
                self.consumer.resume(parts)
            self.stats.paused = False

    def _cancel(self, key: tuple[TP, int]) -> None:
        future = self._pop(key)
        if future is not None:
            future.cancel()

    def in_flight(self) -> int:
        return len(self._futures)

    def drain(self, tps: set[TP] | None, grace_s: float) -> None:
        """Let in-flight records of ``tps`` (None: all) finish for up to ``grace_s``, cancel
        the rest, and wait for the outcomes produced to be acknowledged."""
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and any(
            tps is None or tp in tps for tp, _ in self._futures
        ):
            self._collect()
            self.producer.poll(0.05)
        self._collect()
        for key in [k for k in self._futures if tps is None or k[0] in tps]:
            self._cancel(key)
        stop_by = self.stop.deadline()
        flush_s = 30.0 if stop_by is None else max(1.0, stop_by - time.monotonic() - 1.0)
        try:
            self.producer.flush(flush_s)
        except DeliveryError:
            log.exception(
                "outcomes not acknowledged while draining; their offsets stay uncommitted"
            )

    # -- rebalances ------------------------------------------------------------------
    def assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        self.stats.rebalances += 1
        self._assigned |= {(p.topic, p.partition) for p in parts}
        if self.stats.paused:
            consumer.pause(parts)

    def forget(self, tps: set[TP], lost: bool) -> None:
        """Revoked (drained already) or lost: what is still in flight is cancelled uncommitted."""
        self.stats.rebalances += 1
        self._assigned -= tps
        for key in [k for k in self._futures if k[0] in tps]:
            self._cancel(key)

    def close(self) -> None:
        """A delivery that failed while draining at the stop fails the run."""
        if self.failure is not None and not self.loop.failed:
            raise self.failure

    # -- the asyncio thread ------------------------------------------------------
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


def start_loop(kind: LoopKind = "auto") -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    """An event loop (:func:`shared.eventloop.new_event_loop`) running in a daemon thread."""
    loop = new_event_loop(kind)
    thread = threading.Thread(target=loop.run_forever, name="sluice-async", daemon=True)
    thread.start()
    return loop, thread


def stop_loop(loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
