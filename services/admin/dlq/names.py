"""The DLQs the admin shows, by name (pure).

``timeout``, ``error`` and ``poison`` are ``P.dlq.<name>``; ``parked`` is
``P.parked``, read-only: its records drain back to work by themselves when
their provider recovers, so it is browsed but never replayed.
"""

from __future__ import annotations

from shared.topics import Topics

REPLAYABLE = ("timeout", "error", "poison")
READ_ONLY = ("parked",)
NAMES = (*REPLAYABLE, *READ_ONLY)


def topic_of(topics: Topics, name: str) -> str | None:
    """The topic of DLQ ``name``; ``None`` for a name that is not one."""
    if name in REPLAYABLE:
        return topics.dlq(name)
    return topics.parked if name in READ_ONLY else None


def unknown(name: str) -> str:
    return f"unknown DLQ {name!r}; known: {', '.join(NAMES)}"
