"""Reassembly of per-key order (pure; one instance per input partition number).

Input: announcements (first attempts in ``P.work``, in source-offset order per
source partition) and outcomes (``P.results``: ok, dead, or an admin release),
in any interleaving. Output: :class:`Emit` s in the order to write them.

Rules, per ordering scope ``(source topic, source partition, key)``:

* an announcement appends its offset to the scope's FIFO; the head is emitted
  as soon as its outcome is there, then the next, and so on;
* an outcome for an identity not announced yet is buffered in a slot until
  its announcement arrives;
* duplicates are dropped without remembering every emitted identity: per source
  partition the highest announced offset is kept; an announcement at or below it
  is a duplicate (ingest forwards in order, re-sends only older offsets), and an
  outcome at or below it that is not pending was emitted already;
* a dead head is skipped (``skip``: a gap marker if enabled, the identity is
  remembered so a later ok replay is emitted with ``late``) or holds the scope
  (``block``) until an ok outcome replaces it or a release arrives;
* records without a key have no order: an ok outcome is emitted on arrival;
  a bounded set of emitted unkeyed identities drops their duplicates.

Every change marks an :class:`~services.sequencer.model.Entity` dirty;
:mod:`services.sequencer.changelog` turns dirty entities into changelog records.
"""

from __future__ import annotations

import heapq
from collections import Counter

from services.sequencer.model import (
    RANK,
    Announcement,
    CounterRef,
    Emit,
    Entity,
    Mode,
    Outcome,
    Scope,
    ScopeKey,
    SeenRef,
    SkipRef,
    Slot,
    SlotRef,
)
from shared.headers import SourceId


class Reorder:
    def __init__(
        self,
        mode: Mode = "skip",
        gap_markers: bool = True,
        skipped_max: int = 10_000,
        unkeyed_max: int = 20_000,
    ) -> None:
        self.mode = mode
        self.gap_markers = gap_markers
        self.skipped_max = skipped_max
        self.unkeyed_max = unkeyed_max
        self.scopes: dict[ScopeKey, Scope] = {}
        self.announced: dict[tuple[str, int], int] = {}  # highest announced offset
        self.skipped: dict[SourceId, int] = {}  # identity → sequence number (oldest first)
        self.seen: dict[SourceId, int] = {}  # unkeyed identities emitted
        self.seq = 0
        self.dirty: set[Entity] = set()
        self.counts: Counter[str] = Counter()

    # -- input -----------------------------------------------------------------
    def announce(self, a: Announcement, now_ms: int) -> list[Emit]:
        if a.key is None:
            self.counts["unkeyed_announcements"] += 1
            return []
        src = (a.ident.topic, a.ident.partition)
        off = a.ident.offset
        if off <= self.announced.get(src, -1):
            self.counts["duplicate_announcements"] += 1
            return []
        self.announced[src] = off
        self.dirty.add(CounterRef(*src))
        sk = ScopeKey(a.ident.topic, a.ident.partition, a.key)
        scope = self.scopes.setdefault(sk, Scope())
        out = self._orphans(sk, scope, off) if scope.early else []
        slot = scope.slots.setdefault(off, Slot())
        slot.announced = True
        scope.fifo.append(off)
        self.dirty.add(SlotRef(sk, off))
        return out + self._drain(sk, scope, now_ms)

    def outcome(self, o: Outcome, now_ms: int) -> list[Emit]:
        if o.key is None:
            return self._unkeyed(o)
        ident = o.ident
        sk = ScopeKey(ident.topic, ident.partition, o.key)
        scope = self.scopes.get(sk)
        slot = scope.slots.get(ident.offset) if scope is not None else None
        if scope is not None and slot is not None and slot.announced:
            if not self._attach(sk, slot, o):
                return []
            return self._drain(sk, scope, now_ms) if scope.fifo[0] == ident.offset else []
        if ident.offset <= self.announced.get((ident.topic, ident.partition), -1):
            return self._after_emit(o)
        scope = self.scopes.setdefault(sk, Scope())
        if ident.offset not in scope.slots:
            heapq.heappush(scope.early, ident.offset)
        self._attach(sk, scope.slots.setdefault(ident.offset, Slot()), o)
        return []

    def settle(self, now_ms: int) -> list[Emit]:
        """Drain every scope: after a restore under other settings (block → skip)."""
        out: list[Emit] = []
        for sk, scope in list(self.scopes.items()):
            if scope.fifo:
                out += self._drain(sk, scope, now_ms)
        return out

    # -- queries -----------------------------------------------------------------
    @property
    def pending_scopes(self) -> int:
        return len(self.scopes)

    def blocked(self) -> list[tuple[ScopeKey, Scope]]:
        return [(sk, s) for sk, s in self.scopes.items() if s.blocked_since is not None]

    # -- internals ---------------------------------------------------------------
    def _attach(self, sk: ScopeKey, slot: Slot, o: Outcome) -> bool:
        """Give ``slot`` outcome ``o`` if it improves it; False for a duplicate."""
        if o.kind == "release":
            if slot.released or (slot.outcome is not None and slot.outcome.kind == "ok"):
                self.counts["duplicate_outcomes"] += 1
                return False
            slot.released = True
            self.counts["releases"] += 1
        elif slot.outcome is None or RANK[o.kind] > RANK[slot.outcome.kind]:
            slot.outcome = o
        else:
            self.counts["duplicate_outcomes"] += 1
            return False
        self.dirty.add(SlotRef(sk, o.ident.offset))
        return True

    def _drain(self, sk: ScopeKey, scope: Scope, now_ms: int) -> list[Emit]:
        """Emit heads whose outcome is there; note or clear a blocked head."""
        out: list[Emit] = []
        while scope.fifo:
            off = scope.fifo[0]
            slot = scope.slots[off]
            o = slot.outcome
            if o is None:
                break
            if o.kind == "dead" and self.mode == "block" and not slot.released:
                if scope.blocked_since is None:
                    scope.blocked_since = now_ms
                    self.dirty.add(SlotRef(sk, off))
                    self.counts["blocked"] += 1
                break
            scope.fifo.popleft()
            del scope.slots[off]
            scope.blocked_since = None
            self.dirty.add(SlotRef(sk, off))
            if o.kind == "ok":
                self.counts["emitted"] += 1
                out.append(Emit(o))
            else:
                out += self._skip(o)
        if scope.empty:
            del self.scopes[sk]
        return out

    def _skip(self, dead: Outcome) -> list[Emit]:
        self.counts["skipped"] += 1
        self._remember(self.skipped, dead.ident, self.skipped_max, SkipRef)
        if self.gap_markers:
            self.counts["gaps"] += 1
            return [Emit(dead)]
        return []

    def _after_emit(self, o: Outcome) -> list[Emit]:
        """An outcome for an identity already emitted or skipped."""
        if o.kind == "ok" and o.ident in self.skipped:
            del self.skipped[o.ident]
            self.dirty.add(SkipRef(o.ident))
            self.counts["late"] += 1
            return [Emit(o, late=True)]
        self.counts["duplicate_outcomes"] += 1
        return []

    def _orphans(self, sk: ScopeKey, scope: Scope, off: int) -> list[Emit]:
        """Take ``off`` out of the early heap; emit early outcomes below it.

        Those can no longer be announced (a scope's announcements come in offset
        order). Cannot happen while ingest forwards in order; if it does, emit
        them (late) rather than hold them forever or lose them.
        """
        out: list[Emit] = []
        while scope.early and scope.early[0] <= off:
            o_off = heapq.heappop(scope.early)
            if o_off == off:
                continue  # announced now
            slot = scope.slots.pop(o_off)
            self.dirty.add(SlotRef(sk, o_off))
            self.counts["orphans"] += 1
            if slot.outcome is not None and slot.outcome.kind == "ok":
                out.append(Emit(slot.outcome, late=True))
            elif slot.outcome is not None:
                out += self._skip(slot.outcome)
        return out

    def _unkeyed(self, o: Outcome) -> list[Emit]:
        ident = o.ident
        if o.kind == "release":
            self.counts["duplicate_outcomes"] += 1  # nothing is ever held without a key
            return []
        if ident in self.skipped:
            if o.kind == "ok":
                self._see(ident)
            return self._after_emit(o)
        if ident in self.seen:
            self.counts["duplicate_outcomes"] += 1
            return []
        if o.kind == "dead":
            return self._skip(o)
        self._see(ident)
        self.counts["emitted"] += 1
        return [Emit(o)]

    def _see(self, ident: SourceId) -> None:
        self._remember(self.seen, ident, self.unkeyed_max, SeenRef)

    def _remember(
        self,
        where: dict[SourceId, int],
        ident: SourceId,
        limit: int,
        ref: type[SkipRef] | type[SeenRef],
    ) -> None:
        """Add to a bounded set; the oldest entries fall out."""
        self.seq += 1
        where[ident] = self.seq
        self.dirty.add(ref(ident))
        while len(where) > limit:
            old = next(iter(where))
            del where[old]
            self.dirty.add(ref(old))
