"""A stage's process: starting over after its consumer was fenced by its own past (no servers)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from shared.errors import SessionFenced
from shared.kafka.shutdown import StopFlag
from shared.stage import RestartBudget, run_body


def fenced_then_done(fences: int) -> tuple[Callable[[StopFlag], None], list[int]]:
    calls: list[int] = []

    def body(_stop: StopFlag) -> None:
        calls.append(len(calls))
        if len(calls) <= fences:
            raise SessionFenced("router: consumer fenced after its session timed out")

    return body, calls


def test_a_fenced_body_starts_over_until_it_returns() -> None:
    body, calls = fenced_then_done(2)
    now = iter([0.0, 10.0])
    run_body("router", body, StopFlag(), RestartBudget(limit=3, window_s=600), lambda: next(now))
    assert calls == [0, 1, 2]


def test_fenced_more_often_than_the_budget_allows_is_another_process() -> None:
    body, calls = fenced_then_done(10)
    now = iter(float(t) for t in range(100))
    with pytest.raises(SessionFenced, match="does another process use the same group"):
        run_body(
            "router", body, StopFlag(), RestartBudget(limit=3, window_s=600), lambda: next(now)
        )
    assert len(calls) == 4  # the first run and three restarts


def test_a_fence_during_a_stop_is_not_started_over() -> None:
    body, calls = fenced_then_done(1)
    stop = StopFlag()
    stop.set("SIGTERM")
    with pytest.raises(SessionFenced):
        run_body("router", body, stop, RestartBudget(), lambda: 0.0)
    assert calls == [0]


def test_the_budget_counts_restarts_within_its_window_only() -> None:
    b = RestartBudget(limit=2, window_s=60)
    assert b.allow(0) and b.allow(30)
    assert not b.allow(59)
    assert b.allow(61)  # the one at 0 left the window
    assert not b.allow(62)
