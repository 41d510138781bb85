"""An in-memory Kafka for tests: a broker, consumers and producers that behave like
confluent-kafka's, behind :class:`shared.kafka.clients.Clients`.

What it keeps of Kafka: topics of partitions (append-only logs), one consumer
group per ``group.id`` with committed offsets, rebalance callbacks fired from
inside ``consume``/``poll`` (one member per group gets every partition), pause,
resume and seek, delivery reports served by ``poll``/``flush``, and
transactions whose records and offsets become visible together on commit
(aborted ones never do). What it leaves out: replication, timing, fetch sizes,
more than one member per group.

Faults for tests: :meth:`MemBroker.inject_error` (a consumer error in the next
poll), :attr:`MemBroker.failing_topics` (deliveries to them fail),
:attr:`MemBroker.abort_commits` (that many transaction commits fail with an
abortable error), :attr:`MemBroker.hang_commits_s` (commits hang that long), :meth:`MemConsumer.rebalance` and :meth:`MemConsumer.lose`.
"""

from __future__ import annotations

import itertools
import threading
import time
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import (
    OFFSET_BEGINNING,
    OFFSET_END,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from shared.kafka.clients import Clients
from shared.kafka.message import TP

Headers = list[tuple[str, bytes]]
OFFSET_INVALID = -1001


class MemMessage:
    """A record as a consumer sees it (:class:`shared.kafka.message.Message`)."""

    __slots__ = ("_error", "_headers", "_key", "_offset", "_partition", "_topic", "_ts", "_value")

    def __init__(self, topic: str | None, partition: int | None, offset: int | None,
                 key: bytes | None, value: bytes | None, headers: Headers | None,
                 ts: int, error: KafkaError | None = None) -> None:  # fmt: skip
        self._topic, self._partition, self._offset = topic, partition, offset
        self._key, self._value, self._headers, self._ts = key, value, headers, ts
        self._error = error

    def topic(self) -> str | None:
        return self._topic

    def partition(self) -> int | None:
        return self._partition

    def offset(self) -> int | None:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> Headers | None:
        return None if self._headers is None else list(self._headers)

    def timestamp(self) -> tuple[int, int]:
        return (1, self._ts)  # TIMESTAMP_CREATE_TIME

    def error(self) -> KafkaError | None:
        return self._error


@dataclass
class _Topic:
    name: str
    partitions: list[list[MemMessage]]


@dataclass
class _PartitionMeta:
    id: int
    leader: int = 1


@dataclass
class _TopicMeta:
    partitions: dict[int, _PartitionMeta]
    error: KafkaError | None = None


@dataclass
class _Metadata:
    topics: dict[str, _TopicMeta] = field(default_factory=dict)


class MemBroker:
    """Topics, committed offsets, and the clients that reach them."""

    def __init__(self) -> None:
        self.topics: dict[str, _Topic] = {}
        self.groups: dict[str, dict[TP, int]] = {}
        self.changed = threading.Condition()
        self.failing_topics: set[str] = set()
        self.abort_commits = 0
        self.refuse_commits = 0  # the next so many asynchronous commits are refused
        self.hang_commits_s = 0.0
        self.errors: list[KafkaError] = []
        self.consumers: list[MemConsumer] = []
        self._round_robin = itertools.count()

    # -- what a test does ---------------------------------------------------------------
    def clients(self) -> Clients:
        return Clients(self.consumer, self.producer)  # type: ignore[arg-type]

    def consumer(self, config: dict[str, Any]) -> MemConsumer:
        c = MemConsumer(self, config)
        self.consumers.append(c)
        return c

    def producer(self, config: dict[str, Any]) -> MemProducer:
        return MemProducer(self, config)

    def create_topic(self, name: str, partitions: int) -> None:
        with self.changed:
            self.topics.setdefault(name, _Topic(name, [[] for _ in range(partitions)]))

    def produce(self, topic: str, records: Iterable[tuple[bytes | None, bytes | None, Headers | None]]) -> int:  # fmt: skip
        n = 0
        for key, value, headers in records:
            self.append(topic, -1, key, value, headers, int(time.time() * 1000))
            n += 1
        return n

    def read_all(self, topic: str) -> list[MemMessage]:
        with self.changed:
            return [m for part in self.topics[topic].partitions for m in part]

    def inject_error(self, err: KafkaError) -> None:
        """The next poll of any consumer returns a message carrying ``err``."""
        with self.changed:
            self.errors.append(err)
            self.changed.notify_all()

    # -- what the clients do --------------------------------------------------------------
    def partition_for(self, topic: str, key: bytes | None, partition: int) -> int:
        n = len(self.topics[topic].partitions)
        if partition >= 0:
            return partition
        if key is None:
            return next(self._round_robin) % n
        return zlib.crc32(key) % n

    def append(self, topic: str, partition: int, key: bytes | None, value: bytes | None,
               headers: Headers | None, ts: int) -> MemMessage:  # fmt: skip
        with self.changed:
            if topic not in self.topics:
                raise KafkaException(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, topic))
            p = self.partition_for(topic, key, partition)
            log = self.topics[topic].partitions[p]
            msg = MemMessage(topic, p, len(log), key, value,
                             None if headers is None else list(headers), ts)  # fmt: skip
            log.append(msg)
            self.changed.notify_all()
            return msg

    def metadata(self) -> _Metadata:
        with self.changed:
            return _Metadata({
                name: _TopicMeta({i: _PartitionMeta(i) for i in range(len(t.partitions))})
                for name, t in self.topics.items()
            })  # fmt: skip

    def commit_offsets(self, group: str, offsets: Iterable[TopicPartition]) -> None:
        with self.changed:
            committed = self.groups.setdefault(group, {})
            for tp in offsets:
                committed[(tp.topic, tp.partition)] = tp.offset


Callback = Callable[[Any, list[TopicPartition]], None]


class MemConsumer:
    """One member of a group: it gets every partition of the topics it subscribes to."""

    def __init__(self, broker: MemBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.group = str(config.get("group.id", ""))
        self.reset = str(config.get("auto.offset.reset", "latest"))
        self.topics: list[str] = []
        self.callbacks: dict[str, Callback | None] = {}
        self.positions: dict[TP, int] = {}  # assigned partitions: next offset to read
        self.paused: set[TP] = set()
        self.closed = False
        self._due: list[tuple[str, list[TP] | None]] = []  # rebalances for the next poll
        self.on_commit: Callable[[KafkaError | None, list[TopicPartition]], None] | None = (
            config.get("on_commit")
        )
        self._commit_results: list[tuple[KafkaError | None, list[TopicPartition]]] = []
        self._assigned_in_callback = False
        # called with what each ``consume`` call returns (a test schedules rebalances with it)
        self.after_consume: Callable[[int, list[MemMessage]], None] | None = None

    # -- group membership ---------------------------------------------------------------
    def subscribe(self, topics: list[str], on_assign: Callback | None = None,
                  on_revoke: Callback | None = None, on_lost: Callback | None = None) -> None:  # fmt: skip
        self.topics = list(topics)
        self.callbacks = {"assign": on_assign, "revoke": on_revoke, "lost": on_lost}
        self._due = [("assign", None)]

    def rebalance(self) -> None:
        """The next poll revokes every partition, then assigns them again."""
        self._due += [("revoke", None), ("assign", None)]

    def lose(self, parts: list[TP] | None = None) -> None:
        """The next poll loses ``parts`` (every partition), then assigns them again
        (incrementally: the other partitions stay where they are)."""
        self._due += [("lost", parts), ("assign", parts)]

    def _serve_commit_results(self) -> None:
        results, self._commit_results = self._commit_results, []
        if self.on_commit is not None:
            for err, parts in results:
                self.on_commit(err, parts)

    def _serve_rebalances(self) -> None:
        while self._due:
            event, only = self._due.pop(0)
            if event == "assign":
                parts = [TopicPartition(t, p) for t in self.topics
                         for p in range(len(self.broker.topics[t].partitions))
                         if only is None or (t, p) in only]  # fmt: skip
                self._assigned_in_callback = False
                cb = self.callbacks.get("assign")
                if cb is not None:
                    cb(self, parts)
                if not self._assigned_in_callback:
                    self.assign(parts)
            else:
                parts = [p for p in self.assignment()
                         if only is None or (p.topic, p.partition) in only]  # fmt: skip
                cb = self.callbacks.get(event)
                if cb is None and event == "lost":
                    cb = self.callbacks.get("revoke")
                if cb is not None:
                    cb(self, parts)
                for p in parts:
                    self.positions.pop((p.topic, p.partition), None)
                    self.paused.discard((p.topic, p.partition))

    def assign(self, parts: list[TopicPartition]) -> None:
        self._assigned_in_callback = True
        committed = self.broker.groups.get(self.group, {})
        for p in parts:
            tp = (p.topic, p.partition)
            off = p.offset if p.offset >= 0 else committed.get(tp, p.offset)
            self.positions[tp] = self._resolve(tp, off)

    def _resolve(self, tp: TP, off: int) -> int:
        end = len(self.broker.topics[tp[0]].partitions[tp[1]])
        if off == OFFSET_BEGINNING:
            return 0
        if off == OFFSET_END or off < 0:
            return (
                0
                if off != OFFSET_END and self.reset in ("earliest", "beginning", "smallest")
                else end
            )
        return off

    def unassign(self) -> None:
        self.positions.clear()
        self.paused.clear()

    def assignment(self) -> list[TopicPartition]:
        return [TopicPartition(t, p) for t, p in self.positions]

    # -- reading ------------------------------------------------------------------------------
    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[MemMessage]:
        self._check_open()
        self._serve_commit_results()
        self._serve_rebalances()
        deadline = time.monotonic() + (timeout if timeout >= 0 else 3600)
        with self.broker.changed:
            while True:
                got = self._take(num_messages)
                left = deadline - time.monotonic()
                if got or left <= 0:
                    if self.after_consume is not None:
                        self.after_consume(num_messages, got)
                    return got
                self.broker.changed.wait(min(left, 0.05))

    def poll(self, timeout: float = -1) -> MemMessage | None:
        got = self.consume(1, timeout)
        return got[0] if got else None

    def _take(self, n: int) -> list[MemMessage]:
        if self.broker.errors:
            err = self.broker.errors.pop(0)
            return [MemMessage(None, None, None, None, None, None, 0, err)]
        out: list[MemMessage] = []
        for tp, pos in self.positions.items():
            if tp in self.paused:
                continue
            log = self.broker.topics[tp[0]].partitions[tp[1]]
            batch = log[pos : pos + n - len(out)]
            out += batch
            self.positions[tp] = pos + len(batch)
            if len(out) >= n:
                break
        return out

    def seek(self, tp: TopicPartition) -> None:
        self.positions[(tp.topic, tp.partition)] = self._resolve(
            (tp.topic, tp.partition), tp.offset
        )

    def pause(self, parts: list[TopicPartition]) -> None:
        self.paused |= {(p.topic, p.partition) for p in parts}

    def resume(self, parts: list[TopicPartition]) -> None:
        self.paused -= {(p.topic, p.partition) for p in parts}

    # -- offsets ----------------------------------------------------------------------------
    def commit(self, message: object = None, offsets: list[TopicPartition] | None = None,
               asynchronous: bool = True) -> None:  # fmt: skip
        self._check_open()
        if offsets is None:
            offsets = [TopicPartition(t, p, o) for (t, p), o in self.positions.items()]
        if asynchronous and self.broker.refuse_commits > 0:
            self.broker.refuse_commits -= 1
            err = KafkaError(KafkaError.REBALANCE_IN_PROGRESS, "refused")
            self._commit_results.append((err, offsets))  # served by the next poll, as librdkafka
            return
        self.broker.commit_offsets(self.group, offsets)
        if asynchronous:
            self._commit_results.append((None, offsets))

    def committed(self, parts: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
        got = self.broker.groups.get(self.group, {})
        return [TopicPartition(p.topic, p.partition, got.get((p.topic, p.partition), OFFSET_INVALID))
                for p in parts]  # fmt: skip

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float = -1,
                              cached: bool = False) -> tuple[int, int]:  # fmt: skip
        return 0, len(self.broker.topics[tp.topic].partitions[tp.partition])

    def consumer_group_metadata(self) -> str:
        return self.group

    def list_topics(self, topic: str | None = None, timeout: float = -1) -> _Metadata:
        return self.broker.metadata()

    def close(self) -> None:
        if self.closed:
            return
        if self.positions:
            cb = self.callbacks.get("revoke")
            if cb is not None:
                cb(self, self.assignment())
        self.positions.clear()
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise RuntimeError("Consumer closed")


@dataclass
class _Pending:
    topic: str
    partition: int
    key: bytes | None
    value: bytes | None
    headers: Headers | None
    ts: int
    on_delivery: Callable[[KafkaError | None, Any], None] | None


class MemProducer:
    """A producer; with a ``transactional.id`` its records wait for the commit."""

    def __init__(self, broker: MemBroker, config: dict[str, Any]) -> None:
        self.broker = broker
        self.on_delivery = config.get("on_delivery")
        self.only_errors = bool(config.get("delivery.report.only.error"))
        self.transactional = "transactional.id" in config
        self.in_txn = False
        self.txn: list[_Pending] = []
        self.txn_offsets: list[TopicPartition] = []
        self.txn_group: str | None = None
        self.reports: list[tuple[Callable[[KafkaError | None, Any], None], KafkaError | None, Any]] = []  # fmt: skip

    def produce(self, topic: str, value: bytes | None = None, key: bytes | None = None,
                partition: int = -1, on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
                timestamp: int = 0, headers: Headers | None = None) -> None:  # fmt: skip
        if self.transactional and not self.in_txn:
            raise KafkaException(KafkaError(KafkaError._STATE, "no transaction open"))
        if topic not in self.broker.topics:
            raise KafkaException(KafkaError(KafkaError._UNKNOWN_TOPIC, topic))
        p = _Pending(topic, self.broker.partition_for(topic, key, partition), key, value, headers,
                     timestamp or int(time.time() * 1000), on_delivery or self.on_delivery)  # fmt: skip
        if self.in_txn:
            self.txn.append(p)
        else:
            self._deliver(p)

    def _deliver(self, p: _Pending) -> None:
        if p.topic in self.broker.failing_topics:
            err: KafkaError | None = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, "injected failure")
            msg: Any = MemMessage(p.topic, p.partition, None, p.key, p.value, p.headers, p.ts, err)
        else:
            err = None
            msg = self.broker.append(p.topic, p.partition, p.key, p.value, p.headers, p.ts)
        if p.on_delivery is not None and (err is not None or not self.only_errors):
            self.reports.append((p.on_delivery, err, msg))

    def poll(self, timeout: float = 0) -> int:
        reports, self.reports = self.reports, []
        for cb, err, msg in reports:
            cb(err, msg)
        return len(reports)

    def flush(self, timeout: float = -1) -> int:
        self.poll(0)
        return 0

    def __len__(self) -> int:
        return len(self.reports)

    # -- transactions ---------------------------------------------------------------------------
    def init_transactions(self, timeout: float = -1) -> None:
        self.in_txn = False

    def begin_transaction(self) -> None:
        if self.in_txn:
            raise KafkaException(KafkaError(KafkaError._STATE, "transaction already open"))
        self.in_txn = True
        self.txn, self.txn_offsets = [], []

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], group_metadata: Any,
                                    timeout: float = -1) -> None:  # fmt: skip
        self.txn_offsets += offsets
        self.txn_group = str(group_metadata)

    def commit_transaction(self, timeout: float = -1) -> None:
        if self.broker.hang_commits_s:
            time.sleep(self.broker.hang_commits_s)  # librdkafka #5456: the timeout is not kept
        if self.broker.abort_commits > 0:
            self.broker.abort_commits -= 1
            raise KafkaException(KafkaError(KafkaError._STATE, "injected", txn_requires_abort=True))
        for p in self.txn:
            self._deliver(p)
        if self.txn_group is not None:
            self.broker.commit_offsets(self.txn_group, self.txn_offsets)
        self.in_txn, self.txn, self.txn_offsets = False, [], []
        self.poll(0)

    def abort_transaction(self, timeout: float = -1) -> None:
        self.in_txn, self.txn, self.txn_offsets = False, [], []
