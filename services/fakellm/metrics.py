"""Prometheus view of the counters (one registry per app, read at scrape time)."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.fakellm.counters import Counters


class _CountersCollector(Collector):
    def __init__(self, counters: Counters) -> None:
        self._counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self._counters
        by_route = CounterMetricFamily("fakellm_requests", "Requests received", labels=["route"])
        for route, n in c.by_route.items():
            by_route.add_metric([route], n)
        yield by_route
        by_status = CounterMetricFamily(
            "fakellm_responses", "Responses by status", labels=["status"]
        )
        for status, n in c.by_status.items():
            by_status.add_metric([str(status)], n)
        yield by_status
        faults = CounterMetricFamily("fakellm_faults", "Faults answered", labels=["kind"])
        for kind, n in c.faults.items():
            faults.add_metric([kind], n)
        yield faults
        yield CounterMetricFamily(
            "fakellm_repeated_requests", "Identical requests", value=c.repeated
        )
        yield CounterMetricFamily("fakellm_tokens_in", "Prompt tokens answered", value=c.tokens_in)
        yield CounterMetricFamily("fakellm_tokens_out", "Completion tokens", value=c.tokens_out)
        yield GaugeMetricFamily(
            "fakellm_max_requests_1s", "Most requests in 1 s", value=c.win_1s.max
        )
        yield GaugeMetricFamily("fakellm_max_requests_60s", "Most in 60 s", value=c.win_60s.max)


def metrics_response(counters: Counters) -> Response:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_CountersCollector(counters))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
