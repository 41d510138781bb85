"""How many enrich workers are useful now (pure): the figure behind ``sluice_enrich_useful_workers``.

A plain autoscaler on ``P.work`` lag adds workers while the provider is paused
or at its rate limit, where they only wait. This one asks what more workers
could actually do. With ``λ`` the records written to ``P.work`` per second
lately, ``B`` the records of ``P.work`` the enrich group has not consumed,
``T`` the time to drain that backlog in (``SLUICE_ADMIN_AUTOSCALE_DRAIN_S``),
and for the provider that serves the records now (the task's first provider
that is neither paused nor breaker-open: enrich sends every record to it, the
later ones of the chain are fallbacks, not extra capacity):

    need      = λ + B / T                    calls/s to keep pace and drain the backlog in T
    capacity  = its requests_per_minute / 60 calls/s its budget serves (the tightest of the
                                             provider's and the task's model's; 0: unlimited)
    in_flight = min(need, capacity) * L      Little's law, L = its mean call latency (last minute)
    useful    = ceil(in_flight / S)          S = a worker's slots for it:
                                             min(SLUICE_MAX_IN_FLIGHT, its max_connections)

then at least ``SLUICE_ADMIN_AUTOSCALE_MIN_WORKERS`` and at most the
partitions of ``P.work`` (more consumers than partitions in one group idle);
the partition cap wins over the minimum. The rules for what cannot be counted:

=====================================  ============================================================
every provider of the chain paused     the minimum: no worker can call, none is useful; the backlog
or breaker-open                        waits in ``P.work`` and is counted again on resume
no call latency observed in the last   the workers there are now (at least the minimum): nothing to
minute (just started or resumed)       size by yet; the workers' first calls give ``L``
no backlog and nothing arriving        the minimum
blocked keys (sequencer block mode)    nothing to subtract: their held records live in the
                                       sequencer's changelog, not in the enrich group's lag
tokens_per_minute budgets              not counted (tokens per call are not observed), so a
                                       provider bound by tokens may get more workers than useful
=====================================  ============================================================

``limited_by`` says which bound decided: ``lag``, ``rate``, ``partitions``,
``minimum``, ``paused`` or ``unobserved``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from services.admin.lag.models import LagReport
from shared.call_stats import EDGES_MS, bucket_field

Limit = Literal["lag", "rate", "partitions", "minimum", "paused", "unobserved"]
ROUNDING = 1e-9  # 2.0000000001 workers is 2


@dataclass(frozen=True)
class Provider:
    """One provider of the task's chain, as the fleet sees it now."""

    name: str
    available: bool  # neither paused nor breaker-open
    rate_per_s: float | None  # the configured request budget; None: unlimited
    latency_s: float | None  # mean call latency over the last minute; None: no calls
    slots_per_worker: int  # calls one worker may have in flight to it


@dataclass(frozen=True)
class Inputs:
    chain: tuple[Provider, ...]  # primary first, then the fallbacks
    backlog: int  # records of P.work the enrich group has not consumed
    arrival_per_s: float  # records written to P.work per second lately
    partitions: int  # partitions of P.work
    workers: int  # enrich workers alive now
    minimum: int
    drain_s: float


@dataclass(frozen=True)
class Useful:
    workers: int
    limited_by: Limit
    serving: str | None  # the provider the records go to; None: none available


def useful_workers(i: Inputs) -> Useful:
    """The number of enrich workers that can do something now (see the module docstring)."""
    serving = next((p for p in i.chain if p.available), None)
    if serving is None:
        return _bounded(i.minimum, "paused", i, None)
    if i.backlog <= 0 and i.arrival_per_s <= 0:
        return _bounded(i.minimum, "minimum", i, serving.name)
    if serving.latency_s is None:
        return _bounded(max(i.workers, i.minimum), "unobserved", i, serving.name)
    rate = i.arrival_per_s + i.backlog / i.drain_s
    why: Limit = "lag"
    if serving.rate_per_s is not None and serving.rate_per_s < rate:
        rate, why = serving.rate_per_s, "rate"
    in_flight = rate * serving.latency_s
    n = math.ceil(in_flight / serving.slots_per_worker - ROUNDING)
    return _bounded(n, why, i, serving.name)


def _bounded(n: int, why: Limit, i: Inputs, serving: str | None) -> Useful:
    if n < i.minimum:
        n = i.minimum
        why = "minimum" if why in ("lag", "rate") else why
    if n > i.partitions:
        n, why = i.partitions, "partitions"
    return Useful(n, why, serving)


def rate_per_s(requests_per_minute: Iterable[int]) -> float | None:
    """The tightest of these budgets in calls/s (0 is unlimited); None when all are unlimited."""
    limits = [r for r in requests_per_minute if r > 0]
    return min(limits) / 60 if limits else None


def mean_latency_s(seconds: Iterable[Mapping[str, int]]) -> float | None:
    """Mean call latency from the fleet's per-second histograms (:mod:`shared.call_stats`).

    Each bucket counts at its midpoint; the open last bucket at its lower edge,
    as the percentiles do. None without calls.
    """
    mids = [(lo + hi) / 2 for lo, hi in zip((0, *EDGES_MS), EDGES_MS, strict=False)]
    mids.append(float(EDGES_MS[-1]))
    calls = 0
    total_ms = 0.0
    for second in seconds:
        for i, mid in enumerate(mids):
            c = int(second.get(bucket_field(i), 0))
            calls += c
            total_ms += c * mid
    return total_ms / calls / 1000 if calls else None


@dataclass(frozen=True)
class WorkLag:
    """The enrich group on ``P.work`` in one lag sample."""

    at: float
    backlog: int
    ends: Mapping[int, int]  # partition → end offset


def work_lag(report: LagReport, group: str, topic: str) -> WorkLag | None:
    """``group``'s lag on ``topic`` in ``report``; None before a sample or without the topic.

    A partition the group never committed on counts its end offset as backlog
    (enrich starts such a partition from the earliest record).
    """
    if report.sampled_at is None:
        return None
    parts = [p for g in report.groups if g.group == group for p in g.partitions if p.topic == topic]
    if not parts:
        return None
    backlog = sum(p.end if p.lag_records is None else p.lag_records for p in parts)
    return WorkLag(report.sampled_at, backlog, {p.partition: p.end for p in parts})


class Arrivals:
    """Records written to ``P.work`` per second over the last ``window_s`` of samples."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._seen: deque[WorkLag] = deque()

    def observe(self, lag: WorkLag) -> float:
        """Add a sample (the same one again changes nothing); the rate over the window."""
        if self._seen and lag.at <= self._seen[-1].at:
            return self.rate()
        self._seen.append(lag)
        while len(self._seen) > 2 and lag.at - self._seen[1].at >= self.window_s:
            self._seen.popleft()
        return self.rate()

    def rate(self) -> float:
        if len(self._seen) < 2:
            return 0.0
        first, last = self._seen[0], self._seen[-1]
        grown = sum(max(0, end - first.ends.get(n, end)) for n, end in last.ends.items())
        return grown / (last.at - first.at)
