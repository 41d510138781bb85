"""A worker's call slots: FIFO, exactly as many woken as fit, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from services.enrich.lanes import FRESH, REPLAYED
from services.enrich.slots import Slots


class Limit:
    def __init__(self, n: int) -> None:
        self.n = n

    def __call__(self) -> int:
        return self.n


async def test_holders_never_exceed_the_limit_and_waiters_get_in_in_order() -> None:
    limit = Limit(2)
    slots = Slots(limit)
    order: list[int] = []
    most = 0

    async def call(i: int) -> None:
        nonlocal most
        await slots.acquire()
        order.append(i)
        most = max(most, slots.active)
        await asyncio.sleep(0.001)
        slots.release()

    await asyncio.gather(*(call(i) for i in range(50)))
    assert order == list(range(50)) and most == 2 and slots.active == 0


async def test_a_lower_limit_lets_in_only_what_fits_and_wake_uses_a_higher_one() -> None:
    limit = Limit(4)
    slots = Slots(limit)
    for _ in range(4):
        await slots.acquire()
    waiters = [asyncio.ensure_future(slots.acquire()) for _ in range(6)]
    await asyncio.sleep(0)
    limit.n = 2  # a 429 halved it
    slots.release()
    slots.release()
    await asyncio.sleep(0)
    assert slots.active == 2 and sum(w.done() for w in waiters) == 0  # 2 holders: nothing fits
    slots.release()
    await asyncio.sleep(0)
    assert slots.active == 2 and [w.done() for w in waiters] == [True] + [False] * 5
    limit.n = 5  # successes raised it again
    slots.wake()
    await asyncio.sleep(0)
    assert slots.active == 5 and sum(w.done() for w in waiters) == 4 and slots.waiting() == 2
    for w in waiters:
        w.cancel()
    await asyncio.gather(*waiters, return_exceptions=True)
    assert slots.waiting() == 0


async def test_a_cancelled_waiter_takes_no_slot_and_a_granted_one_gives_it_back() -> None:
    slots = Slots(Limit(1))
    await slots.acquire()
    cancelled = asyncio.ensure_future(slots.acquire())
    granted_then_cancelled = asyncio.ensure_future(slots.acquire())
    last = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    cancelled.cancel()
    await asyncio.sleep(0)
    slots.release()  # hands the slot to the second waiter ...
    granted_then_cancelled.cancel()  # ... which is cancelled before it runs
    for task in (cancelled, granted_then_cancelled):
        with pytest.raises(asyncio.CancelledError):
            await task
    await asyncio.wait_for(last, 1)  # the slot came back and went to the next waiter
    assert slots.active == 1 and slots.waiting() == 0


async def test_a_released_slot_goes_to_a_fresh_waiter_before_replayed_ones() -> None:
    slots = Slots(Limit(1))
    await slots.acquire()  # the one slot is taken
    order: list[str] = []

    async def call(name: str, lane: int) -> None:
        await slots.acquire(lane)
        order.append(name)
        slots.release()

    tasks = [asyncio.create_task(call(f"r{i}", REPLAYED)) for i in range(3)]
    await asyncio.sleep(0)
    tasks += [asyncio.create_task(call(f"f{i}", FRESH)) for i in range(2)]
    await asyncio.sleep(0)
    assert slots.waiting() == 5
    slots.release()
    await asyncio.gather(*tasks)
    assert order == ["f0", "f1", "r0", "r1", "r2"] and slots.active == 0


async def test_a_cancelled_replayed_waiter_leaves_its_lane() -> None:
    slots = Slots(Limit(1))
    await slots.acquire()
    waiter = asyncio.create_task(slots.acquire(REPLAYED))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting() == 0
    slots.release()
    assert slots.active == 0
