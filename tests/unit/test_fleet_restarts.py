"""The demo's restart policy: doubling back-off, a crash loop is given up on."""

from __future__ import annotations

import pytest

from devtools.fleet.restarts import RestartPolicy, Restarts


def test_the_back_off_doubles_up_to_its_cap_and_a_crash_loop_is_given_up() -> None:
    r = Restarts(RestartPolicy(max_restarts=5, window_s=1000, first_backoff_s=1, max_backoff_s=6))
    dues = [r.exited("router", now) for now in (0.0, 10.0, 20.0, 30.0, 40.0)]
    assert dues == [1.0, 12.0, 24.0, 36.0, 46.0]  # 1, 2, 4, then capped at 6
    assert r.exited("router", 50.0) is None  # a sixth exit within the window
    assert r.total == {"router": 5}


def test_exits_older_than_the_window_are_forgotten_and_stages_count_apart() -> None:
    r = Restarts(RestartPolicy(max_restarts=2, window_s=60, first_backoff_s=1, max_backoff_s=30))
    assert r.exited("router", 0.0) == 1.0
    assert r.exited("router", 30.0) == 32.0
    assert r.exited("sequencer", 31.0) == 32.0  # its own count
    # the exit at 0 s has left the window: this is the second within it, not the third
    assert r.exited("router", 61.0) == 63.0
    assert r.exited("router", 62.0) is None
    assert r.total == {"router": 3, "sequencer": 1}


def test_no_restarts_gives_up_at_the_first_exit() -> None:
    r = Restarts(RestartPolicy(max_restarts=0))
    assert r.exited("ingest", 5.0) is None
    assert r.total == {}


@pytest.mark.parametrize(
    "kwargs",
    [{"max_restarts": -1}, {"window_s": 0}, {"first_backoff_s": -1}, {"first_backoff_s": 40}],
)
def test_a_policy_that_cannot_work_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RestartPolicy(**kwargs)  # type: ignore[arg-type]
