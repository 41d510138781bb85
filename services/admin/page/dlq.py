"""The operator page's DLQ fragments (mounted by :mod:`services.admin.page.routes`).

====================================  =========================================================
``GET /page/dlq``                     records per DLQ by error kind
``GET /page/dlq/records``             a page of a DLQ's records (``dlq``, ``kind``, ``key``),
                                      each with its detail (headers decoded, history)
``GET /page/dlq/estimate``            the replay dry run of those filters, with "Replay…"
``GET /page/dlq/replays/{id}``        a replay task's progress (polls itself while it runs),
                                      with "Cancel"
====================================  =========================================================

Each reads through the ``/v1`` route's own function, so its checks and answers
(404, 422, 503) are the API's. The replay and its cancel are not here: page.js
posts them to ``/v1/replays`` and ``/v1/replays/{id}/cancel``, audited as any
API call.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import HTMLResponse
from pydantic import Field

from services.admin.auth import Viewer
from services.admin.context import Ctx
from services.admin.dlq import models as dm
from services.admin.dlq import replay_tasks, replays
from services.admin.dlq import routes as dlq_routes
from services.admin.dlq.filters import Filters
from services.admin.page import view

RECORDS_SHOWN = 50


class PageFilters(Filters):
    """The page's filter form: the DLQ and the filters of :class:`Filters`."""

    dlq: str = Field(description="timeout, error, poison or parked")


def _filters(q: PageFilters) -> Filters:
    return Filters(**q.model_dump(include=set(Filters.model_fields)))


def dlq_fragments(fragment: Callable[[str], HTMLResponse]) -> APIRouter:
    """The DLQ fragments; ``fragment`` wraps each in the page's headers."""
    router = APIRouter()

    @router.get("/dlq", response_class=HTMLResponse)
    async def counts_fragment(ctx: Ctx) -> HTMLResponse:
        return fragment(view.dlq_counts(await dlq_routes.dlq_summary(ctx)))

    @router.get("/dlq/records", response_class=HTMLResponse)
    async def records_fragment(q: Annotated[PageFilters, Query()], ctx: Ctx) -> HTMLResponse:
        browse = dm.BrowseQuery(**_filters(q).model_dump(), limit=RECORDS_SHOWN)
        return fragment(view.dlq_records(await dlq_routes.dlq_records(q.dlq, browse, ctx)))

    @router.get("/dlq/estimate", response_class=HTMLResponse)
    async def estimate_fragment(q: Annotated[PageFilters, Query()], request: Request,
                                who: Viewer, ctx: Ctx) -> HTMLResponse:  # fmt: skip
        body = dm.ReplayIn(dlq=q.dlq, dry_run=True, **_filters(q).model_dump())
        dry = await replays.replay(body, request, Response(), who, ctx)
        assert isinstance(dry, dm.DryRun)
        return fragment(view.dlq_estimate(dry, _filters(q), who))

    @router.get("/dlq/replays/{replay_id}", response_class=HTMLResponse)
    async def progress_fragment(replay_id: str, request: Request, who: Viewer,
                                ctx: Ctx) -> HTMLResponse:  # fmt: skip
        task = await replay_tasks.get_replay(replay_id, request, ctx)
        return fragment(view.replay_progress(task, who))

    return router
