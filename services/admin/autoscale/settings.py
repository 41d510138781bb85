"""Settings of the useful-workers gauge (env ``SLUICE_*``); the admin's settings extend them.

=====================================  =======  ==============================================
``SLUICE_ADMIN_AUTOSCALE_DRAIN_S``     120      drain the enrich backlog within this many seconds
``SLUICE_ADMIN_AUTOSCALE_MIN_WORKERS`` 1        the gauge's floor
``SLUICE_TASK``                        unset    enrich's task (default: the config's default_task)
``SLUICE_MAX_IN_FLIGHT``               64       calls one enrich worker has in flight at most
=====================================  =======  ==============================================

The last two are enrich's own settings, read here with enrich's definition:
give the admin the values the enrich workers get.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from services.enrich.settings import EnrichSettings
from shared.settings import CommonSettings


def _enrich_field(name: str) -> Any:
    """Enrich's own field (type, default, bounds): one definition for both services."""
    return EnrichSettings.model_fields[name]


class AutoscaleSettings(CommonSettings):
    admin_autoscale_drain_s: float = Field(120.0, gt=0, le=86_400)
    admin_autoscale_min_workers: int = Field(1, ge=1, le=10_000)
    task: str | None = _enrich_field("task")
    max_in_flight: int = _enrich_field("max_in_flight")
