"""The loop-lag sampler sees a loop blocked by a synchronous step."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from shared.looplag import watch


async def test_a_blocked_loop_is_measured_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[float] = []
    task = asyncio.create_task(watch(interval_s=0.01, warn_s=1.0, observe=seen.append))
    await asyncio.sleep(0.05)
    quiet = list(seen)
    with caplog.at_level(logging.WARNING, logger="shared.looplag"):
        time.sleep(3.0)  # the loop is blocked: the sampler's timer fires late
        await asyncio.sleep(0.05)
    task.cancel()
    # seconds apart, so a busy machine's scheduling delays cannot blur them
    assert quiet and max(quiet) < 1.0
    assert max(seen) >= 2.9
    assert any("event loop stalled" in r.getMessage() for r in caplog.records)
