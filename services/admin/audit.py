"""The audit log: one record per mutation in ``P.audit``, delivered before the answer.

:meth:`AuditLog.write` produces the record and waits for the broker's
acknowledgement (at most ``SLUICE_ADMIN_AUDIT_TIMEOUT_S``; librdkafka gives
the record up by then too, so a write reported failed is not delivered
later). :meth:`AuditLog.recent` reads the newest records back. Both block:
the API calls them in a worker thread.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from services.admin.models import AuditRecord
from services.admin.settings import AdminSettings
from shared.errors import DeliveryError, StackError
from shared.kafka.config import BOUNDED_READ, consumer_config, producer_config
from shared.topics import Topics

MAX_LIMIT = 1000


def encode(record: AuditRecord) -> bytes:
    return record.model_dump_json().encode()


def decode(value: bytes | None) -> AuditRecord | None:
    """The record, or None for a value that is not one (skipped when listing)."""
    if not value:
        return None
    try:
        return AuditRecord.model_validate_json(value)
    except ValueError:
        return None


class AuditLog:
    def __init__(self, settings: AdminSettings) -> None:
        self.settings = settings
        self.topic = Topics(settings.pipeline).audit
        self.timeout_s = settings.admin_audit_timeout_s
        # Not idempotent: a record given up after message.timeout.ms must not leave the
        # producer unusable for the next one; a duplicate of an audit record is harmless.
        self._producer = Producer(producer_config(settings, **{
            "enable.idempotence": False, "linger.ms": 0,
            "message.timeout.ms": max(1000, int(self.timeout_s * 1000)),
        }))  # fmt: skip
        self._lock = threading.Lock()

    def write(self, record: AuditRecord) -> None:
        """Return once the broker has the record; DeliveryError if it does not."""
        errors: list[KafkaError] = []

        def delivered(err: KafkaError | None, _msg: Any) -> None:
            if err is not None:
                errors.append(err)

        with self._lock:
            try:
                self._producer.produce(self.topic, encode(record), record.target.encode(),
                                       on_delivery=delivered)  # fmt: skip
            except (KafkaException, BufferError) as exc:
                raise DeliveryError(f"audit record not accepted for {self.topic}: {exc}") from exc
            left = self._producer.flush(self.timeout_s + 1)
        if left:
            raise DeliveryError(f"{self.topic} did not acknowledge the audit record "
                                f"within {self.timeout_s:g} s")  # fmt: skip
        if errors:
            raise DeliveryError(f"{self.topic} refused the audit record: {errors[0].str()}")

    def recent(self, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` newest records, newest first."""
        limit = max(1, min(limit, MAX_LIMIT))
        consumer = Consumer(
            consumer_config(self.settings, f"{self.settings.pipeline}.admin", **BOUNDED_READ)
        )
        try:
            return _newest(consumer, self.topic, limit, self.timeout_s)
        except KafkaException as exc:
            raise StackError(f"cannot read {self.topic}: {exc}") from exc
        finally:
            consumer.close()

    def close(self) -> None:
        self._producer.flush(self.timeout_s)


def _newest(consumer: Consumer, topic: str, limit: int, timeout_s: float) -> list[AuditRecord]:
    md = consumer.list_topics(topic, timeout=timeout_s).topics.get(topic)
    if md is None or md.error is not None:
        raise StackError(f"topic {topic!r} does not exist: run `sluice topics create`")
    ends: dict[int, int] = {}
    starts = []
    for p in md.partitions:
        lo, hi = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
        if hi > lo:
            ends[p] = hi
            starts.append(TopicPartition(topic, p, max(lo, hi - limit)))
    if not starts:
        return []
    consumer.assign(starts)
    out: list[AuditRecord] = []
    deadline = time.monotonic() + timeout_s
    while ends and time.monotonic() < deadline:
        for m in consumer.consume(num_messages=500, timeout=0.2):
            if m.error() is not None:
                continue
            record = decode(m.value())
            if record is not None:
                out.append(record)
            if (m.offset() or 0) >= ends.get(m.partition() or 0, 0) - 1:
                ends.pop(m.partition() or 0, None)
    out.sort(key=lambda r: r.time, reverse=True)
    return out[:limit]
