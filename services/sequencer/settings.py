"""Settings of the sequencer (env ``SLUICE_*``)."""

from __future__ import annotations

import socket
from typing import Literal

from pydantic import Field

from shared.settings import CommonSettings
from shared.topics import Topics


class SequencerSettings(CommonSettings):
    """Per-key order and exactly-once output.

    ``worker_id`` names the instance's transactional producer
    (``P.sequencer.<worker_id>``): give every instance its own, stable across
    restarts (a StatefulSet pod name, say), so a restarted instance fences its
    predecessor and aborts its open transaction at once.
    """

    group_id: str | None = None
    worker_id: str = Field(default_factory=socket.gethostname, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    dead_mode: Literal["skip", "block"] = "skip"
    gap_markers: bool = True
    txn_interval_ms: int = Field(100, ge=1, le=60_000)
    txn_min_interval_ms: int = Field(20, ge=0, le=60_000)
    txn_max_events: int = Field(5000, ge=1, le=1_000_000)
    skipped_max: int = Field(10_000, ge=1, le=10_000_000)
    unkeyed_memory: int = Field(20_000, ge=1, le=10_000_000)
    transaction_timeout_ms: int = Field(30_000, ge=1000, le=900_000)
    restore_timeout_s: float = Field(120.0, gt=0)

    @property
    def group(self) -> str:
        return self.group_id or f"{self.pipeline}.sequencer"

    @property
    def transactional_id(self) -> str:
        return f"{self.pipeline}.sequencer.{self.worker_id}"

    @property
    def topics(self) -> Topics:
        return Topics(self.pipeline)
