"""Reading the changelog back (I/O), consistently with the committed offsets.

Restoring input partition ``n`` on assignment:

1. fetch the group's committed offsets of ``P.work[n]`` and ``P.results[n]``.
   The consumer reads ``read_committed``, so the broker answers only when no
   transaction holding offsets for them is pending (KIP-447): a previous
   owner's last transaction has been committed or aborted by then;
2. wait until ``P.sequencer.state[n]`` has no open transaction (its last
   stable offset equals its high watermark): the commit markers of that
   transaction have reached the changelog too;
3. read the changelog partition from the beginning to its end (EOF at the last
   stable offset, ``read_committed``).

State and offsets then come from the same committed transaction.
"""

from __future__ import annotations

import time
import uuid
from collections import defaultdict
from dataclasses import dataclass

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from services.sequencer.changelog import Change, Changelog, restore
from services.sequencer.reorder import Reorder
from services.sequencer.settings import SequencerSettings
from shared.kafka.clients import KAFKA, Clients
from shared.kafka.patience import committed, patiently
from shared.kafka.rdlog import rdkafka_logger
from shared.settings import CommonSettings


class RestoreTimeout(KafkaException):
    pass


@dataclass
class Restored:
    offsets: dict[tuple[str, int], int]  # committed offset per input (topic, partition); -1: none
    states: dict[int, tuple[Reorder, Changelog]]
    records: int  # changelog records read


def watermarks(consumer: Consumer, tp: TopicPartition, deadline: float) -> tuple[int, int]:
    """Low and high watermark (high = last stable offset for a read_committed consumer)."""
    lo, hi = patiently(
        lambda: consumer.get_watermark_offsets(tp, timeout=10, cached=False), deadline
    )
    return int(lo), int(hi)


class StateReader:
    """Reads partitions of the changelog topic from the beginning to their end."""

    def __init__(self, settings: CommonSettings, topic: str, clients: Clients = KAFKA) -> None:
        self.topic = topic
        base = {"group.id": f"{settings.pipeline}.sequencer.restore.{uuid.uuid4().hex[:8]}",
                "enable.auto.commit": False, "logger": rdkafka_logger()}  # fmt: skip
        self.reader = clients.consumer(settings.kafka_config("consumer", **base, **{
            "isolation.level": "read_committed", "enable.partition.eof": True}))  # fmt: skip
        self.probe = clients.consumer(
            settings.kafka_config("consumer", **base, **{"isolation.level": "read_uncommitted"})
        )

    def close(self) -> None:
        self.reader.close()
        self.probe.close()

    def wait_stable(self, parts: list[int], deadline: float) -> None:
        """Until no transaction is open on these partitions (LSO == high watermark)."""
        left = set(parts)
        while left:
            for n in sorted(left):
                tp = TopicPartition(self.topic, n)
                _, lso = watermarks(self.reader, tp, deadline)
                _, hw = watermarks(self.probe, tp, deadline)
                if lso >= hw:
                    left.discard(n)
            if left:
                if time.monotonic() > deadline:
                    raise RestoreTimeout(
                        KafkaError(KafkaError._TIMED_OUT, f"open transaction on {self.topic}{sorted(left)}")
                    )  # fmt: skip
                time.sleep(0.1)

    def read(self, parts: list[int], deadline: float) -> dict[int, list[Change]]:
        """Every committed record of these partitions, oldest first."""
        out: dict[int, list[Change]] = defaultdict(list)
        ends: dict[int, int] = {}
        for n in parts:
            lo, hi = watermarks(self.reader, TopicPartition(self.topic, n), deadline)
            if hi > lo:
                ends[n] = hi
        if not ends:
            return {n: [] for n in parts}
        self.reader.assign([TopicPartition(self.topic, n, OFFSET_BEGINNING) for n in ends])
        try:
            while ends:
                if time.monotonic() > deadline:
                    raise RestoreTimeout(KafkaError(KafkaError._TIMED_OUT, f"reading {self.topic}"))
                for msg in self.reader.consume(2000, 0.2):
                    n = msg.partition() or 0
                    err = msg.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            raise KafkaException(err)
                        ends.pop(n, None)
                        continue
                    out[n].append((msg.key() or b"", msg.value()))
                    if (msg.offset() or 0) + 1 >= ends.get(n, 0):
                        ends.pop(n, None)
        finally:
            self.reader.unassign()
        return {n: out.get(n, []) for n in parts}

    def restore(self, consumer: Consumer, inputs: list[str], parts: list[int],
                s: SequencerSettings) -> Restored:  # fmt: skip
        """Steps 1 to 3 above for input partitions ``parts`` of topics ``inputs``."""
        deadline = time.monotonic() + s.restore_timeout_s
        offsets = committed(
            consumer, [TopicPartition(t, n) for t in inputs for n in parts], deadline
        )
        self.wait_stable(parts, deadline)
        data = self.read(parts, deadline)
        states = {n: restore(data[n], s.dead_mode, s.gap_markers, s.skipped_max, s.unkeyed_memory)
                  for n in parts}  # fmt: skip
        return Restored({(tp.topic, tp.partition): tp.offset for tp in offsets}, states,
                        sum(len(d) for d in data.values()))  # fmt: skip
