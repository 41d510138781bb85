"""Lag gauges, read from the sampler's latest report at scrape time.

==============================================================  ===================================
``sluice_lag_records{group,topic,partition}``                   offsets between committed and end
``sluice_lag_seconds{group,topic,partition}``                   age of the oldest unconsumed record
``sluice_lag_status{group,topic,partition,status}``             1 for the partition's status, 0 for
                                                                each other status (one-hot)
``sluice_lag_sampled_at_seconds``                               unix time of the last good sample
==============================================================  ===================================

A partition without a committed offset has no records/seconds series (its
status is ``no_commits``); a partition whose oldest record was not read in
time has no seconds series. One-hot status series let an alert rule select a
state by label (``sluice_lag_status{status="stalled"} == 1``) and ``for:``
work across samples. The figures are those of the last good sample: compare
``sluice_lag_sampled_at_seconds`` with ``time()`` to alert on a sampler that
cannot read the broker.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.admin.lag.models import LagReport
from services.admin.lag.status import Status

LABELS = ["group", "topic", "partition"]


class LagCollector(Collector):
    """Register with a ``CollectorRegistry``: ``registry.register(LagCollector(sampler.latest))``."""

    def __init__(self, latest: Callable[[], LagReport | None]) -> None:
        self.latest = latest

    def collect(self) -> Iterator[Metric]:
        records = GaugeMetricFamily(
            "sluice_lag_records",
            "Offsets between the group's committed offset and the end",
            labels=LABELS,
        )
        seconds = GaugeMetricFamily(
            "sluice_lag_seconds",
            "Age of the oldest record the group has not consumed",
            labels=LABELS,
        )
        status = GaugeMetricFamily(
            "sluice_lag_status", "1 for the partition's lag status, 0 for the others",
            labels=[*LABELS, "status"])  # fmt: skip
        sampled = GaugeMetricFamily(
            "sluice_lag_sampled_at_seconds", "Unix time of the last successful lag sample"
        )
        report = self.latest()
        if report is not None and report.sampled_at is not None:
            sampled.add_metric([], report.sampled_at)
        for g in report.groups if report is not None else ():
            for p in g.partitions:
                labels = [g.group, p.topic, str(p.partition)]
                if p.lag_records is not None:
                    records.add_metric(labels, p.lag_records)
                if p.lag_seconds is not None:
                    seconds.add_metric(labels, p.lag_seconds)
                for s in Status:
                    status.add_metric([*labels, s.value], 1.0 if s is p.status else 0.0)
        yield from (records, seconds, status, sampled)
