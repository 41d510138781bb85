"""What a worker asks of the fleet's shared state about one provider (no I/O here).

:class:`ProviderState` is the seam between enrich and wherever the fleet keeps
that state: :class:`shared.redis.state.RedisProviderState` in production,
small in-memory fakes in unit tests. Every method may raise
:class:`shared.errors.ProviderStateUnavailable` when the store cannot be
reached; callers never call a provider without the fleet's limits.

    limits     reserve_many / reconcile / refund    fleet-wide token buckets
    cooldown   extend_cooldown                      no call starts before it ends
    breaker    allow / record / trip                failure-rate circuit breaker
    health     health                               pause flag + breaker state
    fleet      heartbeat / leave                    this worker's calls in flight, and
                                                    the calls it counted (call statistics)
    cache      cached / remember                    answers by request digest

The value types that cross the seam live here too, so this module imports no
client library.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from shared.call_stats import CallTally


@dataclass
class Reservation:
    granted: bool
    wait_s: float  # 0 when granted; else how long until it could be
    provider: str
    model: str | None
    tokens: int  # tokens reserved (estimated input + max_tokens)
    requests: int  # 1 when granted, else 0
    now_us: int  # the store's clock at the decision
    blocked_by: str | None = None  # "cooldown" or the bucket that waits longest ("rpm", ...)
    levels: dict[str, float] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    settled: bool = False  # reconciled or refunded (each reservation is settled once)


@dataclass
class Batch:
    """What ``reserve_many`` took: one reservation per granted request, in order."""

    reservations: list[Reservation]
    wait_s: float  # until the first refused request could be granted (0 if none was refused)
    now_us: int
    blocked_by: str | None = None
    levels: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Admission:
    allowed: bool
    probe: bool  # the call is a half-open probe: report it with record(..., probe=True)
    state: str


@dataclass(frozen=True)
class Health:
    paused: bool
    breaker: str  # closed | open | half_open
    reason: str = ""  # why the breaker last opened (e.g. auth); "" when closed
    paused_since_ms: int = 0  # when the pause began (Redis clock); 0: not paused, or not known

    @property
    def available(self) -> bool:
        """True when new work may be sent to the provider (half-open lets probes through)."""
        return not self.paused and self.breaker != "open"


class ProviderState(Protocol):
    """The fleet's shared state about one provider (see the module docstring)."""

    async def reserve_many(self, model: str | None, tokens: Sequence[int]) -> Batch:
        """Reserve 1 request + ``tokens[i]`` for the longest prefix that fits now."""
        ...

    async def reconcile(self, res: Reservation, actual_tokens: int) -> bool:
        """Settle a reservation to what the call really used (once per reservation)."""
        ...

    async def refund(self, res: Reservation) -> bool:
        """Give a reservation back: the provider never saw or charged the request."""
        ...

    async def extend_cooldown(self, seconds: float) -> float:
        """No call starts for at least ``seconds`` (never shortened); the remaining seconds."""
        ...

    async def allow(self) -> Admission:
        """May a call start now? (In half-open, ``probe`` marks the few let through.)"""
        ...

    async def record(self, ok: bool, probe: bool = False) -> str:
        """Account a call's outcome; the breaker state afterwards."""
        ...

    async def trip(self, reason: str) -> bool:
        """Force the breaker open fleet-wide with ``reason``; True when this call opened it."""
        ...

    async def health(self) -> Health:
        """Pause flag and breaker state."""
        ...

    async def heartbeat(
        self, worker_id: str, inflight: int, calls: CallTally | None = None
    ) -> None:
        """Publish this worker's calls in flight (expires unless refreshed), and add the
        calls counted in ``calls`` to the fleet's statistics (emptying it once stored)."""
        ...

    async def leave(self, worker_id: str) -> None:
        """Drop this worker's heartbeat at once (clean shutdown)."""
        ...

    async def cached(self, digest: str) -> bytes | None:
        """The answer stored for a request digest, if any (shared by the pipeline)."""
        ...

    async def remember(self, digest: str, value: bytes, ttl_s: float) -> None:
        """Store an answer for ``ttl_s`` seconds (``ttl_s <= 0``: no-op)."""
        ...
