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


TUNABLE = {"linger.ms": 5, "compression.type": "lz4"}
"""Producer defaults that a ``SLUICE_KAFKA_PROP_*`` of the same name replaces.

A 5 ms linger batches ingest's forwarding at the source's rate. The stages that
produce at an LLM provider's rate (enrich's outcomes, the router's retries and
parked records, the sequencer's output) use :func:`prompt_producer_config`,
linger 0: a batch gains them little and the wait is added to every record
(``sluice bench e2e``: the sequencer hop's p50 goes from 6 to 1 ms). Ingest keeps
5 ms: at 0 ``sluice bench ingest`` fell from 210k to 182k records/s (0.75 of the
stamping baseline, under its 0.9 target), though a record then waits up to 5 ms
more before enrich can read it."""


def producer_config(settings: CommonSettings, **extra: Any) -> dict[str, Any]:
    """A stage's producer: idempotent, ``acks=all``, ``murmur2_random`` (never
    changed by a passthrough property); :data:`TUNABLE` gives way to one;
    ``extra`` wins over both."""
    return _producer(settings, TUNABLE, extra)


def prompt_producer_config(settings: CommonSettings, **extra: Any) -> dict[str, Any]:
    """:func:`producer_config` with ``linger.ms`` 0 by default."""
    return _producer(settings, {**TUNABLE, "linger.ms": 0}, extra)


def _producer(
    settings: CommonSettings, tunable: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    check_props(settings.kafka_props)
    conf: dict[str, Any] = {
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": "murmur2_random",
        "message.max.bytes": 8 * 1024 * 1024,
        "logger": rdkafka_logger(),
    }
    defaults = {k: v for k, v in tunable.items() if k not in settings.kafka_props}
    return settings.kafka_config("producer", **{**defaults, **conf, **extra})


BOUNDED_READ = {"fetch.min.bytes": 1, "fetch.wait.max.ms": 100}
"""Fetch settings of a consumer that reads a topic up to its end within a time budget
(the admin's DLQ, lag-probe and audit reads). They win over
``SLUICE_KAFKA_PROP_FETCH_MIN_BYTES`` / ``_FETCH_WAIT_MAX_MS``, which tune the stages'
throughput: a broker that holds each fetch until it has many bytes kept a replay's
runner from seeing the last few outcomes it waited for, and the task never ended."""

TAIL_READ = {"fetch.min.bytes": 1024 * 1024, "fetch.wait.max.ms": 100}
"""Fetch settings of a consumer that follows a busy topic and hands out what it has at
intervals (a replay's runner reading its outcomes every 0.2 s): the broker holds each
fetch for up to 100 ms, so the consumer asks about ten times a second. With
``fetch.min.bytes`` 1 the broker answered every fetch as soon as one record arrived,
which on ``P.results`` during a replay meant a fetch per record or two, each handled
for every partition (librdkafka uses no fetch sessions), on a broker that shares the
machine with the pipeline. The last records still come within 100 ms of their commit.
Like ``BOUNDED_READ`` they win over the stages' ``SLUICE_KAFKA_PROP_FETCH_*``."""


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
    return settings.kafka_config("consumer", **{**conf, **extra})
