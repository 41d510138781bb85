"""``GET /v1/replays``, ``GET /v1/replays/{id}``, ``POST /v1/replays/{id}/cancel``.

A task shows its status (``running``, ``completed``, ``cancelling``,
``cancelled``, ``failed`` with a reason), what it matched, sent, refused by
the cap and found in the result cache, and what its records did since:
``succeeded`` and ``failed_again``, from the outcomes in ``P.results`` that
carry its replay id. While a runner of this process counts them (it does
until every sent record has one, up to ten minutes after the end) they are
its counts; otherwise ``GET /v1/replays/{id}`` reads ``P.results`` from where
it was when the task started, within the read budget (``outcomes_complete``
says whether it got to the end). The list shows the counts last recorded.

Cancel (the operator token) is audited first, then asked; the answer comes
once the task has stopped (``cancelled``) or after a second (``cancelling``).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

from services.admin import models as am
from services.admin.audited import audit_or_undo
from services.admin.auth import Operator
from services.admin.context import Ctx
from services.admin.dlq.board import ReplayBoard
from services.admin.dlq.canary import Outcomes
from services.admin.dlq.routes import read_dlq
from services.admin.dlq.task import ReplayTask
from shared.envelope import Consumed
from shared.errors import StackError

router = APIRouter(tags=["replays"])

CANCEL_WAIT_S = 1.0

_UNKNOWN: dict[int | str, dict[str, Any]] = {
    404: {"model": am.Problem, "description": "no replay task with this id"},
    503: {"model": am.Problem, "description": "P.replays or P.results cannot be read"},
}


class ReplayView(ReplayTask):
    outcomes_complete: bool = Field(True, description="false: succeeded and failed_again are "
                                                      "of part of P.results (read budget)")  # fmt: skip


class ReplayList(BaseModel):
    replays: list[ReplayTask] = Field(description="newest first")


async def ready_board(request: Request) -> ReplayBoard:
    """The app's replay tasks, loaded (503 if ``P.replays`` cannot be read)."""
    board: ReplayBoard = request.app.state.replays
    try:
        await asyncio.to_thread(board.ready)
    except StackError as exc:
        raise HTTPException(503, str(exc)) from exc
    return board


def _task(board: ReplayBoard, replay_id: str) -> ReplayTask:
    task = board.get(replay_id)
    if task is None:
        raise HTTPException(404, f"no replay task {replay_id!r}")
    return task


@router.get("/replays", response_model=ReplayList, responses=_UNKNOWN)
async def list_replays(request: Request) -> ReplayList:
    """Every replay task, newest first."""
    return ReplayList(replays=(await ready_board(request)).all())


@router.get("/replays/{replay_id}", response_model=ReplayView, responses=_UNKNOWN)
async def get_replay(replay_id: str, request: Request, ctx: Ctx) -> ReplayView:
    """One replay task: status, counts, and what its records did since."""
    board = await ready_board(request)
    task = _task(board, replay_id)
    if board.watched(replay_id):
        return ReplayView(**task.model_dump())
    outcomes = Outcomes(replay_id)

    def visit(c: Consumed) -> bool:
        outcomes.add(c.headers)
        return True

    scan = await read_dlq(ctx, ctx.topics.results, task.results_from, visit)
    return ReplayView(**task.model_dump(exclude={"succeeded", "failed_again"}),
                      succeeded=outcomes.succeeded, failed_again=outcomes.failed_again,
                      outcomes_complete=scan.complete)  # fmt: skip


@router.post("/replays/{replay_id}/cancel", response_model=ReplayTask,
             responses={**_UNKNOWN, 403: {"model": am.Problem, "description": "the viewer token"},
                        409: {"model": am.Problem, "description": "the task has ended"}})  # fmt: skip
async def cancel_replay(replay_id: str, request: Request, who: Operator, ctx: Ctx) -> ReplayTask:
    """Stop the task: it sends nothing more after its answer says ``cancelled``."""
    board = await ready_board(request)
    task = _task(board, replay_id)
    if not task.live:
        raise HTTPException(409, f"replay {replay_id!r} is {task.status}: nothing to cancel")
    await audit_or_undo(ctx, request, who, "replay.cancel", task.dlq, {"replay_id": replay_id},
                        {"status": task.status, "sent": task.sent}, None)  # fmt: skip
    board.cancel(replay_id)
    deadline = time.monotonic() + CANCEL_WAIT_S
    while (task := _task(board, replay_id)).status == "cancelling" and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return task
