"""TxnProducer's deadlines and outcomes, against a scripted stand-in for librdkafka's producer."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from shared.errors import DeliveryError, TransactionError
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnAborted, TxnProducer

Script = Callable[[float], None]


def fails(code: int = KafkaError._TIMED_OUT, **flags: bool) -> Script:
    def call(_timeout: float) -> None:
        raise KafkaException(KafkaError(code, "scripted", **flags))

    return call


def hangs(seconds: float) -> Script:
    def call(_timeout: float) -> None:
        time.sleep(seconds)

    return call


def ok(_timeout: float) -> None:
    return None


class FakeProducer:
    """Each transactional call pops its next scripted behaviour (default: succeeds)."""

    def __init__(self, _config: dict[str, Any]) -> None:
        self.scripts: dict[str, list[Script]] = {}
        self.calls: list[str] = []
        self.produced: list[str] = []

    def _run(self, name: str, timeout: float) -> None:
        self.calls.append(name)
        todo = self.scripts.get(name)
        (todo.pop(0) if todo else ok)(timeout)

    def init_transactions(self, timeout: float) -> None:
        self._run("init", timeout)

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, _offsets: Any, _meta: Any, timeout: float) -> None:
        self._run("send_offsets", timeout)

    def commit_transaction(self, timeout: float) -> None:
        self._run("commit", timeout)

    def abort_transaction(self, timeout: float) -> None:
        self._run("abort", timeout)

    def produce(self, topic: str, value: bytes | None, *_args: Any, **_kwargs: Any) -> None:
        self.calls.append(f"produce {topic} {value!r}")
        todo = self.scripts.get("produce")
        (todo.pop(0) if todo else ok)(0.0)
        self.produced.append(topic)

    def poll(self, _timeout: float) -> int:
        return 0


def make(call_timeout_s: float = 2.0, stop: StopFlag | None = None,
         hold: bool = False) -> tuple[TxnProducer, FakeProducer]:  # fmt: skip
    txn = TxnProducer({"transactional.id": "t.router.w1"}, call_timeout_s, stop or StopFlag(),
                      make=FakeProducer, hold=hold)  # fmt: skip
    fake = txn.producer
    assert isinstance(fake, FakeProducer)
    return txn, fake


OFFSETS = [TopicPartition("t.failures", 0, 10)]


def test_a_commit_sends_offsets_then_commits() -> None:
    txn, fake = make()
    txn.begin()
    txn.produce("t.work", b"v", b"k")
    txn.commit(OFFSETS, object())
    assert fake.calls == ["begin", "produce t.work b'v'", "send_offsets", "commit"]
    assert not txn.open


def test_held_records_reach_kafka_at_the_commit_in_order() -> None:
    txn, fake = make(hold=True)
    txn.begin()
    txn.produce("t.work", b"1", b"k")
    txn.produce("t.results", b"2", b"k")
    assert fake.produced == [], "nothing is handed to librdkafka yet"
    txn.commit(OFFSETS, object())
    assert fake.calls == ["begin", "produce t.work b'1'", "produce t.results b'2'",
                          "send_offsets", "commit"]  # fmt: skip
    assert not txn.open


def test_a_held_record_refused_at_the_commit_fails_the_commit_with_its_reason() -> None:
    """The stage stops uncommitted (the router exits, a replay task stays as committed):
    nothing of the transaction is visible and the input is read again."""
    txn, fake = make(hold=True)
    fake.scripts["produce"] = [ok, fails(KafkaError.MSG_SIZE_TOO_LARGE)]
    txn.begin()
    txn.produce("t.work", b"1", b"k")
    txn.produce("t.work", b"huge", b"k")
    with pytest.raises(DeliveryError, match=r"produce to t\.work failed"):
        txn.commit(OFFSETS, object())
    assert "commit" not in fake.calls and txn.open
    txn.close()
    assert fake.calls[-1] == "abort"


def test_an_aborted_transaction_drops_its_held_records() -> None:
    txn, fake = make(hold=True)
    fake.scripts["commit"] = [fails(KafkaError._STATE, txn_requires_abort=True)]
    txn.begin()
    txn.produce("t.work", b"lost", b"k")
    with pytest.raises(TxnAborted):
        txn.commit(OFFSETS, object())
    txn.begin()
    txn.produce("t.work", b"again", b"k")
    txn.abort()
    txn.begin()
    txn.produce("t.work", b"kept", b"k")
    txn.commit([], None)
    assert fake.produced == ["t.work", "t.work"]
    assert [c for c in fake.calls if c.startswith("produce")] == [
        "produce t.work b'lost'", "produce t.work b'kept'"]  # fmt: skip


def test_retriable_errors_are_retried_within_the_deadline() -> None:
    txn, fake = make()
    fake.scripts["send_offsets"] = [fails(retriable=True), fails(retriable=True)]
    txn.begin()
    txn.commit(OFFSETS, object())
    assert fake.calls == ["begin", *["send_offsets"] * 3, "commit"]


def test_an_abortable_error_aborts_and_says_so() -> None:
    txn, fake = make()
    fake.scripts["commit"] = [fails(KafkaError._STATE, txn_requires_abort=True)]
    txn.begin()
    with pytest.raises(TxnAborted):
        txn.commit(OFFSETS, object())
    assert fake.calls[-1] == "abort" and not txn.open
    txn.begin()  # usable again
    txn.commit(OFFSETS, object())


def test_retriable_errors_until_the_deadline_abort_the_transaction() -> None:
    txn, fake = make(call_timeout_s=0.6)
    fake.scripts["send_offsets"] = [fails(retriable=True)] * 100
    txn.begin()
    t0 = time.monotonic()
    with pytest.raises(TxnAborted):
        txn.commit(OFFSETS, object())
    assert time.monotonic() - t0 < 5
    assert "abort" in fake.calls and "commit" not in fake.calls


def test_a_call_that_does_not_return_by_its_deadline_makes_the_producer_unusable() -> None:
    txn, fake = make(call_timeout_s=0.5)
    fake.scripts["send_offsets"] = [hangs(30)]  # librdkafka ignoring its timeout
    txn.begin()
    t0 = time.monotonic()
    with pytest.raises(TransactionError, match="send_offsets_to_transaction did not return"):
        txn.commit(OFFSETS, object())
    assert time.monotonic() - t0 < 5, "the deadline holds although the call does not return"
    with pytest.raises(TransactionError, match="unusable"):
        txn.abort()
    txn.abort_quietly()  # never waits on a stuck producer
    assert not txn.open


def test_a_fatal_error_is_a_transaction_error() -> None:
    txn, fake = make()
    fake.scripts["send_offsets"] = [fails(KafkaError._FENCED, fatal=True)]
    txn.begin()
    with pytest.raises(TransactionError, match="send_offsets_to_transaction failed"):
        txn.commit(OFFSETS, object())
    assert "abort" not in fake.calls


def test_an_abort_that_fails_is_a_transaction_error() -> None:
    txn, fake = make(call_timeout_s=0.5)
    fake.scripts["commit"] = [fails(KafkaError._STATE, txn_requires_abort=True)]
    fake.scripts["abort"] = [fails(retriable=True)] * 100
    txn.begin()
    with pytest.raises(TransactionError, match="abort_transaction failed"):
        txn.commit(OFFSETS, object())


def test_init_gives_up_at_its_deadline() -> None:
    txn, fake = make(call_timeout_s=0.5)
    fake.scripts["init"] = [fails(retriable=True)] * 100
    with pytest.raises(TransactionError, match="init_transactions failed"):
        txn.init()


def test_a_stop_brings_the_deadline_within_the_grace_period() -> None:
    stop = StopFlag(grace_s=2.0)
    txn, fake = make(call_timeout_s=60, stop=stop)
    fake.scripts["commit"] = [hangs(30)]
    txn.begin()
    threading.Timer(0.3, stop.set, args=("SIGTERM",)).start()
    t0 = time.monotonic()
    with pytest.raises(TransactionError, match="SIGTERM: the grace period is ending"):
        txn.commit(OFFSETS, object())
    assert time.monotonic() - t0 < 4, "a 60 s call timeout was cut to the 2 s grace"


def test_a_transactional_id_is_required() -> None:
    with pytest.raises(ValueError, match=r"transactional\.id"):
        TxnProducer({}, 1.0, StopFlag(), make=FakeProducer)


def test_close_ends_the_calls_thread_and_makes_the_producer_unusable() -> None:
    before = set(threading.enumerate())
    txn, fake = make()
    (thread,) = set(threading.enumerate()) - before
    txn.init()
    txn.begin()
    txn.close()
    thread.join(5)
    assert not thread.is_alive(), "a closed producer keeps no thread"
    assert fake.calls[-1] == "abort", "what was open is aborted"
    with pytest.raises(TransactionError, match="closed"):
        txn.begin()


def test_the_calls_thread_keeps_no_producer_alive_between_calls() -> None:
    """A thread waiting for its next call must not hold the last one (bound to the producer):
    a process that makes producers one after the other would keep each one connected."""
    txn, fake = make()
    txn.init()
    gone = weakref.ref(fake)
    del txn, fake
    until = time.monotonic() + 5
    while gone() is not None and time.monotonic() < until:
        gc.collect()
        time.sleep(0.05)
    assert gone() is None
