"""Is Redis there? A start-up wait, then a watch that says so while it is not.

Enrich and the router need Redis (limits, cooldowns, breaker, pause flags).
At start a service waits for it at most ``SLUICE_STARTUP_TIMEOUT_S``, warning
within seconds, then stops with one line (:class:`~shared.errors.StackError`).
A Redis in cluster mode is refused at start with one line: enrich's scripts touch
several keys of a provider, and the result cache, in one call, which a cluster
refuses unless they share a hash slot. Once started, an outage never stops it:
the stage's own Redis calls wait and retry; this watch only reports, with a
PING every ``interval_s`` on a connection of its own:
``sluice_dependency_up{dependency="redis"}`` is 0 while Redis cannot be reached,
and a warning naming the address (never the password) repeats every
``warn_every_s`` until it answers again.

:class:`Outage` (pure) decides when to warn and when to say it recovered.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.errors import StackError
from shared.kafka.shutdown import StopFlag
from shared.metrics import DEPENDENCY_UP
from shared.redis.address import SETTING, redis_address, scrub

log = logging.getLogger(__name__)

INTERVAL_S = 2.0
WARN_EVERY_S = 5.0
PING_TIMEOUT_S = 2.0


class Change(Enum):
    WARN = "warn"  # down: say so (first failure, then every warn_every_s)
    RECOVERED = "recovered"


@dataclass
class Outage:
    """When to warn about a dependency that does not answer (pure; times in seconds)."""

    warn_every_s: float
    down_since: float | None = None
    last_warned: float | None = None

    def observe(self, ok: bool, now: float) -> Change | None:
        if ok:
            if self.down_since is None:
                return None
            self.down_since = self.last_warned = None
            return Change.RECOVERED
        if self.down_since is None:
            self.down_since = now
        if self.last_warned is None or now - self.last_warned >= self.warn_every_s:
            self.last_warned = now
            return Change.WARN
        return None

    def down_for(self, now: float) -> float:
        return 0.0 if self.down_since is None else now - self.down_since


def cluster_mode_problem(info: Mapping[str, object], address: str) -> str | None:
    """What is wrong with a Redis whose ``INFO cluster`` is ``info`` (pure); None: nothing."""
    if str(info.get("cluster_enabled", 0)) != "1":
        return None
    return (
        f"Redis at {address} ({SETTING}) runs in cluster mode, which sluice does not "
        "support: its scripts touch several keys of a provider (bucket, breaker, cooldown, "
        "pause flag, result cache) in one call. Use a Redis without cluster mode (one "
        "primary; replicas or Sentinel for failover)"
    )


class RedisWatch:
    """PINGs Redis, keeps the gauge and the warnings; :meth:`running` for a service's life."""

    def __init__(
        self,
        url: str,
        *,
        interval_s: float = INTERVAL_S,
        warn_every_s: float = WARN_EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.address = redis_address(url)  # ConfigError on a bad URL, before anything starts
        self._url = url
        self.interval_s = interval_s
        self.clock = clock
        self.outage = Outage(warn_every_s)
        self.last_error = ""
        self._client = redis.Redis.from_url(
            url, socket_timeout=PING_TIMEOUT_S, socket_connect_timeout=PING_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )  # fmt: skip
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def probe(self) -> bool:
        """One PING: update the gauge, warn or report recovery as :class:`Outage` says."""
        try:
            self._client.ping()
            ok = True
        except (redis.RedisError, OSError) as exc:
            ok, self.last_error = False, scrub(str(exc) or type(exc).__name__, self._url)
        DEPENDENCY_UP.labels("redis").set(1 if ok else 0)
        now = self.clock()
        down_for = self.outage.down_for(now)
        change = self.outage.observe(ok, now)
        if change is Change.WARN:
            log.warning("Redis at %s is unavailable (for %.0f s so far): %s; work that needs it waits",
                        self.address, down_for, self.last_error)  # fmt: skip
        elif change is Change.RECOVERED:
            log.info("Redis at %s answers again after %.0f s", self.address, down_for)
        return ok

    def wait_up(self, timeout_s: float, stop: StopFlag | None = None) -> None:
        """Return once Redis answers, or once ``stop`` is set; StackError after ``timeout_s``
        without an answer."""
        deadline = self.clock() + timeout_s
        while not self.probe():
            if stop is not None and stop.is_set():
                return
            left = deadline - self.clock()
            if left <= 0:
                raise StackError(
                    f"Redis at {self.address} ({SETTING}) is unavailable after "
                    f"{timeout_s:g} s (SLUICE_STARTUP_TIMEOUT_S): {self.last_error}"
                )
            if stop is not None:
                stop.wait(min(1.0, left))
            else:
                time.sleep(min(1.0, left))
        self.check_mode()

    def check_mode(self) -> None:
        """StackError for a Redis in cluster mode (:func:`cluster_mode_problem`). A Redis
        that refuses ``INFO`` (an ACL without it) is let through: the scripts' own errors
        would then say what is wrong."""
        try:
            info = self._client.info("cluster")
        except (redis.RedisError, OSError) as exc:
            log.debug("Redis at %s: INFO cluster refused (%s); mode not checked", self.address,
                      scrub(str(exc), self._url))  # fmt: skip
            return
        problem = cluster_mode_problem(info, self.address)
        if problem is not None:
            raise StackError(problem)

    def _watch(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.probe()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._watch, name="redis-watch", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(PING_TIMEOUT_S * 2)
        self._client.close()

    @contextmanager
    def running(
        self, startup_timeout_s: float, stop: StopFlag | None = None
    ) -> Iterator[RedisWatch]:
        """Wait for Redis (bounded, or until ``stop``), then watch it until the block ends."""
        try:
            self.wait_up(startup_timeout_s, stop)
            self.start()
            yield self
        finally:
            self.close()
