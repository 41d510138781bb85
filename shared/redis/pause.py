"""An operator's pause of a provider: the flag the fleet reads, and who/why/since.

The flag (``keys.paused``, ``"1"``) is what every worker and the router read
(:func:`shared.redis.health.provider_health`); next to it a hash
(``keys.pause_info``) says who paused it, why, and since when (Redis ``TIME``).
Both are written and removed together in one script, so a reader never sees
one without the other (a flag set by hand or by older code reads as paused
with no details).

PAUSE_LUA   KEYS: flag, info   ARGV: by, reason
            reply {changed (1|0), by, reason, since_ms}: an already-paused provider
            keeps its first pause's details (changed = 0)
RESUME_LUA  KEYS: flag, info
            reply {changed (1|0), by, reason, since_ms} of the pause it ended ("" / 0 if none)
RESTORE_LUA KEYS: flag, info   ARGV: by, reason, since_ms
            puts a pause back exactly as it was (undoing a resume)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis

from shared.redis import keys
from shared.redis.client import translated

_READ_INFO = r"""
local info = redis.call('HMGET', KEYS[2], 'by', 'reason', 'since_ms')
"""

PAUSE_LUA = (
    r"""
if redis.replicate_commands then pcall(redis.replicate_commands) end
"""
    + _READ_INFO
    + r"""
if redis.call('GET', KEYS[1]) == '1' then
  return {0, info[1] or '', info[2] or '', info[3] or '0'}
end
local t = redis.call('TIME')
local since = tostring(tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
redis.call('SET', KEYS[1], '1')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'by', ARGV[1], 'reason', ARGV[2], 'since_ms', since)
return {1, ARGV[1], ARGV[2], since}
"""
)

RESUME_LUA = (
    _READ_INFO
    + r"""
local was = redis.call('GET', KEYS[1]) == '1'
redis.call('DEL', KEYS[1], KEYS[2])
if not was then return {0, '', '', '0'} end
return {1, info[1] or '', info[2] or '', info[3] or '0'}
"""
)

RESTORE_LUA = r"""
redis.call('SET', KEYS[1], '1')
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[2], 'by', ARGV[1], 'reason', ARGV[2], 'since_ms', ARGV[3])
return 1
"""


@dataclass(frozen=True)
class PauseInfo:
    """Who paused a provider, why, and since when (ms of Redis TIME; 0 = unknown)."""

    by: str
    reason: str
    since_ms: int


@dataclass(frozen=True)
class PauseChange:
    changed: bool  # False: it was already paused (pause) or not paused (resume)
    info: PauseInfo | None  # the pause now in force (pause) or the one ended (resume)


def _text(v: Any) -> str:
    if v is None:
        return ""
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def encode_info(info: PauseInfo) -> list[str]:
    """The script arguments (by, reason, since_ms) of ``info`` (pure)."""
    return [info.by, info.reason, str(info.since_ms)]


def decode_info(flag: Any, fields: Sequence[Any]) -> PauseInfo | None:
    """The pause stored as ``flag`` and its (by, reason, since_ms) fields; None when not paused.

    A flag without details (set by hand, or before details were kept) is a
    pause by nobody known, for no known reason, since an unknown time (pure).
    """
    if _text(flag) != "1":
        return None
    by, reason, since = [*fields, None, None, None][:3]
    try:
        since_ms = int(float(_text(since) or 0))
    except ValueError:
        since_ms = 0
    return PauseInfo(by=_text(by) or "unknown", reason=_text(reason), since_ms=since_ms)


def _change(reply: Sequence[Any], paused_after: bool) -> PauseChange:
    changed = bool(int(reply[0]))
    info = decode_info(b"1", reply[1:]) if paused_after or changed else None
    return PauseChange(changed, info)


class Pauses:
    """Pause, resume and read the pause of one pipeline's providers."""

    def __init__(self, r: aioredis.Redis, pipeline: str) -> None:
        self.r = r
        self.pipeline = pipeline
        self._pause = r.register_script(PAUSE_LUA)
        self._resume = r.register_script(RESUME_LUA)
        self._restore = r.register_script(RESTORE_LUA)

    def _keys(self, name: str) -> list[str]:
        return [keys.paused(self.pipeline, name), keys.pause_info(self.pipeline, name)]

    async def pause(self, name: str, by: str, reason: str) -> PauseChange:
        with translated(f"pause {name}"):
            return _change(await self._pause(keys=self._keys(name), args=[by, reason]), True)

    async def resume(self, name: str) -> PauseChange:
        with translated(f"resume {name}"):
            return _change(await self._resume(keys=self._keys(name)), False)

    async def restore(self, name: str, info: PauseInfo) -> None:
        """Put ``info``'s pause back as it was (undo a resume)."""
        with translated(f"pause {name}"):
            await self._restore(keys=self._keys(name), args=encode_info(info))

    async def read(self, name: str) -> PauseInfo | None:
        with translated(f"pause {name}"):
            async with self.r.pipeline(transaction=False) as pipe:
                pipe.get(keys.paused(self.pipeline, name))
                pipe.hmget(keys.pause_info(self.pipeline, name), ["by", "reason", "since_ms"])
                flag, fields = await pipe.execute()
        return decode_info(flag, fields)
