"""The sequencer's vocabulary (pure): outcomes, slots, scopes, emits.

A record's identity is :class:`shared.headers.SourceId`; its ordering scope is
``(source topic, source partition, key)``. Per scope the sequencer keeps the
announced offsets in order (``fifo``) and a :class:`Slot` per identity that
is announced and/or has an outcome not emitted yet.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from shared.headers import SourceId

Kind = Literal["ok", "dead", "release"]
"""``ok`` and ``dead`` outcomes come from enrich and the router; ``release`` from admin."""

Mode = Literal["skip", "block"]

RANK = {"dead": 1, "ok": 2}
"""An outcome replaces the one a slot holds only if it ranks higher: ok beats dead."""

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class ScopeKey:
    topic: str
    partition: int
    key: bytes


@dataclass(frozen=True, slots=True)
class Outcome:
    """A record of ``P.results``: its identity, key, kind and content."""

    ident: SourceId
    key: bytes | None
    kind: Kind
    value: bytes | None
    headers: Headers


@dataclass(frozen=True, slots=True)
class Announcement:
    """A first-attempt record of ``P.work``: the identity exists, in this order."""

    ident: SourceId
    key: bytes | None


@dataclass(slots=True)
class Slot:
    """One identity not emitted yet: announced or not, with its best outcome so far."""

    announced: bool = False
    outcome: Outcome | None = None
    released: bool = False


@dataclass(slots=True)
class Scope:
    fifo: deque[int] = field(default_factory=deque)  # announced offsets, increasing
    slots: dict[int, Slot] = field(default_factory=dict)  # offset → slot
    early: list[int] = field(default_factory=list)  # heap: offsets with an outcome, unannounced
    blocked_since: int | None = None  # ms; set while the head is dead (block mode)

    @property
    def empty(self) -> bool:
        return not self.slots

    @property
    def buffered(self) -> int:
        """Outcomes waiting for their announcement."""
        return len(self.early)


@dataclass(frozen=True, slots=True)
class Emit:
    """A record to write to ``P.output``: an ok outcome, or a gap marker for a dead one."""

    outcome: Outcome
    late: bool = False


@dataclass(frozen=True, slots=True)
class SlotRef:
    """Where a slot lives; also its changelog entry's identity."""

    scope: ScopeKey
    offset: int


@dataclass(frozen=True, slots=True)
class CounterRef:
    """The highest announced offset of one source partition (within this input partition)."""

    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class SkipRef:
    """An identity skipped as dead: a later ok outcome for it is emitted late."""

    ident: SourceId


@dataclass(frozen=True, slots=True)
class SeenRef:
    """An unkeyed identity already emitted."""

    ident: SourceId


Entity = SlotRef | CounterRef | SkipRef | SeenRef
