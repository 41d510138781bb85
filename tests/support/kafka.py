"""Test helpers over the real broker: create topics, produce, read everything."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic


def create_topic(bootstrap: str, name: str, partitions: int = 3) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics(
        [NewTopic(name, num_partitions=partitions, replication_factor=1)]
    ).values():
        fut.result(30)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=5)
        t = md.topics.get(name)
        if t is not None and t.error is None and len(t.partitions) == partitions:
            return
        time.sleep(0.1)
    raise TimeoutError(f"topic {name} not visible")


def produce(
    bootstrap: str,
    topic: str,
    records: Iterable[tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]],
) -> int:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True,
                  "partitioner": "murmur2_random"})  # fmt: skip
    errors: list[Any] = []
    n = 0
    for key, value, headers in records:
        while True:
            try:
                p.produce(topic, value, key, headers=headers,
                          on_delivery=lambda err, _m: errors.append(err) if err else None)  # fmt: skip
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 10000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    assert not errors, errors[:3]
    return n


def end_offsets(bootstrap: str, topic: str, committed_only: bool = True) -> dict[int, int]:
    """Each partition's end: the last stable offset, or with ``committed_only=False`` the
    high watermark (records of open transactions included)."""
    isolation = "read_committed" if committed_only else "read_uncommitted"
    c = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "probe", "isolation.level": isolation}
    )
    try:
        md = c.list_topics(topic, timeout=10)
        out = {}
        for p in md.topics[topic].partitions:
            _lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            out[p] = hi
        return out
    finally:
        c.close()


def read_all(bootstrap: str, topic: str, expect: int | None = None, timeout_s: float = 60.0,
             idle_s: float = 3.0, committed_only: bool = True) -> list[Message]:  # fmt: skip
    """Every record of ``topic`` from the start: until ``expect`` records, or idle."""
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
        "enable.auto.commit": False, "auto.offset.reset": "earliest",
        "isolation.level": "read_committed" if committed_only else "read_uncommitted",
    })  # fmt: skip
    md = c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    out: list[Message] = []
    deadline = time.monotonic() + timeout_s
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            if expect is not None and len(out) >= expect:
                # keep reading briefly to catch extras
                idle_s = min(idle_s, 1.0)
            batch = c.consume(5000, 0.2)
            got = [m for m in batch if m.error() is None]
            for m in batch:
                if m.error() is not None and m.error().fatal():
                    raise KafkaException(m.error())
            if got:
                out.extend(got)
                last = time.monotonic()
            elif time.monotonic() - last > idle_s and (expect is None or len(out) >= expect):
                break
    finally:
        c.close()
    return out


def wait_for(cond: Any, timeout_s: float, interval_s: float = 0.2, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
