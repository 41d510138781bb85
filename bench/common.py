"""Helpers shared by the benchmarks: data, topics, result line."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

TEXTS = (
    "I was charged twice for my invoice, please refund",
    "Great support, the login issue is fixed, thanks!",
    "The package arrived late and the box was damaged",
    "App crashes when I open settings, looks like a bug",
    "How do I change my shipping address?",
)


def ticket(i: int) -> bytes:
    return json.dumps({"id": i, "customer": f"c{i % 500}", "text": TEXTS[i % len(TEXTS)]}).encode()


def make_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)]
    ).values():
        fut.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        t = admin.list_topics(name, timeout=5).topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.1)


def fill(bootstrap: str, topic: str, n: int, keys: int = 500) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.num.messages": 10000,
                  "partitioner": "murmur2_random", "compression.type": "lz4"})  # fmt: skip
    for i in range(n):
        while True:
            try:
                p.produce(topic, ticket(i), f"c{i % keys}".encode(), headers=[("trace", b"x")])
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)


def per_call(amount: float, calls: int, digits: int = 3) -> float | None:
    """``amount / calls``, rounded; ``None`` when there was no call."""
    return round(amount / calls, digits) if calls > 0 else None


def emit(result: dict[str, Any]) -> None:
    """The result: one JSON object as the last line of output."""
    sys.stdout.flush()
    print(json.dumps(result), flush=True)
