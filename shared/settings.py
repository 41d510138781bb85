"""Settings: environment variables prefixed ``SLUICE_`` plus one YAML file.

Every settings model is frozen. Secrets (Redis URL, librdkafka passthrough
properties such as ``sasl.password``) are ``SecretStr`` and never print.
Any librdkafka property can be passed through as
``SLUICE_KAFKA_PROP_<NAME>``: ``SLUICE_KAFKA_PROP_SASL_MECHANISM=PLAIN``
becomes ``sasl.mechanism=PLAIN``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.errors import ConfigError
from shared.kafka.scope import Role, passthrough
from shared.validation import one_line

KAFKA_PROP_PREFIX = "SLUICE_KAFKA_PROP_"


def _kafka_props_from_env(environ: dict[str, str]) -> dict[str, str]:
    """``SLUICE_KAFKA_PROP_SASL_MECHANISM`` → ``sasl.mechanism``."""
    return {
        name[len(KAFKA_PROP_PREFIX) :].lower().replace("_", "."): value
        for name, value in environ.items()
        if name.startswith(KAFKA_PROP_PREFIX) and len(name) > len(KAFKA_PROP_PREFIX)
    }


class CommonSettings(BaseSettings):
    """What every service needs: the pipeline's name, Kafka, Redis, metrics.

    ``metrics_host`` is loopback by default: set it to ``0.0.0.0`` (compose,
    the chart) to let other hosts scrape. ``startup_timeout_s`` bounds how long
    a service waits at start for Kafka and Redis before it gives up.
    """

    model_config = SettingsConfigDict(env_prefix="SLUICE_", frozen=True, extra="ignore")

    pipeline: str = Field("sluice", pattern=r"^[A-Za-z0-9._-]{1,100}$")
    kafka_bootstrap: str = "127.0.0.1:9092"
    kafka_props: dict[str, SecretStr] = Field(default_factory=dict)
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    config_file: Path | None = None
    partitions: int = Field(6, ge=1, le=10_000)
    replication: int = Field(1, ge=1, le=10)
    retry_rungs: str = "5s,1m"
    metrics_port: int = Field(0, ge=0, le=65535)
    metrics_host: str = Field("127.0.0.1", min_length=1)
    startup_timeout_s: float = Field(30.0, gt=0, le=3600)
    max_message_bytes: int = Field(1_048_576, ge=128 * 1024, le=256 * 1024 * 1024)
    shutdown_grace_s: float = Field(15.0, gt=0, le=3600)

    @model_validator(mode="before")
    @classmethod
    def _passthrough(cls, data: Any) -> Any:
        if isinstance(data, dict) and "kafka_props" not in data:
            props = _kafka_props_from_env(dict(os.environ))
            if props:
                data = {**data, "kafka_props": props}
        return data

    def kafka_config(self, role: Role = "any", /, **extra: Any) -> dict[str, Any]:
        """librdkafka configuration: bootstrap, the passthrough properties a client of
        kind ``role`` reads (:mod:`shared.kafka.scope`), extras."""
        conf: dict[str, Any] = {"bootstrap.servers": self.kafka_bootstrap}
        conf.update(
            {k: v.get_secret_value() for k, v in passthrough(self.kafka_props, role).items()}
        )
        conf.update(extra)
        return conf


class TransactionalSettings(CommonSettings):
    """A stage that consumes → produces in Kafka transactions (sequencer, router).

    ``worker_id`` names the instance's transactional producer
    (``P.<stage>.<worker_id>``): give every instance its own, stable across
    restarts (a StatefulSet pod name, say), so a restarted instance fences its
    predecessor and aborts its open transaction at once. Every blocking
    transactional call must return within ``txn_call_timeout_s``.
    """

    worker_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    transaction_timeout_ms: int = Field(30_000, ge=1000, le=900_000)
    txn_call_timeout_s: float = Field(30.0, gt=0, le=900)


class IngestSettings(CommonSettings):
    source_topic: str = Field(..., min_length=1)
    input_format: Literal["json", "bytes"] = "json"
    max_record_bytes: int = Field(1_048_576, ge=1)
    batch_size: int = Field(2000, ge=1, le=100_000)
    group_id: str | None = None
    start_from: Literal["earliest", "latest"] = "earliest"

    @field_validator("source_topic")
    @classmethod
    def _topic_name(cls, v: str) -> str:
        if not all(c.isalnum() or c in "._-" for c in v) or len(v) > 249:
            raise ValueError(f"not a valid Kafka topic name: {v!r}")
        return v

    @property
    def group(self) -> str:
        return self.group_id or f"{self.pipeline}.ingest"


S = TypeVar("S", bound=BaseSettings)


def load(cls: type[S], **overrides: Any) -> S:
    """Build a settings model, turning validation errors into one ConfigError."""
    try:
        return cls(**overrides)
    except ValidationError as exc:
        raise ConfigError(f"invalid settings: {one_line(exc, env_name)}") from exc


def env_name(loc: Sequence[str | int]) -> str:
    """The variable that sets the field at ``loc``: ``SLUICE_RESTORE_TIMEOUT_S``."""
    return "SLUICE_" + "_".join(str(p) for p in loc).upper()


def load_with_flags(cls: type[S], **flags: Any) -> S:
    """:func:`load` with a command line's flags on top; a flag not given (None) leaves the
    environment's value."""
    return load(cls, **{name: value for name, value in flags.items() if value is not None})
