"""The sequencer's state as changelog records, and back (pure).

``P.sequencer.state`` is compacted and co-partitioned with ``P.work`` and
``P.results``: the state of input partition ``n`` lives in partition ``n``.
One record per entity, keyed by compact JSON; a tombstone when it is gone,
so the topic holds only what is pending:

======================================  ===========================================
key                                     value
======================================  ===========================================
``["o", topic, partition, key, off]``   a slot: ``{"a": announced, "r": released,
                                        "b": blocked-since ms or null, "o": outcome}``
``["m", topic, partition]``             ``{"max": highest announced offset}``
``["d", topic, partition, off]``        ``{"seq": n}``: skipped as dead (bounded)
``["u", topic, partition, off]``        ``{"seq": n}``: unkeyed and emitted (bounded)
======================================  ===========================================

``key`` is the record key in base64. An outcome is ``{"kind", "key", "value",
"headers": [[name, base64]]}`` with base64 key and value. Slots are one record
each (not one value per scope) so a long FIFO never makes one huge value and
each outcome is written once; a scope's FIFO is its announced slots in offset
order (announcements of a scope arrive in increasing offset order).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any

from services.sequencer.model import (
    CounterRef,
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
from services.sequencer.reorder import Reorder
from shared.headers import SourceId

Change = tuple[bytes, bytes | None]


def _b64(b: bytes | None) -> str | None:
    return None if b is None else base64.b64encode(b).decode()


def _unb64(s: str | None) -> bytes | None:
    return None if s is None else base64.b64decode(s)


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def entity_key(e: Entity) -> bytes:
    if isinstance(e, SlotRef):
        s = e.scope
        return _dumps(["o", s.topic, s.partition, _b64(s.key), e.offset])
    if isinstance(e, CounterRef):
        return _dumps(["m", e.topic, e.partition])
    tag = "d" if isinstance(e, SkipRef) else "u"
    return _dumps([tag, e.ident.topic, e.ident.partition, e.ident.offset])


def encode_outcome(o: Outcome) -> dict[str, Any]:
    return {"kind": o.kind, "key": _b64(o.key), "value": _b64(o.value),
            "headers": [[n, _b64(v)] for n, v in o.headers]}  # fmt: skip


def decode_outcome(ident: SourceId, d: dict[str, Any]) -> Outcome:
    headers = tuple((str(n), _unb64(v) or b"") for n, v in d["headers"])
    return Outcome(ident, _unb64(d["key"]), d["kind"], _unb64(d["value"]), headers)


def entity_value(r: Reorder, e: Entity) -> bytes | None:
    """The entity's current value, or None when it is gone (a tombstone)."""
    if isinstance(e, SlotRef):
        scope = r.scopes.get(e.scope)
        slot = scope.slots.get(e.offset) if scope is not None else None
        if scope is None or slot is None:
            return None
        head = bool(scope.fifo) and scope.fifo[0] == e.offset
        return _dumps({"a": slot.announced, "r": slot.released,
                       "b": scope.blocked_since if head else None,
                       "o": None if slot.outcome is None else encode_outcome(slot.outcome)})  # fmt: skip
    if isinstance(e, CounterRef):
        top = r.announced.get((e.topic, e.partition))
        return None if top is None else _dumps({"max": top})
    where = r.skipped if isinstance(e, SkipRef) else r.seen
    seq = where.get(e.ident)
    return None if seq is None else _dumps({"seq": seq})


class Changelog:
    """Turns a partition's dirty entities into records; knows which keys exist."""

    def __init__(self, persisted: set[bytes] | None = None) -> None:
        self.persisted = persisted if persisted is not None else set()

    def changes(self, r: Reorder) -> list[Change]:
        out: list[Change] = []
        for e in r.dirty:
            key, value = entity_key(e), entity_value(r, e)
            if value is not None:
                out.append((key, value))
                self.persisted.add(key)
            elif key in self.persisted:
                out.append((key, None))
                self.persisted.discard(key)
        r.dirty.clear()
        return out


def latest(records: Iterable[Change]) -> dict[bytes, bytes]:
    """What compaction would keep: the last value per key, minus tombstones."""
    out: dict[bytes, bytes] = {}
    for key, value in records:
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def restore(
    records: Iterable[Change],
    mode: Mode = "skip",
    gap_markers: bool = True,
    skipped_max: int = 10_000,
    unkeyed_max: int = 20_000,
) -> tuple[Reorder, Changelog]:
    """Rebuild one partition's state from its changelog records, oldest first."""
    live = latest(records)
    r = Reorder(mode, gap_markers, skipped_max, unkeyed_max)
    heads: dict[ScopeKey, int] = {}
    marks: list[tuple[int, dict[SourceId, int], SourceId]] = []
    for key, value in live.items():
        try:
            k, v = json.loads(key), json.loads(value)
            if k[0] == "o":
                sk = ScopeKey(k[1], k[2], _unb64(k[3]) or b"")
                out = v["o"]
                slot = Slot(bool(v["a"]), None, bool(v["r"]))
                if out is not None:
                    slot.outcome = decode_outcome(SourceId(k[1], k[2], k[4]), out)
                r.scopes.setdefault(sk, Scope()).slots[k[4]] = slot
                if v.get("b") is not None:
                    heads[sk] = int(v["b"])
            elif k[0] == "m":
                r.announced[(k[1], k[2])] = int(v["max"])
            elif k[0] in ("d", "u"):
                marks.append((int(v["seq"]), r.skipped if k[0] == "d" else r.seen,
                              SourceId(k[1], k[2], k[3])))  # fmt: skip
            else:
                raise ValueError(k[0])
        except (ValueError, KeyError, IndexError, TypeError):
            r.counts["bad_state_entries"] += 1
    for sk, scope in r.scopes.items():
        scope.fifo.extend(sorted(o for o, s in scope.slots.items() if s.announced))
        scope.early = sorted(o for o, s in scope.slots.items() if not s.announced)  # a heap
        scope.blocked_since = heads.get(sk)
    for seq, where, ident in sorted(marks, key=lambda m: m[0]):
        where[ident] = seq
        r.seq = max(r.seq, seq)
    _trim(r.skipped, skipped_max, r, SkipRef)
    _trim(r.seen, unkeyed_max, r, SeenRef)
    return r, Changelog(set(live))


def _trim(where: dict[SourceId, int], limit: int, r: Reorder, ref: type[SkipRef] | type[SeenRef]) -> None:  # fmt: skip
    """Apply a bound that was lowered since the state was written."""
    while len(where) > limit:
        old = next(iter(where))
        del where[old]
        r.dirty.add(ref(old))
