"""The consumer loop and its commit strategies, on the in-memory double (no servers)."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from shared.errors import DeliveryError, SessionFenced, TransactionError
from shared.kafka.commits import Checkpoints, Transactions, TxnSchedule
from shared.kafka.loop import (
    FENCED_AFTER_LOST_S,
    REREAD_RETRY_S,
    ConsumerLoop,
    Handler,
    Subscription,
    fenced_after_own_timeout,
)
from shared.kafka.loop import consumer_error as check_error
from shared.kafka.message import TP, Message
from shared.kafka.producer import CheckpointProducer
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnProducer
from shared.settings import CommonSettings
from tests.support.memkafka import MemBroker, MemConsumer

SETTINGS = CommonSettings(pipeline="t")
SUB = Subscription(["in"], ["out"])


class Forward(Handler):
    """Copies every record of ``in`` to ``out``, noting its next offset once produced."""

    def __init__(self, broker: MemBroker, stop: StopFlag, transactional: bool) -> None:
        self.broker, self.stop = broker, stop
        self.consumer: MemConsumer = broker.consumer(
            {"group.id": "g", "auto.offset.reset": "earliest"}
        )
        self.forgotten: list[tuple[set[TP], bool]] = []
        self.committed_when_forgotten: list[int] = []
        self.aborts = self.rewinds = 0
        self.fail_on_assign: Exception | None = None
        if transactional:
            self.txn: TxnProducer | None = TxnProducer(
                {"transactional.id": "t.w"}, 5.0, stop, broker.producer
            )
            self.commits: Checkpoints | Transactions = Transactions(
                self.consumer, self.txn, self, TxnSchedule(0.05)
            )  # type: ignore[arg-type]
        else:
            self.txn = None
            self.producer = CheckpointProducer({}, broker.producer)
            self.commits = Checkpoints(self.consumer, self.producer.checkpoint, 0.05)  # type: ignore[arg-type]
        self.loop = ConsumerLoop(
            "test", SETTINGS, self.consumer, SUB, self, self.commits, stop, 100, 0.02
        )  # type: ignore[arg-type]

    def started(self, partitions: dict[str, int]) -> None:
        if self.txn is not None:
            self.txn.init()

    def handle(self, msgs: Sequence[Message]) -> None:
        for msg in msgs:
            err = msg.error()
            if err is not None:
                check_error(err)
                continue
            if self.txn is not None:
                self.txn.begin()
                self.txn.produce("out", msg.value(), msg.key())
            else:
                self.producer.send("out", msg.value(), msg.key(), None)
            self.commits.pending[(msg.topic() or "", msg.partition() or 0)] = (
                msg.offset() or 0
            ) + 1

    def assigned(self, consumer: Consumer, parts: list[TopicPartition]) -> None:
        if self.fail_on_assign is not None:
            raise self.fail_on_assign

    def forget(self, tps: set[TP], lost: bool) -> None:
        self.forgotten.append((tps, lost))
        self.committed_when_forgotten.append(committed(self.broker))

    # TxnHooks
    def before_commit(self) -> None:
        return None

    def committed(self, offsets: dict[TP, int]) -> None:
        return None

    def aborted(self) -> None:
        self.aborts += 1

    def rewind(self) -> None:
        self.rewinds += 1
        parts = self.consumer.assignment()
        for p in self.consumer.committed(parts):
            self.consumer.seek(
                TopicPartition(
                    p.topic, p.partition, p.offset if p.offset >= 0 else OFFSET_BEGINNING
                )
            )


@pytest.fixture
def broker() -> MemBroker:
    b = MemBroker()
    b.create_topic("in", 2)
    b.create_topic("out", 2)
    return b


def records(n: int, start: int = 0) -> list[tuple[bytes, bytes, None]]:
    return [(b"k%d" % (i % 5), b"v%d" % i, None) for i in range(start, start + n)]


def committed(broker: MemBroker) -> int:
    return sum(o for (t, _), o in broker.groups.get("g", {}).items() if t == "in")


def run_until(f: Forward, cond: object, timeout_s: float = 10.0) -> BaseException | None:
    """Run the loop in a thread until ``cond()`` (or it ends); the error it ended with."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            f.loop.run()
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    deadline = threading.Event()
    for _ in range(int(timeout_s / 0.01)):
        if not t.is_alive() or cond():  # type: ignore[operator]
            break
        deadline.wait(0.01)
    f.stop.set("test over")
    t.join(timeout_s)
    assert not t.is_alive(), "the loop did not stop"
    return errors[0] if errors else None


@pytest.mark.parametrize("transactional", [False, True])
def test_a_stop_commits_everything_handled(broker: MemBroker, transactional: bool) -> None:
    f = Forward(broker, StopFlag(), transactional)
    broker.produce("in", records(50))
    assert run_until(f, lambda: len(broker.read_all("out")) == 50) is None
    assert committed(broker) == 50 and len(broker.read_all("out")) == 50
    assert f.consumer.closed


def test_a_failed_delivery_stops_the_loop_and_nothing_past_it_is_committed(
    broker: MemBroker,
) -> None:
    f = Forward(broker, StopFlag(), transactional=False)
    broker.produce("in", records(20))
    err = run_until(f, lambda: committed(broker) == 20)
    assert err is None and committed(broker) == 20
    broker.failing_topics.add("out")
    f = Forward(broker, StopFlag(), transactional=False)
    broker.produce("in", records(20, start=20))
    err = run_until(f, lambda: False, timeout_s=5)
    assert isinstance(err, DeliveryError)
    assert committed(broker) == 20, "offsets moved past records that were never delivered"
    assert f.stop.is_set() and f.stop.reason == "DeliveryError"


def test_an_aborted_transaction_rewinds_and_every_record_is_out_once(broker: MemBroker) -> None:
    broker.abort_commits = 1
    f = Forward(broker, StopFlag(), transactional=True)
    broker.produce("in", records(40))
    assert run_until(f, lambda: committed(broker) == 40) is None
    assert f.aborts >= 1 and f.rewinds == 1 and f.commits.aborts >= 1  # type: ignore[union-attr]
    assert sorted(m.value() or b"" for m in broker.read_all("out")) == sorted(
        b"v%d" % i for i in range(40)
    )


@pytest.mark.parametrize("transactional", [False, True])
def test_revoke_commits_what_was_handled_then_forgets(
    broker: MemBroker, transactional: bool
) -> None:
    f = Forward(broker, StopFlag(), transactional)
    broker.produce("in", records(30))
    f.commits.interval_s = 3600 if not transactional else 0  # type: ignore[union-attr]
    if transactional:
        f.commits.schedule = TxnSchedule(3600)  # type: ignore[union-attr]
    state = {"done": False}

    def revoke_once() -> bool:
        if not state["done"] and len(f.commits.pending) and sum(f.commits.pending.values()) == 30:
            f.consumer.rebalance()
            state["done"] = True
        return state["done"] and bool(f.forgotten)

    assert run_until(f, revoke_once) is None
    assert f.forgotten[0] == ({("in", 0), ("in", 1)}, False)
    assert f.committed_when_forgotten[0] == 30, "revoked before what was handled was committed"


def test_lost_partitions_commit_nothing_and_abort_the_open_transaction(broker: MemBroker) -> None:
    f = Forward(broker, StopFlag(), transactional=True)
    f.commits.schedule = TxnSchedule(3600)  # type: ignore[union-attr]
    broker.produce("in", records(30))
    state = {"lost": False}

    def lose_once() -> bool:
        if not state["lost"] and sum(f.commits.pending.values()) == 30:
            f.consumer.lose()
            state["lost"] = True
        return state["lost"] and bool(f.forgotten)

    f.stop = f.loop.stop = StopFlag()
    err = run_until(f, lose_once)
    assert err is None
    assert f.forgotten[0] == ({("in", 0), ("in", 1)}, True)
    assert f.aborts >= 1
    # after the loss the records were read again and the stop committed them once
    assert sorted(m.value() or b"" for m in broker.read_all("out")) == sorted(
        b"v%d" % i for i in range(30)
    )


def test_an_abort_in_a_callback_rewinds_the_partitions_that_stay(broker: MemBroker) -> None:
    f = Forward(broker, StopFlag(), transactional=True)
    f.commits.schedule = TxnSchedule(3600)  # type: ignore[union-attr]
    broker.produce("in", records(30))
    state = {"lost": False}

    def lose_one() -> bool:
        if not state["lost"] and set(f.commits.pending) == {("in", 0), ("in", 1)} and sum(
            f.commits.pending.values()) == 30:  # fmt: skip
            f.consumer.lose([("in", 0)])
            state["lost"] = True
        return state["lost"] and f.rewinds > 0

    assert run_until(f, lose_one) is None
    assert f.forgotten[0] == ({("in", 0)}, True) and f.rewinds == 1
    assert sorted(m.value() or b"" for m in broker.read_all("out")) == sorted(
        b"v%d" % i for i in range(30)
    )


def test_consumer_errors_transient_go_on_fatal_stop(broker: MemBroker) -> None:
    f = Forward(broker, StopFlag(), transactional=False)
    broker.inject_error(KafkaError(KafkaError._PARTITION_EOF, "eof"))
    broker.inject_error(KafkaError(KafkaError._TRANSPORT, "blip"))
    broker.produce("in", records(10))
    assert run_until(f, lambda: committed(broker) == 10) is None
    f = Forward(broker, StopFlag(), transactional=False)
    broker.inject_error(KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART, "gone"))
    err = run_until(f, lambda: False, timeout_s=5)
    assert isinstance(err, DeliveryError) and "test stopped" in str(err)


@pytest.mark.parametrize(
    "err",
    [KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced"),
     KafkaError(KafkaError._TRANSPORT, "fatal", fatal=True),
     KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "refused")],
)  # fmt: skip
def test_a_consumer_made_unusable_stops_the_stage(err: KafkaError) -> None:
    """librdkafka's fatal event (a fenced static member) is not flagged fatal itself: it
    used to be logged while the dead consumer was polled on, the stage halted but alive."""
    with pytest.raises(KafkaException):
        check_error(err)


def test_an_error_in_a_rebalance_callback_stops_the_loop_as_itself(broker: MemBroker) -> None:
    f = Forward(broker, StopFlag(), transactional=True)
    f.fail_on_assign = RuntimeError("restore failed")
    err = run_until(f, lambda: False, timeout_s=5)
    assert isinstance(err, RuntimeError) and str(err) == "restore failed"
    assert f.loop.failed and f.stop.reason == "RuntimeError"


def test_a_stop_bounds_the_last_commit_by_the_grace_period(broker: MemBroker) -> None:
    stop = StopFlag(grace_s=4.0)
    f = Forward(broker, stop, transactional=True)
    assert f.txn is not None
    f.txn.call_timeout_s = 120.0  # without the grace, a stuck commit would be waited for this long
    broker.produce("in", records(10))
    f.commits.schedule = TxnSchedule(3600)  # type: ignore[union-attr]
    broker.hang_commits_s = 30.0
    t0 = time.monotonic()
    err = run_until(f, lambda: sum(f.commits.pending.values()) == 10, timeout_s=20)
    assert isinstance(err, TransactionError), err
    assert time.monotonic() - t0 < 10, "the last commit outlived the grace period"
    assert committed(broker) == 0


def test_the_transaction_schedule() -> None:
    s = TxnSchedule(interval_s=0.1, min_interval_s=0.02, max_events=10)
    quiet = 1.0  # the last commit ended long ago
    assert s.due(0.1, 0, False, False, quiet) and s.due(0.0, 10, False, False, quiet)
    assert not s.due(0.05, 3, urgent=False, caught_up=True, idle=quiet)
    # Output waits after a quiet spell: commit at once, however young the transaction.
    assert s.due(0.0, 1, urgent=True, caught_up=True, idle=quiet)
    assert not s.due(0.0, 1, urgent=True, caught_up=False, idle=quiet)
    # Under load: not within min_interval_s of the previous commit's end.
    assert not s.due(0.01, 3, urgent=True, caught_up=True, idle=0.01)
    assert s.due(0.01, 3, urgent=True, caught_up=True, idle=0.02)
    assert s.wait(0.0, urgent=True, default=1.0, idle=0.005) == pytest.approx(0.015)
    assert s.wait(0.0, urgent=True, default=1.0, idle=quiet) == 0.0
    assert s.wait(0.095, urgent=True, default=1.0, idle=0.0) == pytest.approx(0.005)
    assert s.wait(0.05, urgent=False, default=1.0, idle=0.0) == pytest.approx(0.05)
    assert s.wait(0.5, urgent=False, default=1.0, idle=0.0) == 0.0
    assert TxnSchedule(0.1).wait(0.0, urgent=True, default=0.25, idle=quiet) == pytest.approx(0.1)


FENCE = KafkaError(KafkaError._FATAL, "Fatal error: Broker: Static consumer fenced by other "
                   "consumer with same group.instance.id")  # fmt: skip


@pytest.mark.parametrize("transactional", [False, True])
def test_a_fence_right_after_its_own_session_loss_starts_the_stage_over(
    broker: MemBroker, transactional: bool
) -> None:
    """A static member whose session timed out while the broker was away loses its
    partitions, rejoins, and a request still carrying its old member id is answered
    "fenced": librdkafka's fatal event. The loop asks for a restart, not a stop."""
    f = Forward(broker, StopFlag(), transactional)
    broker.produce("in", records(10))
    state = {"lost": False}

    def lose_then_fence() -> bool:
        if not state["lost"] and f.consumer.assignment():
            f.consumer.lose()
            broker.inject_error(FENCE)
            state["lost"] = True
        return False

    err = run_until(f, lose_then_fence, timeout_s=10)
    assert isinstance(err, SessionFenced), err
    assert f.forgotten and f.forgotten[0][1] is True, "the partitions were not lost first"
    assert f.stop.reason == "test over", (
        "the loop stopped the stage instead of asking for a restart"
    )
    assert f.consumer.closed


def test_a_fence_without_a_session_loss_stops_the_stage(broker: MemBroker) -> None:
    """Another process with the same group.instance.id: a plain fatal error."""
    f = Forward(broker, StopFlag(), transactional=False)
    broker.inject_error(FENCE)
    err = run_until(f, lambda: False, timeout_s=5)
    assert isinstance(err, DeliveryError) and not isinstance(err, SessionFenced), err
    assert f.stop.reason == "KafkaException"


def test_which_fatal_errors_are_the_consumers_own_stale_member() -> None:
    fenced = KafkaException(FENCE)
    assert fenced_after_own_timeout(fenced, lost_at=100.0, now=100.5)
    assert not fenced_after_own_timeout(fenced, lost_at=None, now=100.5)
    assert not fenced_after_own_timeout(fenced, lost_at=100.0, now=100.0 + FENCED_AFTER_LOST_S + 1)
    refused = KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "refused"))
    assert not fenced_after_own_timeout(refused, lost_at=100.0, now=100.5)
    assert not fenced_after_own_timeout(RuntimeError("x"), lost_at=100.0, now=100.5)


def test_a_refused_background_commit_is_sent_again(broker: MemBroker) -> None:
    """An asynchronous commit is noted as done when sent; the broker's refusal (served
    by a later poll) must undo that, or the offsets are never committed: not by the next
    commit, not by the last one at the stop (a restart would read them all again)."""
    f = Forward(broker, StopFlag(), transactional=False)
    f.consumer.on_commit = f.commits.commit_result  # as ingest and enrich configure it
    broker.refuse_commits = 1
    broker.produce("in", records(10))
    assert run_until(f, lambda: committed(broker) == 10, timeout_s=10) is None
    assert committed(broker) == 10 and broker.refuse_commits == 0


@pytest.mark.parametrize("coordinator_away", [False, True])
@pytest.mark.parametrize("transactional", [False, True])
def test_records_fetched_before_a_rebalance_in_the_same_poll_are_read_again_not_twice(
    broker: MemBroker, transactional: bool, coordinator_away: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A poll makes up to three ``consume`` calls; a rebalance served by a later one
    revokes partitions whose records an earlier one returned. Those records belong to
    the old assignment: handled, they would be handled again when the new assignment
    reads from the last commit (twice in the output, or, for enrich's watermarks, an
    offset that is not after the last one: a crash). They are dropped, and a partition
    assigned again is read from its commit.

    ``coordinator_away``: the first ask for the commit fails. The stage goes on: the
    partition's records are dropped until a later ask succeeds, then read from there."""
    f = Forward(broker, StopFlag(), transactional)
    fired: list[int] = []
    refused: list[int] = []
    if coordinator_away:
        f.loop.reread_backoff_s = 0.1
        ask = f.consumer.committed

        def away_once(parts: list[TopicPartition], timeout: float = -1) -> list[TopicPartition]:
            if not refused:
                refused.append(len(parts))
                raise KafkaException(KafkaError(KafkaError._TIMED_OUT, "coordinator away"))
            return ask(parts, timeout)

        monkeypatch.setattr(f.consumer, "committed", away_once)

    def rebalance_after_the_first_wait(num_messages: int, got: list[object]) -> None:
        if not fired and num_messages == 1 and got:  # the waiting call: one more follows
            fired.append(1)
            f.consumer.rebalance()

    f.consumer.after_consume = rebalance_after_the_first_wait
    sent = 0

    def feed() -> bool:
        nonlocal sent
        if not fired and sent < 20:  # one at a time until a waiting call returns one
            broker.produce("in", records(1, sent))
            sent += 1
        elif fired and sent < 40:
            broker.produce("in", records(40 - sent, sent))
            sent = 40
        return bool(fired) and sent == 40 and committed(broker) == 40

    assert run_until(f, feed) is None
    assert fired, "no rebalance came between the calls of one poll"
    assert bool(refused) == coordinator_away and not f.loop.reread
    assert f.loop.reread_backoff_s == REREAD_RETRY_S  # back to the first wait once it succeeded
    out = sorted(m.value() or b"" for m in broker.read_all("out"))
    assert out == sorted(b"v%d" % i for i in range(40))
