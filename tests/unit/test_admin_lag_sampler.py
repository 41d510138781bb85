"""The lag sampler over a fake reader: windows, failures, gauges, ``GET /v1/lag``, groups."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from fastapi import FastAPI, Header, HTTPException
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from services.admin.lag.groups import GroupSpec, pipeline_groups
from services.admin.lag.metrics import LagCollector
from services.admin.lag.reader import GroupReading, PartitionReading, Reading
from services.admin.lag.routes import lag_router
from services.admin.lag.sampler import LagSampler, Windows
from services.admin.lag.settings import LagSettings
from shared.errors import BrokerError, ConfigError
from shared.settings import load

ENRICH = GroupSpec("enrich", "p.enrich", ("p.work",), read_committed=True)
ROUTER = GroupSpec("router", "p.router", ("p.failures",), read_committed=True)


def part(
    committed: int | None, end: int, *, owned: bool = True, n: int = 0, ts: float | None = None
) -> PartitionReading:
    return PartitionReading("p.work", n, committed, end, owned, drained=False, oldest_ts=ts)


def reading(at: float, *parts: PartitionReading) -> Reading:
    return Reading(at, (GroupReading(ENRICH, "stable", parts, ()), GroupReading(ROUTER, "dead", (), ("p.failures",))))  # fmt: skip


class FakeReader:
    groups = (ENRICH, ROUTER)

    def __init__(self, readings: list[Reading | Exception]) -> None:
        self.readings = readings
        self.reads = 0
        self.closed = False
        self.read_event = threading.Event()

    def read(self) -> Reading:
        self.reads += 1
        self.read_event.set()
        r = self.readings[min(self.reads, len(self.readings)) - 1]
        if isinstance(r, Exception):
            raise r
        return r

    def close(self) -> None:
        self.closed = True


# -- windows ---------------------------------------------------------------
def test_windows_judge_each_partition_over_its_own_samples() -> None:
    w = Windows(window_s=4.0)
    for t in range(6):  # p0 stuck at 5 with lag, p1 caught up
        (g, _) = w.observe(reading(float(t), part(5, 20), part(9, 9, n=1)))
    assert [(p.partition, p.status) for p in g.partitions] == [(0, "stalled"), (1, "ok")]
    p0 = g.partitions[0]
    assert (p0.committed, p0.end, p0.lag_records) == (5, 20, 15)


def test_a_vanished_partition_is_forgotten() -> None:
    w = Windows(window_s=4.0)
    for t in range(6):
        w.observe(reading(float(t), part(5, 20)))
    (g, _) = w.observe(reading(6.0))
    assert g.partitions == ()
    (g, _) = w.observe(reading(7.0, part(5, 20)))  # back: a window of its own starts
    assert g.partitions[0].status == "unknown"


def test_lag_seconds_is_the_age_of_the_oldest_unconsumed_record() -> None:
    w = Windows(window_s=4.0)
    (g, _) = w.observe(reading(100.0, part(5, 20, ts=90.5), part(3, 3, n=1), part(None, 4, n=2)))
    assert [p.lag_seconds for p in g.partitions] == [9.5, 0.0, None]
    (g, _) = w.observe(reading(101.0, part(5, 20, ts=None), part(3, 3, n=1, ts=None)))
    assert [p.lag_seconds for p in g.partitions] == [None, 0.0]  # not read in time
    (g, _) = w.observe(reading(102.0, part(5, 20, ts=500.0)))  # a clock ahead of ours
    assert g.partitions[0].lag_seconds == 0.0


# -- the sampler ------------------------------------------------------------
def test_a_failed_sample_keeps_the_last_figures_and_says_why() -> None:
    reader = FakeReader([reading(10.0, part(5, 20)), BrokerError("lag: reading x failed"),
                         reading(12.0, part(6, 20))])  # fmt: skip
    s = LagSampler(reader, interval_s=1.0, window_s=5.0)
    assert s.latest() is None
    first = s.sample()
    failed = s.sample()
    assert failed.error == "lag: reading x failed"
    assert failed.sampled_at == 10.0
    assert failed.groups == first.groups
    again = s.sample()
    assert (again.error, again.sampled_at) == (None, 12.0)
    assert again.groups[0].partitions[0].committed == 6


def test_a_bug_in_one_sample_does_not_end_sampling() -> None:
    s = LagSampler(FakeReader([ValueError("boom")]), interval_s=1.0, window_s=5.0)
    report = s.sample()
    assert report.error == "ValueError: boom"
    assert (report.sampled_at, report.groups) == (None, ())


def test_start_samples_in_the_background_and_stop_closes_the_reader() -> None:
    reader = FakeReader([reading(1.0, part(5, 5))])
    s = LagSampler(reader, interval_s=0.05, window_s=1.0)
    others = set(samplers())  # another test's app may still be ending its own
    s.start()
    (mine,) = set(samplers()) - others
    with pytest.raises(RuntimeError):
        s.start()
    assert reader.read_event.wait(10)
    s.stop(timeout_s=10)
    assert reader.closed
    reads = reader.reads
    assert reads >= 1
    assert not mine.is_alive()
    assert reader.reads == reads


def samplers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lag-sampler"]


# -- gauges ----------------------------------------------------------------
def scrape(s: LagSampler) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    registry = CollectorRegistry()
    registry.register(LagCollector(s.latest))
    text = generate_latest(registry).decode()
    return {
        (x.name, frozenset(x.labels.items())): x.value
        for family in text_string_to_metric_families(text)
        for x in family.samples
    }


def series(name: str, partition: int, **extra: str) -> tuple[str, frozenset[tuple[str, str]]]:
    labels = {"group": "p.enrich", "topic": "p.work", "partition": str(partition), **extra}
    return name, frozenset(labels.items())


def test_gauges_one_hot_status_and_no_series_without_figures() -> None:
    s = LagSampler(FakeReader([reading(50.0, part(5, 20, ts=40.0), part(None, 3, n=1))]), 1.0, 5.0)
    assert scrape(s) == {}  # nothing before the first sample
    s.sample()
    got = scrape(s)
    assert got[series("sluice_lag_records", 0)] == 15.0
    assert got[series("sluice_lag_seconds", 0)] == 10.0
    assert got[("sluice_lag_sampled_at_seconds", frozenset())] == 50.0
    for n, status in ((0, "unknown"), (1, "no_commits")):
        one_hot = {dict(k[1])["status"]: v for k, v in got.items()
                   if k[0] == "sluice_lag_status" and dict(k[1])["partition"] == str(n)}  # fmt: skip
        assert one_hot == {s: 1.0 if s == status else 0.0 for s in
                           ("ok", "stalled", "stopped", "growing", "no_commits", "unknown")}  # fmt: skip
    # no lag figures for a partition without a commit
    assert series("sluice_lag_records", 1) not in got
    assert series("sluice_lag_seconds", 1) not in got


# -- GET /v1/lag ----------------------------------------------------------
def viewer(authorization: str | None = Header(None)) -> None:
    if authorization != "Bearer v":
        raise HTTPException(401, "no")


@pytest.fixture
def sampler() -> Iterator[LagSampler]:
    yield LagSampler(FakeReader([reading(50.0, part(5, 20))]), interval_s=2.5, window_s=10.0)


@pytest.fixture
def client(sampler: LagSampler) -> TestClient:
    app = FastAPI()
    app.include_router(lag_router(viewer, sampler))
    return TestClient(app, headers={"Authorization": "Bearer v"})


def test_lag_needs_the_viewer_dependency(client: TestClient) -> None:
    assert client.get("/v1/lag", headers={"Authorization": "Bearer x"}).status_code == 401


def test_no_sample_yet_is_503_with_retry_after(client: TestClient) -> None:
    r = client.get("/v1/lag")
    assert r.status_code == 503
    assert r.headers["retry-after"] == "3"


def test_lag_report_and_group_filter(client: TestClient, sampler: LagSampler) -> None:
    sampler.sample()
    body = client.get("/v1/lag").json()
    assert [g["group"] for g in body["groups"]] == ["p.enrich", "p.router"]
    assert (body["interval_s"], body["window_s"], body["sampled_at"]) == (2.5, 10.0, 50.0)
    (p,) = body["groups"][0]["partitions"]
    assert p == {"topic": "p.work", "partition": 0, "committed": 5, "end": 20,
                 "lag_records": 15, "lag_seconds": None, "status": "unknown"}  # fmt: skip
    only = client.get("/v1/lag", params={"group": "p.router"}).json()
    assert [(g["group"], g["state"], g["missing_topics"]) for g in only["groups"]] == [
        ("p.router", "dead", ["p.failures"])
    ]


def test_unknown_group_is_404_naming_the_groups(client: TestClient) -> None:
    r = client.get("/v1/lag", params={"group": "p.nope"})  # before any sample too
    assert r.status_code == 404
    assert "p.nope" in r.json()["detail"]
    assert "p.enrich" in r.json()["detail"]


# -- groups and settings ---------------------------------------------------
def test_the_pipeline_groups_follow_each_service_naming() -> None:
    s = load(LagSettings, pipeline="p", retry_rungs="5s,1m,10m", source_topic="tickets",
             admin_lag_groups={"router": "custom.router"})  # fmt: skip
    assert [(g.stage, g.name, g.topics, g.read_committed) for g in pipeline_groups(s)] == [
        ("ingest", "p.ingest", ("tickets",), False),
        ("enrich", "p.enrich", ("p.work",), True),
        ("router", "custom.router",
         ("p.failures", "p.parked", "p.retry.5s", "p.retry.1m", "p.retry.10m"), True),
        ("sequencer", "p.sequencer", ("p.work", "p.results"), True),
    ]  # fmt: skip
    assert pipeline_groups(load(LagSettings, pipeline="p"))[0].topics == ()


def test_settings_refuse_a_window_shorter_than_two_intervals() -> None:
    with pytest.raises(ConfigError, match="SLUICE_ADMIN_LAG_WINDOW_S"):
        load(LagSettings, admin_lag_interval_s=5, admin_lag_window_s=8)
    with pytest.raises(ConfigError, match="SLUICE_ADMIN_LAG_GROUPS"):
        load(LagSettings, admin_lag_groups={"nope": "x"})
