"""A read_committed reader that follows a topic from its start and keeps what it read."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Self

from confluent_kafka import Consumer, KafkaException, Message, TopicPartition


class Tail:
    """Every committed record of ``topic`` so far, in ``messages`` (per partition in order)."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.messages: list[Message] = []
        self._c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"tail-{time.monotonic_ns()}",
                            "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
        md = self._c.list_topics(topic, timeout=10)
        self._c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])

    def poll(self, seconds: float = 0.2) -> list[Message]:
        """What arrived within ``seconds``."""
        got = []
        for m in self._c.consume(1000, seconds):
            if m.error() is None:
                got.append(m)
            elif m.error().fatal():
                raise KafkaException(m.error())
        self.messages.extend(got)
        return got

    def until(self, cond: Callable[[list[Message]], bool], timeout_s: float, what: str) -> None:
        """Read until ``cond(messages)`` holds; fail after ``timeout_s`` naming ``what``."""
        deadline = time.monotonic() + timeout_s
        while not cond(self.messages):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what} in "
                                     f"{self.topic} ({len(self.messages)} records read)")  # fmt: skip
            self.poll()

    def settle(self, quiet_s: float) -> None:
        """Read until nothing more arrived for ``quiet_s``."""
        last = time.monotonic()
        while time.monotonic() - last < quiet_s:
            if self.poll():
                last = time.monotonic()

    def close(self) -> None:
        self._c.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
