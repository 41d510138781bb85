"""The whole pipeline under chaos: exactly once to ``P.output``, per-key order intact.

20k skewed tickets over 500 keys through ingest, two enrich workers, the router
and the sequencer, with a fakellm fault mix (5% 5xx, 2% hangs, 2% HTTP 200
error bodies, 1% invalid output) and one 10 s provider outage, while every
service is SIGKILLed at least twice (and started again), the broker restarts
once and Redis restarts once. A ``read_committed`` reader then checks that
every source record is in ``P.output`` exactly once (or, poison, in
``P.dlq.poison``), that no record of ``P.output`` is a duplicate, and that each
key's records are in source-offset order except those marked late.

The test runs on a Kafka and a Redis of its own (it restarts them). A longer
soak: ``SLUICE_CHAOS_RECORDS=200000 SLUICE_CHAOS_KILLS=6 pytest tests/e2e/test_chaos.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import Producer

from devtools.fleet.chaos import Chaos, plan
from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.runs.readback import Tail, check_run, ident
from devtools.runs.tickets import tickets
from devtools.stack.kafka_local import LocalKafka
from devtools.stack.redis_local import LocalRedis
from shared.errors import StackError
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.topics import Topics, parse_rungs

pytestmark = pytest.mark.e2e

RECORDS = int(os.environ.get("SLUICE_CHAOS_RECORDS", "20000"))
KILLS_EACH = int(os.environ.get("SLUICE_CHAOS_KILLS", "2"))
KEYS = 500
RUNGS = "1s,4s"
FAULTS = {"http_500": 0.02, "http_502": 0.015, "http_503": 0.015, "hang": 0.02,
          "error_body": 0.02, "invalid_json": 0.01}  # fmt: skip


@pytest.fixture(scope="module")
def own_stack() -> Iterator[tuple[LocalKafka, LocalRedis]]:
    try:
        kafka = LocalKafka().start()
    except StackError as exc:
        pytest.skip(f"the chaos test restarts its broker, so it needs the local stack: {exc}")
    try:
        redis = LocalRedis().start()
    except StackError as exc:
        kafka.cleanup()
        pytest.skip(f"the chaos test restarts Redis, so it needs the local stack: {exc}")
    try:
        yield kafka, redis
    finally:
        redis.cleanup()
        kafka.cleanup()


def test_exactly_once_and_in_order_through_kills_restarts_and_faults(
    own_stack: tuple[LocalKafka, LocalRedis], tmp_path: Path
) -> None:
    kafka, redis = own_stack
    pipeline = f"chaos{int(time.time()) % 100000}"
    source = f"{pipeline}.tickets"
    topics = Topics(pipeline, parse_rungs(RUNGS))
    settings = load(CommonSettings, kafka_bootstrap=kafka.bootstrap, pipeline=pipeline,
                    partitions=6, retry_rungs=RUNGS)  # fmt: skip
    ensure_topic(settings, source, 6)
    create_topics(settings, source)
    spec = FleetSpec(bootstrap=kafka.bootstrap, redis_url=redis.url, pipeline=pipeline,
                     source_topic=source, log_dir=tmp_path / "logs", rungs=RUNGS, llm_rps=500,
                     latency="lognormal:300:0.5", faults=FAULTS, call_timeout_s=2.0,
                     fake_config={"error_body_kind": "server_error", "hang_seconds": 30},
                     env={"SLUICE_KAFKA_PROP_SESSION_TIMEOUT_MS": "10000"})  # fmt: skip
    fleet = Fleet(spec)
    services = list(spec.names)
    actions = plan(services, KILLS_EACH, every_s=5.0, seed=RECORDS)
    chaos = Chaos(fleet, actions, restart_broker=kafka.restart, restart_redis=redis.restart)
    data = tickets(RECORDS, KEYS, seed=11)
    start = time.monotonic()
    try:
        fleet.start()
        fleet.wait_ready()
        producer = Producer({"bootstrap.servers": kafka.bootstrap, "linger.ms": 20,
                             "partitioner": "murmur2_random", "enable.idempotence": True})  # fmt: skip
        for key, value in data:
            producer.produce(source, value, key)
            producer.poll(0)
        assert producer.flush(60) == 0
        chaos.start()
        _wait_until_accounted(fleet, kafka.bootstrap, topics, RECORDS, timeout_s=420)
        chaos.join(60)
        calls = fleet.llm_stats()
    finally:
        chaos.halt()
        fleet.stop()
    v = check_run(kafka.bootstrap, topics, source)
    report = {**v.as_dict(), "llm_calls": calls["requests_total"],
              "llm_calls_per_record": round(calls["requests_total"] / max(1, v.records - v.poison), 3),
              "repeated_paid_requests": calls.get("repeated_paid_requests"), "kills": fleet.kills,
              "actions_done": len(chaos.done), "elapsed_s": round(time.monotonic() - start, 1)}  # fmt: skip
    print("chaos:", json.dumps(report))
    assert v.records == RECORDS
    assert v.lost == 0, report
    assert v.duplicates == 0, report
    assert v.order_violations == 0, report
    assert v.unsequenced == 0 and v.unaccounted_output == 0, report
    assert v.enriched + v.dead + v.poison == RECORDS, report
    assert v.dead > 0 and v.poison > 0, "faults and poison must end in a DLQ, not vanish"
    assert all(fleet.kills.get(s, 0) >= KILLS_EACH for s in services), fleet.kills
    assert len(chaos.done) == len(actions)


def _wait_until_accounted(
    fleet: Fleet, bootstrap: str, topics: Topics, n: int, timeout_s: float
) -> None:
    """Until every record is in ``P.output`` or ``P.dlq.poison`` (read_committed)."""
    tail = Tail(bootstrap, [topics.output, topics.dlq("poison")])
    seen: set[tuple[str, int, int]] = set()
    deadline = time.monotonic() + timeout_s
    try:
        while len(seen) < n:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{n - len(seen)} of {n} records not in the output after {timeout_s:.0f}s; "
                    f"logs and every service's metrics in {fleet.snapshot()}; "
                    f"{len(seen)} seen so far; the fleet now:\n{fleet.digest()}"
                )
            fleet.check()
            seen.update(ident(m) for m in tail.poll(1.0))
    finally:
        tail.close()
