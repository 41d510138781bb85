"""Run-time configuration of the fake provider: latency, limits, faults.

Every model is frozen; a change (``PUT /_control/config``) builds a new one
with :func:`apply_update`, which merges a partial update into the current
configuration and validates the result as a whole.

Latency is a tagged union (``kind``): a latency object in an update replaces
the old one instead of being merged into it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from shared.errors import ConfigError
from shared.validation import one_line

_FROZEN = ConfigDict(frozen=True, extra="forbid")


class FixedLatency(BaseModel):
    """Every call takes exactly ``ms`` milliseconds."""

    model_config = _FROZEN
    kind: Literal["fixed"] = "fixed"
    ms: float = Field(0.0, ge=0)


class UniformLatency(BaseModel):
    """Latency drawn uniformly from ``[min_ms, max_ms]``."""

    model_config = _FROZEN
    kind: Literal["uniform"] = "uniform"
    min_ms: float = Field(..., ge=0)
    max_ms: float = Field(..., ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> UniformLatency:
        if self.max_ms < self.min_ms:
            raise ValueError(f"max_ms ({self.max_ms}) is below min_ms ({self.min_ms})")
        return self


class LognormalLatency(BaseModel):
    """Log-normal latency with the given mean: ``mu = ln(mean_ms) - sigma**2 / 2``."""

    model_config = _FROZEN
    kind: Literal["lognormal"] = "lognormal"
    mean_ms: float = Field(..., gt=0)
    sigma: float = Field(..., ge=0, le=5)

    @property
    def mu(self) -> float:
        return math.log(self.mean_ms) - self.sigma**2 / 2


Latency = Annotated[FixedLatency | UniformLatency | LognormalLatency, Field(discriminator="kind")]


class RateLimits(BaseModel):
    """The fake's own limits over sliding windows; 0 means unlimited."""

    model_config = _FROZEN
    rps: int = Field(0, ge=0, description="requests per 1 s window")
    rpm: int = Field(0, ge=0, description="requests per 60 s window")
    tpm: int = Field(0, ge=0, description="tokens (in + out) per 60 s window")


class FaultMix(BaseModel):
    """Probability of each random fault per request (their sum is at most 1)."""

    model_config = _FROZEN
    hang: float = Field(0.0, ge=0, le=1)
    http_500: float = Field(0.0, ge=0, le=1)
    http_502: float = Field(0.0, ge=0, le=1)
    http_503: float = Field(0.0, ge=0, le=1)
    http_529: float = Field(0.0, ge=0, le=1)
    error_body: float = Field(0.0, ge=0, le=1)
    invalid_json: float = Field(0.0, ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_one(self) -> FaultMix:
        total = sum(self.probabilities().values())
        if total > 1 + 1e-9:
            raise ValueError(f"fault probabilities add up to {total:g}, more than 1")
        return self

    def probabilities(self) -> dict[str, float]:
        """Fault name → probability, in a fixed order."""
        return {name: float(getattr(self, name)) for name in type(self).model_fields}


class FakeLLMConfig(BaseModel):
    """Everything about the fake that can be switched at run time."""

    model_config = _FROZEN
    latency: Latency = Field(default_factory=FixedLatency)
    limits: RateLimits = Field(default_factory=RateLimits)
    faults: FaultMix = Field(default_factory=FaultMix)
    hang_seconds: float = Field(600.0, gt=0, le=86_400)
    error_body_kind: Literal["rate_limit", "overloaded", "server_error"] | None = Field(
        None,
        description="what an error_body fault says; default: a rate limit (OpenAI shape), "
        "overloaded (Anthropic shape)",
    )
    seed: int | None = None


def parse_latency(spec: str) -> FixedLatency | UniformLatency | LognormalLatency:
    """``fixed:800`` | ``uniform:200:2000`` | ``lognormal:1000:0.5`` → latency model.

    Raises ``ValueError`` with a one-line message on a bad spec.
    """
    kind, _, rest = spec.strip().partition(":")
    try:
        nums = [float(p) for p in rest.split(":")] if rest else []
    except ValueError:
        raise ValueError(f"latency {spec!r}: parameters must be numbers") from None
    shapes: dict[str, tuple[int, str]] = {
        "fixed": (1, "fixed:MS"),
        "uniform": (2, "uniform:MIN_MS:MAX_MS"),
        "lognormal": (2, "lognormal:MEAN_MS:SIGMA"),
    }
    if kind not in shapes:
        raise ValueError(f"latency {spec!r}: kind must be fixed, uniform or lognormal")
    arity, usage = shapes[kind]
    if len(nums) != arity:
        raise ValueError(f"latency {spec!r}: expected {usage}")
    try:
        if kind == "fixed":
            return FixedLatency(ms=nums[0])
        if kind == "uniform":
            return UniformLatency(min_ms=nums[0], max_ms=nums[1])
        return LognormalLatency(mean_ms=nums[0], sigma=nums[1])
    except ValidationError as exc:
        raise ValueError(f"latency {spec!r}: {one_line(exc)}") from None


def _merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    out = dict(old)
    for key, value in new.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and "kind" not in value:
            out[key] = _merge(current, value)
        else:
            out[key] = value
    return out


def apply_update(config: FakeLLMConfig, update: dict[str, Any]) -> FakeLLMConfig:
    """Merge a (partial) update into ``config``; raises ``ValidationError``."""
    return FakeLLMConfig.model_validate(_merge(config.model_dump(), update))


def load_config_file(path: str | Path) -> FakeLLMConfig:
    """Read a JSON or YAML file (by suffix) into a config; raises ``ConfigError``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read fakellm config {p}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) if p.suffix in (".yaml", ".yml") else json.loads(text)
    except (yaml.YAMLError, json.JSONDecodeError) as exc:
        raise ConfigError(f"fakellm config {p} is not valid {p.suffix[1:] or 'JSON'}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"fakellm config {p} must hold a mapping at the top")
    try:
        return FakeLLMConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"fakellm config {p}: {one_line(exc)}") from exc
