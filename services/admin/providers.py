"""``/v1/providers``: each provider's fleet-wide state; pause and resume."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from services.admin import models as m
from services.admin.audited import audit_or_undo, request_id
from services.admin.auth import Operator
from services.admin.context import Ctx
from services.admin.provider_view import pause_model, provider_state

router = APIRouter(tags=["providers"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": m.Problem, "description": "unknown provider"}
}
_MUTATION: dict[int | str, dict[str, Any]] = {
    **_NOT_FOUND,
    403: {"model": m.Problem, "description": "the viewer token may only read"},
    503: {"model": m.Problem, "description": "Redis unavailable, or the audit record could "
                                             "not be written (the change was undone)"},
}  # fmt: skip


@router.get("/providers", response_model=m.Providers)
async def list_providers(ctx: Ctx) -> m.Providers:
    """Every provider of the YAML config, as the fleet sees it now."""
    return m.Providers(
        providers=[await provider_state(ctx, n, c) for n, c in ctx.config.providers.items()]
    )


@router.post(
    "/providers/{name}/pause",
    response_model=m.PauseResult,
    responses={**_MUTATION, **m.NOT_JSON_TEXT},
)
async def pause(
    name: str,
    body: m.PauseIn,
    request: Request,
    who: Operator,
    ctx: Ctx,
) -> m.PauseResult:
    """Stop new calls to the provider fleet-wide (workers see it within a second).

    Calls in flight finish; their records go on to a fallback or are parked.
    Pausing a paused provider changes nothing (its first pause's details stay).
    """
    ctx.provider(name)
    change = await ctx.pauses.pause(name, who.who, body.reason)
    result = m.PauseResult(provider=name, paused=True, changed=change.changed,
                           pause=pause_model(change.info),
                           in_flight=await ctx.fleet.fleet_inflight(name),
                           request_id=request_id(request))  # fmt: skip
    undo = (lambda: ctx.pauses.resume(name)) if change.changed else None
    await audit_or_undo(ctx, request, who, "provider.pause", name, {"reason": body.reason},
                        _audited(result), undo)  # fmt: skip
    return result


@router.post("/providers/{name}/resume", response_model=m.PauseResult, responses=_MUTATION)
async def resume(
    name: str,
    request: Request,
    who: Operator,
    ctx: Ctx,
) -> m.PauseResult:
    """Let calls to the provider start again (the pause's details are in the answer)."""
    ctx.provider(name)
    change = await ctx.pauses.resume(name)
    result = m.PauseResult(provider=name, paused=False, changed=change.changed,
                           pause=pause_model(change.info),
                           in_flight=await ctx.fleet.fleet_inflight(name),
                           request_id=request_id(request))  # fmt: skip
    ended = change.info
    undo = (lambda: ctx.pauses.restore(name, ended)) if change.changed and ended else None
    await audit_or_undo(ctx, request, who, "provider.resume", name, {}, _audited(result), undo)
    return result


def _audited(result: m.PauseResult) -> dict[str, object]:
    return result.model_dump(mode="json", exclude={"request_id", "provider"})
