"""Settings of the sequencer (env ``SLUICE_*``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from shared.settings import TransactionalSettings
from shared.topics import TOMBSTONE_RETENTION_MS, Topics

RESTORE_TIMEOUT_MAX_S = TOMBSTONE_RETENTION_MS / 1000 / 2
"""A restore reads the changelog from its start. A tombstone compacted away during
that read would leave the state it deleted restored: the read must end well within
the changelog's ``delete.retention.ms`` (:data:`shared.topics.TOMBSTONE_RETENTION_MS`)."""


class SequencerSettings(TransactionalSettings):
    """Per-key order and exactly-once output (transactional id ``P.sequencer.<worker_id>``)."""

    group_id: str | None = None
    dead_mode: Literal["skip", "block"] = "skip"
    gap_markers: bool = True
    txn_interval_ms: int = Field(100, ge=1, le=60_000)
    txn_min_interval_ms: int = Field(20, ge=0, le=60_000)
    txn_max_events: int = Field(5000, ge=1, le=1_000_000)
    skipped_max: int = Field(10_000, ge=1, le=10_000_000)
    unkeyed_memory: int = Field(20_000, ge=1, le=10_000_000)
    restore_timeout_s: float = Field(120.0, gt=0)

    @field_validator("restore_timeout_s")
    @classmethod
    def _within_tombstone_retention(cls, v: float) -> float:
        if v > RESTORE_TIMEOUT_MAX_S:
            raise ValueError(
                f"at most {RESTORE_TIMEOUT_MAX_S:g} s: half the changelog's tombstone "
                f"retention (delete.retention.ms {TOMBSTONE_RETENTION_MS}), so that no "
                "tombstone is compacted away while a restore reads past it"
            )
        return v

    @property
    def group(self) -> str:
        return self.group_id or f"{self.pipeline}.sequencer"

    @property
    def transactional_id(self) -> str:
        return f"{self.pipeline}.sequencer.{self.worker_id}"

    @property
    def topics(self) -> Topics:
        return Topics(self.pipeline)
