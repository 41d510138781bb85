"""What to do with one consumed record (pure): records to produce, or wait.

Three roles, by the topic a record was read from:

* ``P.failures`` → the ladder decides: a retry rung (with its due time),
  ``P.parked``, or a DLQ plus the paired dead outcome in ``P.results``;
* ``P.retry.<rung>`` → back to ``P.work`` with the attempt incremented once
  due; before that, :class:`Wait` until the due time;
* ``P.parked`` → back to ``P.work`` with the same attempt (an outage does not
  spend one) when the gate lets it through (provider available, drain rate).

A record that cannot be routed is a plan to ``P.dlq.error`` (class
``malformed``), never an exception.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from services.router.ladder import Route, next_hop
from shared import envelope as env
from shared import headers as h
from shared.outcomes import Record, dead_outcome
from shared.topics import Topics


class Role(StrEnum):
    FAILURES = "failures"
    RETRY = "retry"
    PARKED = "parked"


@dataclass(frozen=True, slots=True)
class Send:
    topic: str
    record: Record
    timestamp: int = 0  # 0: the producer's clock


@dataclass(frozen=True, slots=True)
class Plan:
    """Records to produce for one consumed record; all acknowledged = done."""

    sends: tuple[Send, ...]
    hop: str  # metrics label: rung label, "parked", "dlq.<suffix>", "work"
    kind: str  # failure kind, or "malformed"
    late_ms: int | None = None  # retry forwarded to work: how late against its due time
    reason: str = ""  # DLQ: why the record died

    @property
    def dlq(self) -> str | None:
        return self.sends[0].topic if self.hop.startswith("dlq.") else None


@dataclass(frozen=True, slots=True)
class Wait:
    """Not now: until a time (ms epoch), or until a provider is available."""

    until_ms: int | None = None
    provider: str | None = None


ParkedGate = Callable[[str | None], Wait | None]
"""Parked drain gate: given the record's provider, a Wait or None (go)."""


def _dead(topic: str, rec: Record, ts: int, kind: str, reason: str, with_outcome: bool,
          results: str) -> Plan:  # fmt: skip
    sends = [Send(topic, rec, ts)]
    if with_outcome:
        sends.append(Send(results, dead_outcome(rec)))
    return Plan(tuple(sends), "dlq." + topic.rsplit(".", 1)[-1], kind, reason=reason)


def malformed(c: env.Consumed, bad: env.Malformed, topics: Topics) -> Plan:
    rec, ts = env.malformed_dlq_record(c, bad)
    return _dead(topics.dlq("error"), rec, ts, env.MALFORMED, bad.reason,
                 bad.src is not None, topics.results)  # fmt: skip


def failure(c: env.Consumed, topics: Topics, now_ms: int) -> Plan:
    try:
        f = env.parse(c)
    except env.Malformed as bad:
        return malformed(c, bad, topics)
    hop = next_hop(topics, f.kind, f.attempt, now_ms, f.retry_after_s)
    if hop.route is Route.DLQ:
        rec, ts, reason = env.failure_dlq_record(c, f)
        return _dead(hop.topic, rec, ts, f.kind.value, reason, True, topics.results)
    if hop.route is Route.RETRY:
        assert hop.not_before_ms is not None
        rec = env.retry_record(c, hop.not_before_ms)
    else:
        rec = Record(c.key, c.value, c.headers)
    return Plan((Send(hop.topic, rec),), hop.label, f.kind.value)


def retry(c: env.Consumed, topics: Topics, now_ms: int) -> Plan | Wait:
    try:
        f = env.parse(c)
        due = env.not_before(c, f.src)
    except env.Malformed as bad:
        return malformed(c, bad, topics)
    if now_ms < due:
        return Wait(until_ms=due)
    rec = env.work_record(c, f.attempt + 1)
    return Plan((Send(topics.work, rec),), "work", f.kind.value, late_ms=now_ms - due)


def decide(
    role: Role, c: env.Consumed, topics: Topics, now_ms: int, gate: ParkedGate
) -> Plan | Wait:
    """The plan for a record read in ``role``; never raises for the record's sake.

    Anything that goes wrong while deciding is that record's failure: a
    malformed plan to ``P.dlq.error`` with the error as the reason. (The
    parked gate's own errors are not the record's; the gate handles them.)
    """
    try:
        if role is Role.FAILURES:
            return failure(c, topics, now_ms)
        if role is Role.RETRY:
            return retry(c, topics, now_ms)
        back = _back_to_work(c, topics)
    except Exception as exc:
        return malformed(
            c, env.Malformed(f"cannot route: {type(exc).__name__}: {exc}", None), topics
        )
    if back.hop != "work":
        return back  # malformed
    return gate(h.get_str(c.headers, h.PROVIDER) or None) or back


def _back_to_work(c: env.Consumed, topics: Topics) -> Plan:
    try:
        f = env.parse(c)
    except env.Malformed as bad:
        return malformed(c, bad, topics)
    return Plan((Send(topics.work, env.work_record(c, f.attempt)),), "work", f.kind.value)


def parked(c: env.Consumed, topics: Topics, gate: ParkedGate) -> Plan | Wait:
    """A parked record: back to work when the gate lets it through."""
    back = _back_to_work(c, topics)
    if back.hop != "work":
        return back
    return gate(h.get_str(c.headers, h.PROVIDER) or None) or back
