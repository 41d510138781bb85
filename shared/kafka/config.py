"""librdkafka configurations that every sluice client starts from.

Producers are idempotent and use ``murmur2_random`` so Java clients agree on
partitions (the sequencer relies on co-partitioning). Consumers never
auto-commit: stages commit only what reached a durable next hop.

Both check the ``SLUICE_KAFKA_PROP_*`` passthrough properties first, so a bad
one is a one-line :class:`~shared.errors.ConfigError` naming its variable
before any client exists.
"""

from __future__ import annotations

from typing import Any

from shared.kafka.rdlog import rdkafka_logger
from shared.kafka.startup import check_props
from shared.settings import CommonSettings

STATS_INTERVAL_MS = 5000


LINGER_MS = 5
"""The producer's batching wait unless the stage says otherwise (ingest's: it
forwards at the source's rate, where batches pay; a stage that produces at an
LLM provider's rate gains nothing from waiting and adds the wait to every record)."""


def producer_config(
    settings: CommonSettings, linger_ms: int = LINGER_MS, **extra: Any
) -> dict[str, Any]:
    """A stage's producer: idempotent, ``acks=all``, ``murmur2_random`` (never
    changed); ``linger.ms`` and ``compression.type`` are defaults that a
    ``SLUICE_KAFKA_PROP_*`` of the same name replaces; ``extra`` wins over both."""
    check_props(settings.kafka_props)
    tunable: dict[str, Any] = {"linger.ms": linger_ms, "compression.type": "lz4"}
    conf: dict[str, Any] = {
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "message.max.bytes": 8 * 1024 * 1024,
        "logger": rdkafka_logger(),
    }
    defaults = {k: v for k, v in tunable.items() if k not in settings.kafka_props}
    return settings.kafka_config(**{**defaults, **conf, **extra})


def consumer_config(settings: CommonSettings, group: str, **extra: Any) -> dict[str, Any]:
    check_props(settings.kafka_props)
    conf: dict[str, Any] = {
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "cooperative-sticky",
        "isolation.level": "read_committed",
        "statistics.interval.ms": STATS_INTERVAL_MS,
        "logger": rdkafka_logger(),
    }
    return settings.kafka_config(**{**conf, **extra})
