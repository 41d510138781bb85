"""Settings of the lag sampler (env ``SLUICE_*``); the admin's settings extend them.

=====================================  =======  ==============================================
``SLUICE_ADMIN_LAG_INTERVAL_S``        5        seconds between two samples
``SLUICE_ADMIN_LAG_WINDOW_S``          120      the sliding window each status is judged over
``SLUICE_ADMIN_LAG_TIMEOUT_S``         5        bound of every broker call of one sample
``SLUICE_ADMIN_LAG_PROBE_S``           2        bound of reading the oldest unconsumed records
``SLUICE_ADMIN_LAG_GROUPS``            {}       group names that differ from the default
                                                (``P.<stage>``), e.g. ``{"enrich": "x"}``
``SLUICE_SOURCE_TOPIC``                unset    ingest's source topic (without it, the topics
                                                ingest's live members hold)
=====================================  =======  ==============================================
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from shared.settings import CommonSettings

Stage = Literal["ingest", "enrich", "router", "sequencer"]


class LagSettings(CommonSettings):
    admin_lag_interval_s: float = Field(5.0, ge=0.1, le=300)
    admin_lag_window_s: float = Field(120.0, ge=0.5, le=86_400)
    admin_lag_timeout_s: float = Field(5.0, gt=0, le=120)
    admin_lag_probe_s: float = Field(2.0, gt=0, le=60)
    admin_lag_groups: dict[Stage, str] = Field(default_factory=dict)
    source_topic: str | None = None

    @model_validator(mode="after")
    def _window_holds_samples(self) -> LagSettings:
        if self.admin_lag_window_s < 2 * self.admin_lag_interval_s:
            raise ValueError(
                "SLUICE_ADMIN_LAG_WINDOW_S must be at least twice SLUICE_ADMIN_LAG_INTERVAL_S"
            )
        return self
