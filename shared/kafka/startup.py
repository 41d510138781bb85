"""Start-up checks against Kafka, shared by every service.

:func:`check_props` validates the ``SLUICE_KAFKA_PROP_*`` passthrough
properties without creating a client or touching the network;
:func:`check_topics` waits (at most ``SLUICE_STARTUP_TIMEOUT_S``) for the
broker's metadata and checks that the topics a service needs exist and that
the co-partitioned ones have one partition count. Each problem is one
:class:`~shared.errors.SluiceError` naming the setting or the topic:

    bad property            ConfigError   SLUICE_KAFKA_PROP_<NAME>: <librdkafka's reason>
    broker unreachable      StackError    Kafka at <bootstrap> (SLUICE_KAFKA_BOOTSTRAP) is not reachable
    topic missing           TopicError    topic '<name>' does not exist: run `sluice topics create`
    not co-partitioned      TopicError    <names> must be co-partitioned; partition counts: {...}
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient
from pydantic import SecretStr

from shared.errors import ConfigError, StackError, TopicError
from shared.settings import KAFKA_PROP_PREFIX, CommonSettings

PROBE = "sluice.probe.no.such.property"
"""Set after the property under test, so the client is never created (no threads, no network)."""

_SECRET_NAME = re.compile(r"password|secret|token|key|jaas|credential", re.IGNORECASE)


class HasListTopics(Protocol):
    def list_topics(self, topic: str | None = None, timeout: float = -1) -> Any: ...


def prop_env_name(prop: str) -> str:
    """``sasl.mechanism`` → ``SLUICE_KAFKA_PROP_SASL_MECHANISM`` (pure)."""
    return KAFKA_PROP_PREFIX + prop.upper().replace(".", "_")


def prop_problem(prop: str, value: str, reason: str) -> str:
    """The one line for a property librdkafka refused; a secret's value never shows (pure)."""
    reason = " ".join(reason.split())
    if value and _SECRET_NAME.search(prop):
        reason = reason.replace(value, "***")
    return f"{prop_env_name(prop)}: {reason}"


def kafka_reason(exc: KafkaException) -> str:
    """librdkafka's text of ``exc`` (without the ``KafkaError{code=...}`` wrapping)."""
    err = exc.args[0] if exc.args else None
    return " ".join((err.str() if isinstance(err, KafkaError) else str(exc)).split())


def _refusal(prop: str, value: str) -> str | None:
    """librdkafka's reason for refusing ``prop=value``, or None when it takes it.

    librdkafka sets properties in order and stops at the first bad one, so the
    probe after ``prop`` always fails: if the complaint is about the probe,
    ``prop`` passed.
    """
    try:
        AdminClient({prop: value, PROBE: "1"})
    except KafkaException as exc:
        reason = kafka_reason(exc)
        return None if PROBE in reason else reason
    return None  # pragma: no cover - the probe is never a valid property


def check_props(props: Mapping[str, SecretStr]) -> None:
    """Raise ConfigError naming the first passthrough property librdkafka refuses."""
    for prop, secret in props.items():
        value = secret.get_secret_value()
        reason = _refusal(prop, value)
        if reason is not None:
            raise ConfigError(prop_problem(prop, value, reason))


def topic_problem(
    counts: Mapping[str, int],
    need: Sequence[str],
    co_partitioned: Sequence[str] = (),
    external: Collection[str] = (),
) -> TopicError | None:
    """What is wrong with the topics a service needs, given ``{topic: partitions}`` (pure).

    ``external`` topics (a source topic) are not the pipeline's: ``sluice topics
    create`` would not make them, so their error says only that they are missing.
    """
    for name in need:
        if name not in counts:
            hint = "" if name in external else ": run `sluice topics create`"
            return TopicError(f"topic {name!r} does not exist{hint}")
    seen = {name: counts[name] for name in co_partitioned if name in counts}
    if len(set(seen.values())) > 1:
        return TopicError(
            f"{', '.join(seen)} must be co-partitioned (one partition count); "
            f"partition counts: {seen}"
        )
    return None


def unreachable(settings: CommonSettings, reason: str) -> StackError:
    return StackError(
        f"Kafka at {settings.kafka_bootstrap} (SLUICE_KAFKA_BOOTSTRAP) is not reachable: {reason}"
    )


def partition_counts(client: HasListTopics, settings: CommonSettings) -> dict[str, int]:
    """``{topic: partitions}`` of the cluster, waiting at most ``startup_timeout_s`` for it."""
    try:
        md = client.list_topics(timeout=settings.startup_timeout_s)
    except KafkaException as exc:
        raise unreachable(settings, kafka_reason(exc)) from exc
    return {name: len(t.partitions) for name, t in md.topics.items() if t.error is None}


def check_topics(
    client: HasListTopics,
    settings: CommonSettings,
    need: Sequence[str],
    co_partitioned: Sequence[str] = (),
    external: Collection[str] = (),
) -> dict[str, int]:
    """Raise unless ``need`` exist and ``co_partitioned`` agree; their partition counts."""
    counts = partition_counts(client, settings)
    problem = topic_problem(counts, need, co_partitioned, external)
    if problem is not None:
        raise problem
    return {name: counts[name] for name in need}
