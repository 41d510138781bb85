"""``GET /v1/dlq`` (counts per DLQ) and ``GET /v1/dlq/{name}/records`` (browse).

Reads only. Each request reads the topic once, within the read budget
(``SLUICE_ADMIN_DLQ_READ_S``, ``SLUICE_ADMIN_DLQ_SCAN_RECORDS``), in a worker
thread: a huge DLQ gives a partial answer (``complete: false``, or a page
with a ``next_cursor``), never a request that hangs.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query

from services.admin import models as am
from services.admin.context import AdminContext, Ctx
from services.admin.dlq import cursor, view
from services.admin.dlq import models as m
from services.admin.dlq.facts import AGE_BUCKETS, RecordFacts, age_bucket
from services.admin.dlq.names import NAMES, READ_ONLY, topic_of, unknown
from services.admin.dlq.reader import Budget, Scan, Visit, read
from shared.envelope import Consumed
from shared.errors import StackError

router = APIRouter(tags=["dlq"])

READ_FAILED: dict[int | str, dict[str, Any]] = {
    503: {"model": am.Problem, "description": "Kafka cannot be read"}
}
UNKNOWN: dict[int | str, dict[str, Any]] = {
    404: {"model": am.Problem, "description": "unknown DLQ"},
    **READ_FAILED,
}


def dlq_topic(ctx: AdminContext, name: str) -> str:
    """The DLQ's topic; 404 naming the known DLQs when ``name`` is not one."""
    topic = topic_of(ctx.topics, name)
    if topic is None:
        raise HTTPException(404, unknown(name))
    return topic


def invalid(where: str, field: str, message: str) -> HTTPException:
    """A 422 shaped like FastAPI's own (``detail[0].loc`` names the field)."""
    return HTTPException(422, [{"type": "value_error", "loc": [where, field], "msg": message}])


async def read_dlq(ctx: AdminContext, topic: str, start: Mapping[int, int], visit: Visit) -> Scan:
    """Read ``topic`` within the read budget, off the event loop; 503 if Kafka fails."""
    s = ctx.settings
    budget = Budget(s.admin_dlq_read_s, s.admin_dlq_scan_records)
    try:
        return await asyncio.to_thread(read, s, topic, start, budget, visit)
    except StackError as exc:
        raise HTTPException(503, str(exc)) from exc


@router.get("/dlq", response_model=m.DlqSummary, responses=READ_FAILED)
async def dlq_summary(ctx: Ctx) -> m.DlqSummary:
    """Records per DLQ, by error kind and by the source record's age."""
    now_ms = time.time() * 1000

    async def counts(name: str) -> m.DlqCounts:
        by_kind: Counter[str] = Counter()
        by_age: Counter[str] = Counter({bucket: 0 for bucket, _ in AGE_BUCKETS})

        def visit(c: Consumed) -> bool:
            facts = RecordFacts.of(c)
            by_kind[facts.kind] += 1
            by_age[age_bucket((now_ms - facts.ts_ms) / 1000)] += 1
            return True

        topic = dlq_topic(ctx, name)
        scan = await read_dlq(ctx, topic, {}, visit)
        return m.DlqCounts(name=name, topic=topic, read_only=name in READ_ONLY, size=scan.size,
                           scanned=scan.scanned, complete=scan.complete, by_kind=dict(by_kind),
                           by_age=dict(by_age))  # fmt: skip

    return m.DlqSummary(dlqs=list(await asyncio.gather(*(counts(n) for n in NAMES))))


@router.get("/dlq/{name}/records", response_model=m.DlqPage,
            responses={**UNKNOWN, 422: {"description": "a bad filter or cursor"}})  # fmt: skip
async def dlq_records(name: str, q: Annotated[m.BrowseQuery, Query()], ctx: Ctx) -> m.DlqPage:
    """A page of the DLQ's records that match every filter given, in offset order per
    partition; ``next_cursor`` continues where this page stopped."""
    topic = dlq_topic(ctx, name)
    try:
        start = cursor.decode(q.cursor, topic) if q.cursor else {}
    except cursor.CursorError as exc:
        raise invalid("query", "cursor", f"malformed cursor: {exc}") from None
    found: list[m.DlqRecord] = []
    limit = ctx.settings.admin_dlq_preview_bytes

    def visit(c: Consumed) -> bool:
        facts = RecordFacts.of(c)
        if q.matches(facts):
            found.append(view.record(c, facts, limit))
        return len(found) < q.limit

    scan = await read_dlq(ctx, topic, start, visit)
    next_cursor = None if scan.complete else cursor.encode(topic, scan.positions)
    return m.DlqPage(dlq=name, topic=topic, records=found, next_cursor=next_cursor,
                     scanned=scan.scanned)  # fmt: skip
