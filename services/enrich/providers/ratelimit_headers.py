"""What providers' rate-limit headers ask for, in seconds from now (pure).

* ``retry-after``: seconds, or an HTTP-date;  ``retry-after-ms``: milliseconds.
* OpenAI: ``x-ratelimit-remaining-<dim>`` / ``x-ratelimit-reset-<dim>`` with Go
  durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``).
* Anthropic: ``anthropic-ratelimit-<dim>-remaining`` / ``-reset`` with RFC 3339 times.

A reset applies when its dimension has nothing remaining (or does not say).
The longest applicable wait wins; every wait is capped at a day.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

MAX_COOLDOWN_S = 86_400.0

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_GO_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|us|µs|ns|h|m|s)")
_OPENAI = re.compile(r"x-ratelimit-reset-(.+)")
_ANTHROPIC = re.compile(r"anthropic-ratelimit-(.+)-reset")
_HINTS = (
    re.compile(r"try again in ((?:(?:\d+(?:\.\d*)?|\.\d+)(?:ms|us|µs|ns|h|m|s))+)", re.I),
    re.compile(r"retry after (\d+(?:\.\d+)?) seconds?", re.I),
)


def _bounded(seconds: float) -> float | None:
    if math.isnan(seconds):
        return None
    return min(max(seconds, 0.0), MAX_COOLDOWN_S)


def parse_duration(text: str) -> float | None:
    """A Go duration (``6m0s``) or a plain number of seconds; ``None`` if neither."""
    text = text.strip()
    try:
        return _bounded(float(text))
    except ValueError:
        pass
    parts = _GO_PART.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    return _bounded(sum(float(n) * _UNITS[u] for n, u in parts))


def seconds_until(text: str, now: float) -> float | None:
    """An RFC 3339 time or an HTTP-date, as seconds from ``now`` (0 if past)."""
    text = text.strip()
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        try:
            when = parsedate_to_datetime(text)
        except (TypeError, ValueError, IndexError):
            return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return _bounded(when.timestamp() - now)


def parse_retry_after(text: str, now: float) -> float | None:
    """``retry-after``: delay in seconds, or an HTTP-date."""
    seconds = parse_duration(text) if re.fullmatch(r"\s*\d+(\.\d+)?\s*", text) else None
    return seconds if seconds is not None else seconds_until(text, now)


def _resets(headers: Mapping[str, str], now: float) -> Iterator[tuple[str | None, float]]:
    """(remaining header value, reset seconds) for every dimension that names a reset."""
    for name, value in headers.items():
        if m := _OPENAI.fullmatch(name):
            remaining = headers.get(f"x-ratelimit-remaining-{m.group(1)}")
            wait = parse_duration(value)
        elif m := _ANTHROPIC.fullmatch(name):
            remaining = headers.get(f"anthropic-ratelimit-{m.group(1)}-remaining")
            wait = seconds_until(value, now)
        else:
            continue
        if wait is not None:
            yield remaining, wait


def _exhausted(remaining: str | None) -> bool:
    return remaining is not None and remaining.strip() in ("0", "0.0")


def retry_after_from_headers(headers: Mapping[str, str], now: float) -> float | None:
    """How long a refused request should wait: the longest applicable header (lower-case names).

    ``retry-after-ms`` and ``retry-after`` say the same thing; the first is exact
    where the second is rounded up to whole seconds, so it wins when both are sent.
    """
    waits: list[float] = []
    exact = parse_duration(v) if (v := headers.get("retry-after-ms")) is not None else None
    if exact is not None:
        waits.append(exact / 1000)
    elif (v := headers.get("retry-after")) is not None and (s := parse_retry_after(v, now)) is not None:  # fmt: skip
        waits.append(s)
    waits += [wait for remaining, wait in _resets(headers, now) if remaining is None or _exhausted(remaining)]  # fmt: skip
    return max(waits) if waits else None


def cooldown_from_headers(headers: Mapping[str, str], now: float) -> float | None:
    """After a success: the wait until a dimension with nothing remaining resets, else ``None``."""
    lower = {k.lower(): v for k, v in headers.items()}
    waits = [wait for remaining, wait in _resets(lower, now) if _exhausted(remaining)]
    return max(waits) if waits else None


def hint_from_message(message: str) -> float | None:
    """``Please try again in 1.5s`` / ``Please retry after 6 seconds`` in an error message."""
    for pattern in _HINTS:
        if m := pattern.search(message):
            return parse_duration(m.group(1))
    return None
