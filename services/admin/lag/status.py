"""Lag status of one partition over a sliding window of samples (pure; no I/O, no clock).

A sample is what the sampler read at time ``at`` (seconds): the group's
committed offset (``None`` before its first commit), the partition's end
offset (the last stable offset for ``read_committed`` groups), whether a live
member of the group holds the partition, and whether the records between the
two offsets are all unconsumable (transaction markers, aborted records: a
``read_committed`` consumer that has read everything commits the offset of
the last commit marker, one short of the end).

The window is the last ``window_s`` seconds before ``now``, plus the newest
sample at or before its start (the anchor), so "unchanged for a whole window"
can be told from "not sampled long enough". The window is *full* when that
anchor exists. Samples before the group's last missing commit are not judged.

States, first match wins (lag = records between the committed offset and the
end; 0 when only markers lie between):

=============  =======================================================================
no_commits     the group has no committed offset for the partition (yet). It says
               nothing about health: an empty partition of ``P.parked`` stays so.
ok             the lag is zero now.
stopped        lag now, the committed offset has not moved for the whole (full)
               window, and no live member of the group holds the partition: nothing
               is consuming it (the consumer exited, crashed, or was scaled away).
ok             the lag was zero at some sample of the window (it caught up lately).
unknown        the window is not yet full (the sampler started, or the first commit
               was recent) and the lag was never zero in it: not enough to judge.
stalled        the lag was above zero throughout the (full) window and the committed
               offset did not move, while a live member holds the partition: the
               consumer is there but not getting past a record (enrich with a paused
               provider and no fallback, a hung poll loop).
growing        the committed offset moved, but the lag never fell from one sample to
               the next and is higher at the end of the window than at its start:
               the consumer works, slower than the producers.
ok             otherwise: the group commits and the lag is not rising throughout
               (keeping pace or catching up).
=============  =======================================================================

Kafka does not tell when an unchanged offset was last committed (the stages
commit only when their offset moves), so "the consumer is alive" is read from
the group's membership, not from commit times as Burrow does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from itertools import pairwise


class Status(StrEnum):
    OK = "ok"
    STALLED = "stalled"
    STOPPED = "stopped"
    GROWING = "growing"
    NO_COMMITS = "no_commits"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Sample:
    at: float  # seconds, the sampler's clock
    committed: int | None  # the group's committed offset; None: never committed
    end: int  # end offset: last stable offset (read_committed) or high watermark
    owned: bool  # a live member of the group holds the partition
    drained: bool = False  # nothing consumable between committed and end (markers only)

    @property
    def lag(self) -> int | None:
        """Records between the committed offset and the end; None without a commit."""
        if self.committed is None:
            return None
        if self.drained:
            return 0
        return max(0, self.end - self.committed)


def in_window(samples: Sequence[Sample], now: float, window_s: float) -> list[Sample]:
    """The samples newer than ``now - window_s`` and the newest one at or before it.

    ``samples`` are in time order. Evaluating the result gives the same status
    as evaluating ``samples``: the sampler keeps only this much.
    """
    start = now - window_s
    anchor = None
    for i, s in enumerate(samples):
        if s.at <= start:
            anchor = i
        else:
            break
    return list(samples[anchor or 0 :])


def evaluate(samples: Sequence[Sample], now: float, window_s: float) -> Status:
    """The status of one partition at ``now`` from its samples (in time order; none: unknown)."""
    if not samples:
        return Status.UNKNOWN
    if samples[-1].lag is None:
        return Status.NO_COMMITS
    latest = samples[-1]
    if latest.lag == 0:
        return Status.OK
    span = _judged(in_window(samples, now, window_s))
    full = span[0].at <= now - window_s
    unmoved = all(s.committed == latest.committed for s in span)
    if full and unmoved and not latest.owned:
        return Status.STOPPED
    lags = [s.lag or 0 for s in span]
    if 0 in lags:
        return Status.OK
    if not full:
        return Status.UNKNOWN
    if unmoved:
        return Status.STALLED
    if lags[-1] > lags[0] and all(b >= a for a, b in pairwise(lags)):
        return Status.GROWING
    return Status.OK


def _judged(window: list[Sample]) -> list[Sample]:
    """The samples after the last one without a commit (the latest has one)."""
    for i in range(len(window) - 1, -1, -1):
        if window[i].committed is None:
            return window[i + 1 :]
    return window
