"""What a replay's records did, from the outcomes carrying its id, and the canary (pure).

Enrich writes an ``ok`` outcome for a replayed record that succeeds, the
router a ``dead`` one with each DLQ write; both carry ``sluice.replay-id``.
Stages before the sequencer are at-least-once, so an identity may have
several outcomes: each identity counts once, ``ok`` if it has any ``ok``.
A failed attempt (``P.failures``, the replayed record with its headers) is
not an outcome, but it does end the record's first attempt: ``finished``
counts the identities whose first attempt is over, which the runner's window
(records sent and not yet through enrich) is measured against.

A replayed record without a source identity (a DLQ record that named no
source) cannot be told apart from another, so its first attempt is counted
by its end instead: an ``ok`` outcome of attempt 1, or a failed attempt 1
(every ``dead`` outcome follows one). Such a record would otherwise hold a
window slot for good. It counts toward ``finished`` only; an outcome written
twice (enrich is at-least-once) counts twice, which lets the window send one
record more, never fewer.

The canary stops a replay that keeps failing: among the first ``first``
identities with an outcome (fewer if the task selects fewer), once more than
``share`` of them failed again, the task fails. It decides as soon as that is
certain, without waiting for the rest of the window.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared import headers as h


@dataclass
class Outcomes:
    replay_id: str
    ok: set[h.SourceId] = field(default_factory=set)
    dead: set[h.SourceId] = field(default_factory=set)
    order: list[h.SourceId] = field(default_factory=list)  # identities by first outcome
    tried: set[h.SourceId] = field(default_factory=set)  # first attempt over: outcome or failure
    anonymous: int = 0  # first attempts over of records without a source identity

    def add(self, headers: h.HeaderList) -> None:
        """One ``P.results`` record's headers; ignored unless it is an outcome of this replay."""
        if h.get_str(headers, h.REPLAY_ID) != self.replay_id:
            return
        kind = h.get_str(headers, h.OUTCOME)
        if kind not in ("ok", "dead"):
            return
        try:
            ident = h.source_id(headers)
        except h.HeaderError:
            if kind == "ok":
                self._anonymous_end(headers)
            return
        if ident not in self.ok and ident not in self.dead:
            self.order.append(ident)
        (self.ok if kind == "ok" else self.dead).add(ident)
        self.tried.add(ident)

    def add_failure(self, headers: h.HeaderList) -> None:
        """One ``P.failures`` record's headers; ignored unless it is a record of this replay."""
        if h.get_str(headers, h.REPLAY_ID) != self.replay_id:
            return
        try:
            self.tried.add(h.source_id(headers))
        except h.HeaderError:
            self._anonymous_end(headers)

    def _anonymous_end(self, headers: h.HeaderList) -> None:
        try:
            first = h.get_int(headers, h.ATTEMPT) == 1
        except h.HeaderError:
            first = True  # a replayed record goes out as attempt 1
        if first:
            self.anonymous += 1

    @property
    def finished(self) -> int:
        """Identities whose first attempt is over (an outcome or a failed attempt)."""
        return len(self.tried) + self.anonymous

    @property
    def succeeded(self) -> int:
        return len(self.ok)

    @property
    def failed_again(self) -> int:
        return len(self.dead - self.ok)

    def first_failed(self, n: int) -> int:
        """How many of the first ``n`` identities with an outcome failed again."""
        return sum(1 for i in self.order[:n] if i not in self.ok)


@dataclass(frozen=True)
class Canary:
    share: float = 0.5
    first: int = 20

    def tripped(self, outcomes: Outcomes, selected: int) -> str | None:
        """Why the task must stop, or None. ``selected``: records the task sends in all
        (sent so far while it still reads)."""
        window = min(self.first, selected)
        failed = outcomes.first_failed(window)
        if window == 0 or failed <= self.share * window:
            return None
        return (f"canary: {failed} of the first {window} replayed records failed again "
                f"(more than {self.share:.0%})")  # fmt: skip
