"""``GET /v1/lag``: the sampler's latest report, optionally one group's.

Mounted by the admin app: ``app.include_router(lag_router(require_viewer, sampler))``.
An unknown ``group`` is a 404 naming the pipeline's groups; before the first
sample the answer is a 503 with ``Retry-After``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Protocol

from fastapi import APIRouter, Depends, HTTPException, Query

from services.admin.lag.models import LagReport
from services.admin.models import Problem

_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem, "description": "not a consumer group of the pipeline"},
    503: {"model": Problem, "description": "no lag sample yet",
          "headers": {"Retry-After": {"description": "seconds until the next sample",
                                      "schema": {"type": "integer"}}}},
}  # fmt: skip


class LagSource(Protocol):
    """What the routes read (the :class:`~services.admin.lag.sampler.LagSampler`)."""

    interval_s: float

    @property
    def group_names(self) -> tuple[str, ...]: ...

    def latest(self) -> LagReport | None: ...


def lag_router(require_viewer: Callable[..., Any], source: LagSource) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["lag"], dependencies=[Depends(require_viewer)])

    @router.get("/lag", response_model=LagReport, responses=_RESPONSES)
    def get_lag(
        group: str | None = Query(None, description="one consumer group of the pipeline"),
    ) -> LagReport:
        """Committed offset, end offset, lag (records, seconds) and status per partition."""
        if group is not None and group not in source.group_names:
            known = ", ".join(source.group_names)
            raise HTTPException(404, f"unknown group {group!r}; the pipeline's groups: {known}")
        report = source.latest()
        if report is None:
            raise HTTPException(503, "no lag sample yet",
                                headers={"Retry-After": str(math.ceil(source.interval_s))})  # fmt: skip
        if group is None:
            return report
        return report.model_copy(
            update={"groups": tuple(g for g in report.groups if g.group == group)}
        )

    return router
