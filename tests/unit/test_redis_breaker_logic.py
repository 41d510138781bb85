"""Circuit-breaker state machine (pure reference of the Lua script)."""

from __future__ import annotations

import pytest

from shared.provider_state import Admission
from shared.redis.breaker_logic import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    BreakerSpec,
    BreakerState,
    allow,
    effective_state,
    record,
    trip,
    window_counts,
)

CFG = BreakerSpec(
    window_s=10,
    min_requests=4,
    failure_threshold=0.5,
    open_s=5,
    half_open_probes=2,
    probe_timeout_s=3,
)
T = 1_700_000_000_000


def _open_breaker(now: int = T) -> BreakerState:
    s = BreakerState()
    for ok in (True, True, False):
        assert record(s, CFG, now, ok, False) == CLOSED
    assert record(s, CFG, now, False, False) == OPEN  # 2 of 4 failed
    return s


def test_opens_at_threshold_with_enough_calls() -> None:
    s = _open_breaker()
    assert s.open_until_ms == T + 5000 and s.window == {}
    assert allow(s, CFG, T + 4999) == Admission(False, False, OPEN)


def test_stays_closed_below_min_requests_or_below_threshold() -> None:
    s = BreakerState()
    for _ in range(3):
        record(s, CFG, T, False, False)
    assert s.state == CLOSED  # 3 failures < min_requests
    s = BreakerState()
    for ok in (True, True, True, False, True, False):
        record(s, CFG, T, ok, False)
    assert s.state == CLOSED  # 2 of 6 < 50 %
    assert allow(s, CFG, T) == Admission(True, False, CLOSED)


def test_window_rolls_old_outcomes_out() -> None:
    s = BreakerState()
    for _ in range(3):
        record(s, CFG, T, False, False)
    assert window_counts(s, CFG, T + 9_999) == (3, 3)
    assert window_counts(s, CFG, T + 10_000) == (0, 0)
    assert record(s, CFG, T + 10_000, False, False) == CLOSED  # the old three are gone


def test_half_open_admits_limited_probes_then_closes_on_success() -> None:
    s = _open_breaker()
    now = T + 5000
    assert effective_state(s.state, s.open_until_ms, now) == HALF_OPEN
    assert allow(s, CFG, now) == Admission(True, True, HALF_OPEN)
    assert allow(s, CFG, now) == Admission(True, True, HALF_OPEN)
    assert allow(s, CFG, now) == Admission(False, False, HALF_OPEN)
    assert record(s, CFG, now, False, False) == HALF_OPEN  # non-probe outcomes are ignored
    assert record(s, CFG, now, True, True) == CLOSED
    assert s.probes == 0 and allow(s, CFG, now) == Admission(True, False, CLOSED)


def test_probe_failure_reopens() -> None:
    s = _open_breaker()
    now = T + 6000
    assert allow(s, CFG, now).probe
    assert record(s, CFG, now, False, True) == OPEN
    assert s.open_until_ms == now + 5000
    assert not allow(s, CFG, now + 100).allowed
    assert record(s, CFG, now + 100, True, True) == OPEN  # a late probe of the old round


def test_probes_that_never_report_free_their_slots() -> None:
    s = _open_breaker()
    now = T + 5000
    assert allow(s, CFG, now).probe and allow(s, CFG, now).probe
    assert not allow(s, CFG, now + 2999).allowed
    assert allow(s, CFG, now + 3000).probe


def test_outcomes_while_open_are_ignored() -> None:
    s = _open_breaker()
    assert record(s, CFG, T + 1, False, False) == OPEN
    assert record(s, CFG, T + 5000, True, False) == HALF_OPEN  # effective, not stored
    assert s.state == OPEN and s.window == {}


def test_every_opening_says_why_and_closing_forgets_it() -> None:
    s = _open_breaker()
    assert s.reason == "failure_rate"
    assert allow(s, CFG, T + 5000).probe
    record(s, CFG, T + 5000, False, True)
    assert (s.state, s.reason) == (OPEN, "probe_failed")
    assert allow(s, CFG, T + 10_000).probe
    record(s, CFG, T + 10_000, True, True)
    assert (s.state, s.reason) == (CLOSED, "")


def test_trip_opens_a_closed_breaker_at_once_with_its_reason() -> None:
    s = BreakerState()
    record(s, CFG, T, True, False)
    assert trip(s, CFG, T, "auth") is True
    assert (s.state, s.reason, s.open_until_ms, s.window) == (OPEN, "auth", T + 5000, {})
    assert allow(s, CFG, T + 4999) == Admission(False, False, OPEN)


def test_trip_while_open_keeps_the_open_period() -> None:
    s = _open_breaker()
    assert trip(s, CFG, T + 3000, "auth") is False  # a burst of rejected calls in flight
    assert (s.state, s.reason, s.open_until_ms) == (OPEN, "auth", T + 5000)


def test_a_probe_tests_a_tripped_provider_again() -> None:
    s = BreakerState()
    trip(s, CFG, T, "auth")
    adm = allow(s, CFG, T + 5000)  # the open period is over: a probe goes through
    assert adm == Admission(True, True, HALF_OPEN)
    assert trip(s, CFG, T + 5100, "auth") is True  # still rejected: open again, a full period
    assert (s.state, s.open_until_ms) == (OPEN, T + 10_100)
    assert allow(s, CFG, T + 10_100).probe
    assert record(s, CFG, T + 10_200, True, True) == CLOSED  # the key works again
    assert s.reason == ""


def test_config_is_validated() -> None:
    with pytest.raises(ValueError):
        BreakerSpec(failure_threshold=0)
    with pytest.raises(ValueError):
        BreakerSpec(min_requests=0)
    with pytest.raises(ValueError):
        BreakerSpec(probe_timeout_s=0)
    assert BreakerSpec(open_s=0.0015).open_ms == 2
