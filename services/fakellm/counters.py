"""What the fake saw: request counts, exact sliding-window maxima, repeats, faults.

The window maxima are exact: the busiest window of length ``w`` always ends at
some request, so keeping the timestamps of the last ``w`` seconds in a deque
and measuring its length after each arrival finds it.

Requests whose canonical body (model, messages and every parameter, keys
sorted) was seen before are counted as repeats; repeats of a request that
already got a successful (billed) answer are counted separately, so tests can
show the fleet never paid twice for the same answer.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

Clock = Callable[[], float]


def request_hash(route: str, body: object) -> str:
    """Content hash of a request: route plus its JSON body in canonical form."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{route}\n{canonical}".encode()).hexdigest()


class WindowMax:
    """Count of events in the last ``seconds`` and the most ever seen in one window."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.max = 0
        self._times: deque[float] = deque()

    def _expire(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.seconds:
            self._times.popleft()

    def add(self, now: float) -> None:
        self._times.append(now)
        self._expire(now)
        self.max = max(self.max, len(self._times))

    def current(self, now: float) -> int:
        self._expire(now)
        return len(self._times)


class Counters:
    """All counters of one fake; :meth:`snapshot` is what ``/_control/stats`` shows."""

    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self.reset()

    def reset(self) -> None:
        self.requests_total = 0
        self.model_lists = 0  # GET /v1/models: not completions, so not in requests_total
        self.last_request_at: float | None = None  # clock time of the latest arrival
        self.by_route: Counter[str] = Counter()
        self.by_status: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.win_1s = WindowMax(1.0)
        self.win_60s = WindowMax(60.0)
        self.repeated = 0
        self.repeated_paid = 0
        self.rate_limited = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self._seen: set[str] = set()
        self._paid: set[str] = set()

    def request(self, route: str, digest: str) -> None:
        """A request arrived (whatever its answer will be)."""
        now = self._clock()
        self.requests_total += 1
        self.last_request_at = now
        self.by_route[route] += 1
        self.win_1s.add(now)
        self.win_60s.add(now)
        if digest in self._seen:
            self.repeated += 1
        self._seen.add(digest)

    def fault(self, name: str) -> None:
        self.faults[name] += 1

    def status(self, code: int) -> None:
        self.by_status[code] += 1
        if code == 429:
            self.rate_limited += 1

    def success(self, digest: str, tokens_in: int, tokens_out: int) -> None:
        """A completion was answered (and would have been billed)."""
        if digest in self._paid:
            self.repeated_paid += 1
        self._paid.add(digest)
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out

    def snapshot(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "requests_total": self.requests_total,
            "model_lists": self.model_lists,
            "last_request_at": self.last_request_at,
            "requests_by_route": dict(self.by_route),
            "responses_by_status": {str(k): v for k, v in sorted(self.by_status.items())},
            "max_requests_1s": self.win_1s.max,
            "max_requests_60s": self.win_60s.max,
            "requests_last_1s": self.win_1s.current(now),
            "requests_last_60s": self.win_60s.current(now),
            "repeated_requests": self.repeated,
            "repeated_paid_requests": self.repeated_paid,
            "rate_limited": self.rate_limited,
            "faults": dict(self.faults),
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
        }
