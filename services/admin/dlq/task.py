"""A replay task: its state, how it moves, and its record in ``P.replays`` (pure).

One record per task in the compacted ``P.replays`` (key: the replay id,
value: :meth:`ReplayTask.encode`); the newest record of a key is the task.
The runner writes it in the same Kafka transaction as the records it sends
to ``P.work``, so what a task says it sent is what ``read_committed`` readers
see, and a restarted runner goes on from exactly there.

Statuses::

    running ──► completed                 every selected record sent
       │  └──► failed (reason)            canary tripped, or the DLQ cannot be read
       └──► cancelling ──► cancelled      cancel asked; the runner stops within a second
            (a running task cancelled where no runner is alive goes to cancelled at once)

The records a task considers are fixed when it starts: each partition of the
DLQ up to its end then (``ends``), in (partition, offset) order, like the dry
run's selection. ``position`` is the next record to consider. A record that
fails again lands in the DLQ behind ``ends``, so one replay id never sends a
record twice.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from services.admin.dlq.filters import Filters

Status = Literal["running", "completed", "cancelling", "cancelled", "failed"]
LIVE: frozenset[str] = frozenset({"running", "cancelling"})
"""A task in one of these holds its DLQ: no other task of that DLQ may start."""
VERSION = 1

_NEXT: dict[str, frozenset[str]] = {
    "running": frozenset({"completed", "failed", "cancelling", "cancelled"}),
    "cancelling": frozenset({"cancelled", "failed", "completed"}),
}


class TransitionError(ValueError):
    """A status change the state machine does not have."""


class ReplayTask(BaseModel):
    """A replay task as ``GET /v1/replays/{id}`` shows it and ``P.replays`` keeps it."""

    v: int = VERSION
    id: str
    dlq: str
    topic: str
    filters: Filters
    max_records: int | None = None
    rate: float | None = Field(None, description="records/s asked for (null: as fast as allowed)")
    task: str | None = Field(None, description="the task whose result cache is counted")
    who: str
    created: datetime
    updated: datetime
    status: Status = "running"
    reason: str | None = Field(None, description="why it failed or was cancelled")
    waiting: str | None = Field(None, description="why it is waiting now (a paused provider)")
    ends: dict[int, int] = Field(default_factory=dict,
                                 description="each DLQ partition's end when the task started")  # fmt: skip
    results_from: dict[int, int] = Field(default_factory=dict,
                                         description="P.results' end when it started")  # fmt: skip
    failures_from: dict[int, int] = Field(default_factory=dict,
                                          description="P.failures' end when it started")  # fmt: skip
    next_partition: int = 0
    next_offset: int = 0
    matched: int = 0
    sent: int = 0
    refused_by_cap: int = Field(0, description="matched, but replayed replay_cap times already")
    cache_hits: int = Field(0, description="sent records the result cache held an answer for")
    succeeded: int = Field(0, description="ok outcomes carrying this replay id")
    failed_again: int = Field(0, description="dead outcomes carrying this replay id")

    # -- the state machine ----------------------------------------------------------------
    @property
    def live(self) -> bool:
        return self.status in LIVE

    def moved(self, status: Status, now: datetime, reason: str | None = None) -> ReplayTask:
        """The task in ``status``; TransitionError if it cannot get there from here."""
        if status not in _NEXT.get(self.status, frozenset()):
            raise TransitionError(f"replay {self.id} is {self.status}; it cannot become {status}")
        return self.model_copy(update={"status": status, "updated": now, "waiting": None,
                                       "reason": reason if reason is not None else self.reason})  # fmt: skip

    def seen(self, partition: int, offset: int) -> ReplayTask:
        """Past the record at ``partition``/``offset``."""
        return self.model_copy(update={"next_partition": partition, "next_offset": offset + 1})

    def full(self) -> bool:
        """Sent ``max_records`` already."""
        return self.max_records is not None and self.sent >= self.max_records

    # -- the P.replays codec ----------------------------------------------------------------
    def encode(self) -> bytes:
        return self.model_dump_json(exclude={"waiting"}).encode()

    @classmethod
    def decode(cls, value: bytes | None) -> ReplayTask | None:
        """The task a ``P.replays`` value holds; None for one that is not a task of this
        version (skipped: a tombstone, or written by something else)."""
        if not value:
            return None
        try:
            task = cls.model_validate_json(value)
        except ValidationError:
            return None
        return task if task.v == VERSION else None


def newest(records: list[tuple[bytes, bytes | None]]) -> dict[str, ReplayTask]:
    """The tasks in ``P.replays`` records (oldest first): the newest value of each key."""
    tasks: dict[str, ReplayTask] = {}
    for key, value in records:
        task = ReplayTask.decode(value)
        if task is not None and task.id == key.decode("utf-8", "replace"):
            tasks[task.id] = task
        elif value is None:
            tasks.pop(key.decode("utf-8", "replace"), None)
    return tasks


def now() -> datetime:
    return datetime.now(UTC)
