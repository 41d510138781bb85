"""The router against a real broker and Redis: paths, delays, DLQ headers, malformed input.

Failure records are written into ``P.failures`` with
:func:`shared.outcomes.failure_record`, as enrich writes them. Rungs are
short (``1s,3s``) to keep the tests fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence

import pytest
from confluent_kafka import Message
from prometheus_client import REGISTRY

from devtools.stack.resolve import Stack
from services.router.service import Router
from services.router.settings import RouterSettings
from shared import envelope as env
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.kafka.shutdown import StopFlag
from shared.kinds import FailureKind as K
from shared.outcomes import Failure, Record, failure_record
from shared.settings import load
from tests.support.kafka import produce, read_all, wait_for
from tests.support.running import InThread

pytestmark = pytest.mark.integration

PROVIDER = "fakeprov"
TS0 = int(time.time() * 1000) - 60_000  # recent: DLQ retention counts from it
Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]


def fail(i: int, kind: K, attempt: int, retry_after: float | None = None,
         own: Sequence[tuple[str, bytes]] = (), provider: str = PROVIDER) -> Raw:  # fmt: skip
    """The failure record enrich would write for source record ``src[i % 3]@i``."""
    src = h.SourceId("src", i % 3, i)
    work = Record(f"k{i}".encode(), json.dumps({"i": i}).encode(),
                  [*own, *h.source_headers(src, TS0 + i, attempt)])  # fmt: skip
    rec = failure_record(
        work, attempt, Failure(kind, "ErrCls", f"failure {i}", retry_after), provider
    )
    return rec.key, rec.value, rec.headers


def ident(m: Message) -> int:
    return h.source_id(m.headers()).offset


def by_ident(msgs: list[Message]) -> dict[int, Message]:
    return {ident(m): m for m in msgs}


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Running(InThread[Router]):
    """A router in a thread of the test process."""

    def __init__(self, settings: RouterSettings) -> None:
        stop = StopFlag()
        super().__init__(Router(settings, stop), stop, "router", join_s=60)
        self.router = self.service


@pytest.fixture
def settings(kafka_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> RouterSettings:
    monkeypatch.setenv("SLUICE_RETRY_RUNGS", "1s,3s")
    s = load(RouterSettings)
    create_topics(s)
    return s


@pytest.fixture
def running(settings: RouterSettings) -> Iterator[Running]:
    with Running(settings) as r:
        yield r


def assert_on_time(
    stack: Stack, pipeline: str, work: dict[int, Message], rungs: Sequence[str]
) -> None:
    """Each retried record reached work at or after its due time, less than 1 s late."""
    due: dict[int, int] = {}
    for rung in rungs:
        for m in read_all(stack.bootstrap, f"{pipeline}.retry.{rung}", idle_s=0.5):
            due[ident(m)] = h.get_int(m.headers(), h.NOT_BEFORE)
    for i, nb in due.items():
        late = work[i].timestamp()[1] - nb
        assert 0 <= late <= 1000, f"record {i} forwarded {late} ms after its due time"


def test_each_kind_takes_its_path(stack: Stack, pipeline: str, running: Running) -> None:
    before = sample("sluice_router_lateness_seconds_count", rung="1s")
    t0 = time.time() * 1000
    produce(stack.bootstrap, f"{pipeline}.failures", [
        fail(1, K.TIMEOUT, 1),                    # → retry.1s → work, attempt 2
        fail(2, K.RATE_LIMITED, 2),               # → retry.3s → work, attempt 3
        fail(3, K.OVERLOADED, 1, retry_after=2),  # → waits 2 s in retry.3s → work, attempt 2
        fail(4, K.INVALID_OUTPUT, 1),             # → retry.1s → work
        fail(5, K.TIMEOUT, 3),                    # → dlq.timeout + dead
        fail(6, K.PROVIDER_ERROR, 3),             # → dlq.error + dead
        fail(7, K.BAD_REQUEST, 1),                # → dlq.error at once + dead
        fail(8, K.POISON, 1),                     # → dlq.error at once + dead
        fail(9, K.OUTAGE, 2),                     # → parked → work (provider healthy), attempt 2
    ])  # fmt: skip
    work = by_ident(
        read_all(stack.bootstrap, f"{pipeline}.work", expect=5, timeout_s=20, idle_s=0.5)
    )
    assert {i: h.get_int(m.headers(), h.ATTEMPT) for i, m in work.items()} == {
        1: 2, 2: 3, 3: 2, 4: 2, 9: 2}  # fmt: skip
    for i, m in work.items():
        assert m.key() == f"k{i}".encode() and json.loads(m.value()) == {"i": i}
    assert work[3].timestamp()[1] >= t0 + 2000, "the provider's retry-after was honoured"
    assert_on_time(stack, pipeline, work, ["1s", "3s"])
    retry_3s = by_ident(read_all(stack.bootstrap, f"{pipeline}.retry.3s", idle_s=0.5))
    assert set(retry_3s) == {2, 3}, (
        "retry-after 2 s waits in the 3s rung, not in front of the 1s one"
    )
    assert set(
        by_ident(read_all(stack.bootstrap, f"{pipeline}.dlq.timeout", expect=1, idle_s=0.5))
    ) == {5}
    assert set(
        by_ident(read_all(stack.bootstrap, f"{pipeline}.dlq.error", expect=3, idle_s=0.5))
    ) == {6, 7, 8}
    dead = read_all(stack.bootstrap, f"{pipeline}.results", expect=4, idle_s=0.5)
    assert {ident(m): h.get_str(m.headers(), h.OUTCOME) for m in dead} == dict.fromkeys(
        (5, 6, 7, 8), "dead"
    )
    assert set(by_ident(read_all(stack.bootstrap, f"{pipeline}.parked", idle_s=0.5))) == {9}
    assert sample("sluice_router_lateness_seconds_count", rung="1s") - before == 2
    assert running.router.errors == []


def test_dlq_records_keep_the_original_and_carry_dlt_headers(
    stack: Stack, pipeline: str, running: Running
) -> None:
    own = [("trace", b"t-1"), ("dup", b"a"), ("dup", b"b")]
    produce(stack.bootstrap, f"{pipeline}.failures", [fail(40, K.TIMEOUT, 3, own=own)])
    [m] = read_all(stack.bootstrap, f"{pipeline}.dlq.timeout", expect=1)
    hs = m.headers()
    assert (m.key(), json.loads(m.value())) == (b"k40", {"i": 40})
    assert m.timestamp()[1] == TS0 + 40, "the source record's timestamp"
    assert h.get(hs, "trace") == b"t-1" and [v for k, v in hs if k == "dup"] == [b"a", b"b"]
    assert h.source_id(hs) == h.SourceId("src", 1, 40)
    assert h.get_str(hs, env.DLT_TOPIC) == "src"
    assert env.decode_dlt_int(h.get(hs, env.DLT_PARTITION)) == 1
    assert env.decode_dlt_int(h.get(hs, env.DLT_OFFSET)) == 40
    assert h.get_str(hs, env.DLT_FQCN) == "sluice.timeout"
    assert h.get_str(hs, env.DLT_MESSAGE) == "ErrCls: failure 40"
    assert (h.get_str(hs, h.ERROR_KIND), h.get_str(hs, h.ERROR_CLASS)) == ("timeout", "ErrCls")
    history = json.loads(h.get(hs, h.ERROR_HISTORY) or b"")
    assert history[-1]["attempt"] == 3 and history[-1]["kind"] == "timeout"
    [dead] = read_all(stack.bootstrap, f"{pipeline}.results", expect=1)
    assert h.get_str(dead.headers(), h.OUTCOME) == "dead" and dead.key() == b"k40"
    assert dead.partition() == m.partition(), "keyed like the work record (co-partitioned)"


def _strip(raw: Raw, *names: str) -> Raw:
    key, value, hs = raw
    return key, value, [(n, v) for n, v in hs or [] if n not in names]


def _set(raw: Raw, name: str, value: bytes) -> Raw:
    key, val, hs = _strip(raw, name)
    return key, val, [*(hs or []), (name, value)]


def test_malformed_failures_go_to_the_error_dlq_and_the_router_keeps_going(
    stack: Stack, pipeline: str, running: Running
) -> None:
    produce(stack.bootstrap, f"{pipeline}.failures", [
        _strip(fail(50, K.TIMEOUT, 1), h.SRC_TOPIC, h.SRC_PARTITION, h.SRC_OFFSET),
        _set(fail(51, K.TIMEOUT, 1), h.ERROR_KIND, b"gremlins"),
        _strip(fail(52, K.TIMEOUT, 1), h.ERROR_KIND),
        _set(fail(53, K.TIMEOUT, 1), h.ATTEMPT, b"two"),
        fail(54, K.TIMEOUT, 1),  # a good one behind them
    ])  # fmt: skip
    dlq = read_all(stack.bootstrap, f"{pipeline}.dlq.error", expect=4)
    reasons = {m.key(): h.get_str(m.headers(), h.ERROR_MESSAGE) for m in dlq}
    assert all(h.get_str(m.headers(), h.ERROR_CLASS) == "malformed" for m in dlq)
    assert all(h.get_str(m.headers(), h.ERROR_KIND) == "poison" for m in dlq)
    assert all(h.get_str(m.headers(), env.DLT_FQCN) == "sluice.malformed" for m in dlq)
    assert "sluice.src.topic is missing" in (reasons[b"k50"] or "")
    assert "gremlins" in (reasons[b"k51"] or "")
    assert "sluice.error.kind is missing" in (reasons[b"k52"] or "")
    assert "sluice.attempt is not an integer" in (reasons[b"k53"] or "")
    no_id = next(m for m in dlq if m.key() == b"k50")
    assert h.get_str(no_id.headers(), env.DLT_TOPIC) == f"{pipeline}.failures"
    dead = read_all(stack.bootstrap, f"{pipeline}.results", expect=3)
    assert sorted(m.key() for m in dead) == [b"k51", b"k52", b"k53"], "no identity, no dead outcome"
    [back] = read_all(stack.bootstrap, f"{pipeline}.work", expect=1, timeout_s=15)
    assert back.key() == b"k54" and h.get_int(back.headers(), h.ATTEMPT) == 2
    assert running.thread.is_alive() and running.error is None


def test_a_long_rung_holds_without_a_rebalance(
    stack: Stack, pipeline: str, kafka_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A record waits 15 s while max.poll.interval.ms is 10 s: the group never notices."""
    monkeypatch.setenv("SLUICE_RETRY_RUNGS", "2s,15s")
    monkeypatch.setenv("SLUICE_KAFKA_PROP_MAX_POLL_INTERVAL_MS", "10000")
    monkeypatch.setenv("SLUICE_KAFKA_PROP_SESSION_TIMEOUT_MS", "6000")
    settings = load(RouterSettings)
    create_topics(settings)
    holds_before = sample("sluice_router_holds_total", reason="not_due")
    with Running(settings) as running:
        produce(stack.bootstrap, f"{pipeline}.failures", [fail(60, K.TIMEOUT, 2)])
        [m] = read_all(stack.bootstrap, f"{pipeline}.work", expect=1, timeout_s=25)
        assert h.get_int(m.headers(), h.ATTEMPT) == 3
        assert_on_time(stack, pipeline, {60: m}, ["15s"])
        router = running.router
        assert (router.assignments, router.revocations) == (1, 0), "no rebalance while holding"
    held = sample("sluice_router_holds_total", reason="not_due") - holds_before
    assert held == 1, f"held {held} times: the partition was re-read before the record was due"


def test_a_stopped_router_ends_its_producer_thread(settings: RouterSettings) -> None:
    """The transactional producer's call thread ends with the router (an embedding
    process, or a test running routers one after another, keeps no thread per router)."""
    with Running(settings) as running:
        wait_for(lambda: running.router.assignments >= 1, 30, what="the router's partitions")
        name = f"txn-{running.router.txn.txn_id}"
        assert any(t.name == name for t in threading.enumerate())
    assert running.error is None
    wait_for(lambda: all(t.name != name for t in threading.enumerate()), 10,
             what="the producer's call thread to end")  # fmt: skip


def test_missing_topics_are_a_clear_cli_error(stack: Stack, kafka_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "services.cli", "router"],
                          env={**os.environ, **kafka_env}, capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "does not exist" in proc.stderr and "sluice topics create" in proc.stderr
    assert "Traceback" not in proc.stderr
