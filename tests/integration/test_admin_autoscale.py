"""``sluice_enrich_useful_workers`` on a real Kafka and Redis, read from the admin's ``/metrics``.

Lag is records in ``P.work`` that the enrich group has not consumed; the
provider's call latency and the workers alive are what enrich workers leave in
Redis (call statistics and heartbeats, written here as a worker writes them).
With 1.75 s per call, 2 slots a worker and 40 records to drain in 10 s:
4 calls/s, 7 calls in flight, 4 workers; a budget of 120 requests/minute is
2 calls/s, 3.5 in flight, 2 workers.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from confluent_kafka import Producer
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack.resolve import Stack
from shared.call_stats import CallTally
from shared.kafka.provision import create_topics
from shared.redis.client import connect
from shared.redis.fleet import Fleet
from shared.settings import CommonSettings, load
from shared.topics import Topics
from tests.support.admin import Client, serve_admin
from tests.support.kafka import wait_for

pytestmark = pytest.mark.integration

WAIT_S = 60.0
BACKLOG = 40
NOW = 2  # enrich workers heartbeating
SETTINGS = {"admin_lag_interval_s": 0.5, "admin_lag_window_s": 3.0, "max_in_flight": 2,
            "admin_autoscale_drain_s": 10.0}  # fmt: skip


def config(path: Path, rpm: int) -> Path:
    doc = {
        "providers": {"primary": {"kind": "openai", "base_url": "http://127.0.0.1:9/v1",
                                  "requests_per_minute": rpm, "max_connections": 8}},
        "tasks": {"sentiment": {"providers": ["primary"], "model": "fake-1"}},
        "default_task": "sentiment",
    }  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def workers_calling(redis_url: str, pipeline: str) -> None:
    """NOW workers alive, and their calls of the last minute: 1.5-2 s each (mean 1.75 s)."""

    async def run() -> None:
        r = connect(redis_url)
        try:
            fleet = Fleet(r, pipeline)
            for w in range(NOW):
                calls = CallTally()
                for _ in range(10):
                    calls.add(1800, failed=False)
                await fleet.heartbeat("primary", f"w{w}", 1, ttl_s=600, calls=calls)
        finally:
            await r.aclose()

    asyncio.run(run())


def useful(admin: Client, pipeline: str) -> tuple[float | None, str | None]:
    """The gauge of ``pipeline`` and the bound that decided it (None, None: no series)."""
    value = limit = None
    for family in text_string_to_metric_families(admin.get("/metrics", None).text):
        for s in family.samples:
            if s.labels.get("pipeline") != pipeline:
                continue
            if s.name == "sluice_enrich_useful_workers":
                value = s.value
            elif s.name == "sluice_enrich_useful_workers_limited_by" and s.value == 1.0:
                limit = s.labels["limit"]
    return value, limit


def wait_useful(admin: Client, pipeline: str, want: tuple[float, str]) -> None:
    seen: list[tuple[float | None, str | None]] = []

    def reached() -> bool:
        got = useful(admin, pipeline)
        if not seen or seen[-1] != got:
            seen.append(got)
        return got == want

    try:
        wait_for(reached, WAIT_S, 0.2, f"sluice_enrich_useful_workers {want}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; seen: {seen}") from None


def test_useful_workers_through_lag_pause_and_rate_cap(
    stack: Stack, kafka_env: dict[str, str], pipeline: str, tmp_path: Path
) -> None:
    create_topics(load(CommonSettings, partitions=8))
    work = Topics(pipeline).work
    with serve_admin(config_file=config(tmp_path / "c.yaml", rpm=0), **SETTINGS) as admin:
        admin.wait_ready(WAIT_S)
        workers_calling(stack.redis_url, pipeline)
        wait_useful(admin, pipeline, (1.0, "minimum"))  # no lag: the minimum

        p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
        for i in range(BACKLOG):
            p.produce(work, b'{"text": "refund"}', f"k{i}".encode(), partition=i % 8)
        assert p.flush(30) == 0
        wait_useful(admin, pipeline, (4.0, "lag"))  # more than the NOW there are

        r = admin.post("/v1/providers/primary/pause", json={"reason": "autoscale test"})
        assert r.status_code == 200, r.text
        wait_useful(admin, pipeline, (1.0, "paused"))  # the same lag: no more than NOW

        r = admin.post("/v1/providers/primary/resume")
        assert r.status_code == 200, r.text
        wait_useful(admin, pipeline, (4.0, "lag"))

    # the same lag, latency and workers with a budget of 120 requests/minute
    with serve_admin(config_file=config(tmp_path / "c.yaml", rpm=120), **SETTINGS) as admin:
        admin.wait_ready(WAIT_S)
        workers_calling(stack.redis_url, pipeline)
        wait_useful(admin, pipeline, (2.0, "rate"))
