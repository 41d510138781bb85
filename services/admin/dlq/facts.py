"""What the filters and the counts look at in one DLQ record (pure).

Decoded with the pipeline's own decoders: ``shared.headers`` for the
``sluice.*`` headers, and the router's :mod:`~shared.envelope` for
the source timestamp and the ``kafka_dlt-original-*`` coordinates (the
router writes DLQ records; reading them back with its code keeps one
encoding). Values that sluice did not write are bounded: an unreadable or
negative ``sluice.replay-count`` counts as 0.
"""

from __future__ import annotations

from dataclasses import dataclass

from shared import headers as h
from shared.envelope import (
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TOPIC,
    Consumed,
    decode_dlt_int,
    original_timestamp,
)

NO_KIND = "unknown"
"""The kind of a record without ``sluice.error.kind`` (counts group it under this)."""


@dataclass(frozen=True, slots=True)
class RecordFacts:
    partition: int
    offset: int
    ts_ms: int  # the source record's time (``sluice.src.ts``), else the DLQ record's
    key: bytes | None
    kind: str  # sluice.error.kind, or NO_KIND
    error_class: str  # sluice.error.class, or ""
    provider: str  # sluice.provider, or ""
    src: h.SourceId | None  # sluice.src.*, else kafka_dlt-original-*
    replay_count: int

    @classmethod
    def of(cls, c: Consumed) -> RecordFacts:
        hs = c.headers
        return cls(c.partition, c.offset, original_timestamp(c), c.key,
                   h.get_str(hs, h.ERROR_KIND) or NO_KIND, h.get_str(hs, h.ERROR_CLASS) or "",
                   h.get_str(hs, h.PROVIDER) or "", source_of(hs), replay_count(hs))  # fmt: skip


def source_of(hs: h.HeaderList) -> h.SourceId | None:
    """The record's identity: ``sluice.src.*``, else where the router says it came from."""
    try:
        return h.source_id(hs)
    except h.HeaderError:
        pass
    topic = h.get_str(hs, DLT_TOPIC)
    partition = decode_dlt_int(h.get(hs, DLT_PARTITION))
    offset = decode_dlt_int(h.get(hs, DLT_OFFSET))
    if not topic or partition is None or offset is None:
        return None
    return h.SourceId(topic, partition, offset)


def replay_count(hs: h.HeaderList) -> int:
    """How often the record was replayed (``sluice.replay-count``; unreadable: 0)."""
    try:
        return max(0, h.get_int(hs, h.REPLAY_COUNT))
    except h.HeaderError:
        return 0


AGE_BUCKETS: tuple[tuple[str, float], ...] = (
    ("lt_1h", 3600.0), ("1h_1d", 86_400.0), ("1d_7d", 7 * 86_400.0), ("ge_7d", float("inf")),
)  # fmt: skip
"""Age buckets of ``GET /v1/dlq``: each holds ages below its bound (and at or above the one before)."""


def age_bucket(age_s: float) -> str:
    """The bucket of a record this old (a record from the future counts as new)."""
    return next(name for name, bound in AGE_BUCKETS if age_s < bound)
