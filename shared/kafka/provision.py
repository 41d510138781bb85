"""Create and validate the pipeline's topics (idempotent)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic

from shared.errors import TopicError
from shared.kafka.rdlog import rdkafka_logger
from shared.kafka.sizes import topic_max_message_bytes
from shared.kafka.startup import check_props, kafka_reason, unreachable
from shared.kafka.startup import partition_counts as reachable_counts
from shared.settings import CommonSettings
from shared.topics import Topics, TopicSpec, parse_rungs

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Provisioned:
    created: list[str]
    existing: list[str]


def admin_client(settings: CommonSettings) -> AdminClient:
    check_props(settings.kafka_props)
    return AdminClient(settings.kafka_config("admin", logger=rdkafka_logger()))


def partition_counts(admin: AdminClient, timeout: float = 10.0) -> dict[str, int]:
    md = admin.list_topics(timeout=timeout)
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def wait_for_leaders(admin: AdminClient, names: list[str], timeout: float = 30.0) -> None:
    """Wait until every partition of ``names`` has a leader (new topics take a moment)."""
    deadline = time.monotonic() + timeout
    pending = set(names)
    while pending and time.monotonic() < deadline:
        md = admin.list_topics(timeout=10)
        for name in list(pending):
            t = md.topics.get(name)
            if (
                t is not None
                and t.error is None
                and t.partitions
                and all(p.leader >= 0 for p in t.partitions.values())
            ):
                pending.discard(name)
        if pending:
            time.sleep(0.1)
    if pending:
        raise TopicError(f"topics without a leader after {timeout:.0f}s: {sorted(pending)}")


def ensure_topic(settings: CommonSettings, name: str, partitions: int) -> None:
    """Create one plain topic if it does not exist (demo and bench sources)."""
    admin = admin_client(settings)
    if name not in reachable_counts(admin, settings):  # unreachable: one clear error
        new = NewTopic(name, num_partitions=partitions, replication_factor=settings.replication)
        for fut in admin.create_topics([new]).values():
            try:
                fut.result(30)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    raise TopicError(f"creating {name} failed: {exc.args[0]}") from exc
    wait_for_leaders(admin, [name])


def check_layout(
    specs: list[TopicSpec], existing: dict[str, int], co_partitioned: tuple[str, ...]
) -> None:
    """Raise TopicError on conflicting partition counts (pure)."""
    conflicts = [
        f"{s.name} has {existing[s.name]} partitions, the pipeline wants {s.partitions}"
        for s in specs
        if s.name in existing and s.name in co_partitioned and existing[s.name] != s.partitions
    ]
    counts = {existing.get(n) for n in co_partitioned if n in existing}
    if len(counts) > 1:
        conflicts.append(
            f"{', '.join(co_partitioned)} must be co-partitioned; counts seen: {sorted(c for c in counts if c)}"
        )
    if conflicts:
        raise TopicError("topic layout conflict: " + "; ".join(conflicts))


def create_topics(
    settings: CommonSettings, source_topic: str | None = None, timeout: float = 30.0
) -> Provisioned:
    """Create every topic of the pipeline; validate the existing ones."""
    topics = Topics(settings.pipeline, parse_rungs(settings.retry_rungs))
    specs = topics.specs(
        settings.partitions,
        max_message_bytes=topic_max_message_bytes(settings.max_message_bytes),
    )
    admin = admin_client(settings)
    try:
        existing = partition_counts(admin)
    except KafkaException as exc:
        raise unreachable(settings, kafka_reason(exc)) from exc
    if source_topic is not None and source_topic not in existing:
        raise TopicError(
            f"source topic {source_topic!r} does not exist on {settings.kafka_bootstrap}"
        )
    check_layout(specs, existing, topics.co_partitioned)
    new = [
        NewTopic(
            s.name,
            num_partitions=s.partitions,
            replication_factor=settings.replication,
            config=s.config,
        )
        for s in specs
        if s.name not in existing
    ]
    created: list[str] = []
    if new:
        for name, fut in admin.create_topics(new, operation_timeout=timeout).items():
            try:
                fut.result(timeout)
                created.append(name)
            except KafkaException as exc:
                err = exc.args[0]
                if isinstance(err, KafkaError) and err.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                    continue  # created concurrently by another process
                raise TopicError(f"creating {name} failed: {err}") from exc
    wait_for_leaders(admin, [s.name for s in specs])
    # Validate once more after creation: a concurrent creator may have used other counts.
    check_layout(specs, partition_counts(admin), topics.co_partitioned)
    existing_names = [s.name for s in specs if s.name not in created]
    for name in created:
        log.info("created topic %s", name)
    return Provisioned(created, existing_names)
