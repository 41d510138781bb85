"""Where a service's Kafka clients come from: the real ones, or a test double.

A service takes a :class:`Clients` (default :data:`KAFKA`) and makes its
consumers and producers through it, so that the same service code runs against
the broker or against an in-memory double (``tests/support/memkafka.py``) that
behaves like one: same methods, same :class:`~shared.kafka.message.Message`s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer


@dataclass(frozen=True)
class Clients:
    consumer: Callable[[dict[str, Any]], Consumer]
    producer: Callable[[dict[str, Any]], Producer]


KAFKA = Clients(Consumer, Producer)
"""confluent-kafka's clients: the real broker."""
