"""When a supervisor starts a stage again after it exited on its own (pure).

A deployment's supervisor (Kubernetes, compose's ``restart:``) starts a
stage again when it exits: the router, for one, exits on purpose when it
cannot finish a transaction in time, and its replacement fences the open
transaction and goes on. ``sluice demo`` does the same with this policy: a
stage is started again after a back-off that doubles from ``first_backoff_s``
up to ``max_backoff_s``; one that exits more than ``max_restarts`` times within
``window_s`` is crash-looping, and the supervisor gives up on it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["RestartPolicy", "Restarts"]


@dataclass(frozen=True)
class RestartPolicy:
    max_restarts: int = 5
    window_s: float = 300.0
    first_backoff_s: float = 1.0
    max_backoff_s: float = 30.0

    def __post_init__(self) -> None:
        if self.max_restarts < 0 or self.window_s <= 0:
            raise ValueError("max_restarts must be >= 0 and window_s > 0")
        if not 0 <= self.first_backoff_s <= self.max_backoff_s:
            raise ValueError("backoffs must satisfy 0 <= first_backoff_s <= max_backoff_s")


@dataclass
class Restarts:
    """Exits seen per stage, and what the policy says about the next one."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    exits: dict[str, list[float]] = field(default_factory=dict)  # stage -> exit times in the window
    total: dict[str, int] = field(default_factory=dict)  # stage -> restarts granted, ever

    def exited(self, name: str, now: float) -> float | None:
        """Note that ``name`` exited at ``now``: when to start it again, or ``None``
        when it exited more than ``max_restarts`` times within ``window_s``."""
        p = self.policy
        recent = [t for t in self.exits.get(name, []) if now - t < p.window_s]
        recent.append(now)
        self.exits[name] = recent
        if len(recent) > p.max_restarts:
            return None
        self.total[name] = self.total.get(name, 0) + 1
        return now + min(p.max_backoff_s, p.first_backoff_s * 2.0 ** (len(recent) - 1))
