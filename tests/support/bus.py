"""One test body, two brokers: the in-memory double and the real one (faststream's
TestBroker idea). A test takes the ``bus`` fixture made by :func:`bus_fixture`;
it runs once per kind, ``memory`` in milliseconds and ``kafka`` on the session's broker."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

import pytest
from confluent_kafka import Consumer, TopicPartition

from shared.kafka.clients import KAFKA, Clients
from shared.kafka.message import Message
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from shared.topics import Topics, parse_rungs
from tests.support import kafka
from tests.support.memkafka import MemBroker

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]


class Bus(Protocol):
    kind: str
    clients: Clients

    def create_topic(self, name: str, partitions: int = 3) -> None: ...
    def create_pipeline_topics(self) -> None: ...
    def produce(self, topic: str, records: Iterable[Raw]) -> int: ...
    def read(self, topic: str, expect: int, idle_s: float = 1.0) -> list[Message]: ...
    def committed(self, group: str, topic: str) -> dict[int, int]: ...
    def end_offsets(self, topic: str) -> dict[int, int]: ...
    def rebalance(self, group: str, topic: str) -> contextlib.AbstractContextManager[None]:
        """Inside the block the group's member has had partitions of ``topic`` revoked."""
        ...


class MemoryBus:
    kind = "memory"

    def __init__(self) -> None:
        self.broker = MemBroker()
        self.clients = self.broker.clients()

    def create_topic(self, name: str, partitions: int = 3) -> None:
        self.broker.create_topic(name, partitions)

    def create_pipeline_topics(self) -> None:
        s = load(CommonSettings)
        for spec in Topics(s.pipeline, parse_rungs(s.retry_rungs)).specs(s.partitions):
            self.broker.create_topic(spec.name, spec.partitions)

    def produce(self, topic: str, records: Iterable[Raw]) -> int:
        return self.broker.produce(topic, records)

    def read(self, topic: str, expect: int, idle_s: float = 1.0) -> list[Message]:
        deadline = time.monotonic() + 30
        while len(self.broker.read_all(topic)) < expect and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(min(idle_s, 0.2))  # extras, if any, would be there by now
        return list(self.broker.read_all(topic))

    def committed(self, group: str, topic: str) -> dict[int, int]:
        return {p: o for (t, p), o in self.broker.groups.get(group, {}).items() if t == topic}

    def end_offsets(self, topic: str) -> dict[int, int]:
        return {p: len(log) for p, log in enumerate(self.broker.topics[topic].partitions)}

    @contextlib.contextmanager
    def rebalance(self, group: str, topic: str) -> Iterator[None]:
        """The double has one member per group: it loses every partition and gets them back."""
        for c in self.broker.consumers:
            if c.group == group and not c.closed:
                c.rebalance()
        yield


class KafkaBus:
    kind = "kafka"
    clients = KAFKA

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def create_topic(self, name: str, partitions: int = 3) -> None:
        kafka.create_topic(self.bootstrap, name, partitions)

    def create_pipeline_topics(self) -> None:
        create_topics(load(CommonSettings))

    def produce(self, topic: str, records: Iterable[Raw]) -> int:
        return kafka.produce(self.bootstrap, topic, records)

    def read(self, topic: str, expect: int, idle_s: float = 1.0) -> list[Message]:
        return list(kafka.read_all(self.bootstrap, topic, expect=expect, idle_s=idle_s))

    def committed(self, group: str, topic: str) -> dict[int, int]:
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group})
        try:
            parts = [TopicPartition(topic, p) for p in self.end_offsets(topic)]
            return {p.partition: p.offset for p in c.committed(parts, timeout=10) if p.offset >= 0}
        finally:
            c.close()

    def end_offsets(self, topic: str) -> dict[int, int]:
        return kafka.end_offsets(self.bootstrap, topic)

    @contextlib.contextmanager
    def rebalance(self, group: str, topic: str) -> Iterator[None]:
        """A second member joins the group (it reads nothing it commits) until the block ends."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group,
                      "enable.auto.commit": False,
                      "partition.assignment.strategy": "cooperative-sticky"})  # fmt: skip
        try:
            c.subscribe([topic])
            deadline = time.monotonic() + 60
            while not c.assignment() and time.monotonic() < deadline:
                c.poll(0.1)
            assert c.assignment(), "the second member got no partition"
            yield
        finally:
            c.close()


def bus_fixture() -> Any:
    """A ``bus`` fixture: ``memory`` needs nothing running; ``kafka`` is an integration test."""

    @pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
    def bus(request: pytest.FixtureRequest, pipeline: str,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Bus]:  # fmt: skip
        if request.param == "kafka":
            request.getfixturevalue("kafka_env")
            yield KafkaBus(request.getfixturevalue("stack").bootstrap)
            return
        monkeypatch.setenv("SLUICE_PIPELINE", pipeline)
        monkeypatch.setenv("SLUICE_PARTITIONS", "3")
        yield MemoryBus()

    return bus
