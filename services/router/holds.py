"""Paused partitions and why (pure bookkeeping; the consumer is driven by the caller).

A partition is held at the offset of its first record that cannot go now: the
caller seeks back to that offset and pauses the partition, so nothing is
skipped and nothing behind it is read. A hold ends at a time (a retry's due
time, the parked drain's next token) or when a provider becomes available.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from shared.kafka.message import TP


@dataclass(frozen=True, slots=True)
class Hold:
    offset: int
    reason: str  # not_due | provider | rate
    until: float | None = None  # epoch seconds
    provider: str | None = None

    def __post_init__(self) -> None:
        if (self.until is None) == (self.provider is None):
            raise ValueError("a hold ends either at a time or when a provider is available")


class Holds:
    """The held partitions of one consumer (a handful: never more than assigned)."""

    def __init__(self) -> None:
        self._held: dict[TP, Hold] = {}

    def add(self, tp: TP, hold: Hold) -> None:
        self._held[tp] = hold

    def __contains__(self, tp: object) -> bool:
        return tp in self._held

    def __len__(self) -> int:
        return len(self._held)

    def get(self, tp: TP) -> Hold | None:
        return self._held.get(tp)

    def due(self, now: float) -> list[TP]:
        """Timed holds that have ended; they are removed."""
        done = [tp for tp, h in self._held.items() if h.until is not None and h.until <= now]
        self.drop(done)
        return done

    def providers(self) -> set[str]:
        return {h.provider for h in self._held.values() if h.provider is not None}

    def waiting_for(self, provider: str) -> list[TP]:
        return [tp for tp, h in self._held.items() if h.provider == provider]

    def next_deadline(self) -> float | None:
        times = [h.until for h in self._held.values() if h.until is not None]
        return min(times) if times else None

    def drop(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._held.pop(tp, None)
