"""The batched cache lookups of a worker's queued calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from services.enrich.lookups import Lookups
from shared.errors import ProviderStateUnavailable


class Store:
    def __init__(self, values: dict[str, bytes]) -> None:
        self.values = values
        self.requests: list[list[str]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail: Exception | None = None

    async def fetch(self, digests: Sequence[str]) -> list[bytes | None]:
        self.requests.append(list(digests))
        await self.gate.wait()
        if self.fail is not None:
            raise self.fail
        return [self.values.get(d) for d in digests]


async def test_lookups_asked_together_share_one_request_and_each_gets_its_answer() -> None:
    store = Store({"a": b"A", "c": b"C"})
    lookups = Lookups(store.fetch)
    got = await asyncio.gather(*(lookups.get(d) for d in ["a", "b", "c", "a"]))
    assert got == [b"A", None, b"C", b"A"]
    assert store.requests == [["a", "b", "c"]]


async def test_lookups_that_arrive_while_one_is_out_go_in_the_next_request() -> None:
    store = Store({"x": b"X"})
    store.gate.clear()
    lookups = Lookups(store.fetch)
    first = asyncio.ensure_future(lookups.get("x"))
    await asyncio.sleep(0.01)
    later = [asyncio.ensure_future(lookups.get(d)) for d in ["y", "x", "z"]]
    await asyncio.sleep(0.01)
    assert store.requests == [["x"]]  # the first left at once, alone
    store.gate.set()
    assert await first == b"X"
    assert await asyncio.gather(*later) == [None, b"X", None]
    assert store.requests == [["x"], ["y", "x", "z"]]


async def test_a_batch_is_bounded_and_the_rest_follows() -> None:
    store = Store({})
    lookups = Lookups(store.fetch, max_batch=2)
    await asyncio.gather(*(lookups.get(str(i)) for i in range(5)))
    assert [len(r) for r in store.requests] == [2, 2, 1]


async def test_a_redis_failure_reaches_every_waiter_of_that_request_and_the_next_works() -> None:
    store = Store({"a": b"A"})
    store.fail = ProviderStateUnavailable("Redis unavailable (cache)")
    lookups = Lookups(store.fetch)
    got = await asyncio.gather(*(lookups.get(d) for d in "ab"), return_exceptions=True)
    assert all(isinstance(x, ProviderStateUnavailable) for x in got)
    store.fail = None
    assert await lookups.get("a") == b"A"


async def test_a_cancelled_waiter_does_not_disturb_the_others() -> None:
    store = Store({"a": b"A", "b": b"B"})
    store.gate.clear()
    lookups = Lookups(store.fetch)
    a = asyncio.ensure_future(lookups.get("a"))
    b = asyncio.ensure_future(lookups.get("b"))
    await asyncio.sleep(0.01)
    a.cancel()
    store.gate.set()
    assert await b == b"B"
    with pytest.raises(asyncio.CancelledError):
        await a


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        Lookups(Store({}).fetch, max_batch=0)
