"""ingest against a real broker: forwarding, poison, SIGKILL + restart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from devtools.stack.resolve import Stack
from services.ingest.service import Ingest
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.kafka.shutdown import StopFlag
from shared.settings import CommonSettings, IngestSettings, load
from tests.support.kafka import create_topic, end_offsets, produce, read_all, wait_for
from tests.support.rawheaders import produce_raw
from tests.support.running import InThread

pytestmark = pytest.mark.integration


def ticket(i: int) -> bytes:
    return json.dumps({"id": i, "text": f"ticket {i}: my invoice is wrong"}).encode()


@pytest.fixture
def source(stack: Stack, kafka_env: dict[str, str], pipeline: str) -> str:
    name = f"{pipeline}.source"
    create_topic(stack.bootstrap, name, partitions=3)
    create_topics(load(CommonSettings), name)
    return name


class Running(InThread[Ingest]):
    """Ingest in a thread of the test process."""

    def __init__(self, settings: IngestSettings) -> None:
        stop = StopFlag()
        super().__init__(Ingest(settings, stop), stop, "ingest", join_s=60)
        self.ingest = self.service


@pytest.fixture
def running(source: str) -> Iterator[Running]:
    with Running(load(IngestSettings, source_topic=source, max_record_bytes=200_000)) as r:
        yield r


def test_forwards_100k_with_headers_intact(
    stack: Stack, source: str, pipeline: str, running: Running
) -> None:
    n = 100_000
    produce(stack.bootstrap, source, (
        (f"k{i % 997}".encode(), ticket(i), [("trace", f"t{i}".encode()), ("dup", b"1"), ("dup", b"2")])
        for i in range(n)
    ))  # fmt: skip
    work = read_all(stack.bootstrap, f"{pipeline}.work", expect=n, timeout_s=120)
    assert running.error is None
    ids = Counter()
    for m in work:
        hs = m.headers()
        src = h.source_id(hs)
        assert src.topic == source
        doc = json.loads(m.value())
        assert m.key() == f"k{doc['id'] % 997}".encode()
        assert h.get(hs, "trace") == f"t{doc['id']}".encode()
        assert [v for k, v in hs if k == "dup"] == [b"1", b"2"], "repeated headers keep order"
        assert h.get(hs, h.ATTEMPT) == b"1"
        assert int(h.get(hs, h.SRC_TS) or 0) > 0
        ids[(src.partition, src.offset)] += 1
    assert len(ids) == n, f"{n - len(ids)} source records missing from work"
    # keyed by the source key: one key always lands in one work partition
    by_key: dict[bytes, set[int]] = {}
    for m in work:
        by_key.setdefault(m.key(), set()).add(m.partition())
    assert all(len(ps) == 1 for ps in by_key.values())


def test_records_without_key_pass_through(
    stack: Stack, source: str, pipeline: str, running: Running
) -> None:
    produce(stack.bootstrap, source, ((None, ticket(i), None) for i in range(50)))
    work = read_all(stack.bootstrap, f"{pipeline}.work", expect=50)
    assert len(work) == 50 and all(m.key() is None for m in work)


def test_poison_cases_land_with_reason_and_ingest_keeps_running(
    stack: Stack, source: str, pipeline: str, running: Running
) -> None:
    big = json.dumps({"text": "x" * 300_000}).encode()
    cases = [
        (b"k1", b"{not json", None, "undecodable"),
        (b"k2", b"[1, 2, 3]", None, "undecodable"),
        (b"k3", b"\xff\xfe\x00garbage", None, "undecodable"),
        (b"k4", None, None, "undecodable"),
        (b"k5", big, None, "oversize"),
        (b"k7", ticket(7), [("huge", b"h" * 20_000)], "bad_headers"),
    ]
    produce(stack.bootstrap, source, [(k, v, hs) for k, v, hs, _ in cases])
    produce(stack.bootstrap, source, [(b"ok", ticket(99), None)])
    poison = read_all(stack.bootstrap, f"{pipeline}.dlq.poison", expect=len(cases))
    by_key = {m.key(): m for m in poison}
    assert set(by_key) == {k for k, *_ in cases}
    for key, value, _hs, reason in cases:
        m = by_key[key]
        assert h.get_str(m.headers(), h.ERROR_KIND) == "poison"
        assert h.get_str(m.headers(), h.ERROR_CLASS) == reason, key
        assert h.get_str(m.headers(), h.ERROR_MESSAGE)
        assert m.value() == value, "raw bytes are kept"
        src = h.source_id(m.headers())
        assert src.topic == source
    work = read_all(stack.bootstrap, f"{pipeline}.work", expect=1)
    assert [m.key() for m in work] == [b"ok"]
    assert running.error is None and running.thread.is_alive()


def test_a_header_name_that_is_not_utf8_is_poison_and_the_stream_goes_on(
    stack: Stack, source: str, pipeline: str, running: Running
) -> None:
    produce(stack.bootstrap, source, [(b"before", ticket(1), None)])
    produce_raw(
        stack.bootstrap, source, [(b"bad", ticket(2), [(b"na\xffme", b"v"), (b"ok", b"1")])]
    )
    produce(stack.bootstrap, source, [(b"after", ticket(3), None)])
    poison = read_all(stack.bootstrap, f"{pipeline}.dlq.poison", expect=1)
    assert [m.key() for m in poison] == [b"bad"] and poison[0].value() == ticket(2)
    hs = poison[0].headers()
    assert h.get_str(hs, h.ERROR_CLASS) == "bad_headers"
    assert "UTF-8" in (h.get_str(hs, h.ERROR_MESSAGE) or "")
    work = read_all(stack.bootstrap, f"{pipeline}.work", expect=2)
    assert sorted(m.key() for m in work) == [b"after", b"before"]
    assert running.error is None and running.thread.is_alive()


def test_sluice_headers_of_source_records_are_stripped(
    stack: Stack, source: str, pipeline: str, running: Running
) -> None:
    forged = [("sluice.src.offset", b"123"), ("sluice.retry-after-s", b"100000"),
              ("sluice.late", b"true"), ("sluice.replay-id", b"r"), ("sluice.replay-count", b"9"),
              ("sluice.attempt", b"3"), ("trace", b"t")]  # fmt: skip
    produce(stack.bootstrap, source, [(b"k", ticket(1), forged)])
    [m] = read_all(stack.bootstrap, f"{pipeline}.work", expect=1)
    hs = m.headers()
    assert {n for n, _ in hs if n.startswith("sluice.")} == {
        h.SRC_TOPIC, h.SRC_PARTITION, h.SRC_OFFSET, h.SRC_TS, h.ATTEMPT}  # fmt: skip
    assert h.get(hs, h.ATTEMPT) == b"1" and h.source_id(hs).offset == 0
    assert h.get(hs, "trace") == b"t"
    assert read_all(stack.bootstrap, f"{pipeline}.dlq.poison", expect=0, idle_s=1) == []


def _ingest_proc(env: dict[str, str], source: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "services.cli", "ingest", "--source-topic", source],
        # a short session so the restarted instance gets the partitions of the killed one quickly
        env={**os.environ, **env, "SLUICE_BATCH_SIZE": "500", "SLUICE_KAFKA_PROP_SESSION_TIMEOUT_MS": "6000"},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_sigkill_mid_run_then_restart_loses_nothing(
    stack: Stack, kafka_env: dict[str, str], source: str, pipeline: str
) -> None:
    n = 100_000
    records = [(f"k{i % 101}".encode(), ticket(i), None) for i in range(n)]
    produce(stack.bootstrap, source, records[: n // 2])

    def trickle() -> None:  # the rest arrives while ingest runs: the kill lands mid-stream
        for i in range(n // 2, n, 5000):
            produce(stack.bootstrap, source, records[i : i + 5000])
            time.sleep(0.2)

    rest = threading.Thread(target=trickle)
    proc = _ingest_proc(kafka_env, source)
    rest.start()
    wait_for(lambda: sum(end_offsets(stack.bootstrap, f"{pipeline}.work").values()) > n // 4, 60,
             what="ingest to forward a quarter")  # fmt: skip
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    forwarded_before = sum(end_offsets(stack.bootstrap, f"{pipeline}.work").values())
    assert forwarded_before < n, "the kill must land mid-run for this test to mean anything"
    rest.join(60)
    proc = _ingest_proc(kafka_env, source)
    try:
        work = read_all(stack.bootstrap, f"{pipeline}.work", expect=n, timeout_s=120)
        seen = {(h.source_id(m.headers()).partition, h.source_id(m.headers()).offset) for m in work}
        assert len(seen) == n, f"{n - len(seen)} source records lost"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]


def test_sigterm_commits_and_exits_cleanly(
    stack: Stack, kafka_env: dict[str, str], source: str, pipeline: str
) -> None:
    produce(stack.bootstrap, source, ((b"k", ticket(i), None) for i in range(1000)))
    proc = _ingest_proc(kafka_env, source)
    read_all(stack.bootstrap, f"{pipeline}.work", expect=1000)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err.decode()[-2000:]
    # A restart re-reads nothing: everything forwarded was committed on the way out.
    proc = _ingest_proc(kafka_env, source)
    try:
        wait_for(lambda: True, 0.1)
        extra = read_all(stack.bootstrap, f"{pipeline}.work", expect=1000, idle_s=4)
        assert len(extra) == 1000, f"{len(extra) - 1000} records forwarded twice after a clean stop"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=60)


def test_missing_source_topic_is_a_clear_cli_error(stack: Stack, kafka_env: dict[str, str]) -> None:
    create_topics(load(CommonSettings))
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", "--source-topic", "does-not-exist"],
        env={**os.environ, **kafka_env}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "does-not-exist" in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr
