"""DLQ records as the router writes them (its own envelope code), for the DLQ tests."""

from __future__ import annotations

import json
import time

from shared import headers as h
from shared.envelope import Consumed, failure_dlq_record, parse
from shared.kinds import FailureKind
from shared.outcomes import Failure, Record, failure_record


def dead_record(
    src_offset: int,
    *,
    text: str = "I was charged twice",
    kind: FailureKind = FailureKind.TIMEOUT,
    error_class: str = "deadline",
    provider: str = "primary",
    key: bytes | None = b"k1",
    ts_ms: int | None = None,
    replay_count: int | None = None,
    attempts: int = 3,
    value: bytes | None = None,
) -> Record:
    """The DLQ record of a work record that failed ``attempts`` times, the last with ``kind``.

    Its source time is now unless ``ts_ms`` says otherwise: a DLQ record keeps its source
    record's time, and the broker deletes one older than the DLQ's retention (30 days)."""
    if ts_ms is None:
        ts_ms = int(time.time() * 1000)
    src = h.SourceId("src", 0, src_offset)
    body = json.dumps({"ticket": src_offset, "text": text}).encode() if value is None else value
    work = Record(key, body, h.source_headers(src, ts_ms, 1))
    for attempt in range(1, attempts + 1):
        work = failure_record(work, attempt, Failure(kind, error_class, f"try {attempt}"), provider)
        work = Record(work.key, work.value, h.merge(work.headers, [(h.ATTEMPT, b"%d" % attempt)]))
    if replay_count is not None:
        work = Record(work.key, work.value,
                      h.merge(work.headers, [(h.REPLAY_COUNT, b"%d" % replay_count)]))  # fmt: skip
    failed = consumed(work, "p.failures", 0, src_offset)
    record, _ts, _reason = failure_dlq_record(failed, parse(failed))
    return record


def consumed(record: Record, topic: str, partition: int, offset: int, ts_ms: int = 1) -> Consumed:
    return Consumed(topic, partition, offset, ts_ms, record.key, record.value, record.headers)
