"""``sluice_enrich_useful_workers{pipeline}``: kept current while the admin app runs.

=======================================================  ===========================================
``sluice_enrich_useful_workers{pipeline}``               enrich workers useful now
                                                         (:mod:`services.admin.autoscale.model`)
``sluice_enrich_useful_workers_limited_by{pipeline,      1 for the bound that decided it, 0 for the
limit}``                                                 others (lag, rate, partitions, minimum,
                                                         paused, unobserved)
=======================================================  ===========================================

:meth:`UsefulWorkers.run` works it out after every lag sample
(``SLUICE_ADMIN_LAG_INTERVAL_S``) from the sampler's latest report and the
providers' state in Redis; a scrape reads the latest figure. The arrival rate
into ``P.work`` is measured over the lag window (``SLUICE_ADMIN_LAG_WINDOW_S``). No series before
the first lag sample, while Redis does not answer, or when enrich's task is
not known (several tasks, no ``default_task`` and no ``SLUICE_TASK``): KEDA's
Prometheus scaler then sees no value and falls back to its minimum.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import get_args

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.admin.autoscale.model import (
    Arrivals,
    Inputs,
    Limit,
    Useful,
    useful_workers,
    work_lag,
)
from services.admin.autoscale.reader import read_chain
from services.admin.context import AdminContext
from services.admin.lag.groups import pipeline_groups
from services.admin.lag.models import LagReport
from shared.config_file import TaskConfig
from shared.errors import ConfigError, SluiceError

log = logging.getLogger(__name__)


class UsefulWorkers(Collector):
    """Register once with a registry; ``run`` keeps one pipeline's figure while it runs."""

    def __init__(self) -> None:
        self.current: dict[str, Useful] = {}  # pipeline → the latest figure

    def collect(self) -> Iterator[Metric]:
        workers = GaugeMetricFamily(
            "sluice_enrich_useful_workers",
            "Enrich workers useful now: lag-based need, capped by the serving provider's "
            "rate at its latency (Little's law) and by the partitions of P.work",
            labels=["pipeline"])  # fmt: skip
        limited = GaugeMetricFamily(
            "sluice_enrich_useful_workers_limited_by",
            "1 for the bound that decided sluice_enrich_useful_workers, 0 for the others",
            labels=["pipeline", "limit"])  # fmt: skip
        for pipeline, useful in sorted(self.current.items()):
            workers.add_metric([pipeline], useful.workers)
            for limit in get_args(Limit):
                limited.add_metric([pipeline, limit], 1.0 if limit == useful.limited_by else 0.0)
        yield from (workers, limited)

    async def run(self, ctx: AdminContext, latest: Callable[[], LagReport | None]) -> None:
        """Work the figure out every lag interval until cancelled; its series go with it."""
        s = ctx.settings
        try:
            task = ctx.config.task(s.task)
        except ConfigError as exc:
            log.warning("sluice_enrich_useful_workers not exported: %s (set SLUICE_TASK)", exc)
            return
        [enrich] = [g for g in pipeline_groups(s) if g.stage == "enrich"]
        arrivals = Arrivals(s.admin_lag_window_s)
        failing = False
        try:
            while True:
                try:
                    useful = await self._estimate(ctx, task, enrich.name, enrich.topics[0],
                                                  latest(), arrivals)  # fmt: skip
                except SluiceError as exc:
                    if not failing:
                        log.warning("useful enrich workers unknown: %s", exc)
                    failing, useful = True, None
                except Exception:  # the gauge must outlive a bug in one estimate
                    log.exception("useful enrich workers unknown")
                    failing, useful = True, None
                else:
                    failing = False
                self._publish(s.pipeline, useful)
                await asyncio.sleep(s.admin_lag_interval_s)
        finally:
            self.current.pop(s.pipeline, None)

    async def _estimate(self, ctx: AdminContext, task: TaskConfig, group: str, topic: str,
                        report: LagReport | None, arrivals: Arrivals) -> Useful | None:  # fmt: skip
        lag = None if report is None else work_lag(report, group, topic)
        if lag is None:
            return None
        arrival = arrivals.observe(lag)
        state = await read_chain(ctx, task, ctx.settings.max_in_flight)
        return useful_workers(Inputs(
            chain=state.chain, backlog=lag.backlog, arrival_per_s=arrival,
            partitions=len(lag.ends), workers=state.workers,
            minimum=ctx.settings.admin_autoscale_min_workers,
            drain_s=ctx.settings.admin_autoscale_drain_s))  # fmt: skip

    def _publish(self, pipeline: str, useful: Useful | None) -> None:
        before = self.current.get(pipeline)
        if useful is None:
            self.current.pop(pipeline, None)
            return
        self.current[pipeline] = useful
        if useful != before:
            log.info("useful enrich workers: %d (limited by %s; serving provider %s)",
                     useful.workers, useful.limited_by, useful.serving or "none")  # fmt: skip
