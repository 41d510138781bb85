"""Per-worker adaptive concurrency (AIMD), under the fleet-wide buckets (pure).

Each success raises the limit by ``increase`` (a fast climb back: the
fleet-wide buckets, not this limit, keep the fleet under the provider's
rate); a rate-limit or overload signal halves it, at most once per
``cooldown_s`` so one burst of 429s counts as one signal.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Aimd:
    max_limit: int
    min_limit: int = 1
    increase: float = 1.0
    decrease: float = 0.5
    cooldown_s: float = 1.0
    limit: float = 0.0
    _last_cut: float = -1e18

    def __post_init__(self) -> None:
        if self.limit <= 0:
            self.limit = float(self.max_limit)

    @property
    def current(self) -> int:
        return max(self.min_limit, int(self.limit))

    def on_success(self) -> None:
        self.limit = min(float(self.max_limit), self.limit + self.increase)

    def on_pushback(self, now: float) -> None:
        """The provider said slow down (429 / 529 / overloaded)."""
        if now - self._last_cut < self.cooldown_s:
            return
        self._last_cut = now
        self.limit = max(float(self.min_limit), self.limit * self.decrease)
