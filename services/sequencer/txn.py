"""Kafka helpers of the sequencer loop (I/O): topic check, start offsets."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from shared.errors import TopicError
from shared.topics import Topics

TP = tuple[str, int]


def check_topics(consumer: Consumer, t: Topics) -> int:
    """Raise TopicError unless the topics exist and are co-partitioned; their partition count."""
    md = consumer.list_topics(timeout=15).topics
    for name in (t.work, t.results, t.state, t.output):
        if name not in md or md[name].error is not None:
            raise TopicError(f"topic {name!r} does not exist: run `sluice topics create`")
    counts = {name: len(md[name].partitions) for name in t.co_partitioned}
    if len(set(counts.values())) > 1:
        raise TopicError(f"{', '.join(counts)} must be co-partitioned; counts: {counts}")
    return counts[t.results]


def start_offset(offsets: dict[TP, int], p: TopicPartition) -> TopicPartition:
    """Where to read ``p`` from: its committed offset, else the beginning."""
    off = offsets.get((p.topic, p.partition), -1)
    return TopicPartition(p.topic, p.partition, off if off >= 0 else OFFSET_BEGINNING)
