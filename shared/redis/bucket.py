"""Fleet-wide token buckets per provider (and per model where configured).

Two dimensions, requests/min and tokens/min; a limit of 0 leaves that
dimension unlimited. Enrich reserves and settles through the ``admit`` and
``settle`` scripts (:mod:`shared.redis.call_lua`), which take from these
buckets with the library of :mod:`shared.redis.bucket_lua` (Redis ``TIME`` is
the clock); :class:`Limiter` holds what runs on its own: the refund of a
request the provider never saw (or never charged), and a look at the levels.
The script's ``reserve_many`` and ``adjust`` operations, which the tests drive
to check the Lua against :mod:`shared.redis.bucket_math`, stay in the script.
Burst choices are explained in :mod:`shared.redis.bucket_math`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import redis.asyncio as aioredis

from shared.errors import ProviderStateUnavailable
from shared.provider_state import Batch, Reservation
from shared.redis import keys
from shared.redis.bucket_lua import BUCKET_LUA
from shared.redis.bucket_math import (
    REQUEST_BURST_S,
    TOKEN_BURST_S,
    US,
    BucketSpec,
    spec_per_minute,
)
from shared.redis.client import translated

Kind = Literal["requests", "tokens"]


@dataclass(frozen=True)
class ModelLimits:
    """Per-minute limits of one model; 0 = unlimited."""

    rpm: int = 0
    tpm: int = 0


@dataclass(frozen=True)
class ProviderLimits:
    """A provider's limits, optional per-model limits, and the bursts.

    A model listed in ``models`` has buckets of its own (``rpm:<model>``,
    ``tpm:<model>``) and, by default, does not take from the provider's
    (the config file's rule: "the model's own budget if configured, else the
    provider's"). With ``stack_model_limits`` it takes from both.
    """

    rpm: int = 0
    tpm: int = 0
    models: Mapping[str, ModelLimits] = field(default_factory=dict)
    request_burst_s: float = REQUEST_BURST_S
    token_burst_s: float = TOKEN_BURST_S
    stack_model_limits: bool = False


@dataclass(frozen=True)
class Dim:
    """One bucket: ``name`` is the key suffix (``rpm``, ``tpm``, ``rpm:<model>``, ...)."""

    name: str
    kind: Kind
    spec: BucketSpec


def dims_for(limits: ProviderLimits | None, model: str | None) -> list[Dim]:
    """The buckets a call to ``model`` takes from, in a fixed order (pure)."""
    if limits is None:
        return []
    provider = ("", limits.rpm, limits.tpm)
    if model is None or model not in limits.models:
        triples = [provider]
    else:
        own = limits.models[model]
        triples = [(f":{model}", own.rpm, own.tpm)]
        if limits.stack_model_limits:
            triples.insert(0, provider)
    out: list[Dim] = []
    for suffix, rpm, tpm in triples:
        rs = spec_per_minute(rpm, limits.request_burst_s, exact_per_second=True)
        if rs is not None:
            out.append(Dim(f"rpm{suffix}", "requests", rs))
        ts = spec_per_minute(tpm, limits.token_burst_s)
        if ts is not None:
            out.append(Dim(f"tpm{suffix}", "tokens", ts))
    return out


def bucket_args(parts: Sequence[tuple[Dim, float]]) -> list[str]:
    """rate, capacity and amount of each bucket, as the scripts take them (pure)."""
    args: list[str] = []
    for dim, amount in parts:
        args += [repr(dim.spec.rate_per_s), repr(dim.spec.capacity), repr(float(amount))]
    return args


def cost_rows(dims: Sequence[Dim], tokens: Sequence[int]) -> list[str]:
    """Each request's cost in each bucket, row by row, as the scripts take them (pure)."""
    return [repr(1.0 if d.kind == "requests" else float(t)) for t in tokens for d in dims]


def settle_parts(
    dims: Sequence[Dim], request_delta: int, token_delta: int
) -> list[tuple[Dim, float]]:
    """The buckets a settle changes, with their deltas (> 0 gives back; pure)."""
    parts = [(d, float(request_delta if d.kind == "requests" else token_delta)) for d in dims]
    return [(d, delta) for d, delta in parts if delta != 0]


def check_tokens(tokens: Sequence[int]) -> None:
    if tokens and min(tokens) < 0:
        raise ValueError("tokens must be >= 0")


def granted_batch(
    provider: str,
    model: str | None,
    tokens: Sequence[int],
    dims: Sequence[Dim],
    head: tuple[int, int, int, int],
    tail: Sequence[Any],
    probe: bool = False,
    unavailable: bool = False,
) -> Batch:
    """The :class:`Batch` a script's reply says was taken (pure).

    ``head`` is (granted, wait_us, now_us, blocker) and ``tail`` the levels then each
    grant's start, as the scripts reply them (a refusal for a cooldown has neither).
    """
    granted, wait_us, now_us, blocker = head
    levels, starts = tail[: len(dims)], [int(x) for x in tail[len(dims) :]]
    return Batch(
        reservations=[
            Reservation(True, 0.0, provider, model, t, 1, now_us, probe=probe, delay_s=start / US)
            for t, start in zip(tokens[:granted], starts, strict=True)
        ],
        wait_s=wait_us / US,
        now_us=now_us,
        blocked_by="cooldown" if blocker == -1 else dims[blocker - 1].name if blocker else None,
        levels={d.name: float(v) for d, v in zip(dims, levels, strict=False)},
        unavailable=unavailable,
    )


# How long a settled reservation's marker lives: longer than any bookkeeping
# retry after a Redis outage waits (enrich retries every 0.5 s).
SETTLE_MARK_TTL_MS = 300_000


class Limiter:
    """Token buckets of one pipeline, shared by every worker of the fleet."""

    def __init__(
        self, r: aioredis.Redis, pipeline: str, limits: Mapping[str, ProviderLimits]
    ) -> None:
        self.r = r
        self.pipeline = pipeline
        self.limits = dict(limits)
        self._script = r.register_script(BUCKET_LUA)

    async def _run(
        self,
        provider: str,
        parts: Sequence[tuple[Dim, float]],
        op: str,
        extra: Sequence[str] = (),
        first_key: str | None = None,
    ) -> list[Any]:
        """One call of the script: ``first_key`` defaults to the provider's cooldown key."""
        bucket_keys = [keys.bucket(self.pipeline, provider, d.name) for d, _ in parts]
        with translated(f"bucket {op} {provider}"):
            reply = await self._script(
                keys=[first_key or keys.cooldown(self.pipeline, provider), *bucket_keys],
                args=[op, *bucket_args(parts), *extra],
            )
        return list(reply)

    async def _settle(self, res: Reservation, request_delta: int, token_delta: int) -> bool:
        """Apply the deltas once per reservation, fleet-wide.

        ``res.settled`` claims it in this process (a concurrent settle is a
        no-op); a Redis marker keyed by the reservation id makes the write
        itself happen once, so a retry after a Redis error (the write done,
        its reply lost, or not done at all) neither loses nor repeats it.
        """
        if not res.granted or res.settled:
            return False
        res.settled = True
        parts = settle_parts(dims_for(self.limits.get(res.provider), res.model), request_delta, token_delta)  # fmt: skip
        if parts:
            marker = keys.settled(self.pipeline, res.provider, res.id)
            try:
                await self._run(res.provider, parts, "adjust", [str(SETTLE_MARK_TTL_MS)], marker)
            except ProviderStateUnavailable:
                res.settled = False  # the caller retries once Redis is back
                raise
        return True

    async def refund(self, res: Reservation) -> bool:
        """Give the request and its tokens back: the provider never saw or charged it."""
        return await self._settle(res, res.requests, res.tokens)

    async def levels(self, provider: str, model: str | None = None) -> dict[str, float]:
        """Current level of each bucket of ``provider`` (and ``model``), without taking."""
        dims = dims_for(self.limits.get(provider), model)
        reply = await self._run(provider, [(d, 0.0) for d in dims], "peek")
        return {d.name: float(v) for d, v in zip(dims, reply[4:], strict=True)}
