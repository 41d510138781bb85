"""The one YAML file for providers and tasks (``SLUICE_CONFIG_FILE``).

```yaml
providers:
  openai:  {kind: openai, base_url: https://api.openai.com/v1, api_key_env: OPENAI_API_KEY}
tasks:
  sentiment: {model: gpt-4o-mini, providers: [openai]}   # built in: prompt + schema given
default_task: sentiment
```

Every model is frozen and refuses unknown keys. :func:`load_config` turns any
problem into one :class:`~shared.errors.ConfigError` line naming the file and
the field path. With no file, :func:`default_config` serves the built-in
``sentiment`` task from fakellm. API keys are ``SecretStr`` (or the name of an
environment variable holding one) and never print; headers that carry a key
must not hold it in ``extra_headers`` (leave the value empty: the key goes in).
"""

from __future__ import annotations

import os
import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator

from shared.errors import ConfigError
from shared.validation import one_line

_FROZEN = ConfigDict(frozen=True, extra="forbid")
FAKELLM_URL_ENV = "SLUICE_FAKELLM_URL"
FAKELLM_URL_DEFAULT = "http://127.0.0.1:8900/v1"
MAX_RESPONSE_BYTES_DEFAULT = 4 * 1024 * 1024
SECRET_HEADERS = frozenset({"authorization", "api-key", "x-api-key"})


class ModelConfig(BaseModel):
    """A model's own fleet-wide budget (``providers.<name>.models.<model>``); 0 means unlimited."""

    model_config = _FROZEN
    requests_per_minute: int = Field(0, ge=0)
    tokens_per_minute: int = Field(0, ge=0)


class BreakerConfig(BaseModel):
    """Circuit breaker: open when the failure rate over ``window_s`` reaches the limit."""

    model_config = _FROZEN
    failure_rate: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(20, ge=1)
    window_s: float = Field(30.0, gt=0)
    open_s: float = Field(15.0, gt=0)
    half_open_probes: int = Field(3, ge=1)


class ProviderConfig(BaseModel):
    model_config = _FROZEN
    kind: Literal["openai", "anthropic"]
    base_url: str = Field(..., pattern=r"^https?://[^\s]+$")
    api_key: SecretStr | None = None
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    timeout_s: float = Field(30.0, gt=0, le=3600)
    requests_per_minute: int = Field(0, ge=0)
    tokens_per_minute: int = Field(0, ge=0)
    models: dict[str, ModelConfig] = Field(default_factory=dict)
    max_connections: int = Field(64, ge=1, le=10_000)
    # A bigger answer (decoded bytes) fails as provider_error/response_too_large.
    max_response_bytes: int = Field(MAX_RESPONSE_BYTES_DEFAULT, ge=1024, le=1024**3)
    breaker: BreakerConfig = Field(default_factory=BreakerConfig)
    extra_headers: dict[str, str] = Field(default_factory=dict)
    max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    # Prices per million tokens (any currency; both or neither): a replay's dry run
    # turns its token estimate into money with them.
    input_price_per_mtok: float | None = Field(None, ge=0, le=1_000_000)
    output_price_per_mtok: float | None = Field(None, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _key_once(self) -> ProviderConfig:
        if self.api_key is not None and self.api_key_env is not None:
            raise ValueError("give api_key or api_key_env, not both")
        for name, value in self.extra_headers.items():
            if name.lower() in SECRET_HEADERS and value:
                raise ValueError(
                    f"extra_headers.{name}: keys go in api_key or api_key_env; "
                    "leave this header's value empty to send the key in it"
                )
        return self

    @model_validator(mode="after")
    def _prices_together(self) -> ProviderConfig:
        if (self.input_price_per_mtok is None) != (self.output_price_per_mtok is None):
            raise ValueError("give input_price_per_mtok and output_price_per_mtok together")
        return self

    def resolve_api_key(self, environ: Mapping[str, str] | None = None) -> str | None:
        """The key itself (``None`` when none is configured); ConfigError if its variable is unset."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self.api_key_env is None:
            return None
        value = (os.environ if environ is None else environ).get(self.api_key_env, "")
        if not value:
            raise ConfigError(f"environment variable {self.api_key_env} (an API key) is not set")
        return value


class SchemaNode(BaseModel):
    """The JSON-schema subset an ``output_schema`` may use."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    type: Literal["object", "string", "number", "integer", "boolean", "array", "null"] | None = None
    enum: list[Any] | None = Field(None, min_length=1)
    required: list[str] | None = None
    properties: dict[str, SchemaNode] | None = None
    additionalProperties: bool | None = None  # JSON-schema spelling
    items: SchemaNode | None = None
    minimum: float | None = None
    maximum: float | None = None
    description: str | None = None
    title: str | None = None

    @model_validator(mode="after")
    def _coherent(self) -> SchemaNode:
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError(f"minimum {self.minimum:g} is above maximum {self.maximum:g}")
        missing = [r for r in self.required or [] if r not in (self.properties or {})]
        if self.properties is not None and missing:
            raise ValueError(f"required {missing} not among properties")
        return self


def _template_fields(template: str) -> list[str]:
    """Field names of a ``str.format`` template; ValueError if it is malformed."""
    names = []
    for _, name, _, _ in string.Formatter().parse(template):
        if name is None:
            continue
        if not name or name.isdigit():
            raise ValueError("placeholders must name a record field, like {text}")
        names.append(name)
    return names


class TaskConfig(BaseModel):
    model_config = _FROZEN
    prompt: str = Field(..., min_length=1)
    system: str | None = None
    model: str = Field(..., min_length=1)
    max_tokens: int = Field(256, ge=1, le=1_000_000)
    temperature: float | None = Field(0.0, ge=0, le=2)
    output_schema: SchemaNode | None = None
    providers: list[str] = Field(..., min_length=1)
    models: dict[str, str] = Field(default_factory=dict)  # provider → model, overrides `model`

    @model_validator(mode="after")
    def _template(self) -> TaskConfig:
        try:
            _template_fields(self.prompt)
        except ValueError as exc:
            raise ValueError(f"prompt: {exc}") from None
        stray = sorted(set(self.models) - set(self.providers))
        if stray:
            raise ValueError(f"models: {stray} not among this task's providers")
        return self

    def model_for(self, provider: str) -> str:
        """The model to ask of ``provider`` (a fallback may need another name)."""
        return self.models.get(provider, self.model)

    @property
    def fields(self) -> list[str]:
        """Record fields the prompt reads (dotted paths for nested ones)."""
        return _template_fields(self.prompt)

    @property
    def schema_dict(self) -> dict[str, Any] | None:
        """The output schema as plain JSON schema."""
        return None if self.output_schema is None else self.output_schema.model_dump(exclude_none=True)  # fmt: skip


SENTIMENT: dict[str, Any] = {
    "system": (
        "You classify customer support tickets. Answer with one JSON object and nothing "
        'else: {"sentiment": "positive"|"neutral"|"negative", "confidence": a number '
        'from 0 to 1, "topics": a list of short topic words}.'
    ),
    "prompt": "Support ticket:\n{text}",
    "max_tokens": 128,
    "temperature": 0.0,
    "output_schema": {
        "type": "object",
        "required": ["sentiment", "confidence", "topics"],
        "properties": {
            "sentiment": {"type": "string", "enum": ["positive", "neutral", "negative"]},
            "confidence": {"type": "number", "minimum": 0, "maximum": 1},
            "topics": {"type": "array", "items": {"type": "string"}},
        },
    },
}
BUILTIN_TASKS: Mapping[str, Mapping[str, Any]] = {"sentiment": SENTIMENT}


class SluiceConfig(BaseModel):
    model_config = _FROZEN
    providers: dict[str, ProviderConfig] = Field(..., min_length=1)
    tasks: dict[str, TaskConfig] = Field(..., min_length=1)
    default_task: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _builtins(cls, data: Any) -> Any:
        """A task named like a built-in one takes its prompt, system and schema by default."""
        if isinstance(data, dict) and isinstance(data.get("tasks"), dict):
            tasks = {
                name: {**BUILTIN_TASKS[name], **spec}
                if name in BUILTIN_TASKS and isinstance(spec, dict)
                else spec
                for name, spec in data["tasks"].items()
            }
            data = {**data, "tasks": tasks}
        return data

    @model_validator(mode="after")
    def _references(self) -> SluiceConfig:
        known = ", ".join(sorted(self.providers))
        for name, task in self.tasks.items():
            for i, ref in enumerate(task.providers):
                if ref not in self.providers:
                    raise ValueError(
                        f"tasks.{name}.providers[{i}]: unknown provider {ref!r} (known: {known})"
                    )
        if self.default_task is not None and self.default_task not in self.tasks:
            raise ValueError(f"default_task: unknown task {self.default_task!r}")
        return self

    def task(self, name: str | None = None) -> TaskConfig:
        """A task by name; ``None`` means the default (or the only) task."""
        chosen = name or self.default_task
        if chosen is None:
            if len(self.tasks) != 1:
                raise ConfigError("several tasks and no default_task: say which one to run")
            chosen = next(iter(self.tasks))
        if chosen not in self.tasks:
            raise ConfigError(f"unknown task {chosen!r} (known: {', '.join(sorted(self.tasks))})")
        return self.tasks[chosen]


def default_config(environ: Mapping[str, str] | None = None) -> SluiceConfig:
    """No file: the built-in ``sentiment`` task served by fakellm."""
    env = os.environ if environ is None else environ
    url = env.get(FAKELLM_URL_ENV) or FAKELLM_URL_DEFAULT
    try:
        return SluiceConfig.model_validate(
            {
                "providers": {"fakellm": {"kind": "openai", "base_url": url}},
                "tasks": {"sentiment": {"model": "gpt-fake", "providers": ["fakellm"]}},
                "default_task": "sentiment",
            }
        )
    except ValidationError as exc:
        raise ConfigError(f"{FAKELLM_URL_ENV}: {one_line(exc)}") from exc


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> SluiceConfig:
    """Read and validate the YAML file; ``None`` gives :func:`default_config`."""
    if path is None or str(path) == "":
        return default_config(environ)
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"config file {p} not found") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"config file {p}:{where}: {problem}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping with providers: and tasks:")
    try:
        return SluiceConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"config file {p}: {one_line(exc)}") from exc
