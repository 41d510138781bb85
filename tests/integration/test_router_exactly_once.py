"""The router SIGKILLed again and again while failures flow: a record ends in exactly one place.

Before the router wrote in transactions, a kill between writing a retry and
committing the failure's offset made the retry twice; one copy later
succeeded and the other died, so the DLQ held a record that had succeeded.

Here the test plays enrich: a read_committed reader of ``P.work`` answers the
first copy of every identity with an ``ok`` outcome and any further copy with
a non-retryable failure (which the router sends to ``P.dlq.error`` with a
``dead`` outcome): a forked record shows up as both ok and dead.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from devtools.fleet.processes import Processes
from devtools.stack.resolve import Stack
from services.router.settings import RouterSettings
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.kinds import FailureKind as K
from shared.outcomes import Failure, Record, failure_record, ok_result
from shared.settings import load
from tests.integration.test_router import fail, ident
from tests.support.kafka import read_all, wait_for

pytestmark = pytest.mark.integration

N = 800
KILLS = 6


def respawn(procs: Processes, env: dict[str, str]) -> int:
    """SIGKILL the router and start another; where the new one's log begins."""
    procs.kill("router")
    start = procs.log_path("router").stat().st_size  # the killed one writes no more
    procs.spawn("router", ["router"], env)
    return start


def started(procs: Processes, since: int) -> bool:
    """Whether the router started at log offset ``since`` got as far as handling signals
    (it logs its roles). On a busy machine a router may be killed before it gets there."""
    procs.check()  # an exit is reported with its log, not waited out
    with open(procs.log_path("router"), "rb") as f:
        f.seek(since)
        return b" rungs " in f.read()


def retried(i: int) -> bool:
    return i % 4 != 3  # the rest are bad requests: dead at once


class FakeEnrich(threading.Thread):
    """Answers every record of P.work (read_committed): the first copy of an identity
    succeeds, any later copy fails for good."""

    def __init__(self, bootstrap: str, pipeline: str) -> None:
        super().__init__(daemon=True)
        self.pipeline = pipeline
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{pipeline}.fake-enrich",
                           "isolation.level": "read_committed", "enable.auto.commit": False})  # fmt: skip
        md = self.c.list_topics(f"{pipeline}.work", timeout=10)
        self.c.assign([TopicPartition(f"{pipeline}.work", p, 0) for p in md.topics[f"{pipeline}.work"].partitions])  # fmt: skip
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True,
                           "partitioner": "murmur2_random", "linger.ms": 2})  # fmt: skip
        self.seen: dict[int, int] = {}
        self.done = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.done.is_set():
                for m in self.c.consume(500, 0.2):
                    if m.error() is None:
                        self._answer(m)
                self.p.poll(0)
            assert self.p.flush(30) == 0
        except BaseException as exc:
            self.error = exc
        finally:
            self.c.close()

    def _answer(self, m: Message) -> None:
        i = ident(m)
        self.seen[i] = self.seen.get(i, 0) + 1
        work = Record(m.key(), m.value(), list(m.headers() or []))
        attempt = h.get_int(work.headers, h.ATTEMPT) or 1
        if self.seen[i] == 1:
            out = ok_result(work, "sentiment", {"n": i}, "fakeprov", "m1", 10, 1, 1)
            topic = f"{self.pipeline}.results"
        else:
            failure = Failure(K.BAD_REQUEST, "Refused", "a second copy failed")
            out = failure_record(work, attempt, failure, "fakeprov")
            topic = f"{self.pipeline}.failures"
        self.p.produce(topic, out.value, out.key, headers=out.headers)


def outcomes(msgs: list[Message]) -> dict[int, list[str]]:
    got: dict[int, list[str]] = {}
    for m in msgs:
        got.setdefault(ident(m), []).append(h.get_str(m.headers(), h.OUTCOME) or "?")
    return got


def test_sigkill_at_random_moments_never_forks_a_record(
    stack: Stack, pipeline: str, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(load(RouterSettings, retry_rungs="1s,3s"))
    # Transactions open for a second: most kills land between routing and committing.
    env = {**kafka_env, "SLUICE_RETRY_RUNGS": "1s,3s", "SLUICE_WORKER_ID": "router-1",
           "SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID": "router-1", "SLUICE_COMMIT_INTERVAL_S": "1"}  # fmt: skip
    rnd = random.Random(12)
    failures = [fail(i, K.TIMEOUT if retried(i) else K.BAD_REQUEST, 1) for i in range(N)]
    enrich = FakeEnrich(stack.bootstrap, pipeline)
    enrich.start()
    procs = Processes(tmp_path)
    procs.spawn("router", ["router"], env)
    feeder = Producer({"bootstrap.servers": stack.bootstrap, "enable.idempotence": True,
                       "partitioner": "murmur2_random", "linger.ms": 2})  # fmt: skip
    kills, last = 0, 0
    try:
        next_kill = time.monotonic() + rnd.uniform(2.5, 4.0)
        for i, (key, value, headers) in enumerate(failures):
            feeder.produce(f"{pipeline}.failures", value, key, headers=headers)
            if i % 5 == 4:
                assert feeder.flush(30) == 0
                time.sleep(0.1)  # about 50 failures a second, for 16 s ...
            if kills < KILLS and time.monotonic() >= next_kill:
                last = respawn(procs, env)  # between a write and its commit, or anywhere
                kills += 1
                next_kill = time.monotonic() + rnd.uniform(2.5, 4.0)
        assert feeder.flush(30) == 0
        while kills < KILLS:  # ... and the kills go on while retries come due
            time.sleep(max(0.0, next_kill - time.monotonic()))
            last = respawn(procs, env)
            kills += 1
            next_kill = time.monotonic() + rnd.uniform(2.5, 4.0)
        n_ok, n_dead = sum(map(retried, range(N))), N - sum(map(retried, range(N)))
        results = read_all(stack.bootstrap, f"{pipeline}.results", expect=N, timeout_s=120,
                           idle_s=6)  # fmt: skip
        procs.check()
        # The last router may still be starting when the results are all in (its
        # predecessor wrote them): a SIGTERM before it handles signals is no clean stop.
        wait_for(lambda: started(procs, last), 60, what="the last router to start")
    finally:
        enrich.done.set()
        codes = procs.stop(grace_s=60)
    enrich.join(30)
    assert enrich.error is None, repr(enrich.error)
    log = procs.log_path("router").read_text(errors="replace")
    assert codes["router"] == 0, log[-3000:]
    retries = read_all(stack.bootstrap, f"{pipeline}.retry.1s", idle_s=1)
    copies = outcomes(retries)
    assert sorted(copies) == [i for i in range(N) if retried(i)], "every retry written"
    twice = sorted(i for i, c in copies.items() if len(c) > 1)
    assert not twice, f"{len(twice)} retries visible twice to read_committed readers: {twice[:10]}"
    assert sorted(i for i, n in enrich.seen.items() if n > 1) == [], "a retry reached work twice"
    got = outcomes(results)
    forked = sorted(i for i, o in got.items() if "ok" in o and "dead" in o)
    assert not forked, f"{len(forked)} records both ok and dead: {forked[:10]}"
    assert sum(o.count("ok") for o in got.values()) == n_ok
    assert sorted(i for i, o in got.items() if o == ["dead"]) == [
        i for i in range(N) if not retried(i)
    ], "every bad request dead exactly once"
    error = read_all(stack.bootstrap, f"{pipeline}.dlq.error", idle_s=1)
    assert sorted(ident(m) for m in error) == [i for i in range(N) if not retried(i)]
    assert n_dead == len(error)
    # The kills did land inside transactions. The router hands its records to Kafka at the
    # commit, so a kill during a commit leaves aborted records (there, unseen), and a kill
    # before it leaves records routed (a DLQ route is logged as it is decided) that the
    # next router routed again.
    written = sum(len(read_all(stack.bootstrap, f"{pipeline}.{t}", idle_s=1, committed_only=False))
                  for t in ("retry.1s", "dlq.error", "work"))  # fmt: skip
    aborted = written - len(retries) - len(error) - sum(enrich.seen.values())
    routed_again = log.count(f"{pipeline}.dlq.error: ") - n_dead
    print(f"records of aborted transactions: {aborted}; DLQ routes decided again: {routed_again}")
    assert aborted > 0 or routed_again > 0, (
        "no kill landed inside a transaction: the test proved nothing"
    )
