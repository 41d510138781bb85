"""How a stage's process starts: ``sluice ingest|enrich|router|sequencer`` after their flags.

every setting checked (Kafka passthrough properties) before any wait
/metrics served
Redis awaited, bounded by SLUICE_STARTUP_TIMEOUT_S, and watched (enrich, router)
the stage's body runs until SIGTERM/SIGINT, within SLUICE_SHUTDOWN_GRACE_S
a body whose consumer was fenced after its own session timeout starts over (SessionFenced),
at most RESTARTS times in RESTART_WINDOW_S; more means another process holds its id
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from prometheus_client import Counter

from shared.errors import SessionFenced
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_props
from shared.metrics import serve
from shared.settings import CommonSettings

log = logging.getLogger(__name__)

RESTARTS = 3
RESTART_WINDOW_S = 600.0
STAGE_RESTARTS = Counter(
    "sluice_stage_restarts",
    "Times the stage started over in its process (its consumer was fenced after its own "
    "session timed out, e.g. while the broker was away)",
)


@dataclass
class RestartBudget:
    """At most ``limit`` restarts within any ``window_s`` (pure: the caller gives the time)."""

    limit: int = RESTARTS
    window_s: float = RESTART_WINDOW_S
    _at: deque[float] = field(default_factory=deque)

    def allow(self, now: float) -> bool:
        while self._at and now - self._at[0] >= self.window_s:
            self._at.popleft()
        if len(self._at) >= self.limit:
            return False
        self._at.append(now)
        return True


def run_stage(
    name: str, settings: CommonSettings, body: Callable[[StopFlag], None], *, redis: bool
) -> int:
    """Run ``body`` as the process of stage ``name``; its exit status (0) when it returns.

    The stop flag is installed first: SIGTERM during the wait for Redis ends the
    process with 0 (nothing has started), not with the signal's status."""
    stop = StopFlag(settings.shutdown_grace_s).install(f"sluice {name}")
    check_props(settings.kafka_props)
    watching: AbstractContextManager[object] = nullcontext()
    if redis:
        from shared.redis.watch import RedisWatch  # only the stages that keep state in Redis

        watching = RedisWatch(settings.redis_url.get_secret_value()).running(
            settings.startup_timeout_s, stop
        )
    serve(settings.metrics_port, settings.metrics_host)
    with watching:
        if not stop.is_set():
            run_body(name, body, stop, RestartBudget(), time.monotonic)
    return 0


def run_body(
    name: str,
    body: Callable[[StopFlag], None],
    stop: StopFlag,
    budget: RestartBudget,
    clock: Callable[[], float],
) -> None:
    """``body`` until it returns; again after a :class:`SessionFenced` while the budget allows."""
    while True:
        try:
            body(stop)
            return
        except SessionFenced as exc:
            if stop.is_set():
                raise
            if not budget.allow(clock()):
                raise SessionFenced(
                    f"{exc}; fenced {budget.limit + 1} times within {budget.window_s:g}s: "
                    "does another process use the same group.instance.id?"
                ) from exc
            STAGE_RESTARTS.inc()
            log.warning("%s: %s: starting the stage over", name, exc)
