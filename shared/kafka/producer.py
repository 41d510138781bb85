"""Idempotent producers that know what the broker acknowledged.

Two ways to know, for two kinds of stage:

* :class:`TrackedProducer` groups records into :class:`Unit` s. When every
  record of a sealed unit is acknowledged, its ``on_done`` runs (typically
  finishing offsets in a :class:`shared.watermark.Watermarks`). For stages
  whose records finish out of order (enrich).
* :class:`CheckpointProducer` asks librdkafka for delivery reports of
  failures only, and :meth:`CheckpointProducer.checkpoint` flushes: when it
  returns, everything produced before it is acknowledged. For stages that
  forward in order at high rates (ingest), where a Python callback per record
  would cost more than the forwarding itself.

A failed delivery is never skipped: units report their errors, checkpoints
raise :class:`DeliveryError`, and the caller commits nothing past it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from shared.errors import DeliveryError

log = logging.getLogger(__name__)

Headers = list[tuple[str, bytes]]


class Unit:
    """Records that must all be acknowledged before ``on_done`` runs."""

    __slots__ = ("errors", "on_done", "payload", "remaining", "sealed", "total")

    def __init__(self, on_done: Callable[[Unit], None], payload: Any = None) -> None:
        self.on_done = on_done
        self.payload = payload
        self.remaining = 0
        self.total = 0
        self.sealed = False
        self.errors: list[KafkaError] = []

    def delivered(self, err: KafkaError | None, _msg: Any) -> None:
        if err is not None:
            self.errors.append(err)
        self.remaining -= 1
        if self.sealed and self.remaining == 0:
            self.on_done(self)

    def seal(self) -> None:
        """No more records will be added; fire at once if all are delivered."""
        self.sealed = True
        if self.remaining == 0:
            self.on_done(self)

    @property
    def ok(self) -> bool:
        return not self.errors


class _Base:
    def __init__(self, config: dict[str, Any],
                 make: Callable[[dict[str, Any]], Producer] = Producer) -> None:  # fmt: skip
        self._producer = make(config)

    def _produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None,
                 **kwargs: Any) -> None:  # fmt: skip
        while True:
            try:
                self._producer.produce(topic, value, key, headers=headers, **kwargs)  # type: ignore[arg-type]
                return
            except BufferError:
                # Local queue full: serve delivery reports until there is room.
                self._producer.poll(0.05)
            except KafkaException as exc:
                raise DeliveryError(f"produce to {topic} failed: {exc}") from exc

    def poll(self, timeout: float = 0.0) -> int:
        return int(self._producer.poll(timeout))

    def _flush(self, timeout: float) -> None:
        left = int(self._producer.flush(timeout))
        if left:
            raise DeliveryError(f"{left} records still unacknowledged after {timeout:.0f}s")

    def __len__(self) -> int:
        return len(self._producer)


class TrackedProducer(_Base):
    """Producer whose records belong to units with completion callbacks."""

    def produce(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None,
                unit: Unit, timestamp: int = 0) -> None:  # fmt: skip
        kwargs: dict[str, Any] = {"on_delivery": unit.delivered}
        if timestamp:
            kwargs["timestamp"] = timestamp
        unit.remaining += 1
        unit.total += 1
        try:
            self._produce(topic, value, key, headers, **kwargs)
        except DeliveryError:
            unit.remaining -= 1
            unit.total -= 1
            raise

    def flush(self, timeout: float = 30.0) -> None:
        self._flush(timeout)


class CheckpointProducer(_Base):
    """Producer with failure-only delivery reports and flushing checkpoints."""

    def __init__(self, config: dict[str, Any],
                 make: Callable[[dict[str, Any]], Producer] = Producer) -> None:  # fmt: skip
        self.errors: list[KafkaError] = []
        super().__init__(
            {**config, "delivery.report.only.error": True, "on_delivery": self._failed}, make
        )

    def _failed(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.errors.append(err)
            log.error("delivery to %s failed: %s", msg.topic() if msg is not None else "?", err)

    def send(
        self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None
    ) -> None:
        try:
            self._producer.produce(topic, value, key, headers=headers)  # type: ignore[arg-type]
        except BufferError:
            self._produce(topic, value, key, headers)  # waits for room
        except KafkaException as exc:
            raise DeliveryError(f"produce to {topic} failed: {exc}") from exc

    def send_at(self, topic: str, value: bytes | None, key: bytes | None, headers: Headers | None,
                timestamp: int) -> None:  # fmt: skip
        """Like :meth:`send`, keeping the given record timestamp."""
        self._produce(topic, value, key, headers, timestamp=timestamp)

    def checkpoint(self, timeout: float = 30.0) -> None:
        """Return once everything sent so far is acknowledged; raise if any was not."""
        self._flush(timeout)
        if self.errors:
            raise DeliveryError(f"{len(self.errors)} records were not delivered: {self.errors[0]}")
