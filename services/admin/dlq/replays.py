"""``POST /v1/replays``: a replay's dry run, or the replay task itself.

With ``dry_run: true`` (the viewer token may ask) it reads the DLQ once,
within the read budget, and says what a replay with the same filters and
``max_records`` would do: matches by kind and class, refusals by the replay
cap, cache hits, paid calls, tokens, money and drain time (see
:mod:`services.admin.dlq.plan`). Nothing is written: no record, no cache
entry, no audit record.

Without it (the operator token; a ``replay_id`` is needed) it starts a replay
task (:mod:`services.admin.dlq.runner`) and answers 202 with it, once its
audit record is written. The same ``replay_id`` again answers 200 with the
existing task (409 if the request differs); a DLQ with a running task
refuses another (409 naming it). The task endpoints are in
:mod:`services.admin.dlq.replay_tasks`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response

from services.admin import models as am
from services.admin.audited import audit_or_undo
from services.admin.auth import Principal, Viewer, require_operator
from services.admin.context import AdminContext, Ctx
from services.admin.dlq import models as m
from services.admin.dlq.facts import RecordFacts
from services.admin.dlq.filters import Filters
from services.admin.dlq.lookups import cached, first_available
from services.admin.dlq.names import READ_ONLY
from services.admin.dlq.plan import Calls, Cost, Tally, candidate, cost, split
from services.admin.dlq.replay_tasks import ready_board
from services.admin.dlq.routes import UNKNOWN, dlq_topic, invalid, read_dlq
from services.admin.dlq.task import ReplayTask, now
from shared.config_file import TaskConfig
from shared.envelope import Consumed
from shared.errors import ConfigError

router = APIRouter(tags=["replays"])

MONEY_NOTE = "estimate, in the currency of the provider's prices; output at max_tokens (at most)"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **UNKNOWN,
    **am.NOT_JSON_TEXT,
    202: {"model": ReplayTask, "description": "the replay task, started"},
    403: {"model": am.Problem, "description": "a replay (not a dry run) with the viewer token"},
    409: {
        "model": am.Problem,
        "description": "the DLQ has a running task, or the replay_id is of another request",
    },
    422: {"description": "a bad filter, a read-only DLQ, an unknown task, or no replay_id"},
}


@router.post("/replays", response_model=m.DryRun | ReplayTask, responses=_RESPONSES)
async def replay(body: m.ReplayIn, request: Request, response: Response, who: Viewer,
                 ctx: Ctx) -> m.DryRun | ReplayTask:  # fmt: skip
    """What replaying the DLQ's matching records would do and cost (``dry_run: true``);
    else start the replay (202), or give the task this ``replay_id`` has already (200)."""
    topic = dlq_topic(ctx, body.dlq)
    if body.dlq in READ_ONLY:
        raise invalid("body", "dlq", f"{body.dlq} is read-only: its records go back to work by "
                                     "themselves when their provider recovers")  # fmt: skip
    if not body.dry_run:
        return await start(body, request, await require_operator(request, who), ctx, topic,
                           response)  # fmt: skip
    return await dry_run(body, ctx, topic)


async def dry_run(body: m.ReplayIn, ctx: AdminContext, topic: str) -> m.DryRun:
    task_name, task = _task(ctx, body.task)
    provider, available = await first_available(ctx.redis, ctx.settings.pipeline, task.providers)
    kind = ctx.config.providers[provider].kind
    tally = Tally(ctx.settings.admin_replay_cap)

    def visit(c: Consumed) -> bool:
        facts = RecordFacts.of(c)
        if body.matches(facts):
            tally.add(
                facts, lambda: candidate(task, provider, kind, c.partition, c.offset, c.value)
            )
        return True

    scan = await read_dlq(ctx, topic, {}, visit)
    chosen = tally.selected(body.max_records)
    hits = await cached(
        ctx.redis, ctx.settings.pipeline, task, {c.digest for c in chosen if c.digest}
    )
    calls = split(chosen, hits)
    model = task.model_for(provider)
    spent = cost(calls, task.max_tokens, ctx.config.providers[provider], model)
    return m.DryRun(
        dlq=body.dlq, topic=topic, task=task_name, provider=provider, model=model,
        provider_available=available, scanned=scan.scanned, complete=scan.complete,
        matched=tally.matched, by_kind=dict(tally.by_kind), by_class=dict(tally.by_class),
        replay_cap=tally.cap, refused_by_cap=tally.refused_by_cap, **_calls(calls, spent),
    )  # fmt: skip


def _task(ctx: AdminContext, name: str | None) -> tuple[str, TaskConfig]:
    try:
        task = ctx.config.task(name)
    except ConfigError as exc:
        raise invalid("body", "task", str(exc)) from None
    return name or ctx.config.default_task or next(iter(ctx.config.tasks)), task


def _calls(calls: Calls, spent: Cost) -> dict[str, Any]:
    money = None
    if spent.money_in is not None and spent.money_out is not None:
        money = m.Money(amount=spent.money_in + spent.money_out, input=spent.money_in,
                        output=spent.money_out, note=MONEY_NOTE)  # fmt: skip
    drain = None
    if spent.drain_s is not None and spent.limited_by is not None:
        drain = m.Drain(seconds=spent.drain_s, limited_by=spent.limited_by)
    return {"selected": calls.selected, "unrenderable": calls.unrenderable,
            "cache_hits": calls.cache_hits, "repeats": calls.repeats,
            "paid_calls": calls.paid_calls, "input_tokens": spent.input_tokens,
            "output_tokens": spent.output_tokens, "money": money, "drain": drain}  # fmt: skip


async def start(body: m.ReplayIn, request: Request, who: Principal, ctx: AdminContext,
                topic: str, response: Response) -> ReplayTask:  # fmt: skip
    """Start the replay task (or give the existing one of ``replay_id``)."""
    if body.replay_id is None:
        raise invalid("body", "replay_id", "a replay needs a replay_id (its idempotency key; "
                                           "or send dry_run: true)")  # fmt: skip
    _task(ctx, body.task)
    board = await ready_board(request)
    stamp = now()
    task = ReplayTask(id=body.replay_id, dlq=body.dlq, topic=topic,
                      filters=Filters(**body.model_dump(include=set(Filters.model_fields))),
                      max_records=body.max_records, rate=body.rate, task=body.task, who=who.who,
                      created=stamp, updated=stamp)  # fmt: skip
    begun = board.begin(task)
    if begun.busy is not None:
        raise HTTPException(409, f"the {body.dlq} DLQ has a running replay, "
                                 f"{begun.busy.id!r}: cancel it or wait for it to end")  # fmt: skip
    if not begun.new:
        if not body.same_replay(request_of(begun.task)):
            raise HTTPException(409, f"replay {body.replay_id!r} exists with another request "
                                     f"(dlq, filters, max_records, rate or task differ)")  # fmt: skip
        return begun.task
    params = body.model_dump(mode="json", exclude={"dry_run"}, exclude_none=True)
    await audit_or_undo(ctx, request, who, "replay.start", body.dlq, params,
                        {"replay_id": task.id},
                        lambda: asyncio.to_thread(board.discard, task.id))  # fmt: skip
    board.go(task.id)
    response.status_code = 202
    return board.get(task.id) or task


def request_of(task: ReplayTask) -> m.ReplayIn:
    """The request that started ``task``."""
    return m.ReplayIn(dlq=task.dlq, max_records=task.max_records, rate=task.rate, task=task.task,
                      replay_id=task.id, **task.filters.model_dump())  # fmt: skip
