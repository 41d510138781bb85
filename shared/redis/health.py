"""Is a provider available to the fleet? (paused flag and breaker state)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from shared.provider_state import Health
from shared.redis import keys
from shared.redis.breaker_logic import CLOSED, effective_state
from shared.redis.client import translated
from shared.redis.pause import decode_info


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v.decode() if isinstance(v, bytes) else str(v)


def _redis_ms(t: Any) -> int:
    sec, usec = t  # redis-py replies (seconds, microseconds)
    return int(sec) * 1000 + int(usec) // 1000


async def provider_health(r: aioredis.Redis, pipeline: str, name: str) -> Health:
    """Paused flag (with when the pause began) and breaker state in one round trip.

    An open breaker whose open period is over (Redis ``TIME`` past its
    ``open_until_ms``) is reported ``half_open`` even before a worker moved it.
    """
    with translated(f"health {name}"):
        async with r.pipeline(transaction=False) as pipe:
            pipe.get(keys.paused(pipeline, name))
            pipe.hget(keys.pause_info(pipeline, name), "since_ms")
            pipe.hmget(keys.breaker(pipeline, name), ["state", "open_until_ms", "reason"])
            pipe.time()
            paused, since, (state, open_until, reason), now = await pipe.execute()
    state_s = _text(state) or CLOSED
    until = int(float(_text(open_until) or 0))
    pause = decode_info(paused, [None, None, since])
    return Health(
        paused=pause is not None,
        breaker=effective_state(state_s, until, _redis_ms(now)),
        reason=_text(reason) or "",
        paused_since_ms=pause.since_ms if pause is not None else 0,
    )


async def set_paused(r: aioredis.Redis, pipeline: str, name: str, paused: bool) -> None:
    """Set or clear the bare flag (tests, scripts); the admin pauses with who/why/since
    through :class:`shared.redis.pause.Pauses`."""
    with translated(f"pause {name}"):
        if paused:
            await r.set(keys.paused(pipeline, name), "1")
        else:
            await r.delete(keys.paused(pipeline, name), keys.pause_info(pipeline, name))
