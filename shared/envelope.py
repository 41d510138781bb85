"""Failure records and the DLQ records made of them (pure): what the router reads
and writes, and what the admin reads back from the DLQs and replays.

Records the router reads (``P.failures``, ``P.retry.*``, ``P.parked``) are
failure records (see :mod:`shared.outcomes`). One that cannot be routed
(unreadable headers, missing ``sluice.src.*``, missing or unknown kind,
attempt that is not a positive integer, retry record without
``sluice.not-before``) is :class:`Malformed`: it goes to ``P.dlq.error`` with
error class ``malformed`` and the reason, and gets a dead outcome only when
its identity could be read.

DLQ records keep the original key, value, headers and timestamp (the source
record's, from ``sluice.src.ts``), add the error headers, and the
``kafka_dlt-*`` headers of the Spring Kafka dead-letter convention, encoded
as Spring does: topic, exception class and message as UTF-8, partition as a
4-byte and offset and timestamp as 8-byte big-endian integers.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from shared import headers as h
from shared.kafka.message import Message
from shared.kinds import FailureKind
from shared.outcomes import Record

DLT_TOPIC = "kafka_dlt-original-topic"
DLT_PARTITION = "kafka_dlt-original-partition"
DLT_OFFSET = "kafka_dlt-original-offset"
DLT_TIMESTAMP = "kafka_dlt-original-timestamp"
DLT_FQCN = "kafka_dlt-exception-fqcn"
DLT_MESSAGE = "kafka_dlt-exception-message"
MALFORMED = "malformed"


@dataclass(frozen=True, slots=True)
class Consumed:
    """A consumed record, where it was read, and whether its headers were readable."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: h.HeaderList
    broken: str | None = None  # why the headers could not be read

    @classmethod
    def of(cls, msg: Message) -> Consumed:
        broken = None
        try:
            hs = h.read(msg)
        except h.HeaderError as exc:
            hs, broken = [], str(exc)
        return cls(msg.topic() or "", msg.partition() or 0, msg.offset() or 0,
                   msg.timestamp()[1], msg.key(), msg.value(), hs, broken)  # fmt: skip


class Malformed(ValueError):
    """A record the router cannot route; ``src`` is its identity if readable."""

    def __init__(self, reason: str, src: h.SourceId | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.src = src


@dataclass(frozen=True, slots=True)
class Failed:
    """The routing facts of a failure record."""

    src: h.SourceId
    kind: FailureKind
    attempt: int
    retry_after_s: float | None
    provider: str | None


def parse(c: Consumed) -> Failed:
    """Read a failure record's routing facts; :class:`Malformed` if they are not there."""
    if c.broken is not None:
        raise Malformed(f"unreadable headers: {c.broken}", None)
    hs = c.headers
    try:
        src = h.source_id(hs)
    except h.HeaderError as exc:
        raise Malformed(str(exc), None) from None
    kind_text = h.get_str(hs, h.ERROR_KIND)
    if not kind_text:
        raise Malformed(f"header {h.ERROR_KIND} is missing", src)
    try:
        kind = FailureKind.parse(kind_text)
        attempt = h.get_int(hs, h.ATTEMPT)
    except ValueError as exc:  # HeaderError is a ValueError
        raise Malformed(str(exc), src) from None
    if attempt < 1:
        raise Malformed(f"header {h.ATTEMPT} is {attempt}, not a positive integer", src)
    return Failed(src, kind, attempt, retry_after(hs), h.get_str(hs, h.PROVIDER) or None)


def retry_after(hs: h.HeaderList) -> float | None:
    """The provider's cooldown in seconds; ``None`` if absent or not a finite number >= 0."""
    text = h.get_str(hs, h.RETRY_AFTER)
    try:
        value = float(text) if text else math.nan
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def not_before(c: Consumed, src: h.SourceId) -> int:
    """A retry record's due time (ms epoch)."""
    try:
        return h.get_int(c.headers, h.NOT_BEFORE)
    except h.HeaderError as exc:
        raise Malformed(str(exc), src) from None


def retry_record(c: Consumed, not_before_ms: int) -> Record:
    """The failure record for a retry topic: unchanged plus its due time."""
    return Record(c.key, c.value, h.merge(c.headers, [(h.NOT_BEFORE, b"%d" % not_before_ms)]))


def work_record(c: Consumed, attempt: int) -> Record:
    """Back to ``P.work``: original key, value and headers, the given attempt.

    The error headers stay as history; the due time and the provider's
    retry-after of the failure just handled are dropped so that the next
    failure is not judged by them.
    """
    drop = (h.NOT_BEFORE, h.RETRY_AFTER)
    keep = [(n, v) for n, v in c.headers if n not in drop]
    return Record(c.key, c.value, h.merge(keep, [(h.ATTEMPT, b"%d" % attempt)]))


def original_timestamp(c: Consumed) -> int:
    """The source record's timestamp (``sluice.src.ts``), else the consumed one's."""
    try:
        ts = h.get_int(c.headers, h.SRC_TS)
    except h.HeaderError:
        ts = 0
    return ts if ts > 0 else c.timestamp


def dlq_record(
    c: Consumed,
    src: h.SourceId | None,
    fqcn: str,
    message: str,
    errors: Sequence[tuple[str, bytes]] = (),
) -> tuple[Record, int]:
    """The DLQ record and its timestamp.

    ``src`` gives the ``kafka_dlt-original-*`` coordinates; without an
    identity they are those of the record as the router read it.
    """
    topic, partition, offset = (
        (src.topic, src.partition, src.offset) if src else (c.topic, c.partition, c.offset)
    )
    ts = original_timestamp(c)
    dlt: h.HeaderList = [
        (DLT_TOPIC, topic.encode()),
        (DLT_PARTITION, struct.pack(">i", partition)),
        (DLT_OFFSET, struct.pack(">q", offset)),
        (DLT_TIMESTAMP, struct.pack(">q", ts)),
        (DLT_FQCN, fqcn.encode()),
        (DLT_MESSAGE, message.encode()[: h.MAX_HEADER_VALUE]),
    ]
    keep = [(n, v) for n, v in c.headers if n != h.NOT_BEFORE]
    return Record(c.key, c.value, h.merge(keep, [*errors, *dlt])), ts


def failure_dlq_record(c: Consumed, failed: Failed) -> tuple[Record, int, str]:
    """A failure that ran out of rungs, or was never retryable; and why it died."""
    cls = h.get_str(c.headers, h.ERROR_CLASS) or failed.kind.value
    msg = h.get_str(c.headers, h.ERROR_MESSAGE)
    reason = f"{cls}: {msg}" if msg else cls
    return (*dlq_record(c, failed.src, f"sluice.{failed.kind.value}", reason), reason)


def malformed_dlq_record(c: Consumed, bad: Malformed) -> tuple[Record, int]:
    errors: h.HeaderList = [  # the kind replaces whatever (unreadable) kind it carried
        (h.ERROR_KIND, FailureKind.POISON.value.encode()),
        (h.ERROR_CLASS, MALFORMED.encode()),
        (h.ERROR_MESSAGE, bad.reason.encode()[:1024]),
    ]
    return dlq_record(c, bad.src, f"sluice.{MALFORMED}", bad.reason, errors)


def decode_dlt_int(value: bytes | None) -> int | None:
    """Read a ``kafka_dlt-original-partition|offset|timestamp`` header."""
    if value is None or len(value) not in (4, 8):
        return None
    return int(struct.unpack(">i" if len(value) == 4 else ">q", value)[0])
