"""One provider's state as the fleet keeps it in Redis, for ``GET /v1/providers``.

Read, never written: the pause flag and its details, the breaker hash, the
cooldown, the bucket levels (peeked, nothing taken), the workers' in-flight
heartbeats and the last minute of call statistics. Times are Redis ``TIME``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.admin import models as m
from services.admin.context import AdminContext
from shared.call_stats import last_minute
from shared.config_file import ProviderConfig
from shared.redis import keys
from shared.redis.breaker_logic import CLOSED, OPEN, effective_state
from shared.redis.bucket import dims_for
from shared.redis.client import translated
from shared.redis.pause import PauseInfo, decode_info
from shared.redis.provider_config import bucket_limits


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v.decode() if isinstance(v, bytes) else str(v)


def _ms(v: Any) -> int:
    try:
        return int(float(_text(v) or 0))
    except ValueError:
        return 0


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def pause_model(info: PauseInfo | None) -> m.Pause | None:
    if info is None:
        return None
    return m.Pause(
        by=info.by, reason=info.reason, since=at(info.since_ms) if info.since_ms else None
    )


def breaker_model(state: Any, open_until: Any, reason: Any, now_ms: int) -> m.Breaker:
    until = _ms(open_until)
    effective = effective_state(_text(state) or CLOSED, until, now_ms)
    return m.Breaker(
        state=effective,
        reason=_text(reason) or None,
        open_until=at(until) if effective == OPEN else None,
    )


async def _buckets(ctx: AdminContext, name: str, cfg: ProviderConfig) -> list[m.Bucket]:
    limits = bucket_limits(cfg)
    out: list[m.Bucket] = []
    for model in [None, *cfg.models]:
        dims = dims_for(limits, model)
        if model is not None:
            dims = [d for d in dims if d.name.endswith(f":{model}")]
        if not dims:
            continue
        levels = await ctx.limiter.levels(name, model)
        out += [
            m.Bucket(bucket=d.name, kind=d.kind, model=model, left=levels[d.name],
                     capacity=d.spec.capacity, refill_per_s=d.spec.rate_per_s)
            for d in dims
        ]  # fmt: skip
    return out


async def provider_state(ctx: AdminContext, name: str, cfg: ProviderConfig) -> m.Provider:
    p = ctx.settings.pipeline
    with translated(f"providers {name}"):
        async with ctx.redis.pipeline(transaction=False) as pipe:
            pipe.get(keys.paused(p, name))
            pipe.hmget(keys.pause_info(p, name), ["by", "reason", "since_ms"])
            pipe.hmget(keys.breaker(p, name), ["state", "open_until_ms", "reason"])
            pipe.get(keys.cooldown(p, name))
            pipe.time()
            flag, info, (state, open_until, reason), cooldown, (sec, usec) = await pipe.execute()
    now_ms = int(sec) * 1000 + int(usec) // 1000
    pause = decode_info(flag, info)
    workers = await ctx.fleet.list_workers(name)
    stats = last_minute(await ctx.fleet.seconds(name, int(sec)))
    cooldown_ms = _ms(cooldown)
    return m.Provider(
        name=name,
        kind=cfg.kind,
        paused=pause is not None,
        pause=pause_model(pause),
        breaker=breaker_model(state, open_until, reason, now_ms),
        buckets=await _buckets(ctx, name, cfg),
        cooldown_until=at(cooldown_ms) if cooldown_ms > now_ms else None,
        in_flight=sum(workers.values()),
        workers=len(workers),
        last_minute=m.LastMinute(
            calls=stats.calls, errors=stats.errors, calls_per_s=stats.calls_per_s,
            error_rate=stats.error_rate, p50_ms=stats.p50_ms, p99_ms=stats.p99_ms,
        ),
    )  # fmt: skip
