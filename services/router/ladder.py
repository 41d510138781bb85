"""The retry ladder: where a failed attempt goes next (pure).

Attempt ``n`` (the attempt that just failed) of a retryable kind climbs to
rung ``n`` while ``n <= len(rungs)`` and is due ``max(rung delay,
provider retry-after)`` from now; past the last rung it dies in
``P.dlq.timeout`` when the last failure was a timeout, else ``P.dlq.error``.
A non-retryable kind dies at once in ``P.dlq.error``. An outage parks the
record without spending an attempt.

A provider retry-after longer than the rung's delay pushes the due time out,
but never past the longest rung's delay: the value comes from a response
header (or, for a record that did not come through ingest, from anyone), and
an hour-long or forged day-long wait must not hold a rung's partition.
So that such a record does not hold up the shorter-delayed records behind it
in its rung's partitions (a partition is a FIFO; the router pauses it at its
first record that is not due), it waits in the first later rung whose delay
covers the retry-after (the last rung if none does). The due time is the same
either way; only the waiting room changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from shared.kinds import FailureKind
from shared.topics import Rung, Topics


class Route(StrEnum):
    RETRY = "retry"
    PARKED = "parked"
    DLQ = "dlq"


@dataclass(frozen=True, slots=True)
class Hop:
    """The next hop of a failed record."""

    route: Route
    topic: str
    label: str  # rung label, "parked", or the DLQ suffix (metrics)
    not_before_ms: int | None = None  # retry only: not forwarded to work earlier


def dlq_suffix(kind: FailureKind) -> str:
    """``timeout`` for timeouts, ``error`` for everything else.

    ``P.dlq.poison`` is for records that never entered the pipeline (ingest);
    a record that reached the router has an identity the sequencer waits on,
    so even a ``poison`` failure dies in ``P.dlq.error`` with its dead outcome.
    """
    return "timeout" if kind.dlq_suffix == "timeout" else "error"


def waiting_rung(rungs: tuple[Rung, ...], index: int, delay_s: float) -> Rung:
    """The rung at ``index``, or the first later one whose delay covers ``delay_s``."""
    for rung in rungs[index:]:
        if rung.delay_s >= delay_s:
            return rung
    return rungs[-1]


def next_hop(
    topics: Topics,
    kind: FailureKind,
    attempt: int,
    now_ms: int,
    retry_after_s: float | None = None,
) -> Hop:
    """Where a record whose attempt ``attempt`` failed with ``kind`` goes next."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, not {attempt}")
    if kind is FailureKind.OUTAGE:
        return Hop(Route.PARKED, topics.parked, "parked")
    rungs = topics.rungs
    if not kind.retryable or attempt > len(rungs):
        suffix = dlq_suffix(kind)
        return Hop(Route.DLQ, topics.dlq(suffix), f"dlq.{suffix}")
    rung = rungs[attempt - 1]
    delay_s = max(rung.delay_s, min(retry_after_s or 0.0, rungs[-1].delay_s))
    room = waiting_rung(rungs, attempt - 1, delay_s)
    return Hop(Route.RETRY, topics.retry(room), room.label, now_ms + round(delay_s * 1000))
