"""``/healthz`` (the process answers), ``/readyz`` (Kafka and Redis answer), ``/metrics``.

``/readyz`` says which dependency failed: Kafka (the broker's metadata
within 3 s, and ``P.audit`` and ``P.replays`` exist, since no mutation can be
audited without the one, nor a replay task kept without the other) and Redis (PING within 3 s). Neither needs a token; neither
shows a secret (the Redis URL's password is scrubbed).
"""

from __future__ import annotations

import asyncio

from confluent_kafka import KafkaException
from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from services.admin import models as m
from services.admin.context import AdminContext, Ctx
from shared.kafka.startup import kafka_reason
from shared.redis.address import scrub

router = APIRouter(tags=["health"])

PROBE_TIMEOUT_S = 3.0


@router.get("/healthz", response_model=m.Healthz)
async def healthz() -> m.Healthz:
    return m.Healthz()


def _kafka(ctx: AdminContext) -> m.Check:
    try:
        md = ctx.kafka.list_topics(timeout=PROBE_TIMEOUT_S)
    except KafkaException as exc:
        return m.Check(ok=False, error=f"{ctx.settings.kafka_bootstrap}: {kafka_reason(exc)}")
    for name in (ctx.topics.audit, ctx.topics.replays):
        t = md.topics.get(name)
        if t is None or t.error is not None:
            return m.Check(ok=False, error=f"topic {name!r} does not exist: "
                                           "run `sluice topics create`")  # fmt: skip
    return m.Check(ok=True)


async def _redis(ctx: AdminContext) -> m.Check:
    try:
        await asyncio.wait_for(ctx.redis.ping(), PROBE_TIMEOUT_S)
    except Exception as exc:  # any failure is the answer's content, not the probe's
        url = ctx.settings.redis_url.get_secret_value()
        return m.Check(ok=False, error=scrub(str(exc) or type(exc).__name__, url))
    return m.Check(ok=True)


@router.get("/readyz", response_model=m.Readyz, responses={503: {"model": m.Readyz}})
async def readyz(ctx: Ctx) -> JSONResponse:
    kafka, redis = await asyncio.gather(asyncio.to_thread(_kafka, ctx), _redis(ctx))
    ready = m.Readyz(ready=kafka.ok and redis.ok, checks={"kafka": kafka, "redis": redis})
    return JSONResponse(ready.model_dump(mode="json"), status_code=200 if ready.ready else 503)


@router.get("/metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
