"""The router through a provider outage and a SIGKILL: nothing lost, nothing dead by mistake."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from confluent_kafka import Producer

from devtools.fleet.processes import Processes
from devtools.stack.resolve import Stack
from services.router.settings import RouterSettings
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.kinds import FailureKind as K
from shared.redis.health import set_paused
from shared.settings import load
from tests.integration.test_router import PROVIDER, Raw, Running, by_ident, fail, ident, sample
from tests.support.kafka import end_offsets, produce, read_all, wait_for

pytestmark = pytest.mark.integration

OUTAGE_S = float(os.environ.get("SLUICE_TEST_OUTAGE_S", "20"))
"""How long the provider stays paused (the issue asks for 20 s; shorten locally if need be)."""


def pause(redis_url: str, pipeline: str, paused: bool) -> None:
    async def go() -> None:
        r = aioredis.Redis.from_url(redis_url)
        try:
            await set_paused(r, pipeline, PROVIDER, paused)
        finally:
            await r.aclose()

    asyncio.run(go())


def count(stack: Stack, topic: str) -> int:
    """Offsets used in ``topic``: its records plus the router's transaction markers (an upper
    bound of the records, for progress checks)."""
    return sum(end_offsets(stack.bootstrap, topic).values())


def records(stack: Stack, topic: str) -> int:
    """Records of ``topic`` a read_committed reader sees."""
    return len(read_all(stack.bootstrap, topic, timeout_s=10, idle_s=0.3))


def test_outage_parks_everything_then_drains_at_a_bounded_rate(
    stack: Stack, pipeline: str, kafka_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLUICE_RETRY_RUNGS", "1s,3s")
    monkeypatch.setenv("SLUICE_PARKED_DRAIN_RPS", "20")
    settings = load(RouterSettings)
    create_topics(settings)
    dlqs = [f"{pipeline}.dlq.{s}" for s in ("timeout", "error")]
    holds_before = sample("sluice_router_holds_total", reason="provider")
    pause(stack.redis_url, pipeline, True)
    started = time.monotonic()
    try:
        with Running(settings) as running:
            produce(stack.bootstrap, f"{pipeline}.failures",
                    [fail(i, K.OUTAGE, 1 + i % 2) for i in range(30)]
                    + [fail(99, K.TIMEOUT, 1, provider="other")])  # fmt: skip
            wait_for(lambda: records(stack, f"{pipeline}.parked") == 30, 15, what="30 parked")
            # other failures are still routed during the outage
            [other] = read_all(
                stack.bootstrap, f"{pipeline}.work", expect=1, timeout_s=10, idle_s=0.5
            )
            assert ident(other) == 99
            produce(
                stack.bootstrap,
                f"{pipeline}.failures",
                [fail(i, K.OUTAGE, 1) for i in range(30, 40)],
            )
            wait_for(lambda: records(stack, f"{pipeline}.parked") == 40, 15, what="40 parked")
            time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
            assert records(stack, f"{pipeline}.work") == 1, "nothing parked drains while paused"
            assert [count(stack, t) for t in dlqs] == [0, 0], "an outage sends nothing to a DLQ"
            held = sample("sluice_router_holds_total", reason="provider") - holds_before
            assert held <= settings.partitions, (
                f"parked partitions re-read {held} times while paused"
            )
            if OUTAGE_S >= 6:  # the depth gauge is refreshed every 5 s
                depth = sum(
                    sample("sluice_router_parked_depth", partition=str(p)) for p in range(3)
                )
                assert 40 <= depth <= 60, f"{depth}: 40 records and a few transaction markers"
            pause(stack.redis_url, pipeline, False)
            work = read_all(
                stack.bootstrap, f"{pipeline}.work", expect=41, timeout_s=20, idle_s=0.5
            )
            assert running.router.errors == []
    finally:
        pause(stack.redis_url, pipeline, False)
    drained = [m for m in work if ident(m) != 99]
    assert sorted(by_ident(drained)) == list(range(40)), "every parked record reached work"
    for m in drained:
        want = 1 + ident(m) % 2 if ident(m) < 30 else 1
        assert h.get_int(m.headers(), h.ATTEMPT) == want, "an outage does not spend an attempt"
    stamps = sorted(m.timestamp()[1] for m in drained)
    span_s = (stamps[-1] - stamps[0]) / 1000
    assert span_s >= (40 - 4) / 20 * 0.8, f"40 records drained in {span_s:.2f}s: faster than 20/s"
    assert [count(stack, t) for t in dlqs] == [0, 0]


def trickle(stack: Stack, topic: str, records: list[Raw], chunk: int = 50) -> None:
    """Produce ``records`` a chunk at a time, acknowledged, about 20 chunks a second."""
    p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True,
                  "partitioner": "murmur2_random", "linger.ms": 2})  # fmt: skip
    for i in range(0, len(records), chunk):
        for key, value, headers in records[i : i + chunk]:
            p.produce(topic, value, key, headers=headers)
        assert p.flush(30) == 0
        time.sleep(0.05)


def router_env(kafka_env: dict[str, str]) -> dict[str, str]:
    # static membership: the restarted router takes the killed one's partitions at once
    return {**kafka_env, "SLUICE_RETRY_RUNGS": "1s,3s",
            "SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID": "router-1"}  # fmt: skip


def test_sigkill_mid_run_loses_nothing(
    stack: Stack, pipeline: str, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(load(RouterSettings, retry_rungs="1s,3s"))
    n = 3000  # a third each: retried to work, dead in dlq.error, dead in dlq.timeout
    kinds = [(K.TIMEOUT, 1), (K.BAD_REQUEST, 1), (K.TIMEOUT, 3)]
    failures = [fail(i, *kinds[i % 3]) for i in range(n)]
    procs = Processes(tmp_path)
    procs.spawn("router", ["router"], router_env(kafka_env))
    # First half: routed, retried back to work and committed (commits run every second).
    produce(stack.bootstrap, f"{pipeline}.failures", failures[: n // 2])
    wait_for(lambda: count(stack, f"{pipeline}.work") > 0, 30, what="retries back in work")
    time.sleep(1.2)
    # Second half, a hundred at a time: the router is killed while routing it.
    feeder = threading.Thread(
        target=trickle, args=(stack, f"{pipeline}.failures", failures[n // 2 :])
    )
    feeder.start()
    wait_for(lambda: count(stack, f"{pipeline}.dlq.error") > 700, 30, interval_s=0.02,
             what="the router to route some of the second half")  # fmt: skip
    procs.kill("router")
    feeder.join()
    assert records(stack, f"{pipeline}.work") < n // 3, "the kill must land mid-run"
    procs.spawn("router", ["router"], router_env(kafka_env))
    try:
        work = read_all(
            stack.bootstrap, f"{pipeline}.work", expect=n // 3, timeout_s=60, idle_s=0.5
        )
        error = read_all(
            stack.bootstrap, f"{pipeline}.dlq.error", expect=n // 3, timeout_s=30, idle_s=0.5
        )
        timeout = read_all(
            stack.bootstrap, f"{pipeline}.dlq.timeout", expect=n // 3, timeout_s=30, idle_s=0.5
        )
        results = read_all(
            stack.bootstrap, f"{pipeline}.results", expect=2 * n // 3, timeout_s=30, idle_s=0.5
        )
    finally:
        codes = procs.stop(grace_s=60)
    assert codes["router"] == 0, procs.log_path("router").read_text()[-2000:]
    assert set(by_ident(work)) == set(range(0, n, 3)), "every retried record reached work"
    assert all(h.get_int(m.headers(), h.ATTEMPT) == 2 for m in work)
    assert set(by_ident(error)) == set(range(1, n, 3))
    assert set(by_ident(timeout)) == set(range(2, n, 3))
    dead = {ident(m) for m in results if h.get_str(m.headers(), h.OUTCOME) == "dead"}
    assert dead == set(by_ident(error)) | set(by_ident(timeout)), (
        "every DLQ write has its dead outcome"
    )
