"""The worker's bucket gate: FIFO, batched reservations, outage, errors, refunds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field

import pytest

from services.enrich.gate import BucketGate
from services.enrich.lanes import FRESH, REPLAYED
from shared.errors import ProviderStateUnavailable
from shared.provider_state import Batch, Reservation


@dataclass
class FakeBucket:
    """Grants ``tokens_now`` requests, then one more every ``every_s``; records each call."""

    tokens_now: int = 0
    every_s: float = 0.01
    calls: list[list[int]] = field(default_factory=list)
    models: list[str | None] = field(default_factory=list)
    refunded: list[Reservation] = field(default_factory=list)
    fail: Exception | None = None
    closes_after: int | None = None  # the store says the breaker admits no more after these
    _last: float | None = None

    async def reserve_many(self, model: str | None, tokens: Sequence[int]) -> Batch:
        now = asyncio.get_running_loop().time()
        self.calls.append(list(tokens))
        self.models.append(model)
        if self.fail is not None:
            raise self.fail
        if self._last is not None:
            refill = int((now - self._last) / self.every_s)
            self.tokens_now += refill
            self._last += refill * self.every_s
        else:
            self._last = now
        k = min(self.tokens_now, len(tokens))
        closed = self.closes_after is not None and k > self.closes_after
        k = min(k, self.closes_after) if self.closes_after is not None else k
        self.tokens_now -= k
        grants = [Reservation(True, 0.0, "p", model, t, 1, 0) for t in tokens[:k]]
        wait = 0.0 if k == len(tokens) or closed else self._last + self.every_s - now
        return Batch(grants, wait, 0, unavailable=closed)

    async def refund(self, res: Reservation) -> bool:
        self.refunded.append(res)
        return True


def gate_for(bucket: FakeBucket, up: list[bool] | None = None, **kw: float) -> BucketGate:
    state = up if up is not None else [True]
    return BucketGate(bucket.reserve_many, bucket.refund, lambda: state[0], **kw)  # type: ignore[arg-type]


async def test_one_call_reserves_for_every_waiter_that_fits_in_order() -> None:
    bucket = FakeBucket(tokens_now=3)
    gate = gate_for(bucket)
    got = await asyncio.gather(*(gate.acquire("m", t) for t in (10, 20, 30, 40, 50)))
    assert [r.tokens for r in got if r is not None] == [10, 20, 30, 40, 50]  # FIFO
    assert bucket.calls[0] == [10, 20, 30, 40, 50]  # one round trip for the whole queue
    assert len(bucket.calls) <= 4  # 3 at once, then the refills: not one call per waiter
    assert gate.waiting() == 0


async def test_a_gate_with_a_floor_between_asks_takes_what_refilled_meanwhile_at_once() -> None:
    bucket = FakeBucket(tokens_now=1, every_s=0.005)
    gate = gate_for(bucket, ask_every_s=0.05)
    loop = asyncio.get_running_loop()
    begun = loop.time()
    got = await asyncio.gather(*(gate.acquire("m", t) for t in range(40)))
    took = loop.time() - begun
    assert [r.tokens for r in got if r is not None] == list(range(40))  # all, FIFO
    # the bucket says "one more in 5 ms" after each ask; the gate waits its 50 ms instead
    assert len(bucket.calls) <= 1 + took / 0.05
    assert max(len(c) - len(n) for c, n in zip(bucket.calls, bucket.calls[1:], strict=False)) >= 5


async def test_batches_are_capped_and_split_by_model() -> None:
    bucket = FakeBucket(tokens_now=100)
    gate = gate_for(bucket, max_batch=2)
    got = await asyncio.gather(
        gate.acquire("a", 1), gate.acquire("a", 2), gate.acquire("a", 3), gate.acquire("b", 4),
        gate.acquire("a", 5),
    )  # fmt: skip
    assert all(r is not None for r in got)
    assert bucket.calls == [[1, 2], [3], [4], [5]]
    assert bucket.models == ["a", "a", "b", "a"]


async def test_the_pump_sleeps_until_the_bucket_says_and_takes_what_refilled() -> None:
    bucket = FakeBucket(tokens_now=0, every_s=0.2)
    gate = gate_for(bucket)
    loop = asyncio.get_running_loop()
    start = loop.time()
    got = await asyncio.gather(*(gate.acquire(None, 1) for _ in range(5)))
    elapsed = loop.time() - start
    assert all(r is not None for r in got)
    # five refills of 200 ms: never sooner; later only by scheduling (seconds of slack)
    assert 0.95 <= elapsed < 4.0
    assert len(bucket.calls) <= 8  # woken by the bucket's wait, not a busy loop


async def test_unavailable_provider_releases_every_waiter_with_none() -> None:
    bucket = FakeBucket(tokens_now=1, every_s=10.0)
    up = [True]
    gate = gate_for(bucket, up, recheck_s=0.01)
    tasks = [asyncio.ensure_future(gate.acquire(None, 1)) for _ in range(3)]
    await asyncio.sleep(0.03)
    assert tasks[0].done() and tasks[0].result() is not None
    up[0] = False  # paused while the others wait: seen within recheck_s
    done = await asyncio.wait_for(asyncio.gather(*tasks[1:]), 1.0)
    assert done == [None, None]


async def test_waiters_the_breaker_no_longer_admits_get_none_at_once() -> None:
    # Half-open with one probe left: the store grants one and says the rest cannot be.
    bucket = FakeBucket(tokens_now=10, closes_after=1)
    gate = gate_for(bucket)
    got = await asyncio.wait_for(asyncio.gather(*(gate.acquire(None, 1) for _ in range(3))), 5.0)
    assert [r is not None for r in got] == [True, False, False]
    assert len(bucket.calls) == 1  # told once, no polling


async def test_a_redis_failure_reaches_every_waiter_and_the_next_call_recovers() -> None:
    bucket = FakeBucket(tokens_now=5, fail=ProviderStateUnavailable("down"))
    gate = gate_for(bucket)
    results = await asyncio.gather(*(gate.acquire(None, 1) for _ in range(3)), return_exceptions=True)  # fmt: skip
    assert all(isinstance(r, ProviderStateUnavailable) for r in results)
    bucket.fail = None
    assert await gate.acquire(None, 1) is not None


async def test_a_grant_whose_waiter_was_cancelled_is_refunded() -> None:
    bucket = FakeBucket(tokens_now=0, every_s=0.05)
    gate = gate_for(bucket)
    first = asyncio.ensure_future(gate.acquire(None, 7))
    second = asyncio.ensure_future(gate.acquire(None, 8))
    await asyncio.sleep(0.01)
    first.cancel()  # cancelled while queued: never granted, never refunded
    got = await asyncio.wait_for(second, 1.0)
    assert got is not None and got.tokens == 8 and bucket.refunded == []
    # granted, then cancelled before the waiter ran: the reservation goes back
    bucket.tokens_now, calls = 1, len(bucket.calls)
    third = asyncio.ensure_future(gate.acquire(None, 9))
    for _ in range(50):  # until the pump has granted it, before the waiter resumes
        await asyncio.sleep(0)
        if len(bucket.calls) > calls and gate.waiting() == 0:
            break
    assert not third.done()
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    await asyncio.sleep(0.01)
    assert [r.tokens for r in bucket.refunded] == [9]


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError):
        gate_for(FakeBucket(), max_batch=0)


async def test_fresh_waiters_are_granted_before_replayed_ones_that_came_first() -> None:
    bucket = FakeBucket(tokens_now=0, every_s=0.005)
    gate = gate_for(bucket, max_batch=2)
    order: list[str] = []

    async def wait(name: str, lane: int) -> None:
        assert await gate.acquire("m", 1, lane) is not None
        order.append(name)

    replayed = [asyncio.create_task(wait(f"r{i}", REPLAYED)) for i in range(4)]
    await asyncio.sleep(0)  # the replayed ones queue first
    fresh = [asyncio.create_task(wait(f"f{i}", FRESH)) for i in range(3)]
    await asyncio.gather(*replayed, *fresh)
    assert order[:3] == ["f0", "f1", "f2"]  # in arrival order within each lane
    assert order[3:] == ["r0", "r1", "r2", "r3"]
    assert gate.waiting() == 0 and gate.idle()


async def test_a_batch_spans_both_lanes_and_a_partial_grant_keeps_the_rest_queued() -> None:
    bucket = FakeBucket(tokens_now=3, every_s=0.005)
    gate = gate_for(bucket)
    got = await asyncio.gather(
        gate.acquire("m", 1, REPLAYED), gate.acquire("m", 2, REPLAYED),
        gate.acquire("m", 3, FRESH), gate.acquire("m", 4, FRESH), gate.acquire("m", 5, REPLAYED),
    )  # fmt: skip
    assert [r.tokens for r in got if r is not None] == [1, 2, 3, 4, 5]
    assert bucket.calls[0] == [3, 4, 1, 2, 5]  # fresh first, one round trip
    assert bucket.calls[1][0] == 2  # 3 granted at once; the next call starts where it stopped
    assert gate.waiting() == 0
