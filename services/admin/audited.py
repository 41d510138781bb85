"""A mutation is done, audited, and only then answered; undone when it cannot be audited.

    do the change            (Redis: pause / resume ...)
    write the audit record   (P.audit, acknowledged by the broker)
      ok     → the answer (200)
      failed → undo the change, if there was one, and answer 503 saying the
               record could not be written and whether the change was undone

So a change that stays in force always has its audit record. A change is
in force for at most the audit timeout before it is undone; an undo that
fails too (Redis went away as well) is said in the 503 and the log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from fastapi import HTTPException, Request
from prometheus_client import Counter

from services.admin.auth import Principal
from services.admin.context import AdminContext
from services.admin.models import AuditRecord
from shared.errors import DeliveryError, ProviderStateUnavailable

log = logging.getLogger(__name__)

AUDIT_WRITES = Counter(
    "sluice_admin_audit_writes_total", "Audit records written to P.audit, by outcome", ["outcome"]
)

Undo = Callable[[], Awaitable[object]]


def request_id(request: Request) -> str:
    rid: str = request.state.request_id
    return rid


def audit_record(request: Request, who: Principal, action: str, target: str,
                 params: dict[str, Any], result: dict[str, Any]) -> AuditRecord:  # fmt: skip
    """The audit record of a mutation of this request, stamped now."""
    return AuditRecord(id=request_id(request), time=datetime.now(UTC), who=who.who,
                       action=action, target=target, params=params, result=result)  # fmt: skip


async def audit_or_undo(
    ctx: AdminContext,
    request: Request,
    who: Principal,
    action: str,
    target: str,
    params: dict[str, Any],
    result: dict[str, Any],
    undo: Undo | None,
) -> AuditRecord:
    """Write the mutation's audit record; if that fails, undo it and raise a 503."""
    record = audit_record(request, who, action, target, params, result)
    try:
        await asyncio.to_thread(ctx.audit.write, record)
    except DeliveryError as exc:
        AUDIT_WRITES.labels("failed").inc()
        undone = await _undo(undo)
        log.error("%s %s: audit record not written (%s); %s", action, target, exc, undone,
                  extra={"request_id": record.id})  # fmt: skip
        raise HTTPException(503, f"{action} {target}: the audit record could not be written "
                                 f"({exc}); {undone}") from exc  # fmt: skip
    AUDIT_WRITES.labels("ok").inc()
    log.info("%s %s by %s: %s", action, target, who.who, result, extra={"request_id": record.id})
    return record


async def _undo(undo: Undo | None) -> str:
    if undo is None:
        return "nothing had changed"
    try:
        await undo()
    except ProviderStateUnavailable as exc:
        return f"undoing the change failed too ({exc}): it is still in force"
    return "the change was undone"
