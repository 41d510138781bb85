"""What the stages read of a consumed record: one Protocol, one topic-partition type.

:class:`Message` is the part of confluent-kafka's ``Message`` that sluice
reads, so that pure code (wrapping, envelopes, sequencer records) and test
doubles depend on a shape, not on the client. :data:`TP` names a partition of
a topic wherever offsets are kept per partition.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from confluent_kafka import KafkaError

TP = tuple[str, int]
"""A topic-partition: ``(topic, partition)``."""


class Message(Protocol):
    """A consumed record (confluent-kafka's ``Message``, or a test double)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> object: ...
    def timestamp(self) -> tuple[int, int]: ...
    def error(self) -> KafkaError | None: ...
