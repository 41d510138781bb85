import pytest

from services.fakellm.config import RateLimits
from services.fakellm.ratelimit import SlidingLimiter


class FakeClock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_unlimited_admits_everything_and_reports_nothing() -> None:
    lim = SlidingLimiter(FakeClock())
    for _ in range(1000):
        d = lim.check(RateLimits(), 10_000)
        assert d.allowed
    assert d.requests is None and d.tokens is None


def test_rps_window_refuses_then_frees() -> None:
    clock = FakeClock()
    lim = SlidingLimiter(clock)
    limits = RateLimits(rps=3)
    for i in range(3):
        clock.t = 1000.0 + i * 0.1
        assert lim.check(limits, 1).allowed
    clock.t = 1000.5
    d = lim.check(limits, 1)
    assert not d.allowed
    assert d.exceeded == "requests"
    assert d.retry_after_s == pytest.approx(0.5)
    assert d.requests is not None and d.requests.remaining == 0
    clock.t = 1001.0  # the first one leaves the window
    assert lim.check(limits, 1).allowed
    assert not lim.check(limits, 1).allowed


def test_refused_requests_use_up_nothing() -> None:
    clock = FakeClock()
    lim = SlidingLimiter(clock)
    limits = RateLimits(rpm=2)
    assert lim.check(limits, 1).allowed
    assert lim.check(limits, 1).allowed
    for _ in range(50):
        assert not lim.check(limits, 1).allowed
    clock.t += 60.0
    assert lim.check(limits, 1).allowed


def test_rpm_quota_in_headers() -> None:
    clock = FakeClock()
    lim = SlidingLimiter(clock)
    d = lim.check(RateLimits(rps=10, rpm=5), 1)
    assert d.requests is not None
    assert (d.requests.limit, d.requests.remaining) == (5, 4)
    assert d.requests.reset_s == pytest.approx(60.0)


def test_reset_is_when_the_whole_limit_is_free_again() -> None:
    # As OpenAI ("resets to its initial state") and Anthropic ("fully replenished") define it.
    clock = FakeClock()
    lim = SlidingLimiter(clock)
    limits = RateLimits(rpm=3, tpm=1000)
    lim.check(limits, 100)
    clock.t += 20
    d = lim.check(limits, 200)
    assert d.requests is not None and d.tokens is not None
    assert d.requests.reset_s == pytest.approx(60.0)  # the newest leaves the window last
    assert d.tokens.reset_s == pytest.approx(60.0)
    clock.t += 30
    d = lim.check(limits, 1)
    assert d.requests is not None and d.requests.remaining == 0
    assert d.requests.reset_s == pytest.approx(60.0)


def test_tokens_per_minute() -> None:
    clock = FakeClock()
    lim = SlidingLimiter(clock)
    limits = RateLimits(tpm=100)
    assert lim.check(limits, 60).allowed
    clock.t += 10
    assert lim.check(limits, 30).allowed
    clock.t += 10
    d = lim.check(limits, 20)  # 90 + 20 > 100: wait for the first 60 to leave
    assert not d.allowed and d.exceeded == "tokens"
    assert d.retry_after_s == pytest.approx(40.0)
    assert d.tokens is not None and d.tokens.remaining == 10
    assert lim.check(limits, 10).allowed
    assert not lim.check(limits, 101).allowed  # larger than the whole limit


def test_limits_change_without_losing_history() -> None:
    clock = FakeClock()
    lim = SlidingLimiter(clock)
    for _ in range(5):
        assert lim.check(RateLimits(), 1).allowed
    assert not lim.check(RateLimits(rps=5), 1).allowed
    assert lim.check(RateLimits(rps=6), 1).allowed
