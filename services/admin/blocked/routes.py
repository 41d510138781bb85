"""``GET /v1/blocked`` (viewer) and ``POST /v1/blocked/release`` (operator).

The list is read from the sequencer's changelog (``P.sequencer.state``,
``read_committed``) in a worker thread, so it shows what the sequencer has
committed: a key released a moment ago is listed until the sequencer's next
transaction. A release is answered only once the release record and its audit
record are committed together (:mod:`services.admin.blocked.release`).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from services.admin.audited import AUDIT_WRITES, audit_record, request_id
from services.admin.auth import Operator
from services.admin.blocked import models as m
from services.admin.blocked.release import NothingReleased, ReleaseWriter
from services.admin.blocked.view import blocked_model, find, target
from services.admin.context import AdminContext, Ctx
from services.admin.models import NOT_JSON_TEXT, Problem
from services.sequencer.blocked import BlockedKey, read_blocked
from shared.errors import BrokerError, DeliveryError
from shared.headers import SourceId

log = logging.getLogger(__name__)

router = APIRouter(tags=["blocked"])

READ_TIMEOUT_S = 20.0
"""Bound of reading the changelog once."""

_UNREADABLE = "P.sequencer.state cannot be read"
_RELEASE: dict[int | str, dict[str, Any]] = {
    **NOT_JSON_TEXT,
    403: {"model": Problem, "description": "the viewer token may only read"},
    404: {"model": Problem, "description": "that key is not blocked at that record now"},
    503: {"model": Problem, "description": f"{_UNREADABLE}, or the release and its audit "
                                           "record could not be committed (the detail says "
                                           "whether nothing was released or it is unknown)"},
}  # fmt: skip
_writers = threading.Lock()


async def _blocked(ctx: Ctx) -> list[BlockedKey]:
    try:
        return await asyncio.to_thread(read_blocked, ctx.settings, READ_TIMEOUT_S)
    except BrokerError as exc:
        raise HTTPException(503, str(exc)) from exc


@router.get("/blocked", response_model=m.BlockedKeys,
            responses={503: {"model": Problem, "description": _UNREADABLE}})  # fmt: skip
async def list_blocked(ctx: Ctx) -> m.BlockedKeys:
    """Every key held behind a dead record (block mode), the longest blocked first."""
    return m.BlockedKeys(blocked=[blocked_model(b) for b in await _blocked(ctx)])


@router.post("/blocked/release", response_model=m.Release, responses=_RELEASE)
async def release(body: m.ReleaseIn, request: Request, who: Operator, ctx: Ctx) -> m.Release:
    """Skip the dead record at the head of a blocked key; the key's later records follow in order.

    The key must be blocked at exactly that record now (else 404). The release
    goes through the sequencer's transactions (durable across restarts) and
    cannot be undone; its audit record is committed in the same transaction.
    """
    head = SourceId(body.src_topic, body.src_partition, body.src_offset)
    found = find(await _blocked(ctx), body.key_bytes, head)
    if found is None:
        raise HTTPException(404, f"key {_shown(body)!r} is not blocked at "
                                 f"{target(head)} now (GET /v1/blocked lists the blocked keys)")  # fmt: skip
    released = blocked_model(found)
    record = audit_record(request, who, "blocked.release", target(head),
                          body.model_dump(mode="json", exclude_none=True),
                          released.model_dump(mode="json", include={"partition", "since",
                                              "error_kind", "waiting"}))  # fmt: skip
    try:
        await asyncio.to_thread(_writer(request).write, found.key, head, record)
    except DeliveryError as exc:
        AUDIT_WRITES.labels("failed").inc()
        outcome = ("nothing was released" if isinstance(exc, NothingReleased) else
                   "whether it was released is unknown: GET /v1/blocked and /v1/audit tell "
                   "(the release and its audit record exist both or neither)")  # fmt: skip
        log.error("blocked.release %s: %s; %s", record.target, exc, outcome,
                  extra={"request_id": record.id})  # fmt: skip
        raise HTTPException(503, f"blocked.release {record.target}: {exc}; {outcome}") from exc
    AUDIT_WRITES.labels("ok").inc()
    log.info("blocked.release %s by %s: %s", record.target, who.who, record.result,
             extra={"request_id": record.id})  # fmt: skip
    return m.Release(released=released, request_id=request_id(request))


def _shown(body: m.ReleaseIn, most: int = 80) -> str:
    """The key as the request named it, cut short for a message."""
    key = body.key if body.key is not None else body.key_b64 or ""
    return key if len(key) <= most else key[:most] + "..."


def _writer(request: Request) -> ReleaseWriter:
    """The app's release writer, made on its first release."""
    with _writers:
        writer: ReleaseWriter | None = getattr(request.app.state, "release_writer", None)
        if writer is None:
            ctx: AdminContext = request.app.state.ctx
            writer = request.app.state.release_writer = ReleaseWriter(ctx.settings)
        return writer
