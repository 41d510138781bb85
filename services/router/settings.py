"""Settings of the router service (env ``SLUICE_*``)."""

from __future__ import annotations

from pydantic import Field

from shared.settings import TransactionalSettings
from shared.topics import Rung, Topics, parse_rungs


class RouterSettings(TransactionalSettings):
    """The retry ladder, dead-letter topics and parking (transactional id ``P.router.<worker_id>``).

    ``retry_rungs`` (``SLUICE_RETRY_RUNGS``) comes from :class:`CommonSettings`;
    a bad value is a :class:`shared.errors.ConfigError` when the router starts.
    ``commit_interval_s`` is how long a transaction stays open: what the router
    writes becomes visible to ``read_committed`` readers at its commit.
    """

    group_id: str | None = None
    parked_drain_rps: float = Field(50.0, gt=0, le=100_000)
    health_refresh_s: float = Field(0.5, gt=0, le=5)
    batch_size: int = Field(500, ge=1, le=100_000)
    commit_interval_s: float = Field(0.1, ge=0.01, le=60)
    min_hold_s: float = Field(0.2, ge=0.01, le=5)

    @property
    def group(self) -> str:
        return self.group_id or f"{self.pipeline}.router"

    @property
    def transactional_id(self) -> str:
        return f"{self.pipeline}.router.{self.worker_id}"

    @property
    def rungs(self) -> tuple[Rung, ...]:
        return parse_rungs(self.retry_rungs)

    @property
    def topics(self) -> Topics:
        return Topics(self.pipeline, self.rungs)
