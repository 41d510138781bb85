"""Blocked keys (block mode): which keys are held by a dead record, since when.

:func:`blocked_keys` lists them from in-memory state (the sequencer's gauges);
:func:`from_changelog` from changelog records (pure); :func:`read_blocked`
reads ``P.sequencer.state`` to its end (``read_committed``) and lists them, for
admin. A blocked key is released by a ``P.results`` record keyed by the
record's key, with the record's ``sluice.src.*`` headers and
``sluice.outcome=release`` (:func:`release_record`; admin writes it). It goes
through the sequencer's transactions like any outcome, so it is durable across
restarts, and it is idempotent: releasing a record that is not blocked (any
more) changes nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from confluent_kafka import KafkaException

from services.sequencer.changelog import Change, restore
from services.sequencer.reorder import Reorder
from services.sequencer.restore import StateReader
from shared import headers as h
from shared.errors import BrokerError
from shared.settings import CommonSettings
from shared.topics import Topics


@dataclass(frozen=True)
class BlockedKey:
    partition: int  # input partition (P.work / P.results / P.sequencer.state)
    src_topic: str
    src_partition: int
    key: bytes
    offset: int  # source offset of the dead head
    since_ms: int
    age_s: float
    waiting: int  # announced records held behind (and including) the head
    error_kind: str | None
    error_class: str | None
    error_message: str | None

    @property
    def ident(self) -> h.SourceId:
        return h.SourceId(self.src_topic, self.src_partition, self.offset)


def blocked_keys(states: Mapping[int, Reorder], now_ms: int | None = None) -> list[BlockedKey]:
    """Blocked scopes of these partitions' states, oldest first."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out: list[BlockedKey] = []
    for n, state in states.items():
        for sk, scope in state.blocked():
            since = scope.blocked_since or now
            head = scope.slots[scope.fifo[0]].outcome
            hs = head.headers if head is not None else ()
            out.append(BlockedKey(n, sk.topic, sk.partition, sk.key, scope.fifo[0], since,
                                  max(0.0, (now - since) / 1000), len(scope.fifo),
                                  h.get_str(hs, h.ERROR_KIND), h.get_str(hs, h.ERROR_CLASS),
                                  h.get_str(hs, h.ERROR_MESSAGE)))  # fmt: skip
    return sorted(out, key=lambda b: (b.since_ms, b.partition, b.key))


def from_changelog(records: Mapping[int, Iterable[Change]], now_ms: int | None = None) -> list[BlockedKey]:  # fmt: skip
    """Blocked keys recorded in changelog partitions (records oldest first)."""
    return blocked_keys({n: restore(recs, mode="block")[0] for n, recs in records.items()}, now_ms)


def release_record(key: bytes, ident: h.SourceId) -> tuple[bytes, None, h.HeaderList]:
    """Key, value and headers of the ``P.results`` record that releases ``ident`` (pure)."""
    return key, None, [*h.source_headers(ident, 0), (h.OUTCOME, b"release")]


def read_blocked(settings: CommonSettings, timeout_s: float = 30.0) -> list[BlockedKey]:
    """Read the changelog of ``settings.pipeline`` and list its blocked keys.

    Blocks for up to ``timeout_s``; BrokerError when the changelog cannot be read by then.
    """
    topic = Topics(settings.pipeline).state
    try:
        reader = StateReader(settings, topic)
        try:
            md = reader.reader.list_topics(topic, timeout=min(10.0, timeout_s)).topics.get(topic)
            parts = sorted(md.partitions) if md is not None and md.error is None else []
            return from_changelog(reader.read(parts, time.monotonic() + timeout_s))
        finally:
            reader.close()
    except KafkaException as exc:
        raise BrokerError(f"cannot read {topic}: {exc}") from exc
