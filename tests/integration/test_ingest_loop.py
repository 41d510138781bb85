"""ingest's loop, each test run on the in-memory double and on the real broker.

The ``memory`` runs need nothing running (fast coverage of the loop); the
``kafka`` runs are the same bodies on the session's broker.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from services.ingest.service import Ingest
from shared import headers as h
from shared.kafka.shutdown import StopFlag
from shared.settings import IngestSettings, load
from tests.support.bus import Bus, bus_fixture
from tests.support.running import InThread

bus = bus_fixture()


def ticket(i: int) -> bytes:
    return json.dumps({"id": i, "text": f"ticket {i}"}).encode()


class Running(InThread[Ingest]):
    def __init__(self, settings: IngestSettings, bus: Bus) -> None:
        stop = StopFlag()
        super().__init__(Ingest(settings, stop, bus.clients), stop, "ingest", join_s=60)


@pytest.fixture
def source(bus: Bus, pipeline: str) -> str:
    name = f"{pipeline}.source"
    bus.create_topic(name, 3)
    bus.create_pipeline_topics()
    return name


@pytest.fixture
def settings(source: str) -> IngestSettings:
    return load(IngestSettings, source_topic=source, max_record_bytes=200_000)


@pytest.fixture
def running(settings: IngestSettings, bus: Bus) -> Iterator[Running]:
    with Running(settings, bus) as r:
        yield r


def test_forwards_keyed_with_identity_and_headers(bus: Bus, source: str, pipeline: str,
                                                  running: Running) -> None:  # fmt: skip
    n = 300
    bus.produce(source, ((f"k{i % 7}".encode(), ticket(i), [("trace", f"t{i}".encode())])
                         for i in range(n)))  # fmt: skip
    work = bus.read(f"{pipeline}.work", expect=n)
    assert len(work) == n
    seen = set()
    for m in work:
        hs = m.headers()
        src = h.source_id(hs)
        doc = json.loads(m.value() or b"")
        assert src.topic == source and m.key() == f"k{doc['id'] % 7}".encode()
        assert h.get(hs, "trace") == f"t{doc['id']}".encode() and h.get(hs, h.ATTEMPT) == b"1"
        seen.add((src.partition, src.offset))
    assert len(seen) == n
    by_key: dict[bytes | None, set[int | None]] = {}
    for m in work:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(ps) == 1 for ps in by_key.values())


def test_a_stop_commits_everything_forwarded(bus: Bus, source: str, pipeline: str,
                                            settings: IngestSettings) -> None:  # fmt: skip
    with Running(settings, bus):
        bus.produce(source, ((b"k%d" % i, ticket(i), None) for i in range(200)))
        bus.read(f"{pipeline}.work", expect=200)
    ends = {p: o for p, o in bus.end_offsets(source).items() if o > 0}
    assert bus.committed(settings.group, source) == ends


def test_poison_goes_to_its_dlq_and_the_stream_goes_on(bus: Bus, source: str, pipeline: str,
                                                      running: Running) -> None:  # fmt: skip
    bus.produce(source, [(b"bad", b"{not json", None), (b"none", None, None),
                         (b"ok", ticket(1), None)])  # fmt: skip
    poison = bus.read(f"{pipeline}.dlq.poison", expect=2)
    assert sorted(m.key() or b"" for m in poison) == [b"bad", b"none"]
    assert {h.get_str(m.headers(), h.ERROR_CLASS) for m in poison} == {"undecodable"}
    assert [m.key() for m in bus.read(f"{pipeline}.work", expect=1)] == [b"ok"]
    assert running.error is None and running.thread.is_alive()
