"""The sequencer, as its own process, through broker restarts and a SIGTERM during an outage.

The broker is one of this module's own (it is stopped and started again on the
same port and data), never the session's. Records flow while it is down: a
feeder keeps producing announcements and outcomes, which its producer buffers
until the broker is back.

A supervisor is played by the test: a sequencer that exits non-zero (a
transactional call past its deadline) is started again, as Kubernetes or
systemd would; the exit must carry a one-line reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from devtools.fleet.processes import Processes
from devtools.stack.kafka_local import LocalKafka
from services.sequencer.settings import SequencerSettings
from shared.errors import StackError
from shared.kafka.provision import create_topics
from shared.settings import load
from tests.integration.test_sequencer import announce, check_order, ident, key_of, ok
from tests.support.kafka import end_offsets, read_all, wait_for

pytestmark = pytest.mark.integration

N = 250
DOWN_S = 15.0
GRACE_S = 8.0


@pytest.fixture(scope="module")
def broker() -> Iterator[LocalKafka]:
    try:
        kafka = LocalKafka(heap="512m").start()
    except StackError as exc:
        pytest.skip(f"this test restarts its broker, so it needs the local stack: {exc}")
    try:
        yield kafka
    finally:
        kept = os.environ.get("SLUICE_KEEP_LOGS")
        if kept:  # the data dir goes with the broker: its log is copied out first
            dest = Path(tempfile.mkdtemp(prefix="sluice-broker-restart-"))
            for path in (kafka.log_path, kafka.gc_log_path):
                if path.exists():
                    shutil.copy(path, dest / path.name)
            print(f"broker log kept in {dest}")
        kafka.cleanup()


def env_for(broker: LocalKafka, pipeline: str) -> dict[str, str]:
    return {
        "SLUICE_KAFKA_BOOTSTRAP": broker.bootstrap,
        "SLUICE_PIPELINE": pipeline,
        "SLUICE_PARTITIONS": "3",
        "SLUICE_WORKER_ID": "seq-1",
        # static membership: a restarted sequencer takes its partitions back at once
        "SLUICE_KAFKA_PROP_GROUP_INSTANCE_ID": "seq-1",
        "SLUICE_SHUTDOWN_GRACE_S": str(GRACE_S),
    }


class Feeder(threading.Thread):
    """Announces and settles records ``lo..hi`` a few at a time; the producer buffers while
    the broker is down (nothing is flushed until the end)."""

    def __init__(self, bootstrap: str, pipeline: str, lo: int, hi: int, every_s: float) -> None:
        super().__init__(daemon=True)
        # A restarting broker may answer metadata before it leads its partitions again;
        # librdkafka then keeps them leaderless until its next full refresh (5 min by
        # default), longer than this test waits: refresh every 5 s instead. Not idempotent:
        # an idempotent producer was seen (once in a CI run) never to send its buffered
        # records after the restart (flush left 328 of them after 240 s) while a new
        # client connected at once. One request in flight keeps each partition in order;
        # a retry may write a record twice, as ingest and enrich may, and the sequencer
        # emits each source record once whatever its copies.
        self.p = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": False,
                           "acks": "all", "max.in.flight.requests.per.connection": 1,
                           "partitioner": "murmur2_random", "linger.ms": 2,
                           "message.timeout.ms": 300_000,
                           "topic.metadata.refresh.interval.ms": 5_000})  # fmt: skip
        self.pipeline, self.lo, self.hi, self.every_s = pipeline, lo, hi, every_s
        self.left = -1
        self.failed: list[str] = []  # records the producer gave up on, with the reason

    def _delivered(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}[{msg.partition()}] {msg.key()!r}: {err}")

    def run(self) -> None:
        for i in range(self.lo, self.hi):
            k = key_of(i, keys=20)
            for topic, (key, value, headers) in (("work", announce(i, k)), ("results", ok(i, k))):
                self.p.produce(f"{self.pipeline}.{topic}", value, key, headers=headers,
                               on_delivery=self._delivered)  # fmt: skip
            self.p.poll(0)
            time.sleep(self.every_s)
        self.left = self.p.flush(240)


def emitted(broker: LocalKafka, pipeline: str, committed_only: bool = True) -> int:
    """Records (and transaction markers) in P.output; 0 while the broker cannot say."""
    try:
        ends = end_offsets(broker.bootstrap, f"{pipeline}.output", committed_only)
        return sum(ends.values())
    except KafkaException:
        return 0


def delivered(broker: LocalKafka, pipeline: str) -> int:
    """Source records committed in P.output, each counted once; 0 while the broker cannot
    say. (End offsets would count an aborted transaction's records and the markers too,
    and reach ``N`` before the output does.)"""
    try:
        out = read_all(broker.bootstrap, f"{pipeline}.output", timeout_s=10, idle_s=0.5)
    except KafkaException:
        return 0
    return len({ident(m) for m in out})


class Supervised:
    """The sequencer process, started again whenever it exits on its own (non-zero)."""

    def __init__(self, procs: Processes, env: dict[str, str]) -> None:
        self.procs, self.env = procs, env
        self.exits: list[int] = []
        self.procs.spawn("sequencer", ["sequencer"], env)

    def watch(self) -> None:
        p = self.procs.running["sequencer"]
        if p.poll() is not None:
            self.exits.append(p.returncode)
            self.procs.spawn("sequencer", ["sequencer"], self.env)


def reasons(procs: Processes) -> list[str]:
    """The one-line reasons the sequencer gave when it exited on its own."""
    text = procs.log_path("sequencer").read_text(errors="replace")
    return [line for line in text.splitlines() if line.startswith("sluice sequencer: error:")]


class Timeline:
    """What the test did to the broker, and when (UTC, as in the services' logs)."""

    def __init__(self) -> None:
        self.marks: list[str] = []

    def mark(self, what: str) -> None:
        now = time.time()
        self.marks.append(f"{time.strftime('%H:%M:%S', time.gmtime(now))}.{int(now * 1000) % 1000:03d} {what}")  # fmt: skip


def whereabouts(broker: LocalKafka, pipeline: str, missing: list[int]) -> str:
    """Where the missing records are: the feeder's topics, and ``P.output`` read
    uncommitted (there but invisible: in an aborted or never-ended transaction)."""

    def count(topic: str, committed_only: bool) -> dict[int, int]:
        seen = {i: 0 for i in missing}
        for m in read_all(broker.bootstrap, f"{pipeline}.{topic}", timeout_s=30, idle_s=2,
                          committed_only=committed_only):  # fmt: skip
            if ident(m) in seen:
                seen[ident(m)] += 1
        return seen

    return (
        f"copies in work {count('work', True)}, results {count('results', True)}, "
        f"output read uncommitted {count('output', False)}"
    )


def broker_warnings(broker: LocalKafka, limit: int = 40) -> str:
    """The broker log's WARN and ERROR lines and its starts and stops (the last ``limit``)."""
    try:
        lines = broker.log_path.read_text(errors="replace").splitlines()
    except OSError:
        return "(no broker log)"
    marks = (" WARN ", " ERROR ", "Kafka Server started", "] shutting down (kafka.server.BrokerServer)",
             "shut down completed")  # fmt: skip
    picked = [ln for ln in lines if any(m in ln for m in marks)]
    return "\n".join(picked[-limit:])


def sequencer_story(procs: Processes, limit: int = 30) -> str:
    """The sequencer's own log lines and its librdkafka errors (the last ``limit``)."""
    text = procs.log_path("sequencer").read_text(errors="replace")
    picked = [ln for ln in text.splitlines()
              if not ln.startswith("%") and ('"librdkafka"' not in ln or '"error"' in ln)]  # fmt: skip
    return "\n".join(picked[-limit:])


def check_output(broker: LocalKafka, pipeline: str, n: int, timeline: Timeline,
                 procs: Processes) -> None:  # fmt: skip
    out = read_all(broker.bootstrap, f"{pipeline}.output", expect=n, timeout_s=60, idle_s=3)
    ids = sorted(ident(m) for m in out)
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    assert not dupes, f"emitted twice: {dupes[:20]}"
    missing = sorted(set(range(n)) - set(ids))
    assert not missing, (f"missing: {missing[:20]}; {whereabouts(broker, pipeline, missing[:20])}"
                         f"\ntimeline: {timeline.marks}\nbroker:\n{broker_warnings(broker)}"
                         f"\nsequencer:\n{sequencer_story(procs)}")  # fmt: skip
    check_order(out)


def test_broker_down_15s_mid_stream_then_back_everything_once_in_order(
    broker: LocalKafka, pipeline: str, tmp_path: Path
) -> None:
    create_topics(load(SequencerSettings, kafka_bootstrap=broker.bootstrap, pipeline=pipeline,
                       partitions=3))  # fmt: skip
    procs = Processes(tmp_path)
    seq = Supervised(procs, env_for(broker, pipeline))
    feeder = Feeder(broker.bootstrap, pipeline, 0, N, every_s=0.04)
    timeline = Timeline()
    try:
        timeline.mark("feeder starts")
        feeder.start()
        wait_for(lambda: emitted(broker, pipeline) >= 50, 90, interval_s=0.1,
                 what="the sequencer to emit the first records")  # fmt: skip
        timeline.mark("broker stop begins")
        broker.stop()
        timeline.mark("broker stopped")
        down_at = time.monotonic()
        while time.monotonic() - down_at < DOWN_S:
            seq.watch()
            time.sleep(0.2)
        timeline.mark("broker start begins")
        broker.start()
        timeline.mark("broker ready")
        deadline = time.monotonic() + 180
        # Until the output holds every record: a sequencer that exits on its own (a
        # transaction it could not finish) is started again meanwhile.
        while (got := delivered(broker, pipeline)) < N and time.monotonic() < deadline:
            seq.watch()
            time.sleep(0.5)
        # a miss after the output held every record would be the broker's or the reader's
        timeline.mark(f"the output holds {got} of {N}")
        feeder.join(60)
        assert feeder.left == 0, "the feeder's records all reached the broker"
        assert not feeder.failed, f"records the feeder gave up on: {feeder.failed[:5]}"
        check_output(broker, pipeline, N, timeline, procs)
    finally:
        codes = procs.stop(grace_s=GRACE_S + 20)
    log = procs.log_path("sequencer").read_text(errors="replace")
    assert codes["sequencer"] == 0, log[-3000:]
    assert all(c == 1 for c in seq.exits), f"exits on its own are one-line errors: {seq.exits}"
    assert len(reasons(procs)) == len(seq.exits), log[-3000:]
    assert "Traceback" not in log, log[-3000:]


def test_sigterm_during_an_outage_ends_within_the_grace_period_and_a_restart_resumes(
    broker: LocalKafka, pipeline: str, tmp_path: Path
) -> None:
    create_topics(load(SequencerSettings, kafka_bootstrap=broker.bootstrap, pipeline=pipeline,
                       partitions=3))  # fmt: skip
    procs = Processes(tmp_path)
    env = env_for(broker, pipeline)
    # The first run commits only after a minute: its first transaction is surely open when
    # the broker stops (output visible only to read_uncommitted readers).
    slow = {**env, "SLUICE_TXN_INTERVAL_MS": "60000", "SLUICE_TXN_MIN_INTERVAL_MS": "60000"}
    procs.spawn("sequencer", ["sequencer"], slow)
    feeder = Feeder(broker.bootstrap, pipeline, 0, N, every_s=0.04)
    timeline = Timeline()
    try:
        timeline.mark("feeder starts")
        feeder.start()
        wait_for(lambda: emitted(broker, pipeline, committed_only=False) >= 50, 50,
                 interval_s=0.1, what="the sequencer to emit the first records")  # fmt: skip
        assert emitted(broker, pipeline) == 0, "nothing is committed yet"
        timeline.mark("broker stop begins")
        broker.stop()
        timeline.mark("broker stopped")
        time.sleep(4)  # the transaction stays open: nothing commits it for a minute
        p = procs.running["sequencer"]
        assert p.poll() is None, procs.log_path("sequencer").read_text()[-2000:]
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        try:
            code = p.wait(GRACE_S + 5)  # the grace, plus the interpreter's own exit
        except Exception:
            procs.kill("sequencer")
            raise AssertionError(f"SIGTERM not obeyed within {GRACE_S + 5:.0f}s") from None
        took = time.monotonic() - t0
        procs.running.pop("sequencer")
        assert code == 1, f"an unfinished transaction is a non-zero exit ({code} after {took:.1f}s)"
        assert len(reasons(procs)) == 1, procs.log_path("sequencer").read_text()[-2000:]
        timeline.mark("broker start begins")
        broker.start()
        timeline.mark("broker ready")
        procs.spawn("sequencer", ["sequencer"], env)
        feeder.join(120)
        assert feeder.left == 0
        assert not feeder.failed, f"records the feeder gave up on: {feeder.failed[:5]}"
        check_output(broker, pipeline, N, timeline, procs)
    finally:
        codes = procs.stop(grace_s=GRACE_S + 20)
    assert codes["sequencer"] == 0, procs.log_path("sequencer").read_text()[-3000:]
