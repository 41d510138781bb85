"""What a finished run delivered, from the topics as a ``read_committed`` reader sees them (pure).

The contract (README, "Guarantees"): every source record ends exactly once in
``P.output`` (enriched, or a gap marker when it died) or, for poison, in
``P.dlq.poison``; each dead record is also in a DLQ with its reason; per
``(source partition, key)`` the output is in source-offset order, except
records marked ``sluice.late`` (a dead record replayed after its key moved on).

A record may legitimately appear twice in ``P.output``: once as a gap marker
and once, later, as its late successful replay. So a *duplicate* is a second
``ok`` or a second gap marker of the same identity. The router writes
exactly once per failure record, but a failure enrich wrote twice (it is
at-least-once) is routed twice: DLQ records count once per identity and their
repeats are reported on their own (``dlq_repeats``), never as output
duplicates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

Ident = tuple[str, int, int]  # source (topic, partition, offset)


@dataclass(frozen=True)
class OutRec:
    """A ``P.output`` record, in the order read from its partition."""

    ident: Ident
    key: bytes | None
    ok: bool  # False: a gap marker (the record died)
    late: bool
    latency_ms: int | None  # output timestamp minus source timestamp


@dataclass(frozen=True)
class Verdict:
    records: int
    enriched: int
    dead: int
    poison: int
    lost: int
    duplicates: int
    order_violations: int
    late: int
    dlq_repeats: int
    unsequenced: int  # dead records without a gap marker (when markers are on)
    unaccounted_output: int  # output identities that are not source records of this run
    p50_ms: int | None
    p99_ms: int | None

    @property
    def exact(self) -> bool:
        """Nothing lost, nothing twice, order intact."""
        return not (
            self.lost
            or self.duplicates
            or self.order_violations
            or self.unsequenced
            or self.unaccounted_output
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def percentile(sorted_values: list[int], q: float) -> int | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def order_violations(outputs: Iterable[OutRec]) -> int:
    """Per ``(source topic, source partition, key)``: non-late records must rise in offset."""
    last: dict[tuple[str, int, bytes], int] = {}
    bad = 0
    for o in outputs:
        if o.key is None or o.late:
            continue
        scope = (o.ident[0], o.ident[1], o.key)
        prev = last.get(scope)
        if prev is not None and o.ident[2] <= prev:
            bad += 1
        else:
            last[scope] = o.ident[2]
    return bad


def verdict(
    source: Iterable[Ident],
    outputs: list[OutRec],
    dlq: Iterable[Ident],
    poison: Iterable[Ident],
    gap_markers: bool = True,
) -> Verdict:
    """``outputs`` keep each output partition's order (partitions may be concatenated);
    ``dlq`` holds the identities in the error and timeout DLQs, ``poison`` those in
    ``P.dlq.poison`` (never in ``P.work``, so never in ``P.output``)."""
    src = set(source)
    oks: Counter[Ident] = Counter(o.ident for o in outputs if o.ok)
    gaps: Counter[Ident] = Counter(o.ident for o in outputs if not o.ok)
    dlq_count: Counter[Ident] = Counter(dlq)
    poison_ids = set(poison)
    dead_ids = (set(dlq_count) | set(gaps)) - set(oks)
    seen = set(oks) | set(gaps) | set(dlq_count) | poison_ids
    latencies = sorted(o.latency_ms for o in outputs if o.ok and o.latency_ms is not None)
    in_output = set(oks) | set(gaps)
    return Verdict(
        records=len(src),
        enriched=len(set(oks) & src),
        dead=len(dead_ids & (src - poison_ids)),
        poison=len(poison_ids & src),
        lost=len(src - seen),
        duplicates=sum(c - 1 for c in oks.values()) + sum(c - 1 for c in gaps.values()),
        order_violations=order_violations(outputs),
        late=sum(1 for o in outputs if o.late),
        dlq_repeats=sum(c - 1 for c in dlq_count.values()),
        unsequenced=len(set(dlq_count) - in_output) if gap_markers else 0,
        unaccounted_output=len(in_output - src),
        p50_ms=percentile(latencies, 0.50),
        p99_ms=percentile(latencies, 0.99),
    )
