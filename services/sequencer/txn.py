"""Kafka helpers of the sequencer loop (I/O): start offsets."""

from __future__ import annotations

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from shared.kafka.message import TP


def start_offset(offsets: dict[TP, int], p: TopicPartition) -> TopicPartition:
    """Where to read ``p`` from: its committed offset, else the beginning."""
    off = offsets.get((p.topic, p.partition), -1)
    return TopicPartition(p.topic, p.partition, off if off >= 0 else OFFSET_BEGINNING)
