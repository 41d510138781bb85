"""The two lanes of a worker's queues (call slots and the bucket gate).

A record a DLQ replay sent back (``sluice.replay-id``) waits in the
``REPLAYED`` lane; every other record in ``FRESH``. A queue serves its fresh
lane first and, within a lane, in arrival order: a replay fills the provider's
spare rate without putting fresh records behind it. Nor do they wait behind
it in Kafka: a worker does not count replayed records toward its
``max_in_flight`` (:class:`~shared.kafka.concurrent.Dispatcher`'s
``gives_way``), so it goes on reading the fresh records behind them.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import Generic, TypeVar

from shared import headers as h

FRESH = 0
REPLAYED = 1
LANES = (FRESH, REPLAYED)


def replayed(headers: h.HeaderList) -> bool:
    """A record a DLQ replay sent back (pure)."""
    return h.get(headers, h.REPLAY_ID) is not None


def lane_of(headers: h.HeaderList) -> int:
    return REPLAYED if replayed(headers) else FRESH


T = TypeVar("T")


class Lanes(Generic[T]):
    """One FIFO per lane; iteration goes fresh first, then replayed."""

    def __init__(self) -> None:
        self._queues: tuple[deque[T], ...] = tuple(deque() for _ in LANES)

    def append(self, item: T, lane: int = FRESH) -> None:
        self._queues[lane].append(item)

    def queues(self) -> tuple[deque[T], ...]:
        return self._queues

    def __iter__(self) -> Iterator[T]:
        for q in self._queues:
            yield from q

    def __bool__(self) -> bool:
        return any(self._queues)

    def remove(self, item: T) -> None:
        for q in self._queues:
            if item in q:
                q.remove(item)
                return
        raise ValueError("not queued")

    def clear(self) -> None:
        for q in self._queues:
            q.clear()
