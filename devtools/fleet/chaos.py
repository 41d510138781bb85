"""Chaos for a running fleet: SIGKILLs, a broker restart, a Redis restart, a provider outage.

:func:`plan` is pure (a schedule from a seed); :class:`Chaos` carries it out
in a thread against a :class:`~devtools.fleet.fleet.Fleet` and the local
stack, logging every action so a failing run shows what happened when.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from devtools.fleet.fleet import Fleet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Action:
    at_s: float  # seconds after the start
    kind: str  # "kill", "broker_restart", "redis_restart", "outage"
    target: str = ""  # the service for "kill"


def plan(services: Sequence[str], kills_each: int, every_s: float, seed: int,
         start_s: float = 3.0, outage_at_s: float | None = 12.0, broker_at: float = 0.4,
         redis_at: float = 0.7) -> list[Action]:  # fmt: skip
    """Every service killed ``kills_each`` times in a shuffled order, one kill every
    ``every_s``; the broker and Redis restarted once each, at fractions ``broker_at``
    and ``redis_at`` of the kill period (between kills); an optional outage."""
    rnd = random.Random(seed)
    left = dict.fromkeys(services, kills_each)
    victims: list[str] = []
    while any(left.values()):
        # The most-owed service first (ties at random), never the one just killed:
        # a restarted service must get the chance to do some work.
        cands = [s for s in services if left[s] and (not victims or s != victims[-1])]
        if not cands:  # only the last victim is owed kills: nothing else can go between
            cands = [victims[-1]]
        most = max(left[s] for s in cands)
        pick = rnd.choice([s for s in cands if left[s] == most])
        left[pick] -= 1
        victims.append(pick)
    actions = [Action(start_s + i * every_s, "kill", v) for i, v in enumerate(victims)]
    span = len(victims) * every_s
    actions.append(Action(start_s + span * broker_at + every_s / 2, "broker_restart"))
    actions.append(Action(start_s + span * redis_at + every_s / 2, "redis_restart"))
    if outage_at_s is not None:
        actions.append(Action(outage_at_s, "outage"))
    return sorted(actions, key=lambda a: a.at_s)


class Chaos:
    """Carries out a plan in a background thread; :meth:`join` re-raises its error."""

    def __init__(
        self,
        fleet: Fleet,
        actions: list[Action],
        restart_broker: Callable[[], None],
        restart_redis: Callable[[], None],
        outage_s: float = 10.0,
        down_s: float = 1.0,
    ) -> None:
        self.fleet = fleet
        self.actions = actions
        self.restart_broker = restart_broker
        self.restart_redis = restart_redis
        self.outage_s = outage_s
        self.down_s = down_s
        self.done: list[tuple[float, Action]] = []
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout_s: float) -> None:
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError("chaos plan still running")
        if self.error is not None:
            raise self.error

    def halt(self, timeout_s: float = 120.0) -> None:
        """Stop after the action under way (a broker restart finishes first) and wait for it,
        so nothing is started behind the caller's back once this returns."""
        self.stop.set()
        if self._thread.ident is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        t0 = time.monotonic()
        try:
            for a in self.actions:
                if self.stop.wait(max(0.0, t0 + a.at_s - time.monotonic())):
                    return
                self._do(a)
                if self.stop.is_set():
                    return  # halted inside the action: it is not done
                self.done.append((time.monotonic() - t0, a))
        except BaseException as exc:  # handed to join()
            self.error = exc

    def _do(self, a: Action) -> None:
        log.warning("chaos: %s %s", a.kind, a.target)
        if a.kind == "kill":
            self.fleet.kill(a.target)
            if self.stop.wait(self.down_s):
                return  # halted: the caller is stopping the fleet, nothing is restarted under it
            self.fleet.start_service(a.target)
        elif a.kind == "broker_restart":
            self.restart_broker()
        elif a.kind == "redis_restart":
            self.restart_redis()
        elif a.kind == "outage":
            self.fleet.outage(self.outage_s)
        else:
            raise ValueError(f"unknown chaos action {a.kind!r}")
