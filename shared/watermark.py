"""Committable watermarks for out-of-order completion (pure).

Records of one partition finish in any order; the offset that may be
committed is the one just past the longest prefix of finished records.
A unit may stand for a whole run of offsets (``track(p, last)`` covers
everything up to ``last`` that was read after the previous unit).
"""

from __future__ import annotations

import heapq

from shared.kafka.message import TP


class _Partition:
    __slots__ = ("heap", "last", "safe", "unfinished")

    def __init__(self) -> None:
        self.heap: list[int] = []  # tracked offsets not yet below the watermark
        self.unfinished: set[int] = set()
        self.last = -1  # highest offset ever tracked
        self.safe: int | None = None  # next offset to commit


class Watermarks:
    """Per-partition tracker of in-flight offsets."""

    def __init__(self) -> None:
        self._parts: dict[TP, _Partition] = {}

    def track(self, partition: TP, offset: int) -> None:
        """Offsets must be tracked in increasing order per partition."""
        part = self._parts.setdefault(partition, _Partition())
        if offset <= part.last:
            raise ValueError(f"offset {offset} of {partition!r} is not after {part.last}")
        part.last = offset
        heapq.heappush(part.heap, offset)
        part.unfinished.add(offset)

    def taken(self, partition: TP, offset: int) -> bool:
        """Whether ``offset`` is not after the highest offset tracked for ``partition``
        (since it was last forgotten)."""
        part = self._parts.get(partition)
        return part is not None and offset <= part.last

    def finish(self, partition: TP, offset: int) -> None:
        part = self._parts.get(partition)
        if part is None or offset not in part.unfinished:
            raise ValueError(f"offset {offset} of {partition!r} is not in flight")
        part.unfinished.discard(offset)
        while part.heap and part.heap[0] not in part.unfinished:
            part.safe = heapq.heappop(part.heap) + 1

    def committable(self, partition: TP) -> int | None:
        """The offset to commit (one past the finished prefix), if any."""
        part = self._parts.get(partition)
        return None if part is None else part.safe

    def in_flight(self, partition: TP | None = None) -> int:
        if partition is not None:
            part = self._parts.get(partition)
            return 0 if part is None else len(part.unfinished)
        return sum(len(p.unfinished) for p in self._parts.values())

    def forget(self, partition: TP) -> None:
        """Drop a partition (revoked); unfinished offsets stay uncommitted."""
        self._parts.pop(partition, None)

    def partitions(self) -> list[TP]:
        return list(self._parts)
