"""The lag sampler: one reading every interval, a window per partition, a status each.

:class:`Windows` is the pure part: it keeps each partition's samples over the
window (:func:`~services.admin.lag.status.in_window`) and turns a reading into
the report's groups. :class:`LagSampler` runs it in a background thread (a
sample is blocking broker I/O, each call bounded), keeps the latest
:class:`~services.admin.lag.models.LagReport` for ``GET /v1/lag`` and the
gauges, and stops cleanly: ``stop()`` wakes the thread, waits for the sample
in progress, then closes the reader.

A failed sample (a :class:`~shared.errors.BrokerError`, say) keeps the last
good groups and statuses and sets the report's ``error``; the next interval
tries again. ``sampled_at`` tells how old the figures are.
"""

from __future__ import annotations

import logging
import threading
from typing import Protocol

from services.admin.lag.groups import GroupSpec
from services.admin.lag.models import GroupLag, LagReport, PartitionLag
from services.admin.lag.reader import PartitionReading, Reading
from services.admin.lag.status import Sample, evaluate, in_window
from shared.errors import SluiceError

log = logging.getLogger(__name__)

Key = tuple[str, str, int]  # group, topic, partition


class ReadsLag(Protocol):
    groups: tuple[GroupSpec, ...]

    def read(self) -> Reading: ...

    def close(self) -> None: ...


class Windows:
    """Samples per (group, topic, partition) over ``window_s`` seconds (pure)."""

    def __init__(self, window_s: float) -> None:
        self.window_s = window_s
        self._samples: dict[Key, list[Sample]] = {}

    def observe(self, reading: Reading) -> tuple[GroupLag, ...]:
        """Add ``reading``'s samples; the groups with each partition's status at ``reading.at``.

        A partition missing from ``reading`` (its topic was deleted) is forgotten.
        """
        now = reading.at
        kept: dict[Key, list[Sample]] = {}
        groups = []
        for g in reading.groups:
            parts = []
            for p in g.partitions:
                key = (g.spec.name, p.topic, p.partition)
                sample = Sample(now, p.committed, p.end, p.owned, p.drained)
                window = in_window([*self._samples.get(key, ()), sample], now, self.window_s)
                kept[key] = window
                parts.append(PartitionLag(
                    topic=p.topic, partition=p.partition, committed=p.committed, end=p.end,
                    lag_records=sample.lag, lag_seconds=_age(sample, p, now),
                    status=evaluate(window, now, self.window_s)))  # fmt: skip
            groups.append(GroupLag(group=g.spec.name, stage=g.spec.stage, state=g.state,
                                   missing_topics=g.missing_topics, partitions=tuple(parts)))  # fmt: skip
        self._samples = kept
        return tuple(groups)


def _age(sample: Sample, p: PartitionReading, now: float) -> float | None:
    """Seconds since the oldest unconsumed record was written; 0 without lag."""
    if sample.lag is None:
        return None
    if sample.lag == 0:
        return 0.0
    return None if p.oldest_ts is None else max(0.0, now - p.oldest_ts)


class LagSampler:
    """Samples every ``interval_s`` in a thread (``start``/``stop``), or on demand (``sample``)."""

    def __init__(self, reader: ReadsLag, interval_s: float, window_s: float) -> None:
        self.reader = reader
        self.interval_s = interval_s
        self.windows = Windows(window_s)
        self._report: LagReport | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def group_names(self) -> tuple[str, ...]:
        return tuple(g.name for g in self.reader.groups)

    def latest(self) -> LagReport | None:
        """The report of the latest sample (None before the first one)."""
        return self._report

    def sample(self) -> LagReport:
        """Read once, evaluate, publish; a failure is kept in the report's ``error``."""
        last = self._report
        try:
            reading = self.reader.read()
        except SluiceError as exc:
            log.warning("lag sample failed: %s", exc)
            error = str(exc)
        except Exception as exc:  # the thread must outlive a bug in one sample
            log.exception("lag sample failed")
            error = f"{type(exc).__name__}: {exc}"
        else:
            report = self._made(reading.at, None, self.windows.observe(reading))
            self._report = report
            return report
        report = self._made(last.sampled_at if last else None, error, last.groups if last else ())
        self._report = report
        return report

    def _made(self, at: float | None, error: str | None, groups: tuple[GroupLag, ...]) -> LagReport:
        return LagReport(sampled_at=at, interval_s=self.interval_s,
                         window_s=self.windows.window_s, error=error, groups=groups)  # fmt: skip

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the lag sampler is already running")
        self._thread = threading.Thread(target=self._run, name="lag-sampler", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval_s)

    def stop(self, timeout_s: float = 60.0) -> None:
        """Stop sampling (the sample in progress finishes) and close the reader."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout_s)
            if thread.is_alive():
                log.warning(
                    "lag sampler still in a sample after %.0fs; reader left open", timeout_s
                )
                return
        self.reader.close()
