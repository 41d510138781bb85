"""A replay task at work (I/O, on a thread of the admin process).

    runner = Runner(settings, config, audit, task, publish)
    runner.start(); runner.go.set()       # go once the start is audited
    runner.cancel.set()                   # cancel: stops within a second
    runner.stop.set("shutdown")           # app stops: commit what is sent, leave it running

Exactly once per replay id. The runner's transactional producer has the
``transactional.id`` ``P.admin.replay.<dlq>``: one per DLQ, like the one
running task a DLQ may have. On start it calls ``init_transactions``, which
fences a runner of the same DLQ in an older (killed) process and aborts that
one's open transaction; then it reads the task's newest committed record
from ``P.replays`` (waiting until no transaction is open there) and goes on
from its position. Each transaction holds the records sent to ``P.work`` and
the task's record with the position past them, so a record is in ``P.work``
(``read_committed``) exactly when the task's committed progress is past it.
The producer holds the sent records until the commit (its ``hold``) and hands
them to Kafka then: ingest's fresh records share ``P.work``'s partitions, and
``read_committed`` readers (enrich) see nothing of a partition past an open
transaction's first record, so a transaction open while the task paces its
sends would hold the fresh records back as long.

Each step reads the next DLQ record in (partition, offset) order up to the
task's ``ends``; a record the filters match is counted, refused by the cap,
counted only (``max_records`` reached: the rest is still read so that
``matched`` is the dry run's), or sent (:func:`resend.work_record`). Sending
waits for the pace (:mod:`pacing`), while no provider of the task's chain
is available (paused, or breaker open), and while ``admin_replay_window``
records are sent and not through their first attempt (no outcome in
``P.results`` and no failed attempt in ``P.failures`` yet): a fleet that
cannot keep up holds at most that many of the replay's records, so fresh
records never queue in ``P.work`` behind the replay's backlog, and enrich's
lanes let them pass the ones it holds. The open transaction is committed
before any wait, at ``admin_replay_batch`` records, and every 0.2 s.
Outcomes carrying the replay id are read from ``P.results`` every second for
the canary (:mod:`canary`) and the counts; after the task ends the runner
goes on counting them, without writing, until every sent record has one or
:data:`WATCH_S` passed.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaException, TopicPartition
from prometheus_client import Counter

from services.admin.audit import AuditLog
from services.admin.dlq.canary import Canary, Outcomes
from services.admin.dlq.facts import RecordFacts
from services.admin.dlq.lookups import cached, first_available
from services.admin.dlq.pacing import Pacer, pace
from services.admin.dlq.plan import candidate
from services.admin.dlq.reader import Budget, passing, reading_consumer, tailing_consumer
from services.admin.dlq.resend import work_record
from services.admin.dlq.tail import Tail
from services.admin.dlq.task import ReplayTask, Status, newest, now
from services.admin.dlq.walk import Walk
from services.admin.models import AuditRecord
from services.admin.settings import AdminSettings
from services.sequencer.restore import StateReader
from shared import headers as h
from shared.config_file import SluiceConfig
from shared.envelope import Consumed
from shared.errors import DeliveryError, SluiceError, StackError
from shared.kafka.config import producer_config
from shared.kafka.shutdown import StopFlag
from shared.kafka.txn import TxnAborted, TxnProducer
from shared.redis.client import connect
from shared.topics import Topics

log = logging.getLogger(__name__)

COMMIT_EVERY_S = 0.2
"""How long sent records wait in the open transaction (they reach enrich at its commit)."""
HEALTH_EVERY_S = 0.5
OUTCOMES_EVERY_S = 0.2
"""How often a running task reads its outcomes (the window moves with them)."""
WATCH_EVERY_S = 1.0
"""How often a finished task's runner reads the outcomes still to come."""
WINDOW_SHOWN_AFTER_S = 2.0
"""How long the window stays full before the task shows it as why it waits (under load it
fills and empties all the time)."""
WATCH_S = 600.0
"""How long a finished task's runner goes on counting outcomes (in memory only)."""
STEP_S = 0.2

Publish = Callable[[ReplayTask], None]

REPLAYED = Counter(
    "sluice_admin_replayed_total",
    "Records replay tasks sent back to P.work (committed), by DLQ",
    ["dlq"],
)


def transactional_id(pipeline: str, dlq: str) -> str:
    return f"{pipeline}.admin.replay.{dlq}"


def progress_of(settings: AdminSettings, replay_id: str, timeout_s: float) -> ReplayTask | None:
    """The task's newest committed record in ``P.replays`` (None: never committed)."""
    return load_tasks(settings, timeout_s).get(replay_id)


def load_tasks(settings: AdminSettings, timeout_s: float) -> dict[str, ReplayTask]:
    """Every task in ``P.replays``, once no transaction is open there."""
    reader = StateReader(settings, Topics(settings.pipeline).replays)
    try:
        deadline = time.monotonic() + timeout_s
        reader.wait_stable([0], deadline)
        return newest(reader.read([0], deadline)[0])
    finally:
        reader.close()


class Runner:
    def __init__(self, settings: AdminSettings, config: SluiceConfig, audit: AuditLog,
                 task: ReplayTask, publish: Publish) -> None:  # fmt: skip
        self.settings = s = settings
        self.config = config
        self.audit = audit
        self.task = task  # the newest state (published after each commit and change)
        self.publish = publish
        self.topics = Topics(s.pipeline)
        self.go = threading.Event()
        self.cancel = threading.Event()
        self.stop = StopFlag(grace_s=s.shutdown_grace_s)
        self.discarded = False
        self.error: str | None = None  # why the runner gave up (the task stays as committed)
        self.canary = Canary(s.admin_replay_canary_share, s.admin_replay_canary_first)
        self.outcomes = Outcomes(task.id)
        self.thread = threading.Thread(target=self._main, name=f"replay-{task.id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def discard(self) -> None:
        """Never go (the start could not be audited)."""
        self.discarded = True
        self.go.set()

    def join(self, timeout: float) -> None:
        self.thread.join(timeout)

    # -- the thread ---------------------------------------------------------------------------
    def _main(self) -> None:
        self.go.wait()
        if self.discarded:
            return
        try:
            self._run()
        except (SluiceError, KafkaException, OSError) as exc:  # the task stays as committed
            self.error = f"{type(exc).__name__}: {exc}"
            log.error("replay %s stopped: %s", self.task.id, self.error)
            self.publish(self.task)

    def _run(self) -> None:
        s = self.settings
        txn = TxnProducer(producer_config(s, **{
            "transactional.id": transactional_id(s.pipeline, self.task.dlq),
            "transaction.timeout.ms": int(s.admin_replay_txn_timeout_s * 1000)}),
            s.admin_replay_txn_timeout_s, self.stop, hold=True)  # fmt: skip
        try:
            if not self._from_last_commit(txn):
                return
        finally:
            txn.close()
        self._watch()

    def _from_last_commit(self, txn: TxnProducer) -> bool:
        """Send from the task's last committed position; False if it had ended already."""
        txn.init()
        committed = progress_of(
            self.settings, self.task.id, 3 * self.settings.admin_replay_txn_timeout_s
        )
        if committed is not None and committed.status != "running":
            self.show(committed)
            return False
        work = _Work(self, txn, committed or self._snapshot())
        try:
            work.run()
        finally:
            work.close()
        return True

    def _snapshot(self) -> ReplayTask:
        """The records the task considers: each DLQ partition up to its end now."""
        consumer = reading_consumer(self.settings)
        try:
            return self.task.model_copy(update={
                "ends": _ends(consumer, self.task.topic),
                "results_from": _ends(consumer, self.topics.results),
                "failures_from": _ends(consumer, self.topics.failures),
                "next_partition": 0, "next_offset": 0})  # fmt: skip
        finally:
            consumer.close()

    def show(self, task: ReplayTask) -> None:
        """Publish ``task`` with the outcomes counted so far."""
        self.task = task.model_copy(update={"succeeded": self.outcomes.succeeded,
                                            "failed_again": self.outcomes.failed_again})  # fmt: skip
        self.publish(self.task)

    def _watch(self) -> None:
        """Count outcomes after the end, until each sent record has one (or WATCH_S)."""
        results = _Results(self)
        try:
            until = time.monotonic() + WATCH_S
            while not self.stop.wait(WATCH_EVERY_S) and time.monotonic() < until:
                results.poll()
                self.show(self.task)
                if self.outcomes.succeeded + self.outcomes.failed_again >= self.task.sent:
                    return
        finally:
            results.close()

    def finished(self, task: ReplayTask) -> None:
        """The completion's audit record (who started it, filters, counts)."""
        record = AuditRecord(id=task.id, time=datetime.now(UTC), who=task.who,
                             action=f"replay.{task.status}", target=task.dlq,
                             params={"filters": task.filters.model_dump(mode="json"),
                                     "max_records": task.max_records},
                             result=counts(task))  # fmt: skip
        try:
            self.audit.write(record)
        except DeliveryError as exc:
            log.error("replay %s %s: audit record not written (%s)", task.id, task.status, exc)


def counts(task: ReplayTask) -> dict[str, object]:
    return task.model_dump(mode="json", include={
        "status", "reason", "matched", "sent", "refused_by_cap", "cache_hits", "succeeded",
        "failed_again"})  # fmt: skip


def _ends(c: Consumer, topic: str) -> dict[int, int]:
    """Each partition's end now (``read_committed``: its last stable offset)."""
    md = c.list_topics(topic, timeout=10).topics.get(topic)
    if md is None or md.error is not None or not md.partitions:
        raise StackError(f"topic {topic!r} does not exist: run `sluice topics create`")
    return {p: int(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1])
            for p in sorted(md.partitions)}  # fmt: skip


class _Results:
    """The runner's incremental read of ``P.results`` (outcomes) and ``P.failures`` (failed
    attempts) for its records: a :class:`~services.admin.dlq.tail.Tail` each."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        topics, task = runner.topics, runner.task
        outcomes = runner.outcomes
        # A task started by an older release has no failures_from (None): from the end on.
        self.tails: list[tuple[Tail, Callable[[h.HeaderList], None]]] = [
            (Tail(tailing_consumer(runner.settings), topics.results, dict(task.results_from)),
             outcomes.add),
            (Tail(tailing_consumer(runner.settings), topics.failures,
                  dict(task.failures_from) or None), outcomes.add_failure),
        ]  # fmt: skip
        self.at = 0.0

    def poll(self) -> None:
        self.at = time.monotonic()
        for tail, add in self.tails:

            def visit(c: Consumed, add: Callable[[h.HeaderList], None] = add) -> None:
                add(c.headers)

            try:
                tail.poll(Budget(0.5, 50_000), visit)
            except StackError as exc:
                if not passing(exc):
                    raise
                # a busy broker timed out: the counts wait for the next poll, the task goes on
                log.warning("replay %s: %s not read this time: %s", self.runner.task.id, tail.topic, exc)  # fmt: skip

    def due(self) -> bool:
        return time.monotonic() - self.at >= OUTCOMES_EVERY_S

    def close(self) -> None:
        for tail, _ in self.tails:
            tail.consumer.close()


class _Work:
    """One run of the sending loop, from a committed state."""

    def __init__(self, runner: Runner, txn: TxnProducer, start: ReplayTask) -> None:
        self.r = runner
        self.s = runner.settings
        self.txn = txn
        self.committed = start
        self.task = start  # what the open transaction would commit
        self.in_txn = 0
        self.txn_at = 0.0
        self.consumer = reading_consumer(self.s)
        self.walk = Walk(self.consumer, start.topic, start.ends)
        self.walk.seek(start.next_partition, start.next_offset)
        self.results = _Results(runner)
        self.loop = asyncio.new_event_loop()
        self.redis = connect(self.s.redis_url.get_secret_value())
        name = start.task
        self.task_name = name or runner.config.default_task or next(iter(runner.config.tasks))
        self.task_cfg = runner.config.task(name)
        self.provider: str | None = None
        self.pacer = Pacer(None)
        self.health_at = 0.0
        self.provider_wait: str | None = None  # why no provider of the chain is available
        self.window_wait: str | None = None  # shown once the window stayed full a while
        self.window_since: float | None = None  # monotonic time the window became full
        self.digests: list[str] = []  # of the records in the open transaction, for cache_hits

    def close(self) -> None:
        self.txn.abort_quietly()
        self.consumer.close()
        self.results.close()
        self.loop.run_until_complete(self.redis.aclose())
        self.loop.close()

    def run(self) -> None:
        self.r.show(self.committed)
        if self.committed.sent == 0 and self.committed.next_offset == 0:
            self._commit()  # the task exists in P.replays from its first second
        while True:
            if self.r.cancel.is_set() and self._end("cancelled", "cancelled by an operator"):
                return
            if self.r.stop.is_set():
                return self._commit()
            if self.results.due():
                self.results.poll()
                # the task's size is known only at its end: judge the full window until then
                selected = max(self.task.sent, self.r.canary.first)
                reason = self.r.canary.tripped(self.r.outcomes, selected)
                if reason is not None and self._end("failed", reason):
                    return
            step = self.walk.next(STEP_S)
            if step is None and self._end("completed"):
                return
            if isinstance(step, Consumed):
                self._consider(step)
            if self.in_txn and time.monotonic() - self.txn_at >= COMMIT_EVERY_S:
                self._commit()

    def _consider(self, c: Consumed) -> None:
        facts = RecordFacts.of(c)
        task = self.task.seen(c.partition, c.offset)
        if task.filters.matches(facts):
            task = task.model_copy(update={"matched": task.matched + 1})
            if facts.replay_count >= self.s.admin_replay_cap:
                task = task.model_copy(update={"refused_by_cap": task.refused_by_cap + 1})
            elif not task.full():
                if not self._ready():
                    self.walk.seek(self.task.next_partition, self.task.next_offset)
                    return  # cancelled, stopped, or the provider is not back yet: again later
                task = self._send(c, task)
        self.task = task
        if self.in_txn >= self.s.admin_replay_batch:
            self._commit()

    def _ready(self) -> bool:
        """Wait for the pace and for an available provider; False if told to stop meanwhile."""
        while True:
            if self.r.cancel.is_set() or self.r.stop.is_set():
                return False
            if time.monotonic() - self.health_at >= HEALTH_EVERY_S:
                self._check_health()
            if self.provider is None:
                self._pause_for(HEALTH_EVERY_S)
                continue
            if self._window_full():
                continue
            wait = self.pacer.wait_s(time.monotonic())
            if wait <= 0:
                return True
            self._pause_for(wait)

    def _window_full(self) -> bool:
        """At most ``admin_replay_window`` records sent and not yet through their first
        attempt: a replay the fleet cannot keep up with waits here, not in ``P.work``
        ahead of fresh records. While full, sent records go out and outcomes are read
        often; False when there is room."""
        if self._room():
            return False
        if self.in_txn:
            self._commit()  # what it holds must reach enrich for the window to move
        if self.results.due():
            self.results.poll()
        if self._room():
            return False
        at = time.monotonic()
        self.window_since = self.window_since or at
        if self.window_wait is None and at - self.window_since >= WINDOW_SHOWN_AFTER_S:
            window = self.s.admin_replay_window
            self.window_wait = (f"{window} records sent are not through enrich yet "
                                "(SLUICE_ADMIN_REPLAY_WINDOW): waiting for their outcomes")  # fmt: skip
            self._show_waiting()
        self.r.cancel.wait(OUTCOMES_EVERY_S / 4)
        return True

    def _room(self) -> bool:
        if self.task.sent - self.r.outcomes.finished >= self.s.admin_replay_window:
            return False
        self.window_since = None
        if self.window_wait is not None:
            self.window_wait = None
            self._show_waiting()
        return True

    def _show_waiting(self) -> None:
        """Publish why the task waits now (a provider first, then the window), on a change."""
        waiting = self.provider_wait or self.window_wait
        if waiting != self.r.task.waiting:
            self.r.show(self.r.task.model_copy(update={"waiting": waiting}))
            log.info("replay %s: %s", self.task.id, waiting or "going on")

    def _pause_for(self, seconds: float) -> None:
        if seconds > 0.1 and self.in_txn:
            self._commit()
        self.r.cancel.wait(min(seconds, STEP_S))

    def _check_health(self) -> None:
        self.health_at = time.monotonic()
        chain = self.task_cfg.providers
        name, available = self.loop.run_until_complete(
            first_available(self.redis, self.s.pipeline, chain)
        )
        self.provider_wait = None if available else (
            f"no provider of {' → '.join(chain)} is available (paused or breaker open)")  # fmt: skip
        self._show_waiting()
        if not available:
            self.provider = None
        elif name != self.provider:
            self.provider = name
            cfg = self.r.config.providers[name]
            self.pacer = Pacer(pace(self.task.rate, cfg, self.task_cfg.model_for(name)),
                               self.pacer.next_at)  # fmt: skip

    def _send(self, c: Consumed, task: ReplayTask) -> ReplayTask:
        assert self.provider is not None
        kind = self.r.config.providers[self.provider].kind
        digest = candidate(
            self.task_cfg, self.provider, kind, c.partition, c.offset, c.value
        ).digest
        if digest is not None:
            self.digests.append(digest)  # looked up at the commit, all in one round trip
        record = work_record(c, task.id)
        if not self.in_txn:
            self.txn.begin()
            self.txn_at = time.monotonic()
        self.txn.produce(self.r.topics.work, record.value, record.key, record.headers)
        self.in_txn += 1
        self.pacer.sent(time.monotonic())
        return task.model_copy(update={"sent": task.sent + 1})

    def _commit(self) -> None:
        """The open transaction (if any) with the task's record; on abort, back to the last commit."""
        task = self.task.model_copy(update={"updated": now(), "waiting": None,
                                            "cache_hits": self.task.cache_hits + self._hits(),
                                            "succeeded": self.r.outcomes.succeeded,
                                            "failed_again": self.r.outcomes.failed_again})  # fmt: skip
        self.digests = []
        try:
            self.txn.begin()
            self.txn.produce(self.r.topics.replays, task.encode(), task.id.encode())
            self.txn.commit([], None)
        except TxnAborted as exc:
            log.warning("replay %s: %s; going on from the last commit", task.id, exc)
            self.task = self.committed
            self.walk.seek(self.task.next_partition, self.task.next_offset)
        else:
            REPLAYED.labels(task.dlq).inc(task.sent - self.committed.sent)
            self.committed = self.task = task
            self.r.show(task.model_copy(update={"waiting": self.r.task.waiting}))
        self.in_txn = 0

    def _hits(self) -> int:
        """How many records of the open transaction enrich will find in the result cache."""
        if not self.digests:
            return 0
        found = self.loop.run_until_complete(
            cached(self.redis, self.s.pipeline, self.task_cfg, set(self.digests))
        )
        return sum(d in found for d in self.digests)

    def _end(self, status: Status, reason: str | None = None) -> bool:
        """Commit the task in ``status``; False if that transaction was aborted (the walk
        went back to the last commit: the loop goes on from there)."""
        self.task = self.task.moved(status, now(), reason)
        self._commit()
        if self.committed.status != status:
            return False
        log.info("replay %s %s: %s", self.task.id, status, counts(self.committed))
        self.r.finished(self.r.task)
        return True
