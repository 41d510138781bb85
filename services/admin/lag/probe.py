"""The oldest unconsumed record of lagging partitions: its timestamp (I/O, bounded).

For each ``(topic, partition)`` at a committed offset, one consumer (assign,
no group membership, never commits) reads the first record it can consume at
or after that offset, with the isolation level of the group it stands for.
It answers with:

- :class:`Head` — that record's offset and timestamp (``None`` if the record
  has none). Records and their timestamps never change, so the answer is
  kept per ``(topic, partition, offset)`` while that offset is asked about.
- :data:`DRAINED` — the partition's end came first: nothing consumable lies
  between the committed offset and the end (transaction markers, aborted
  records). Kept while the end has not moved.
- nothing, for a partition not answered within ``timeout_s``.

All partitions are read at once; a partition asked about at two offsets (two
groups) is read in two rounds. The whole call takes at most ``timeout_s`` per
round.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from confluent_kafka import TIMESTAMP_NOT_AVAILABLE, Consumer, KafkaError, TopicPartition

from shared.kafka.config import BOUNDED_READ, consumer_config
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

TP = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Head:
    offset: int
    ts: float | None  # seconds since the epoch


class _Drained:
    def __repr__(self) -> str:
        return "DRAINED"


DRAINED: Final = _Drained()
Found = Head | _Drained


@dataclass(frozen=True, slots=True)
class Ask:
    topic: str
    partition: int
    offset: int  # the group's committed offset
    end: int  # the partition's end offset as last read


Key = tuple[str, int, int]  # topic, partition, offset


class Probe:
    """Reads first records for one isolation level; ``close()`` when done."""

    def __init__(self, settings: CommonSettings, read_committed: bool, timeout_s: float) -> None:
        isolation = "read_committed" if read_committed else "read_uncommitted"
        self.timeout_s = timeout_s
        self._conf = consumer_config(settings, f"{settings.pipeline}.admin.lag-probe", **{
            "isolation.level": isolation, "enable.partition.eof": True,
            "statistics.interval.ms": 0, **BOUNDED_READ,
            "max.partition.fetch.bytes": 65_536})  # fmt: skip
        self._consumer: Consumer | None = None
        self._heads: dict[Key, Head] = {}
        self._drained: dict[Key, int] = {}  # -> the end it was drained up to

    def first(self, asks: Iterable[Ask]) -> dict[Key, Found]:
        """The first consumable record at or after each asked offset (see module doc)."""
        wanted = {(a.topic, a.partition, a.offset): a.end for a in asks}
        out: dict[Key, Found] = {}
        pending: list[Key] = []
        for key, end in wanted.items():
            if key in self._heads:
                out[key] = self._heads[key]
            elif self._drained.get(key, -1) >= end:
                out[key] = DRAINED
            else:
                pending.append(key)
        while pending:
            batch: dict[TP, int] = {}
            later: list[Key] = []
            for t, p, o in pending:
                if (t, p) in batch:
                    later.append((t, p, o))
                else:
                    batch[(t, p)] = o
            for (t, p), got in self._read(batch).items():
                key = (t, p, batch[(t, p)])
                out[key] = got
                if isinstance(got, Head):
                    self._heads[key] = got
                else:
                    self._drained[key] = wanted[key]
            pending = later
        # keep only what was asked about this time: the cache stays bounded
        self._heads = {k: v for k, v in self._heads.items() if k in wanted}
        self._drained = {k: v for k, v in self._drained.items() if k in wanted}
        return out

    def _read(self, batch: Mapping[TP, int]) -> dict[TP, Found]:
        consumer = self._consumer or Consumer(self._conf)
        self._consumer = consumer
        consumer.assign([TopicPartition(t, p, o) for (t, p), o in batch.items()])
        got: dict[TP, Found] = {}
        deadline = time.monotonic() + self.timeout_s
        try:
            while len(got) < len(batch) and (left := deadline - time.monotonic()) > 0:
                for m in consumer.consume(500, min(left, 0.2)):
                    tp = (m.topic() or "", m.partition() or 0)
                    err = m.error()
                    if tp not in batch or tp in got:
                        continue
                    if err is None:
                        kind, ms = m.timestamp()
                        ts = None if kind == TIMESTAMP_NOT_AVAILABLE else ms / 1000
                        got[tp] = Head(m.offset() or 0, ts)
                    elif err.code() == KafkaError._PARTITION_EOF:
                        got[tp] = DRAINED
                    else:
                        log.warning("lag probe of %s[%d]: %s", tp[0], tp[1], err.str())
        finally:
            consumer.unassign()
        return got

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
