"""Prometheus metrics helpers shared by the services.

Per-partition consumer lag comes from librdkafka's statistics callback
(``consumer_lag`` per partition, refreshed every ``statistics.interval.ms``),
so measuring it costs no extra broker round trip.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from prometheus_client import Counter, Gauge, start_http_server

from shared.errors import ConfigError

log = logging.getLogger(__name__)

CONSUMER_LAG = Gauge(
    "sluice_consumer_lag",
    "Records between the group's position and the partition's end",
    ["group", "topic", "partition"],
)


DEPENDENCY_UP = Gauge(
    "sluice_dependency_up",
    "1 while the dependency answers, 0 while it cannot be reached",
    ["dependency"],
)

REDIS_REQUESTS = Counter(
    "sluice_redis_requests_total",
    "Requests this process sent to Redis (a pipeline or a script is one), by operation",
    ["op"],  # translated()'s first word of ``what``: bucket, breaker, cache, ...
)

RECORDS_SKIPPED = Counter(
    "sluice_records_skipped_total",
    "Records a stage's consumer returned and the stage did not handle, by reason: "
    "'revoked' (fetched for an assignment that ended within the poll; read again from "
    "the commit), 'redelivered' (an offset the stage had already taken)",
    ["reason"],
)


def lag_from_stats(stats_json: str) -> dict[tuple[str, int], int]:
    """Parse librdkafka statistics into {(topic, partition): lag} (pure)."""
    stats = json.loads(stats_json)
    out: dict[tuple[str, int], int] = {}
    for topic, tstats in (stats.get("topics") or {}).items():
        for pid, pstats in (tstats.get("partitions") or {}).items():
            part = int(pid)
            lag = pstats.get("consumer_lag", -1)
            if part < 0 or lag is None or lag < 0:
                continue
            out[(topic, part)] = int(lag)
    return out


def lag_stats_callback(group: str) -> Callable[[str], None]:
    """A ``stats_cb`` that publishes per-partition lag of ``group``."""

    def on_stats(stats_json: str) -> None:
        try:
            for (topic, part), lag in lag_from_stats(stats_json).items():
                CONSUMER_LAG.labels(group, topic, str(part)).set(lag)
        except (ValueError, TypeError):
            log.warning("unreadable librdkafka statistics", exc_info=True)

    return on_stats


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Expose /metrics on ``host:port`` (port 0 = don't).

    Loopback unless ``SLUICE_METRICS_HOST`` says otherwise (``0.0.0.0`` in
    containers). A port that is taken or a host that is not this machine's is
    a ConfigError naming both settings.
    """
    if not port:
        return
    try:
        start_http_server(port, host)
    except OSError as exc:
        raise ConfigError(
            f"SLUICE_METRICS_PORT: cannot listen on {host}:{port} (SLUICE_METRICS_HOST): "
            f"{exc.strerror or exc}"
        ) from exc
    log.info("metrics on %s:%d/metrics", host, port)
