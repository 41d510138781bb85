"""One DLQ record as the browse shows it (pure).

Key, value and every header are shown bounded (at most ``limit`` bytes) and
safe whatever the bytes are: UTF-8 text when they decode (a character cut by
the limit is left out), else base64. The ``kafka_dlt-original-partition``,
``-offset`` and ``-timestamp`` headers are decoded as the router encodes them
(big-endian integers); the attempt history is ``sluice.error.history`` as
:func:`shared.outcomes.history` reads it.
"""

from __future__ import annotations

import base64
import codecs
from datetime import UTC, datetime

from services.admin.dlq.facts import RecordFacts
from services.admin.dlq.models import DlqRecord, Header, Preview, Source
from shared import headers as h
from shared.envelope import (
    DLT_OFFSET,
    DLT_PARTITION,
    DLT_TIMESTAMP,
    Consumed,
    decode_dlt_int,
)
from shared.outcomes import history

DLT_INTS = frozenset({DLT_PARTITION, DLT_OFFSET, DLT_TIMESTAMP})


def preview(data: bytes | None, limit: int) -> Preview | None:
    if data is None:
        return None
    head, truncated = data[:limit], len(data) > limit
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=not truncated)
    except UnicodeDecodeError:
        return Preview(encoding="base64", value=base64.b64encode(head).decode(),
                       bytes=len(data), truncated=truncated)  # fmt: skip
    return Preview(encoding="utf-8", value=text, bytes=len(data), truncated=truncated)


def header(name: str, value: bytes, limit: int) -> Header:
    number = decode_dlt_int(value) if name in DLT_INTS else None
    if number is not None:
        return Header(name=name, encoding="int", value=number, bytes=len(value), truncated=False)
    shown = preview(value, limit)
    assert shown is not None
    return Header(name=name, **shown.model_dump())


def record(c: Consumed, facts: RecordFacts, limit: int) -> DlqRecord:
    hs = c.headers
    src = facts.src
    try:
        attempt: int | None = h.get_int(hs, h.ATTEMPT)
    except h.HeaderError:
        attempt = None
    return DlqRecord(
        partition=c.partition, offset=c.offset,
        time=_time(facts.ts_ms),
        key=preview(c.key, limit), value=preview(c.value, limit),
        kind=facts.kind, error_class=facts.error_class or None,
        error_message=(h.get_str(hs, h.ERROR_MESSAGE) or "")[:limit] or None, provider=facts.provider or None,
        attempt=attempt, replay_count=facts.replay_count,
        source=Source(topic=src.topic, partition=src.partition, offset=src.offset) if src else None,
        history=history(hs), headers=[header(n, v, limit) for n, v in hs],
        unreadable_headers=c.broken,
    )  # fmt: skip


def _time(ms: int) -> datetime:
    try:
        return datetime.fromtimestamp(ms / 1000, UTC)
    except (ValueError, OverflowError, OSError):  # out of datetime's range
        return datetime.fromtimestamp(0, UTC)
