"""Kafka transactions with deadlines, for the stages that consume → produce exactly once.

One :class:`TxnProducer` per instance (``transactional.id`` stable per
instance). A transaction holds the records produced into it and the consumer
offsets (``send_offsets_to_transaction`` with the consumer's group metadata,
KIP-447): either all of it is visible to ``read_committed`` readers and the
offsets move, or none of it and they do not.

Every blocking call (``init_transactions``, ``send_offsets_to_transaction``,
``commit_transaction``, ``abort_transaction``) has a deadline:
``call_timeout_s``, shortened to the stop's grace period once a stop was asked
for. librdkafka does not always honour the timeout it is given
(``send_offsets_to_transaction`` waits for an unreachable group coordinator
for as long as that takes, and after a broker restart it was seen to wait for
good: librdkafka #5456), and while a thread is inside librdkafka Python runs
no signal handler. So the calls run on a helper thread and the caller waits for
them with the deadline. Retriable errors are retried until the deadline.

What :meth:`TxnProducer.commit` ends in:

=====================================  ==============================================
committed                               returns
abortable error, or retriable errors    the transaction is aborted; :class:`TxnAborted`
until the deadline                      (the caller rewinds to the last commit)
fatal error (fenced by a newer          :class:`~shared.errors.TransactionError`: the
instance, ...), a call still running    producer is unusable; the process exits
at its deadline, an abort that fails    non-zero and a restart resumes from the last
                                        commit
=====================================  ==============================================

Held records (``hold=True``). From a transaction's first record on a partition
until its commit marker, ``read_committed`` readers of that partition see
nothing past that record, including what other producers write there
meanwhile (the partition's last stable offset waits for the transaction). A
stage whose transactions write into a topic that others also write (the
router and a DLQ replay write ``P.work``, which ingest fills with fresh
records; the router writes ``P.results``, which enrich fills) would hold the
others' records back for as long as its transaction stays open. With
``hold`` the producer keeps each record in memory and hands them all to
librdkafka, in order, when :meth:`TxnProducer.commit` runs: the partitions
are then held only for the commit itself. What a reader sees, and when it
sees the held records, does not change (at the commit either way); a
record's produce error surfaces from :meth:`TxnProducer.commit` instead.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from shared.errors import DeliveryError, TransactionError
from shared.kafka.shutdown import StopFlag

log = logging.getLogger(__name__)

T = TypeVar("T")
Headers = list[tuple[str, bytes]]
SLACK_S = 1.0
"""How long past its own timeout a librdkafka call may take to return before it counts as stuck."""


class TxnAborted(Exception):
    """The open transaction was aborted; nothing of it is visible. Rewind to the last commit."""

    def __init__(self, cause: object) -> None:
        super().__init__(f"transaction aborted: {cause}")
        self.cause = cause


class _Stuck(Exception):
    """A librdkafka call did not return by its deadline."""


class _Expired(Exception):
    """A call kept failing with retriable errors until its deadline."""


class _Caller:
    """Runs one blocking call at a time on a daemon thread; waits for it with a deadline."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[
            tuple[Callable[[], Any], dict[str, Any], threading.Event] | None
        ] = queue.SimpleQueue()
        threading.Thread(target=self._serve, name=name, daemon=True).start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            fn, box, done = job
            try:
                box["value"] = fn()
            except BaseException as exc:  # handed to the waiting caller
                box["error"] = exc
            done.set()
            # Waiting for the next job must not keep this one's call (and the producer it
            # is bound to) alive.
            del job, fn, box, done

    def stop(self) -> None:
        """The thread ends once the call it runs (if any) returns."""
        self._jobs.put(None)

    def call(self, fn: Callable[[], T], until: Callable[[], float]) -> T:
        """``fn()`` on the thread; _Stuck if it has not returned by ``until()`` (asked
        again every 0.2 s: a stop may bring it closer; signal handlers run meanwhile)."""
        box: dict[str, Any] = {}
        done = threading.Event()
        self._jobs.put((fn, box, done))
        while not done.wait(min(0.2, max(0.0, until() - time.monotonic()))):
            if time.monotonic() >= until():
                raise _Stuck
        if "error" in box:
            raise box["error"]
        return box["value"]  # type: ignore[no-any-return]


def _kafka_error(exc: KafkaException) -> KafkaError | None:
    err = exc.args[0] if exc.args else None
    return err if isinstance(err, KafkaError) else None


class TxnProducer:
    """A transactional producer whose every blocking call has a deadline."""

    def __init__(self, config: dict[str, Any], call_timeout_s: float, stop: StopFlag,
                 make: Callable[[dict[str, Any]], Any] = Producer, hold: bool = False) -> None:  # fmt: skip
        if "transactional.id" not in config:
            raise ValueError("a TxnProducer needs a transactional.id")
        self.txn_id = str(config["transactional.id"])
        self.call_timeout_s = call_timeout_s
        self.stop = stop
        self.fatal: KafkaError | None = None  # the cause behind a generic _FATAL error
        self.producer = make({**config, "error_cb": self._on_error})
        self._caller = _Caller(f"txn-{self.txn_id}")
        self.open = False
        self.broken: str | None = None  # why the producer may not be used any more
        self.started = time.monotonic()
        self.hold = hold
        self._held: list[tuple[str, bytes | None, bytes | None, dict[str, Any]]] = []

    # -- the transaction ----------------------------------------------------------
    def init(self) -> None:
        """``init_transactions``: fences an older instance with the same id, aborts its
        open transaction. Raises TransactionError when that cannot be done in time."""
        try:
            self._call("init_transactions", self.producer.init_transactions)
        except (KafkaException, _Expired) as exc:
            raise self._give_up("init_transactions", exc) from exc

    def begin(self) -> None:
        """Open a transaction unless one is open (``begin_transaction`` does not block)."""
        if self.open:
            return
        self._usable()
        try:
            self.producer.begin_transaction()
        except KafkaException as exc:
            raise self._give_up("begin_transaction", exc) from exc
        self.open = True
        self.started = time.monotonic()

    def produce(self, topic: str, value: bytes | None, key: bytes | None,
                headers: Headers | None = None, partition: int = -1, timestamp: int = 0) -> None:  # fmt: skip
        """Into the open transaction (see :meth:`begin`); waits for room in the local queue.
        With ``hold``, kept until the commit (see the module's text)."""
        kwargs: dict[str, Any] = {"partition": partition, "headers": headers}
        if timestamp:
            kwargs["timestamp"] = timestamp
        if self.hold:
            self._usable()
            self._held.append((topic, value, key, kwargs))
            return
        self._produce(topic, value, key, kwargs)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None,
                 kwargs: dict[str, Any]) -> None:  # fmt: skip
        while True:
            try:
                self.producer.produce(topic, value, key, **kwargs)
                return
            except BufferError:
                self.producer.poll(0.05)
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is not None and err.txn_requires_abort():
                    self.abort()
                    raise TxnAborted(err) from exc
                raise DeliveryError(f"produce to {topic} failed: {self._cause(exc)}") from exc

    def commit(self, offsets: list[TopicPartition], group_metadata: object | None) -> None:
        """Offsets into the open transaction, then commit it. See the module's table."""
        if not self.open:
            return
        held, self._held = self._held, []
        for topic, value, key, kwargs in held:
            self._produce(topic, value, key, kwargs)
        step = "send_offsets_to_transaction"
        try:
            if offsets:
                self._call(step, lambda t: self.producer.send_offsets_to_transaction(
                    offsets, group_metadata, t))  # fmt: skip
            step = "commit_transaction"
            self._call(step, self.producer.commit_transaction)
        except (KafkaException, _Expired) as exc:
            err = _kafka_error(exc) if isinstance(exc, KafkaException) else None
            if err is not None and (err.fatal() or not err.txn_requires_abort()):
                raise self._give_up(step, exc) from exc
            log.warning("%s failed (%s): aborting the transaction", step, self._cause(exc))
            self.abort()
            raise TxnAborted(err or exc) from exc
        self.open = False

    def abort(self) -> None:
        """Abort the open transaction; TransactionError when that cannot be done in time."""
        self._held = []
        if not self.open:
            return
        try:
            self._call("abort_transaction", self.producer.abort_transaction)
        except (KafkaException, _Expired) as exc:
            raise self._give_up("abort_transaction", exc) from exc
        self.open = False

    def abort_quietly(self) -> None:
        """Abort if possible, else leave it to the broker or the next instance (logged)."""
        self._held = []
        if not self.open:
            return
        if self.broken is not None:
            self.open = False
            return
        try:
            self.abort()
        except TransactionError as exc:
            log.warning("%s", exc)
        self.open = False

    def poll(self, timeout: float = 0.0) -> int:
        return int(self.producer.poll(timeout))

    def close(self) -> None:
        """Abort what is open (quietly) and end the thread of the blocking calls; the
        producer is unusable after. A process that makes producers one after the other
        (the admin, a replay task each) would otherwise keep a thread per producer."""
        self.abort_quietly()
        self.broken = self.broken or "closed"
        self._caller.stop()

    # -- deadlines -------------------------------------------------------------------
    def deadline(self, since: float) -> float:
        """Monotonic time by which a call begun at ``since`` must be done:
        ``call_timeout_s`` later, or shortly before the end of the stop's grace period
        if a stop was asked for and that comes first."""
        until = since + self.call_timeout_s
        end = self.stop.deadline()
        if end is not None and self.stop.grace_s is not None:
            until = min(until, end - min(2.0, self.stop.grace_s / 4))
        return until

    def _call(self, what: str, call: Callable[[float], None]) -> None:
        """``call(timeout)`` until it succeeds, a non-retriable error, or the deadline."""
        self._usable()
        since = time.monotonic()
        last: object = "no time left"
        while (left := self.deadline(since) - time.monotonic()) > 0:
            try:
                self._caller.call(partial(call, left), lambda: self.deadline(since) + SLACK_S)
                return
            except _Stuck:
                waited = time.monotonic() - since
                self.broken = f"{what} did not return within {waited:.0f}s" + (
                    f" ({self.stop.reason}: the grace period is ending)"
                    if self.stop.is_set()
                    else ""
                )
                raise TransactionError(
                    f"{self.broken} (broker unreachable?): exiting so that a restart resumes "
                    "from the last commit"
                ) from None
            except KafkaException as exc:
                err = _kafka_error(exc)
                if err is None or not err.retriable() or err.fatal() or err.txn_requires_abort():
                    raise
                last = err.str()
                time.sleep(min(0.2, max(0.0, self.deadline(since) - time.monotonic())))
        raise _Expired(f"{what} kept failing until its deadline: {last}")

    def _usable(self) -> None:
        if self.broken is not None:
            raise TransactionError(f"transactional producer unusable: {self.broken}")

    # -- errors ------------------------------------------------------------------------
    def _give_up(self, what: str, exc: BaseException) -> TransactionError:
        if isinstance(exc, TransactionError):
            return exc
        self.broken = f"{what} failed: {self._cause(exc)}"
        return TransactionError(self.broken)

    def _cause(self, exc: BaseException) -> object:
        """The error behind ``exc``; librdkafka reports a fatal one's cause to error_cb."""
        if not isinstance(exc, KafkaException):
            return exc
        err = _kafka_error(exc) or exc
        if self.broken is None:
            try:
                self.producer.poll(0)  # serves error_cb
            except KafkaException as polled:
                err = _kafka_error(polled) or err
        if self.fatal is not None:
            return self.fatal
        return err.str() if isinstance(err, KafkaError) else err

    def _on_error(self, err: KafkaError) -> None:
        if err.fatal():
            self.fatal = err
            log.error("fatal producer error: %s", err)
        else:
            log.warning("producer: %s", err)
