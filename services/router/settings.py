"""Settings of the router service (env ``SLUICE_*``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import CommonSettings
from shared.topics import Rung, Topics, parse_rungs


class RouterSettings(CommonSettings):
    """The retry ladder, dead-letter topics and parking.

    ``retry_rungs`` (``SLUICE_RETRY_RUNGS``) comes from :class:`CommonSettings`;
    a bad value is a :class:`shared.errors.ConfigError` when the router starts.
    """

    group_id: str | None = None
    parked_drain_rps: float = Field(50.0, gt=0, le=100_000)
    health_refresh_s: float = Field(0.5, gt=0, le=5)
    batch_size: int = Field(500, ge=1, le=100_000)
    commit_interval_s: float = Field(1.0, gt=0, le=60)
    min_hold_s: float = Field(0.2, ge=0.01, le=5)

    @property
    def group(self) -> str:
        return self.group_id or f"{self.pipeline}.router"

    @property
    def rungs(self) -> tuple[Rung, ...]:
        return parse_rungs(self.retry_rungs)

    @property
    def topics(self) -> Topics:
        return Topics(self.pipeline, self.rungs)
