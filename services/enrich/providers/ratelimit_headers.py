"""What providers' rate-limit headers ask for, in seconds from now (pure).

* ``retry-after``: seconds, or an HTTP-date;  ``retry-after-ms``: milliseconds.
* OpenAI: ``x-ratelimit-remaining-<dim>`` / ``x-ratelimit-reset-<dim>`` with Go
  durations (``1s``, ``6m0s``, ``20ms``, ``1h2m3.5s``).
* Anthropic: ``anthropic-ratelimit-<dim>-remaining`` / ``-reset`` with RFC 3339 times.

A reset applies when its dimension has nothing remaining (or does not say).
The reset headers say when a dimension is back to its full limit; when the
response also names that limit (``x-ratelimit-limit-<dim>``,
``anthropic-ratelimit-<dim>-limit``), the wait is only until one request's
worth is back: ``reset * need / limit``, where ``need`` is 1 for a requests
dimension and the request's tokens for a tokens dimension (when known; the
whole reset otherwise). A provider with a 3 requests/min limit that says
``reset 57s`` is asked again after 19 s, not 57. A provider whose window
refills all at once answers that early request with a 429, whose own wait
then applies: never less than one request's worth, sometimes more.
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


def _resets(
    headers: Mapping[str, str], now: float, tokens: int | None
) -> Iterator[tuple[str | None, float]]:
    """(remaining header value, wait) for every dimension that names a reset.

    The wait is until one request's worth is back where the limit is named
    (see the module docstring), else the whole reset.
    """
    for name, value in headers.items():
        if m := _OPENAI.fullmatch(name):
            dim = m.group(1)
            remaining = headers.get(f"x-ratelimit-remaining-{dim}")
            limit = headers.get(f"x-ratelimit-limit-{dim}")
            wait = parse_duration(value)
        elif m := _ANTHROPIC.fullmatch(name):
            dim = m.group(1)
            remaining = headers.get(f"anthropic-ratelimit-{dim}-remaining")
            limit = headers.get(f"anthropic-ratelimit-{dim}-limit")
            wait = seconds_until(value, now)
        else:
            continue
        if wait is not None:
            yield remaining, one_request_wait(wait, limit, 1 if dim == "requests" else tokens)


def one_request_wait(reset_s: float, limit: str | None, need: int | None) -> float:
    """Of a dimension that is full again in ``reset_s``: the wait until ``need`` is back.

    The whole reset when the limit or the need is not known (or not a positive
    number); never more than the whole reset.
    """
    if need is None or limit is None:
        return reset_s
    try:
        cap = float(limit.strip())
    except ValueError:
        return reset_s
    if not cap > 0 or math.isinf(cap):
        return reset_s
    return reset_s * min(1.0, max(need, 1) / cap)


def _exhausted(remaining: str | None) -> bool:
    return remaining is not None and remaining.strip() in ("0", "0.0")


def retry_after_from_headers(
    headers: Mapping[str, str], now: float, tokens: int | None = None
) -> float | None:
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
    waits += [wait for remaining, wait in _resets(headers, now, tokens) if remaining is None or _exhausted(remaining)]  # fmt: skip
    return max(waits) if waits else None


def cooldown_from_headers(
    headers: Mapping[str, str], now: float, tokens: int | None = None
) -> float | None:
    """After a success: the wait until a dimension with nothing remaining has one request's
    worth back (``tokens``: what the next request needs of a tokens dimension, if known),
    else ``None``."""
    lower = {k.lower(): v for k, v in headers.items()}
    waits = [wait for remaining, wait in _resets(lower, now, tokens) if _exhausted(remaining)]
    return max(waits) if waits else None


def hint_from_message(message: str) -> float | None:
    """``Please try again in 1.5s`` / ``Please retry after 6 seconds`` in an error message."""
    for pattern in _HINTS:
        if m := pattern.search(message):
            return parse_duration(m.group(1))
    return None
