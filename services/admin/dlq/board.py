"""The admin process's replay tasks: what ``P.replays`` says, and the runners alive here.

    board = ReplayBoard(settings, config, audit)
    board.start()                  # app start: load P.replays, resume tasks left running
    outcome = board.begin(task)    # a new task (or the existing one, or the DLQ's live one)
    board.go(id) / board.discard(id)   # after the start's audit record: run, or never
    board.cancel(id)
    board.stop(grace_s)            # app stop: runners commit what they sent and end

A task left ``running`` by a killed process is resumed when the app starts
(and again on the same request, if its runner gave up); its runner fences
the old one first (see :mod:`services.admin.dlq.runner`). Reads and changes
are quick and under one lock; the loading, which blocks, runs on a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from services.admin.audit import AuditLog
from services.admin.dlq.runner import Runner, load_tasks
from services.admin.dlq.task import ReplayTask, now
from services.admin.settings import AdminSettings
from shared.config_file import SluiceConfig
from shared.errors import SluiceError, StackError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Begun:
    task: ReplayTask
    new: bool  # False: the task with this id existed already
    busy: ReplayTask | None = None  # another task holds the DLQ (nothing was started)


class ReplayBoard:
    def __init__(self, settings: AdminSettings, config: SluiceConfig, audit: AuditLog) -> None:
        self.settings = settings
        self.config = config
        self.audit = audit
        self._tasks: dict[str, ReplayTask] = {}
        self._runners: dict[str, Runner] = {}
        self._lock = threading.Lock()
        self._loaded = threading.Event()
        self._load_lock = threading.Lock()

    # -- loading ----------------------------------------------------------------------
    def start(self) -> None:
        threading.Thread(target=self._first_load, name="replays-load", daemon=True).start()

    def _first_load(self) -> None:
        try:
            self.ready()
        except SluiceError as exc:
            log.warning("replay tasks not loaded yet (%s): loading again on the next request", exc)

    def ready(self) -> None:
        """Load ``P.replays`` once (blocks) and resume its running tasks; StackError if it
        cannot be read."""
        with self._load_lock:
            if self._loaded.is_set():
                return
            wait_s = 3 * self.settings.admin_replay_txn_timeout_s
            try:
                tasks = load_tasks(self.settings, wait_s)
            except Exception as exc:  # KafkaException or RestoreTimeout: not readable now
                raise StackError(f"cannot read the replay tasks: {exc}") from exc
            with self._lock:
                self._tasks.update({i: t for i, t in tasks.items() if i not in self._tasks})
                left = [t for t in self._tasks.values() if t.live and t.id not in self._runners]
                for task in left:
                    self._run(task).go.set()
            for task in left:
                log.info("replay %s was left %s: resuming it", task.id, task.status)
            self._loaded.set()

    # -- reads --------------------------------------------------------------------------
    def get(self, replay_id: str) -> ReplayTask | None:
        with self._lock:
            return self._tasks.get(replay_id)

    def all(self) -> list[ReplayTask]:
        with self._lock:
            return sorted(self._tasks.values(), key=lambda t: t.created, reverse=True)

    def watched(self, replay_id: str) -> bool:
        """A runner here counts the task's outcomes (else they are read from P.results)."""
        with self._lock:
            runner = self._runners.get(replay_id)
            return runner is not None and runner.alive

    # -- changes --------------------------------------------------------------------------
    def begin(self, task: ReplayTask) -> Begun:
        """Reserve ``task``'s DLQ and make its runner (it waits for :meth:`go`)."""
        with self._lock:
            old = self._tasks.get(task.id)
            if old is not None:
                if old.live and not self._alive(old.id):
                    self._run(old).go.set()  # its runner gave up: the same request resumes it
                return Begun(old, False)
            busy = next((t for t in self._tasks.values() if t.live and t.dlq == task.dlq), None)
            if busy is not None:
                return Begun(task, False, busy)
            self._tasks[task.id] = task
            self._run(task)
            return Begun(task, True)

    def go(self, replay_id: str) -> None:
        with self._lock:
            self._runners[replay_id].go.set()

    def discard(self, replay_id: str) -> None:
        """Forget a task that never went (its start could not be audited)."""
        with self._lock:
            runner = self._runners.pop(replay_id, None)
            self._tasks.pop(replay_id, None)
        if runner is not None:
            runner.discard()

    def cancel(self, replay_id: str) -> ReplayTask:
        """Ask the task's runner to stop (one is started to do it if none is alive)."""
        with self._lock:
            task = self._tasks[replay_id]
            if task.status != "running":
                return task
            task = self._tasks[replay_id] = task.moved("cancelling", now())
            runner = self._runners.get(replay_id) if self._alive(replay_id) else None
            if runner is None:
                runner = self._run(task)
                runner.go.set()
            runner.cancel.set()
            return task

    def stop(self, grace_s: float) -> None:
        """Every runner commits what it sent and ends (within ``grace_s``)."""
        with self._lock:
            runners = list(self._runners.values())
        for r in runners:
            if not r.go.is_set():
                r.discard()
            r.stop.set("the admin is stopping")
        deadline = time.monotonic() + grace_s
        for r in runners:
            r.join(max(0.0, deadline - time.monotonic()))

    # -- internals ------------------------------------------------------------------------
    def _alive(self, replay_id: str) -> bool:
        runner = self._runners.get(replay_id)
        return runner is not None and runner.alive and runner.error is None

    def _run(self, task: ReplayTask) -> Runner:
        runner = Runner(self.settings, self.config, self.audit, task, self._publish)
        self._runners[task.id] = runner
        runner.start()
        return runner

    def _publish(self, task: ReplayTask) -> None:
        with self._lock:
            old = self._tasks.get(task.id)
            if old is not None and old.status == "cancelling" and task.status == "running":
                task = task.model_copy(update={"status": "cancelling"})  # the runner will see it
            self._tasks[task.id] = task
