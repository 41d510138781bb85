"""``POST /v1/replays``: in this release, the dry run of a replay.

With ``dry_run: true`` (the viewer token may ask) it reads the DLQ once,
within the read budget, and says what a replay with the same filters and
``max_records`` would do: matches by kind and class, refusals by the replay
cap, cache hits, paid calls, tokens, money and drain time (see
:mod:`services.admin.dlq.plan`). Nothing is written: no record, no cache
entry, no audit record. Without ``dry_run: true`` it refuses (403 for the
viewer token, else 422 naming ``dry_run``): replaying is not built yet.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.admin import models as am
from services.admin.auth import Viewer, require_operator
from services.admin.context import AdminContext, Ctx
from services.admin.dlq import models as m
from services.admin.dlq.facts import RecordFacts
from services.admin.dlq.lookups import cached, first_available
from services.admin.dlq.names import READ_ONLY
from services.admin.dlq.plan import Calls, Cost, Tally, candidate, cost, split
from services.admin.dlq.routes import UNKNOWN, dlq_topic, invalid, read_dlq
from services.router.envelope import Consumed
from shared.config_file import TaskConfig
from shared.errors import ConfigError

router = APIRouter(tags=["replays"])

ONLY_DRY_RUNS = ("only dry runs are available in this release: send dry_run: true "
                 "(replaying records is not built yet)")  # fmt: skip
MONEY_NOTE = "estimate, in the currency of the provider's prices; output at max_tokens (at most)"

_RESPONSES: dict[int | str, dict[str, Any]] = {
    **UNKNOWN,
    403: {"model": am.Problem, "description": "a replay (not a dry run) with the viewer token"},
    422: {"description": "a bad filter, a read-only DLQ, an unknown task, or no dry_run"},
}


@router.post("/replays", response_model=m.DryRun, responses=_RESPONSES)
async def replay(body: m.ReplayIn, request: Request, who: Viewer, ctx: Ctx) -> m.DryRun:
    """What replaying the DLQ's matching records would do and cost (``dry_run: true``)."""
    topic = dlq_topic(ctx, body.dlq)
    if body.dlq in READ_ONLY:
        raise invalid("body", "dlq", f"{body.dlq} is read-only: its records go back to work by "
                                     "themselves when their provider recovers")  # fmt: skip
    if not body.dry_run:
        await require_operator(request, who)  # 403 for the viewer token, as a replay will be
        raise invalid("body", "dry_run", ONLY_DRY_RUNS)
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
