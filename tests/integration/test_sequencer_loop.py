"""The sequencer's loop, each test run on the in-memory double and on the real broker."""

from __future__ import annotations

import random

import pytest

from services.sequencer.service import Sequencer
from services.sequencer.settings import SequencerSettings
from shared.kafka.shutdown import StopFlag
from shared.settings import load
from tests.integration.test_sequencer import announce, check_order, ident, key_of, ok
from tests.support.bus import Bus, bus_fixture
from tests.support.running import InThread

bus = bus_fixture()


class Running(InThread[Sequencer]):
    def __init__(self, settings: SequencerSettings, bus: Bus) -> None:
        stop = StopFlag()
        super().__init__(Sequencer(settings, stop, bus.clients), stop, "sequencer", join_s=90)


@pytest.fixture
def settings(bus: Bus, pipeline: str) -> SequencerSettings:
    bus.create_pipeline_topics()
    return load(SequencerSettings, worker_id=f"w-{pipeline}")


def test_outcomes_in_any_order_come_out_once_in_key_order(
    bus: Bus, pipeline: str, settings: SequencerSettings
) -> None:
    n = 120
    outs = [ok(i, key_of(i)) for i in range(n)]
    random.Random(7).shuffle(outs)
    with Running(settings, bus):
        bus.produce(f"{pipeline}.work", [announce(i, key_of(i)) for i in range(n)])
        bus.produce(f"{pipeline}.results", outs)
        out = bus.read(f"{pipeline}.output", expect=n)
    assert sorted(ident(m) for m in out) == list(range(n))
    check_order(out)
    for topic in (f"{pipeline}.work", f"{pipeline}.results"):
        read: dict[int, int] = {}  # past the last record of each partition (markers aside)
        for m in bus.read(topic, expect=0, idle_s=0.5):
            read[m.partition() or 0] = max(read.get(m.partition() or 0, 0), (m.offset() or 0) + 1)
        committed = bus.committed(settings.group, topic)
        assert all(committed.get(p, -1) >= o for p, o in read.items()), (
            f"{topic}: a stop commits all"
        )


def test_a_restart_carries_on_from_the_changelog(
    bus: Bus, pipeline: str, settings: SequencerSettings
) -> None:
    n = 40
    keyed = [i for i in range(n) if key_of(i) is not None]
    with Running(settings, bus):
        bus.produce(f"{pipeline}.work", [announce(i, key_of(i)) for i in keyed])
        # every other outcome: the rest wait in the state (and its changelog)
        bus.produce(f"{pipeline}.results", [ok(i, key_of(i)) for i in keyed[1::2]])
        first = bus.read(f"{pipeline}.output", expect=0, idle_s=1.5)
    assert len(first) < len(keyed)
    with Running(settings, bus):
        bus.produce(f"{pipeline}.results", [ok(i, key_of(i)) for i in keyed[0::2]])
        out = bus.read(f"{pipeline}.output", expect=len(keyed))
    assert sorted(ident(m) for m in out) == keyed
    check_order(out)
