"""Circuit-breaker state machine (pure): the reference ``breaker_lua`` implements.

closed     every call is allowed; outcomes go into a rolling window of
           per-second buckets (``window_s`` long). A failure that brings the
           window to at least ``min_requests`` calls with a failure rate
           ``>= failure_threshold`` opens the breaker (and clears the window).
open       nothing is allowed until ``open_until_ms``; then the breaker is
           half-open (the first ``allow`` stores the transition; readers
           compute it from ``open_until_ms``).
half_open  at most ``half_open_probes`` probe calls at once. A probe success
           closes the breaker, a probe failure re-opens it for ``open_s``.
           Probes that never report (a worker died) free their slots after
           ``probe_timeout_s``. Outcomes of non-probe calls are ignored while
           the breaker is not closed.

``trip`` forces the breaker open from any state, with a reason (``auth``: the
provider rejected the API key, which no retry of a record can fix); an open
breaker keeps its ``open_until_ms`` and takes the new reason. The open period
and the half-open probe that follows are the same as for any opening, so the
first probe after the key is fixed closes it. Every opening stores why:
``failure_rate`` (the window), ``probe_failed``, or the reason given to ``trip``;
closing clears it.

Times are integer milliseconds of Redis ``TIME``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shared.provider_state import Admission

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"
FAILURE_RATE = "failure_rate"
PROBE_FAILED = "probe_failed"
AUTH = "auth"


@dataclass(frozen=True)
class BreakerSpec:
    """The state machine's parameters (from YAML: :mod:`shared.redis.provider_config`)."""

    window_s: int = 30
    min_requests: int = 20
    failure_threshold: float = 0.5
    open_s: float = 30.0
    half_open_probes: int = 1
    probe_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.window_s < 1 or self.min_requests < 1 or self.half_open_probes < 1:
            raise ValueError("window_s, min_requests and half_open_probes must be >= 1")
        if not 0 < self.failure_threshold <= 1:
            raise ValueError("failure_threshold must be in (0, 1]")
        if self.open_s < 0 or self.probe_timeout_s <= 0:
            raise ValueError("open_s must be >= 0 and probe_timeout_s > 0")

    @property
    def open_ms(self) -> int:
        return math.ceil(self.open_s * 1000)

    @property
    def probe_ms(self) -> int:
        return math.ceil(self.probe_timeout_s * 1000)


@dataclass
class BreakerState:
    state: str = CLOSED
    open_until_ms: int = 0
    probes: int = 0
    probe_deadline_ms: int = 0
    window: dict[int, tuple[int, int]] = field(default_factory=dict)  # second -> (calls, failures)
    reason: str = ""  # why it last opened ("" while closed)


def effective_state(state: str, open_until_ms: int, now_ms: int) -> str:
    """An open breaker whose open period is over is half-open."""
    if state == OPEN and now_ms >= open_until_ms:
        return HALF_OPEN
    return state


def _open(s: BreakerState, cfg: BreakerSpec, now_ms: int, reason: str) -> None:
    s.state, s.open_until_ms, s.probes, s.reason = OPEN, now_ms + cfg.open_ms, 0, reason
    s.window.clear()


def _close(s: BreakerState) -> None:
    s.state, s.probes, s.reason = CLOSED, 0, ""
    s.window.clear()


def window_counts(s: BreakerState, cfg: BreakerSpec, now_ms: int) -> tuple[int, int]:
    """(calls, failures) in the window ending now; drops buckets that fell out."""
    sec = now_ms // 1000
    for old in [k for k in s.window if k <= sec - cfg.window_s]:
        del s.window[old]
    return sum(n for n, _ in s.window.values()), sum(f for _, f in s.window.values())


def room(s: BreakerState, cfg: BreakerSpec, now_ms: int) -> tuple[int | None, bool]:
    """How many calls may start now (``None``: no bound), and whether they are probes.

    Nothing changes: :func:`take` admits them.
    """
    if s.state == CLOSED:
        return None, False
    if s.state == OPEN and now_ms < s.open_until_ms:
        return 0, False
    probes = 0 if s.state == OPEN else s.probes  # open past its period: half-open, no probe yet
    if probes > 0 and now_ms >= s.probe_deadline_ms:
        probes = 0  # the probes in flight never reported
    return max(0, cfg.half_open_probes - probes), True


def take(s: BreakerState, cfg: BreakerSpec, now_ms: int, n: int) -> None:
    """Admit ``n`` calls (at most :func:`room`): half-open counts them as probes."""
    if s.state == CLOSED or n <= 0:
        return
    if s.state == OPEN:
        s.state, s.probes = HALF_OPEN, 0
    if s.probes > 0 and now_ms >= s.probe_deadline_ms:
        s.probes = 0
    s.probes += n
    s.probe_deadline_ms = now_ms + cfg.probe_ms


def allow(s: BreakerState, cfg: BreakerSpec, now_ms: int) -> Admission:
    """May one call start now? (:func:`room` and :func:`take` for one call.)"""
    free, probe = room(s, cfg, now_ms)
    if free is not None and free < 1:
        return Admission(False, False, effective_state(s.state, s.open_until_ms, now_ms))
    take(s, cfg, now_ms, 1)
    return Admission(True, probe, effective_state(s.state, s.open_until_ms, now_ms))


def record(s: BreakerState, cfg: BreakerSpec, now_ms: int, ok: bool, probe: bool) -> str:
    """Account one outcome; returns the state afterwards."""
    if s.state == CLOSED:
        sec = now_ms // 1000
        calls, fails = s.window.get(sec, (0, 0))
        s.window[sec] = (calls + 1, fails + (0 if ok else 1))
        total, failures = window_counts(s, cfg, now_ms)
        if not ok and total >= cfg.min_requests and failures >= cfg.failure_threshold * total:
            _open(s, cfg, now_ms, FAILURE_RATE)
    elif s.state == HALF_OPEN and probe:
        if ok:
            _close(s)
        else:
            _open(s, cfg, now_ms, PROBE_FAILED)
    return effective_state(s.state, s.open_until_ms, now_ms)


def trip(s: BreakerState, cfg: BreakerSpec, now_ms: int, reason: str) -> bool:
    """Force the breaker open with ``reason``; True when this call opened it.

    Already open (and not past its period): only the reason changes, so a burst
    of rejected calls in flight does not keep pushing the probe back.
    """
    if effective_state(s.state, s.open_until_ms, now_ms) == OPEN:
        s.reason = reason
        return False
    _open(s, cfg, now_ms, reason)
    return True
