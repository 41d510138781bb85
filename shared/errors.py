"""The one exception tree of sluice.

    SluiceError
    ├── ConfigError            bad settings or YAML; raised at start-up
    ├── StackError             no Kafka / Redis could be had (says what is missing)
    ├── TopicError             a topic is missing or conflicts with the pipeline
    ├── BrokerError            a read of broker state (offsets, groups, metadata)
    │                          failed or did not answer within its bound
    ├── ProviderStateUnavailable  the shared provider state (Redis: limits,
    │                          cooldowns, breaker, pause) cannot be reached
    ├── AdminApiError          the admin API refused a request or could not be
    │                          reached (``sluice providers|lag|audit``)
    ├── DeliveryError          the broker refused or lost a produced record
    │   ├── TransactionError   a transaction could not be completed in time, or the
    │   │                      producer was fenced: the process exits, a restart resumes
    │   └── SessionFenced      the consumer was fenced just after its own session timed
    │                          out: the stage starts over in the same process
    ├── PoisonRecord           an input record that can never be processed
    │                          (carries the reason that goes into the poison DLQ)
    └── BadDocument            a value that is not JSON by the pipeline's one
                               decoder (``shared.jsondoc``: grammar + depth limit)

Lower-layer errors (librdkafka, redis, aiohttp) are translated at the edge with
``raise ... from exc`` so callers handle only these classes.
"""

from __future__ import annotations


class SluiceError(Exception):
    """Base of every error sluice raises on purpose."""


class ConfigError(SluiceError):
    """Settings or the YAML file are invalid."""


class StackError(SluiceError):
    """Kafka or Redis is not available and cannot be started here."""


class TopicError(SluiceError):
    """A topic is missing or its layout conflicts with the pipeline's."""


class BrokerError(SluiceError):
    """Reading offsets, groups or metadata from Kafka failed or timed out (the message says which)."""


class ProviderStateUnavailable(SluiceError):
    """Shared provider state (limits, cooldowns, breaker, pause) is unreachable.

    Raised by the Redis layer (``shared.redis.client.translated``) for connection
    refused, reset, timed out, or a server still loading its data set; callers
    need not know which store is behind :class:`shared.provider_state.ProviderState`.
    """


class AdminApiError(SluiceError):
    """The admin API answered an error (the message carries its ``detail``) or did not answer."""


class DeliveryError(SluiceError):
    """A produced record was not acknowledged by the broker."""


class SessionFenced(DeliveryError):
    """The stage's consumer was fenced right after its own session timed out.

    A static member (``group.instance.id``) whose session expired while the broker
    was away rejoins; a request still carrying its old member id is then answered
    "fenced by another consumer with the same instance id", which librdkafka makes a
    fatal error. No other process holds the id, so the stage starts over (a new
    consumer, state restored as after a restart) instead of exiting:
    :func:`shared.stage.run_stage`. A fence without that session loss is another
    process with the same id: a plain fatal error, the stage stops.
    """


class TransactionError(DeliveryError):
    """A transactional call failed for good (fenced, fatal) or did not return by its deadline.

    The transactional producer is unusable afterwards: the process exits non-zero and
    a restart resumes from the last commit (nothing uncommitted is visible to
    ``read_committed`` readers).
    """


class PoisonRecord(SluiceError):
    """An input record that can never be processed.

    ``reason`` is a short machine-readable code (``undecodable``, ``oversize``,
    ``bad_headers``); the message says what exactly was wrong.
    """

    def __init__(self, reason: str, message: str, *, headers_readable: bool = True) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        # False when reading the headers failed: they must not be read again
        # (the client may hand back a broken list the second time).
        self.headers_readable = headers_readable


class BadDocument(SluiceError, ValueError):
    """A value that the pipeline's JSON decoder does not accept (``shared.jsondoc``)."""
