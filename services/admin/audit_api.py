"""``GET /v1/audit``: the newest audit records, newest first."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from services.admin import models as m
from services.admin.audit import MAX_LIMIT
from services.admin.context import Ctx
from shared.errors import SluiceError

router = APIRouter(tags=["audit"])


@router.get("/audit", response_model=m.AuditRecords,
            responses={503: {"model": m.Problem, "description": "P.audit cannot be read"}})  # fmt: skip
async def audit(
    ctx: Ctx,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="at most this many records")] = 50,
) -> m.AuditRecords:
    try:
        records = await asyncio.to_thread(ctx.audit.recent, limit)
    except SluiceError as exc:
        raise HTTPException(503, str(exc)) from exc
    return m.AuditRecords(records=records)
