"""Response models of ``GET /v1/lag`` (pydantic; the sampler builds them, routes serve them)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from services.admin.lag.status import Status


class PartitionLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    topic: str
    partition: int
    committed: int | None = Field(description="the group's committed offset; null: none yet")
    end: int = Field(description="end offset: last stable offset for read_committed groups")
    lag_records: int | None = Field(description="offsets between committed and end; null: none yet")
    lag_seconds: float | None = Field(
        description="age of the oldest unconsumed record; null: lagging, but not read in time"
    )
    status: Status


class GroupLag(BaseModel):
    model_config = ConfigDict(frozen=True)

    group: str
    stage: str = Field(description="ingest, enrich, router or sequencer")
    state: str = Field(description="the broker's group state: stable, empty, dead, ...")
    missing_topics: tuple[str, ...] = Field(description="topics of the group that do not exist")
    partitions: tuple[PartitionLag, ...]


class LagReport(BaseModel):
    model_config = ConfigDict(frozen=True)

    sampled_at: float | None = Field(description="unix time of the last successful sample")
    interval_s: float
    window_s: float
    error: str | None = Field(description="why the latest sample failed, if it did")
    groups: tuple[GroupLag, ...]
