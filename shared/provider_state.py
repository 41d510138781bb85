"""What a worker asks of the fleet's shared state about one provider (no I/O here).

:class:`ProviderState` is the seam between enrich and wherever the fleet keeps
that state: :class:`shared.redis.state.RedisProviderState` in production,
small in-memory fakes in unit tests. Every method may raise
:class:`shared.errors.ProviderStateUnavailable` when the store cannot be
reached; callers never call a provider without the fleet's limits.

    before a call   admit      cache lookup, pause flag, breaker admission,
                               cooldown and fleet-wide token buckets, at once
    after a call    settle     buckets settled to the usage, breaker outcome,
                               cooldown, cache write, at once (once per reservation)
    limits          refund     a reservation the provider never saw
    breaker         trip       forced open fleet-wide (a rejected API key)
    health          health     pause flag + breaker state
    fleet           heartbeat / leave   this worker's calls in flight, and the
                               calls it counted (call statistics)

A paid call is two round trips to the store (``admit``, ``settle``); a cache
hit is one (``admit`` with a lookup reserves nothing when it finds the answer).

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
    probe: bool = False  # a half-open probe: its outcome closes or re-opens the breaker
    # The call may start this long after the decision (a grant scheduled ahead, see
    # ``admit``'s ``ahead_s``), never earlier; 0: at once.
    delay_s: float = 0.0
    # When the call may start on the receiving worker's monotonic clock (set there on
    # receipt: the decision's time plus ``delay_s``, a little late by the reply's trip).
    start_at: float = 0.0


@dataclass
class Batch:
    """What ``reserve_many`` took: one reservation per granted request, in order."""

    reservations: list[Reservation]
    wait_s: float  # until the first refused request could be granted (0 if none was refused)
    now_us: int
    blocked_by: str | None = None
    levels: dict[str, float] = field(default_factory=dict)
    # The requests not granted cannot be: the provider is paused, or its breaker
    # admits no more calls (open, or half-open with every probe out); ``blocked_by``
    # then says which: "paused" or "breaker".
    unavailable: bool = False


@dataclass(frozen=True)
class Admitted:
    """What ``admit`` did: found the answer (nothing reserved), or reserved what it could."""

    cached: bytes | None
    batch: Batch


@dataclass(frozen=True)
class CacheWrite:
    digest: str
    value: bytes
    ttl_s: float


@dataclass(frozen=True)
class Settlement:
    """What one paid call's outcome does to the fleet's state."""

    used_tokens: int  # what the call used (0 when it failed: the request counted, no tokens)
    outcome: str | None  # "ok" or "fail" for the breaker; None: the breaker is not told
    cooldown_s: float = 0.0  # no call starts for this long (never shortens one in force)
    remember: CacheWrite | None = None


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

    async def admit(
        self,
        model: str | None,
        tokens: Sequence[int],
        lookup: str | None = None,
        ahead_s: float = 0.0,
        pace: bool = False,
    ) -> Admitted:
        """Before calls: with ``lookup``, the answer stored for that digest (then nothing
        else is done); else, while the provider is available, reserve 1 request +
        ``tokens[i]`` for the longest prefix that fits within ``ahead_s`` from now (each
        reservation's ``delay_s`` says when its call may start), each with its breaker
        admission (``tokens`` empty: the lookup alone). With ``pace`` (a worker's pump,
        which comes back when told), a refusal's wait is an appointment: pumps waiting
        for the same tokens are told to come one after the other, not all at once."""
        ...

    async def lookup(self, digests: Sequence[str]) -> list[bytes | None]:
        """The answers stored for ``digests`` (``None`` where there is none), in one round
        trip: the lookups of calls that queue, batched; nothing reserved."""
        ...

    async def settle(self, res: Reservation, settlement: Settlement) -> str:
        """After a paid call: apply ``settlement`` once per reservation; the breaker's state."""
        ...

    async def refund(self, res: Reservation) -> bool:
        """Give a reservation back: the provider never saw or charged the request."""
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
