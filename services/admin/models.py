"""Requests and answers of the admin API (pydantic; they make the OpenAPI schema)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

_IN = ConfigDict(extra="forbid", frozen=True)

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]


class Problem(BaseModel):
    detail: str


NOT_JSON_TEXT: dict[int | str, dict[str, Any]] = {
    400: {"model": Problem, "description": "the body is not JSON text"}
}
"""What a route with a JSON body answers when the body cannot be read as text
(FastAPI's own 400, before any validation)."""


class Healthz(BaseModel):
    status: Literal["ok"] = "ok"


class Check(BaseModel):
    ok: bool
    error: str | None = None


class Readyz(BaseModel):
    ready: bool
    checks: dict[str, Check]  # kafka, redis


class PauseIn(BaseModel):
    model_config = _IN
    reason: Reason = Field(description="why (shown to every operator, kept in the audit log)")


class Pause(BaseModel):
    by: str  # the role that paused it (operator, insecure-dev), or unknown
    reason: str
    since: datetime | None  # None: not known (the flag was set without details)


class Breaker(BaseModel):
    state: Literal["closed", "open", "half_open"]
    reason: str | None = None  # why it last opened (failure_rate, probe_failed, auth)
    open_until: datetime | None = None  # while open


class Bucket(BaseModel):
    bucket: str  # rpm, tpm, rpm:<model>, tpm:<model>
    kind: Literal["requests", "tokens"]
    model: str | None
    left: float
    capacity: float
    refill_per_s: float


class LastMinute(BaseModel):
    calls: int
    errors: int
    calls_per_s: float
    error_rate: float
    p50_ms: float | None = Field(description="from a histogram: within one bucket's width")
    p99_ms: float | None


class Provider(BaseModel):
    name: str
    kind: str
    paused: bool
    pause: Pause | None
    breaker: Breaker
    buckets: list[Bucket]
    cooldown_until: datetime | None
    in_flight: int = Field(description="calls in flight fleet-wide (worker heartbeats)")
    workers: int
    last_minute: LastMinute


class Providers(BaseModel):
    providers: list[Provider]


class PauseResult(BaseModel):
    provider: str
    paused: bool
    changed: bool = Field(description="false: it already was paused (pause) or was not (resume)")
    pause: Pause | None
    in_flight: int = Field(description="calls in flight fleet-wide at that moment")
    request_id: str


class AuditRecord(BaseModel):
    """One mutation, as written to ``P.audit``."""

    id: str  # the request id (X-Request-ID)
    time: datetime
    who: str  # the token's role (operator) or insecure-dev
    action: str  # provider.pause, provider.resume, ...
    target: str
    params: dict[str, Any]
    result: dict[str, Any]


class AuditRecords(BaseModel):
    records: list[AuditRecord]  # newest first
