"""Settings of the enrich service (env ``SLUICE_*``)."""

from __future__ import annotations

import os
import socket

from pydantic import Field

from shared.eventloop import LoopKind
from shared.settings import CommonSettings


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class EnrichSettings(CommonSettings):
    max_in_flight: int = Field(64, ge=1, le=10_000)
    group_id: str | None = None
    task: str | None = None  # default: the config file's default_task
    revoke_grace_s: float = Field(10.0, ge=0)
    cache_ttl_s: int = Field(7 * 86_400, ge=0)  # 0 = no result cache
    # how often a worker reads pause/breaker and sends its heartbeat: a pause stops
    # new calls within this plus a Redis round trip (the bound promised is 1 s)
    health_refresh_s: float = Field(0.25, gt=0, le=5)
    # how far ahead of the fleet's buckets a call may be granted (it waits for its
    # start): a busy worker asks Redis once per stretch of the schedule instead of once
    # per token, and a late ask loses no refill; 0 (the default): grants start at once.
    # Off by default: a schedule that fills every 1 s window leaves only the configured
    # headroom for arrival jitter at the provider (README, "sluice bench enrich")
    schedule_ahead_ms: int = Field(0, ge=0, le=1000)
    worker_id: str = Field(default_factory=_worker_id)
    # the calls' event loop: uvloop where it is installed (a dependency on Linux and macOS)
    event_loop: LoopKind = "auto"

    @property
    def group(self) -> str:
        return self.group_id or f"{self.pipeline}.enrich"
