"""enrich's consumer loop (the Dispatcher on the shared loop), each test run on the
in-memory double and on the real broker.

The record handler is a trivial async one (no LLM, no Redis): each record waits
until the test releases it, so the tests decide the order in which records finish.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence

import pytest
from confluent_kafka import Consumer, TopicPartition

from services.enrich.lanes import replayed
from shared import headers as h
from shared.headers import HeaderList
from shared.kafka.concurrent import Dispatcher, Output, start_loop, stop_loop
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.loop import Subscription
from shared.kafka.message import TP, Message
from shared.kafka.producer import TrackedProducer
from shared.kafka.shutdown import StopFlag
from shared.outcomes import Record
from shared.settings import CommonSettings, load
from tests.support.bus import Bus, bus_fixture
from tests.support.running import InThread

bus = bus_fixture()


class Gated:
    """Each record waits until released (by its coordinates, or all at once), except those
    that hang."""

    def __init__(self, out: str, hang_offset: int | None = None) -> None:
        self.out = out
        self.hang_offset = hang_offset  # this offset of every partition never finishes
        self.released: set[tuple[TP, int]] = set()
        self.release_all = False
        self.started: list[tuple[TP, int]] = []
        self.active = self.most = 0

    async def handle(self, msg: Record, tp: TP, offset: int) -> Sequence[Output]:
        self.started.append((tp, offset))
        self.active += 1
        self.most = max(self.most, self.active)
        try:
            while offset == self.hang_offset or not (
                self.release_all or (tp, offset) in self.released
            ):
                await asyncio.sleep(0.01)
        finally:
            self.active -= 1
        value = b"%d:%d:%s" % (tp[1], offset, msg.value or b"")
        return [Output(self.out, Record(msg.key, value, []))]

    def accepting(self) -> bool:
        return True


class Echo(Dispatcher):
    """A Dispatcher over ``in`` → ``out`` that notes what was committed at each revoke."""

    def __init__(self, bus: Bus, topics: tuple[str, str], handler: Gated, max_in_flight: int,
                 stop: StopFlag, revoke_grace_s: float = 10.0,
                 gives_way: Callable[[HeaderList], bool] | None = None) -> None:  # fmt: skip
        settings = load(CommonSettings)
        self.group = f"{topics[0]}.echo"
        event_loop, self.thread = start_loop()
        super().__init__(
            "echo", settings, bus.clients.consumer(consumer_config(settings, self.group)),
            TrackedProducer(producer_config(settings), bus.clients.producer), handler,
            event_loop, Subscription([topics[0]], [topics[1]]), max_in_flight, stop,
            revoke_grace_s, gives_way,
        )  # fmt: skip
        self.gated = handler
        self.revoked: list[dict[TP, int]] = []  # committed offsets of revoked partitions
        self.paused_seen = False

    def before_poll(self) -> float:
        wait = super().before_poll()
        self.paused_seen = self.paused_seen or self.stats.paused
        return wait

    def drain(self, tps: set[TP] | None, grace_s: float) -> None:
        if tps is not None:
            self.gated.release_all = True  # records finish only while the revoke drains
        super().drain(tps, grace_s)

    def forget(self, tps: set[TP], lost: bool) -> None:
        if not lost and not self.stop.is_set():  # not the close's revoke
            c: Consumer = self.consumer
            got = c.committed([TopicPartition(t, p) for t, p in tps], timeout=10)
            self.revoked.append({(p.topic, p.partition): p.offset for p in got})
        super().forget(tps, lost)

    def close(self) -> None:
        try:
            stop_loop(self.event_loop, self.thread)
        finally:
            super().close()


class Running(InThread[Echo]):
    def __init__(self, echo: Echo) -> None:
        super().__init__(echo, echo.stop, "echo")

    def stopped_in(self) -> float:
        """Stop now; how long the loop took to end."""
        t0 = time.monotonic()
        self.stop.set("test over")
        self.thread.join(60)
        assert not self.thread.is_alive(), "the loop did not stop"
        return time.monotonic() - t0


def wait_for(cond: object, what: str, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def topics(bus: Bus, pipeline: str) -> Iterator[tuple[str, str]]:
    names = (f"{pipeline}.in", f"{pipeline}.out")
    bus.create_topic(names[0], 3)
    bus.create_topic(names[1], 3)
    yield names


def values(n: int) -> list[tuple[bytes, bytes, None]]:
    return [(b"k%d" % (i % 17), b"r%d" % i, None) for i in range(n)]


def sources(msgs: Sequence[Message]) -> list[tuple[int, int]]:
    """(partition, offset) of the source record of each output."""
    out = []
    for m in msgs:
        p, o, _ = (m.value() or b"").split(b":", 2)
        out.append((int(p), int(o)))
    return out


def test_records_finishing_out_of_order_commit_only_below_the_unacknowledged(
    bus: Bus, topics: tuple[str, str]
) -> None:
    src, out = topics
    gated = Gated(out)
    echo = Echo(bus, topics, gated, max_in_flight=64, stop=StopFlag())
    n = 30
    bus.produce(src, values(n))
    ends = {p: o for p, o in bus.end_offsets(src).items() if o}
    first = {(src, p) for p in ends}  # offset 0 of every partition with records
    with Running(echo):
        wait_for(lambda: len(gated.started) == n, "every record in flight")
        later = [x for x in gated.started if x[1] > 0]
        assert {tp for tp, o in gated.started if o == 0} == first
        gated.released.update(later)  # everything but offset 0 of each partition
        produced = bus.read(out, expect=len(later))
        assert sorted(sources(produced)) == sorted((tp[1], o) for tp, o in later)
        t0 = time.monotonic()
        wait_for(lambda: echo.commits.last > t0, "a commit after the outcomes")
        assert bus.committed(echo.group, src) == {}, "committed past records still in flight"
        gated.release_all = True
        wait_for(lambda: bus.committed(echo.group, src) == ends, "the commit of every record")
    assert sorted(sources(bus.read(out, expect=n))) == sorted(
        (tp[1], o) for tp, o in gated.started
    ), "an outcome missing or produced twice"


def test_pauses_at_max_in_flight_and_resumes_as_records_finish(
    bus: Bus, topics: tuple[str, str]
) -> None:
    src, out = topics
    gated = Gated(out)
    echo = Echo(bus, topics, gated, max_in_flight=4, stop=StopFlag())
    n = 40
    bus.produce(src, values(n))
    with Running(echo):
        wait_for(lambda: len(gated.started) == 4 and echo.paused_seen, "four records, paused")
        time.sleep(1.0)  # what a loop that went on reading would read meanwhile
        assert len(gated.started) == 4, "read past max_in_flight"
        gated.release_all = True
        wait_for(lambda: len(gated.started) == n, "every record")
        ends = {p: o for p, o in bus.end_offsets(src).items() if o}
        wait_for(lambda: bus.committed(echo.group, src) == ends, "the commit of every record")
    assert gated.most == 4, f"{gated.most} records were in flight at once (max_in_flight 4)"
    assert len(bus.read(out, expect=n)) == n
    assert echo.stats.rebalances == 2, "assigned once, revoked once at the close: no other"


REPLAYED = [(h.REPLAY_ID, b"r1")]


def test_records_giving_way_leave_room_for_the_ones_behind_them_up_to_twice_the_limit(
    bus: Bus, topics: tuple[str, str]
) -> None:
    """A replay that fills a worker's max_in_flight does not hold back the fresh records
    behind it in the same partition; records giving way stop at twice the limit."""
    _, out = topics
    src = f"{topics[0]}.one"
    bus.create_topic(src, 1)
    gated = Gated(out)
    gated.released = {((src, 0), o) for o in (4, 5)}  # the fresh ones finish, the rest wait
    echo = Echo(bus, (src, out), gated, max_in_flight=4, stop=StopFlag(), gives_way=replayed)
    replays = [(b"k%d" % i, b"replayed %d" % i, REPLAYED) for i in range(4)]
    bus.produce(src, [*replays, (b"a", b"fresh 4", None), (b"b", b"fresh 5", None)])
    with Running(echo):
        got = bus.read(out, expect=2)
        assert sorted(m.value() or b"" for m in got) == [b"0:4:fresh 4", b"0:5:fresh 5"]
        more = [(b"k%d" % i, b"replayed %d" % i, REPLAYED) for i in range(6, 12)]
        bus.produce(src, [*more, (b"c", b"fresh 12", None)])
        # 4 + 4 replayed in flight (the two fresh ones are done): twice max_in_flight
        wait_for(lambda: len(gated.started) == 10 and echo.paused_seen, "eight in flight, paused")
        time.sleep(1.0)  # what a loop that went on reading would read meanwhile
        assert len(gated.started) == 10, "read past twice max_in_flight"
        gated.release_all = True
        wait_for(lambda: len(gated.started) == 13, "every record")
    assert len(bus.read(out, expect=13)) == 13


def test_a_revoke_drains_in_flight_records_and_commits_what_is_safe(
    bus: Bus, topics: tuple[str, str]
) -> None:
    src, out = topics
    gated = Gated(out, hang_offset=3)  # offset 3 of each partition never finishes
    echo = Echo(bus, topics, gated, max_in_flight=100, stop=StopFlag(grace_s=8.0),
                revoke_grace_s=3.0)  # fmt: skip
    n = 60
    bus.produce(src, values(n))
    ends = {(src, p): o for p, o in bus.end_offsets(src).items()}
    with Running(echo) as running:
        wait_for(lambda: len(gated.started) == n, "every record in flight")
        assert bus.committed(echo.group, src) == {}
        with bus.rebalance(echo.group, src):
            wait_for(lambda: echo.revoked, "a revoke")
        # the records in flight finished while the revoke drained; what is below the one
        # that hangs was committed before the partitions went
        for committed in echo.revoked[:1]:
            assert committed, "no partition was revoked"
            for tp, offset in committed.items():
                assert offset == min(3, ends[tp]), (tp, offset)
        assert running.stopped_in() < 8.0, "the stop outlived its grace period"
    final = bus.committed(echo.group, src)
    assert final == {p: min(3, o) for (_, p), o in ends.items() if o}, "committed past a hang"
    done = set(sources(bus.read(out, expect=n - len(final))))
    assert done == {(p, o) for (_, p), end in ends.items() for o in range(end) if o != 3}


def test_a_stop_with_every_record_hanging_ends_within_the_grace_uncommitted(
    bus: Bus, topics: tuple[str, str]
) -> None:
    src, out = topics
    gated = Gated(out)  # nothing is ever released
    echo = Echo(bus, topics, gated, max_in_flight=100, stop=StopFlag(grace_s=5.0))
    bus.produce(src, values(20))
    with Running(echo) as running:
        wait_for(lambda: len(gated.started) == 20, "every record in flight")
        took = running.stopped_in()
    assert 5.0 - 3.0 - 1.0 < took < 5.0, f"the stop took {took:.1f}s with a grace of 5s"
    assert bus.committed(echo.group, src) == {}
    assert bus.read(out, expect=0, idle_s=0.5) == []


class GoesBack(Echo):
    """Once every record is in flight, seeks each partition back to its start (as the
    consumer did when it delivered an offset again within its assignment)."""

    def __init__(self, *args: object, n: int, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.n, self.went_back = n, False

    def before_poll(self) -> float:
        if not self.went_back and len(self.gated.started) == self.n:
            for p in self.consumer.assignment():
                self.consumer.seek(TopicPartition(p.topic, p.partition, 0))
            self.went_back = True
        return super().before_poll()


def test_records_delivered_again_within_the_assignment_are_taken_once(
    bus: Bus, topics: tuple[str, str]
) -> None:
    src, out = topics
    gated = Gated(out)
    n = 30
    echo = GoesBack(bus, topics, gated, max_in_flight=64, stop=StopFlag(), n=n)
    bus.produce(src, values(n))
    ends = {p: o for p, o in bus.end_offsets(src).items() if o}
    with Running(echo):
        wait_for(lambda: echo.went_back, "every record in flight, then the seek back")
        time.sleep(1.0)  # the records read again reach the loop meanwhile
        gated.release_all = True
        wait_for(lambda: bus.committed(echo.group, src) == ends, "the commit of every record")
    assert len(gated.started) == n, "a record read again was handled again"
    assert sorted(sources(bus.read(out, expect=n))) == sorted(
        (tp[1], o) for tp, o in gated.started
    ), "an outcome missing or produced twice"
