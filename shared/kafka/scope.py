"""Which librdkafka properties a kind of client reads (pure).

``SLUICE_KAFKA_PROP_*`` properties go to every client a stage makes. A
consumer-only property (``group.instance.id``, ``fetch.min.bytes``) set on a
producer or an admin client, or a producer-only one (``linger.ms``,
``compression.type``) set on a consumer, is ignored by librdkafka with a
``CONFWARN`` line in the log at every client's start. :func:`passthrough` keeps
from the passthrough what the client kind reads, so those lines never appear
and the log says only what matters. Properties not listed here (``*`` in
librdkafka's ``CONFIGURATION.md``: security, sockets, metadata, ...) go to every
client.

The lists are the ``C`` and ``P`` rows of librdkafka's ``CONFIGURATION.md``
(2.x, aliases and deprecated names included); ``tests/unit/test_kafka_scope.py``
checks a sample against the installed librdkafka.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal, TypeVar

Role = Literal["any", "consumer", "producer", "admin"]
V = TypeVar("V")

CONSUMER_ONLY = frozenset({
    "group.id", "group.instance.id", "partition.assignment.strategy", "session.timeout.ms",
    "heartbeat.interval.ms", "group.protocol.type", "group.protocol", "group.remote.assignor",
    "coordinator.query.interval.ms", "max.poll.interval.ms", "max.poll.records",
    "enable.auto.commit", "auto.commit.enable", "auto.commit.interval.ms",
    "enable.auto.offset.store", "queued.min.messages", "queued.max.messages.kbytes",
    "fetch.wait.max.ms", "fetch.queue.backoff.ms", "fetch.message.max.bytes",
    "max.partition.fetch.bytes", "fetch.max.bytes", "fetch.min.bytes",
    "fetch.error.backoff.ms", "isolation.level", "enable.partition.eof", "check.crcs",
    "auto.offset.reset", "consume.callback.max.messages", "offset.store.method",
    "offset.store.path", "offset.store.sync.interval.ms", "share.acknowledgement.mode",
})  # fmt: skip

PRODUCER_ONLY = frozenset({
    "transactional.id", "transaction.timeout.ms", "enable.idempotence",
    "enable.gapless.guarantee", "queue.buffering.max.messages", "queue.buffering.max.kbytes",
    "queue.buffering.max.ms", "linger.ms", "message.send.max.retries", "retries",
    "queue.buffering.backpressure.threshold", "compression.codec", "compression.type",
    "compression.level", "batch.num.messages", "batch.size", "delivery.report.only.error",
    "sticky.partitioning.linger.ms", "request.required.acks", "acks", "request.timeout.ms",
    "message.timeout.ms", "delivery.timeout.ms", "partitioner", "queuing.strategy",
    "produce.offset.report",
})  # fmt: skip

_NOT_READ: dict[Role, frozenset[str]] = {
    "any": frozenset(),
    "consumer": PRODUCER_ONLY,
    "producer": CONSUMER_ONLY,
    "admin": CONSUMER_ONLY | PRODUCER_ONLY,  # librdkafka's admin client is a producer handle
}


def passthrough(props: Mapping[str, V], role: Role) -> dict[str, V]:
    """The properties of ``props`` that a client of kind ``role`` reads (``any``: all)."""
    skip = _NOT_READ[role]
    return {k: v for k, v in props.items() if k not in skip}
