"""The router's loop, each test run on the in-memory double and on the real broker."""

from __future__ import annotations

import pytest

from services.router.service import Router
from services.router.settings import RouterSettings
from shared import headers as h
from shared.kafka.shutdown import StopFlag
from shared.kinds import FailureKind as K
from shared.settings import load
from tests.integration.test_router import by_ident, fail, ident
from tests.support.bus import Bus, bus_fixture
from tests.support.running import InThread

bus = bus_fixture()


class Running(InThread[Router]):
    def __init__(self, settings: RouterSettings, bus: Bus) -> None:
        stop = StopFlag()
        router = Router(settings, stop, health=lambda _provider: True, clients=bus.clients)
        super().__init__(router, stop, "router", join_s=60)


@pytest.fixture
def settings(bus: Bus, monkeypatch: pytest.MonkeyPatch) -> RouterSettings:
    monkeypatch.setenv("SLUICE_RETRY_RUNGS", "1s,3s")
    bus.create_pipeline_topics()
    return load(RouterSettings)


def test_retries_wait_their_rung_deaths_get_a_dlq_and_a_dead_outcome(
    bus: Bus, pipeline: str, settings: RouterSettings
) -> None:
    with Running(settings, bus):
        bus.produce(f"{pipeline}.failures", [
            fail(1, K.TIMEOUT, 1),        # → retry.1s → work, attempt 2
            fail(2, K.RATE_LIMITED, 2),   # → retry.3s → work, attempt 3
            fail(5, K.TIMEOUT, 3),        # → dlq.timeout + dead
            fail(7, K.BAD_REQUEST, 1),    # → dlq.error at once + dead
            fail(9, K.OUTAGE, 2),         # → parked → work (provider healthy), attempt 2
        ])  # fmt: skip
        work = by_ident(bus.read(f"{pipeline}.work", expect=3, idle_s=0.5))  # type: ignore[arg-type]
        timeout = bus.read(f"{pipeline}.dlq.timeout", expect=1, idle_s=0.2)
        error = bus.read(f"{pipeline}.dlq.error", expect=1, idle_s=0.2)
        dead = bus.read(f"{pipeline}.results", expect=2, idle_s=0.2)
    assert {i: h.get_int(m.headers(), h.ATTEMPT) for i, m in work.items()} == {1: 2, 2: 3, 9: 2}
    assert [ident(m) for m in timeout] == [5] and [ident(m) for m in error] == [7]  # type: ignore[arg-type]
    assert {ident(m): h.get_str(m.headers(), h.OUTCOME) for m in dead} == {5: "dead", 7: "dead"}  # type: ignore[arg-type]


def test_a_stop_commits_everything_routed(
    bus: Bus, pipeline: str, settings: RouterSettings
) -> None:
    failures = f"{pipeline}.failures"
    with Running(settings, bus):
        bus.produce(failures, [fail(i, K.BAD_REQUEST, 1) for i in range(30)])
        assert len(bus.read(f"{pipeline}.dlq.error", expect=30, idle_s=0.2)) == 30
    read: dict[int, int] = {}
    for m in bus.read(failures, expect=30, idle_s=0.2):
        read[m.partition() or 0] = max(read.get(m.partition() or 0, 0), (m.offset() or 0) + 1)
    committed = bus.committed(settings.group, failures)
    assert all(committed.get(p, -1) >= o for p, o in read.items()), (committed, read)
