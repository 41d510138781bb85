"""Which fault (if any) a request gets: forced by the caller, or drawn from the mix.

A request forces a fault with the header ``x-fakellm-fault: <name>`` or with
the marker ``[[fault:<name>]]`` in its last user message (the header wins).
A counted marker ``[[fault:<name>:<n>]]`` forces the fault on the first ``n``
requests whose last user message is that text and lets the later ones through
(a record that fails ``n`` times, then succeeds: on a retry or a replay).
Forced faults are deterministic; drawn faults use an injectable
``random.Random`` so a seeded run repeats itself.
"""

from __future__ import annotations

import random
import re
from enum import StrEnum

from services.fakellm.config import FaultMix

FAULT_HEADER = "x-fakellm-fault"
_MARKER = re.compile(r"\[\[fault:([^\]:]*)(?::([^\]]*))?\]\]")


class Fault(StrEnum):
    HANG = "hang"
    HTTP_500 = "http_500"
    HTTP_502 = "http_502"
    HTTP_503 = "http_503"
    HTTP_529 = "http_529"
    ERROR_BODY = "error_body"
    INVALID_JSON = "invalid_json"
    RATE_LIMIT = "rate_limit"
    BAD_REQUEST = "bad_request"
    OUTAGE = "outage"


# Faults that are answered with an HTTP error status of their own.
STATUS_OF: dict[Fault, int] = {
    Fault.HTTP_500: 500,
    Fault.HTTP_502: 502,
    Fault.HTTP_503: 503,
    Fault.HTTP_529: 529,
    Fault.RATE_LIMIT: 429,
    Fault.BAD_REQUEST: 400,
    Fault.OUTAGE: 503,
}


class UnknownFault(ValueError):
    """A request asked for a fault name that does not exist."""


def parse_fault(name: str) -> Fault:
    try:
        return Fault(name.strip().lower())
    except ValueError:
        known = ", ".join(f.value for f in Fault)
        raise UnknownFault(f"unknown fault {name!r}; known faults: {known}") from None


def marker_times(text: str) -> int | None:
    """``n`` of a counted marker ``[[fault:<name>:<n>]]`` in ``text``; None without one.

    Raises :class:`UnknownFault` when ``n`` is not a whole number from 0.
    """
    match = _MARKER.search(text)
    if match is None or match.group(2) is None:
        return None
    times = match.group(2).strip()
    if not times.isdigit():
        raise UnknownFault(f"fault marker {match.group(0)!r}: the count must be a whole number")
    return int(times)


def forced_fault(header: str | None, text: str, earlier: int = 0) -> Fault | None:
    """The fault the request forces, from the header or else a marker in ``text``.

    ``earlier``: how many requests with this text came before (counted markers only).
    Raises :class:`UnknownFault` for a name that is not a :class:`Fault`.
    """
    if header:
        return parse_fault(header)
    match = _MARKER.search(text)
    if match is None:
        return None
    fault = parse_fault(match.group(1))
    times = marker_times(text)
    return fault if times is None or earlier < times else None


def draw_fault(mix: FaultMix, rng: random.Random) -> Fault | None:
    """One draw from the mix: a fault with its probability, else ``None``.

    Always consumes exactly one random number, so runs with a seed repeat.
    """
    r = rng.random()
    cumulative = 0.0
    for name, p in mix.probabilities().items():
        cumulative += p
        if r < cumulative:
            return Fault(name)
    return None
