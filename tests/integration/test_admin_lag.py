"""Lag status on a real broker with real consumer groups, read from ``/v1/lag`` and ``/metrics``.

Each test drives one state with a consumer of one of the pipeline's groups and
waits for the sampler (0.5 s interval, 3 s window) to report it; it asserts
states, not durations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, make_asgi_app
from prometheus_client.parser import text_string_to_metric_families

from devtools.stack.resolve import Stack
from services.admin.lag.groups import pipeline_groups
from services.admin.lag.metrics import LagCollector
from services.admin.lag.reader import LagReader
from services.admin.lag.routes import lag_router
from services.admin.lag.sampler import LagSampler
from services.admin.lag.settings import LagSettings
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from shared.topics import Topics
from tests.support.admin import admin_config, serve_admin
from tests.support.enrich import Worker, produce_work, work_records
from tests.support.kafka import create_topic, wait_for

pytestmark = pytest.mark.integration

WAIT_S = 60.0


@dataclass
class Admin:
    client: TestClient
    sampler: LagSampler
    work: str
    source: str
    pipeline: str

    def partition(self, group: str, topic: str, n: int) -> dict[str, Any]:
        r = self.client.get("/v1/lag", params={"group": group})
        if r.status_code == 503:
            return {}
        assert r.status_code == 200, r.text
        (g,) = r.json()["groups"]
        return next((p for p in g["partitions"] if (p["topic"], p["partition"]) == (topic, n)), {})

    def wait_status(self, group: str, topic: str, n: int, status: str) -> dict[str, Any]:
        seen: list[str] = []

        def reached() -> bool:
            s = self.partition(group, topic, n).get("status")
            if s and (not seen or seen[-1] != s):
                seen.append(s)
            return s == status

        try:
            wait_for(reached, WAIT_S, 0.2, f"{group} {topic}[{n}] {status}")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; statuses seen: {seen}") from None
        return self.partition(group, topic, n)

    def metrics(self, group: str, topic: str, n: int) -> dict[str, Any]:
        return lag_gauges(self.client.get("/metrics").text, group, topic, n)


def lag_gauges(text: str, group: str, topic: str, n: int) -> dict[str, Any]:
    """The ``sluice_lag_*`` gauges of one partition from a ``/metrics`` text."""
    want = {"group": group, "topic": topic, "partition": str(n)}
    out: dict[str, Any] = {"status": {}}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = dict(s.labels)
            status = labels.pop("status", None)
            if labels != want:
                continue
            if status is not None:
                out["status"][status] = s.value
            else:
                out[s.name] = s.value
    return out


@pytest.fixture
def admin(stack: Stack, pipeline: str) -> Iterator[Admin]:
    topics = Topics(pipeline)
    source = f"{pipeline}.source"
    for name in (topics.work, source):
        create_topic(stack.bootstrap, name, partitions=2)
    settings = LagSettings(
        kafka_bootstrap=stack.bootstrap, pipeline=pipeline, source_topic=source,
        admin_lag_interval_s=0.5, admin_lag_window_s=3.0,
        admin_lag_timeout_s=10.0, admin_lag_probe_s=3.0)  # fmt: skip
    sampler = LagSampler(
        LagReader(settings, pipeline_groups(settings)),
        settings.admin_lag_interval_s,
        settings.admin_lag_window_s,
    )
    registry = CollectorRegistry()
    registry.register(LagCollector(sampler.latest))
    app = FastAPI()
    app.include_router(lag_router(lambda: None, sampler))
    app.mount("/metrics", make_asgi_app(registry))
    sampler.start()
    try:
        yield Admin(TestClient(app), sampler, topics.work, source, pipeline)
    finally:
        sampler.stop()


@dataclass
class Member:
    """A consumer of one group, subscribed (a live member) once it holds its partitions."""

    consumer: Consumer
    early: list[Message]  # records returned while waiting for the assignment

    def consume(self, n: int) -> list[Message]:
        got = self.early
        wait_for(
            lambda: bool(got.extend(m for m in self.consumer.consume(n, 0.2) if m.error() is None))
            or len(got) >= n,
            30, 0, f"{n} records")  # fmt: skip
        return got

    def commit(self, topic: str, partition: int, offset: int) -> None:
        self.consumer.commit(offsets=[TopicPartition(topic, partition, offset)], asynchronous=False)

    def close(self) -> None:
        self.consumer.close()


def member(stack: Stack, group: str, topic: str, **conf: Any) -> Member:
    c = Consumer({
        "bootstrap.servers": stack.bootstrap, "group.id": group, "enable.auto.commit": False,
        "auto.offset.reset": "earliest", "isolation.level": "read_committed", **conf})  # fmt: skip
    c.subscribe([topic])
    early: list[Message] = []

    def assigned() -> bool:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            early.append(m)
        return bool(c.assignment())

    wait_for(assigned, 30, 0, f"{group} assignment")
    return Member(c, early)


def produce(stack: Stack, topic: str, n: int, partition: int = 0) -> None:
    p = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True})
    for i in range(n):
        p.produce(topic, f"r{i}".encode(), b"k", partition=partition)
    assert p.flush(30) == 0


def test_ok_caught_up_on_a_transactional_topic(stack: Stack, admin: Admin) -> None:
    """Caught up: committed sits on the last commit marker, an open transaction is not lag."""
    txn = Producer(
        {"bootstrap.servers": stack.bootstrap, "transactional.id": f"{admin.pipeline}.t"}
    )
    txn.init_transactions(30)
    txn.begin_transaction()
    for i in range(10):
        txn.produce(admin.work, f"r{i}".encode(), b"k", partition=0)
    txn.commit_transaction(30)  # records 0..9, commit marker at 10
    group = f"{admin.pipeline}.enrich"
    c = member(stack, group, admin.work)
    try:
        assert c.consume(10)[-1].offset() == 9
        c.commit(admin.work, 0, 10)  # committed 10, one short of the end
        txn.begin_transaction()  # open, never committed: beyond the last stable offset
        for i in range(5):
            txn.produce(admin.work, f"open{i}".encode(), b"k", partition=0)
        txn.flush(30)
        p = admin.wait_status(group, admin.work, 0, "ok")
        assert (p["committed"], p["end"], p["lag_records"], p["lag_seconds"]) == (10, 11, 0, 0.0)
        m = admin.metrics(group, admin.work, 0)
        assert m["status"]["ok"] == 1.0
        assert sum(m["status"].values()) == 1.0
        assert m["sluice_lag_records"] == 0.0
        # the partition it holds but never committed for
        assert admin.partition(group, admin.work, 1)["status"] == "no_commits"
        assert admin.metrics(group, admin.work, 1)["status"]["no_commits"] == 1.0
    finally:
        txn.abort_transaction(30)
        c.close()


def test_stalled_a_live_member_that_does_not_commit(stack: Stack, admin: Admin) -> None:
    produce(stack, admin.work, 20)
    group = f"{admin.pipeline}.sequencer"
    c = member(stack, group, admin.work)
    try:
        c.commit(admin.work, 0, 5)
        p = admin.wait_status(group, admin.work, 0, "stalled")
        assert (p["committed"], p["lag_records"]) == (5, 15)
        assert p["lag_seconds"] is not None and p["lag_seconds"] >= 0
        m = admin.metrics(group, admin.work, 0)
        assert m["status"]["stalled"] == 1.0
        assert sum(m["status"].values()) == 1.0
        assert m["sluice_lag_records"] == 15.0
        assert "sluice_lag_seconds" in m
    finally:
        c.close()


def test_stalled_enrich_with_its_only_provider_paused(
    stack: Stack, kafka_env: dict[str, str], pipeline: str, tmp_path: Path
) -> None:
    """The real services: a live enrich worker whose only provider is paused leaves P.work waiting.

    (A key blocked in the sequencer's block mode does not stall its group: the
    held records live in its changelog and its offsets move on.)
    """
    create_topics(load(CommonSettings))
    group, work = f"{pipeline}.enrich", Topics(pipeline).work
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        cfg = admin_config(tmp_path / "c.yaml", url)
        produce_work(stack.bootstrap, pipeline, work_records(30))
        with serve_admin(config_file=cfg, admin_lag_interval_s=0.5, admin_lag_window_s=3.0) as api, \
             Worker(config_file=cfg, worker_id="w1") as worker:  # fmt: skip

            def statuses() -> list[str | None]:
                r = api.get("/v1/lag", params={"group": group})
                if r.status_code != 200:
                    return []
                (g,) = r.json()["groups"]
                return [p["status"] for p in sorted(g["partitions"], key=lambda p: p["partition"])]

            def wait_statuses(want: str) -> None:
                try:
                    wait_for(lambda: statuses() == [want] * 3, WAIT_S, 0.2, f"{group}: {want}")
                except AssertionError as exc:
                    raise AssertionError(f"{exc}; statuses now: {statuses()}") from None

            wait_statuses("ok")  # caught up, offsets committed
            r = api.post("/v1/providers/primary/pause", json={"reason": "lag test"})
            assert r.status_code == 200, r.text
            # The worker stops taking work once its own view of the provider says paused
            # (its health refresh); a record it had taken before that is parked as an
            # outage instead of waiting in P.work. On a busy machine the refresh can come
            # after the next records are fetched, so they are written once it stopped.
            wait_for(
                lambda: worker.service.stats.paused, WAIT_S, 0.1, "the worker stops taking work"
            )
            produce_work(stack.bootstrap, pipeline, work_records(30, start=30))
            wait_statuses("stalled")  # every partition: lag, no commit, a live member
            text = api.get("/metrics", None).text
            for n in range(3):
                m = lag_gauges(text, group, work, n)
                assert m["status"]["stalled"] == 1.0 and sum(m["status"].values()) == 1.0, m
                assert m["sluice_lag_records"] > 0


def test_stopped_a_closed_consumer_while_records_arrive(stack: Stack, admin: Admin) -> None:
    produce(stack, admin.work, 10)
    group = f"{admin.pipeline}.enrich"
    c = member(stack, group, admin.work)
    assert c.consume(10)[-1].offset() == 9
    c.commit(admin.work, 0, 10)
    c.close()  # leaves the group
    produce(stack, admin.work, 7)
    p = admin.wait_status(group, admin.work, 0, "stopped")
    assert (p["committed"], p["lag_records"]) == (10, 7)
    m = admin.metrics(group, admin.work, 0)
    assert m["status"]["stopped"] == 1.0
    assert sum(m["status"].values()) == 1.0
    assert m["sluice_lag_records"] == 7.0


def test_growing_a_consumer_that_commits_slower_than_producing(stack: Stack, admin: Admin) -> None:
    """ingest's group on the source topic (read_uncommitted), falling behind."""
    group = f"{admin.pipeline}.ingest"
    c = member(stack, group, admin.source, **{"isolation.level": "read_uncommitted"})
    p = Producer({"bootstrap.servers": stack.bootstrap, "linger.ms": 0})
    stop = threading.Event()

    def busy() -> None:  # 10 records in, 3 committed, every 0.1 s
        committed = 0
        while not stop.is_set():
            for i in range(10):
                p.produce(admin.source, f"r{i}".encode(), b"k", partition=0)
            p.flush(10)
            committed += 3
            c.commit(admin.source, 0, committed)
            stop.wait(0.1)

    t = threading.Thread(target=busy, daemon=True)
    t.start()
    try:
        admin.wait_status(group, admin.source, 0, "growing")
        wait_for(
            lambda: admin.metrics(group, admin.source, 0)["status"].get("growing") == 1.0,
            WAIT_S, 0.2, "growing in /metrics")  # fmt: skip
    finally:
        stop.set()
        t.join(30)
        c.close()


def test_group_filter_and_unknown_group(admin: Admin) -> None:
    wait_for(lambda: admin.sampler.latest() is not None, WAIT_S, 0.2, "a first sample")
    body = admin.client.get("/v1/lag").json()
    assert [g["stage"] for g in body["groups"]] == ["ingest", "enrich", "router", "sequencer"]
    assert body["error"] is None
    router = admin.client.get("/v1/lag", params={"group": f"{admin.pipeline}.router"}).json()
    (g,) = router["groups"]
    assert g["partitions"] == []  # none of its topics exist here
    assert f"{admin.pipeline}.failures" in g["missing_topics"]
    r = admin.client.get("/v1/lag", params={"group": "nope"})
    assert r.status_code == 404
    assert "nope" in r.json()["detail"]
