"""Circuit breaker per provider, shared by the fleet through Redis.

Every operation is one call of ``BREAKER_LUA`` (Redis ``TIME`` as the clock);
the state machine is :mod:`shared.redis.breaker_logic`. A call's admission and
its outcome go through enrich's ``admit`` and ``settle`` scripts
(:mod:`shared.redis.call_lua`), which share the script's library; what runs
on its own is here:

    await breakers.trip("openai", "auth")   # the key was rejected: open it now
    view = await breakers.view("openai")
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared.redis import keys
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.breaker_lua import BREAKER_LUA
from shared.redis.client import translated


@dataclass(frozen=True)
class BreakerView:
    state: str  # closed | open | half_open (open past its period reads half_open)
    calls: int  # outcomes in the rolling window (closed only)
    failures: int
    open_remaining_s: float  # 0 unless open
    reason: str = ""  # why it last opened (failure_rate | probe_failed | auth); "" when closed


def spec_args(c: BreakerSpec) -> list[str]:
    """The six parameters every breaker script takes, in their order (pure)."""
    return [str(c.window_s), str(c.min_requests), repr(float(c.failure_threshold)),
            str(c.open_ms), str(c.half_open_probes), str(c.probe_ms)]  # fmt: skip


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


class Breakers:
    def __init__(
        self,
        r: aioredis.Redis,
        pipeline: str,
        config: BreakerSpec | Mapping[str, BreakerSpec] | None = None,
    ) -> None:
        self.r = r
        self.pipeline = pipeline
        self.config = config if config is not None else BreakerSpec()
        self._script = r.register_script(BREAKER_LUA)

    def config_for(self, provider: str) -> BreakerSpec:
        if isinstance(self.config, BreakerSpec):
            return self.config
        return self.config.get(provider, BreakerSpec())

    async def _run(
        self, provider: str, op: str, ok: bool = False, probe: bool = False, reason: str = ""
    ) -> list[Any]:
        args = [op, "1" if ok else "0", "1" if probe else "0",
                *spec_args(self.config_for(provider)), reason]  # fmt: skip
        with translated(f"breaker {op} {provider}"):
            reply = await self._script(
                keys=[keys.breaker(self.pipeline, provider), keys.window(self.pipeline, provider)],
                args=args,
            )
        return list(reply)

    async def trip(self, provider: str, reason: str) -> bool:
        """Force the breaker open with ``reason``; True when this call opened it."""
        reply = await self._run(provider, "trip", reason=reason)
        return bool(int(reply[0]))

    async def view(self, provider: str) -> BreakerView:
        _, _, state, now_ms, open_until, calls, fails, reason = await self._run(provider, "state")
        st = _s(state)
        remaining = max(0, int(open_until) - int(now_ms)) / 1000 if st == "open" else 0.0
        return BreakerView(st, int(calls), int(fails), remaining, _s(reason))
