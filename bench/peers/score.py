"""One row of ``sluice bench peers`` from what a run left behind (pure, no I/O).

Every tool gets the same yardstick: the source records as produced (id, key,
partition, offset, produce time, whether the key always fails), what a
``read_committed`` reader of the tool's output saw and when, the provider's
counters, and which source records the tool has committed past.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from devtools.runs.verify import percentile


@dataclass(frozen=True)
class Sent:
    id: int
    key: bytes
    partition: int
    offset: int
    ts_ms: int  # the source record's timestamp
    failing: bool  # its key fails on every call


@dataclass(frozen=True)
class Seen:
    id: int
    at_ms: int  # when the reader received the tool's answer
    ok: bool  # an answer; False: a failure the tool made durable (a dead letter)


@dataclass(frozen=True)
class Provider:
    requests: int  # every request that reached the provider
    rate_limited: int  # of them, answered 429
    limit_rps: float


def row(
    sent: Sequence[Sent],
    seen: Iterable[Seen],
    provider: Provider,
    committed: Mapping[int, int],
    durable: set[int],
    warmup_ms: int,
) -> dict[str, float | int | None]:
    """The table's columns.

    ``committed``: partition → the tool's committed offset on the source topic at
    the end; ``durable``: ids the tool holds in a durable place of its own (a retry
    or work topic) without a final outcome yet. Records produced in the first
    ``warmup_ms`` (the tool starting up) are left out of the latency figures only.
    """
    by_id = {s.id: s for s in sent}
    first: dict[int, Seen] = {}
    order: list[Seen] = []  # answers in the order the reader got them
    for s in seen:
        if s.id in by_id and s.id not in first:
            first[s.id] = s
            if s.ok:
                order.append(s)
    answered = [s for s in first.values() if s.ok]
    start = min((s.ts_ms for s in sent), default=0)
    end = max((s.at_ms for s in answered), default=start)
    measured_from = start + warmup_ms
    failing_partitions = {s.partition for s in sent if s.failing}
    e2e: list[int] = []
    neighbours: list[int] = []  # healthy keys sharing a partition with a failing one
    for s in answered:
        src = by_id[s.id]
        if src.ts_ms < measured_from or src.failing:
            continue
        e2e.append(s.at_ms - src.ts_ms)
        if src.partition in failing_partitions:
            neighbours.append(s.at_ms - src.ts_ms)
    e2e.sort()
    neighbours.sort()
    span_s = max(end - start, 1) / 1000
    unfinished = [s for s in sent if s.id not in first]
    lost = sum(1 for s in unfinished
               if s.offset < committed.get(s.partition, 0) and s.id not in durable)  # fmt: skip
    return {
        "records": len(sent),
        "answered": len(answered),
        "dead_lettered": sum(1 for s in first.values() if not s.ok),
        "completed_rps": round(len(answered) / span_s, 1),
        "utilization": round((provider.requests - provider.rate_limited) / span_s / provider.limit_rps, 3),
        "provider_429": provider.rate_limited,
        "calls_per_record": round(provider.requests / len(answered), 3) if answered else None,
        "e2e_p50_ms": percentile(e2e, 0.5),
        "e2e_p99_ms": percentile(e2e, 0.99),
        "neighbours_p99_ms": percentile(neighbours, 0.99),
        "order_violations": order_violations(by_id, order),
        "unfinished": len(unfinished),
        "lost": lost,
    }  # fmt: skip


def order_violations(by_id: Mapping[int, Sent], answers: Iterable[Seen]) -> int:
    """Answers of a key that came after an answer to a later record of that key."""
    newest: dict[bytes, int] = {}
    bad = 0
    for a in answers:
        src = by_id[a.id]
        if src.offset < newest.get(src.key, -1):
            bad += 1
        else:
            newest[src.key] = src.offset
    return bad
