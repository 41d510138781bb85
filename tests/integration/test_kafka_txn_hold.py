"""A transaction that holds its records does not hold back other producers' records.

On the real broker: a ``read_committed`` reader sees nothing of a partition past
an open transaction's first record. A ``TxnProducer`` with ``hold`` hands its
records to Kafka at the commit, so a non-transactional record written to the
same partition while its transaction is open (ingest's fresh record in
``P.work`` while a replay or the router paces its sends) is readable at once;
without ``hold`` it waits for the commit.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from devtools.stack.resolve import Stack
from services.router.service import Router
from services.router.settings import RouterSettings
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnProducer
from shared.kinds import FailureKind as K
from shared.settings import CommonSettings, load
from tests.integration.test_router import fail
from tests.support.kafka import create_topic, produce
from tests.support.running import InThread

WAIT_S = 20.0  # how long a reader looks for a record it should see
BLOCKED_S = 3.0  # how long it looks for one an open transaction holds back (it never comes)


def read_into(reader: Consumer, seen: list[str], n: int, seconds: float) -> None:
    """Poll until ``seen`` holds ``n`` records (their ``sluice.outcome``) or ``seconds`` pass."""
    until = time.monotonic() + seconds
    while len(seen) < n and time.monotonic() < until:
        m = reader.poll(0.2)
        if m is not None and m.error() is None:
            seen.append(h.get_str(m.headers(), h.OUTCOME) or "")


def committed_reader(bootstrap: str, topic: str) -> Consumer:
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{topic}.reader",
                       "isolation.level": "read_committed", "enable.auto.commit": False})  # fmt: skip
    reader.assign([TopicPartition(topic, 0, 0)])
    return reader


def plain_record_seen(bootstrap: str, topic: str, hold: bool) -> tuple[bool, list[str]]:
    """Open a transaction and write into it, then a plain record to the same partition;
    whether a read_committed reader sees the plain one before the commit, and everything
    it reads after the commit."""
    txn = TxnProducer({"bootstrap.servers": bootstrap, "transactional.id": f"{topic}.txn"},
                      30.0, StopFlag(), hold=hold)  # fmt: skip
    plain = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    reader = committed_reader(bootstrap, topic)
    try:
        txn.init()
        txn.begin()
        txn.produce(topic, b"{}", b"k", [(h.OUTCOME, b"in-txn")], partition=0)
        txn.poll(0.5)  # without hold the record reaches the broker now
        plain.produce(topic, b"{}", b"k", headers=[(h.OUTCOME, b"plain")], partition=0)
        assert plain.flush(30) == 0
        seen: list[str] = []
        read_into(reader, seen, 1, WAIT_S if hold else BLOCKED_S)
        before_commit = seen == ["plain"]
        txn.commit([], None)
        read_into(reader, seen, 2, WAIT_S)
        return before_commit, seen
    finally:
        reader.close()
        txn.close()


@pytest.mark.parametrize("hold", [True, False])
def test_an_open_transaction_holds_back_other_records_only_without_hold(
    stack: Stack, pipeline: str, hold: bool
) -> None:
    topic = f"{pipeline}.work"
    create_topic(stack.bootstrap, topic, partitions=1)
    before_commit, seen = plain_record_seen(stack.bootstrap, topic, hold)
    assert before_commit is hold
    expected = ["plain", "in-txn"] if hold else ["in-txn", "plain"]
    assert seen == expected, "every record once, in partition order"


def test_the_router_holds_nobody_back_while_its_transaction_is_open(
    kafka_env: dict[str, str], pipeline: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead outcome routed into ``P.results`` and not committed yet (a 60 s interval)
    does not hide the outcome enrich writes behind it in the same partition."""
    monkeypatch.setenv("SLUICE_PARTITIONS", "1")
    monkeypatch.setenv("SLUICE_COMMIT_INTERVAL_S", "60")
    create_topics(load(CommonSettings))
    bootstrap, results = kafka_env["SLUICE_KAFKA_BOOTSTRAP"], f"{pipeline}.results"
    stop = StopFlag()
    router = Router(load(RouterSettings), stop, health=lambda _provider: True)
    reader = committed_reader(bootstrap, results)
    seen: list[str] = []
    try:
        with InThread(router, stop, "router", join_s=60):
            produce(bootstrap, f"{pipeline}.failures", [fail(1, K.BAD_REQUEST, 1)])
            until = time.monotonic() + WAIT_S
            while not router.routed and time.monotonic() < until:
                time.sleep(0.05)
            assert router.routed, "the router routed the failure (its transaction is open)"
            produce(bootstrap, results, [(b"k2", b"{}", [(h.OUTCOME, b"ok")])])
            read_into(reader, seen, 1, WAIT_S)
            assert seen == ["ok"], "enrich's outcome is readable while the router's is not"
            assert router.routed, "and the router's transaction was still open then"
        read_into(reader, seen, 2, WAIT_S)  # the stop commits what was routed
    finally:
        reader.close()
    assert seen == ["ok", "dead"]
