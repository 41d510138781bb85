"""One consumed record → records to produce, or wait (pure)."""

from __future__ import annotations

from collections.abc import Sequence

from services.router import routing
from services.router.routing import Wait
from shared import envelope as env
from shared import headers as h
from shared.kinds import FailureKind as K
from shared.outcomes import Failure, Record, failure_record
from shared.topics import Topics, parse_rungs

T = Topics("p", parse_rungs("1s,3s"))
NOW = 1_700_000_000_000
SRC = h.SourceId("orders", 0, 5)


def consumed(kind: K, attempt: int, topic: str = "p.failures",
             extra: Sequence[tuple[str, bytes]] = (), provider: str | None = "openai") -> env.Consumed:  # fmt: skip
    work = Record(b"k", b"v", [("own", b"1"), *h.source_headers(SRC, 10, attempt)])
    rec = failure_record(work, attempt, Failure(kind, "E", "m"), provider)
    return env.Consumed(topic, 0, 3, 0, rec.key, rec.value, h.merge(rec.headers, list(extra)))


def test_failure_to_rung_with_due_time() -> None:
    plan = routing.failure(consumed(K.TIMEOUT, 2), T, NOW)
    assert isinstance(plan, routing.Plan)
    [send] = plan.sends
    assert (send.topic, plan.hop, plan.kind, plan.dlq) == ("p.retry.3s", "3s", "timeout", None)
    assert h.get_int(send.record.headers, h.NOT_BEFORE) == NOW + 3000
    assert h.get_int(send.record.headers, h.ATTEMPT) == 2, (
        "the attempt goes up on the way back to work"
    )


def test_failure_to_dlq_is_paired_with_a_dead_outcome() -> None:
    plan = routing.failure(consumed(K.TIMEOUT, 3), T, NOW)
    dlq, dead = plan.sends
    assert (dlq.topic, dead.topic, plan.dlq, plan.hop) == (
        "p.dlq.timeout",
        "p.results",
        "p.dlq.timeout",
        "dlq.timeout",
    )
    assert dlq.timestamp == 10
    assert h.get_str(dead.record.headers, h.OUTCOME) == "dead"
    assert h.source_id(dead.record.headers) == SRC
    assert (dead.record.key, dead.record.value) == (b"k", b"v")
    assert plan.reason == "E: m"


def test_bad_request_dies_at_once_and_outage_parks_unchanged() -> None:
    assert routing.failure(consumed(K.BAD_REQUEST, 1), T, NOW).dlq == "p.dlq.error"
    c = consumed(K.OUTAGE, 2)
    plan = routing.failure(c, T, NOW)
    [send] = plan.sends
    assert (send.topic, plan.hop) == ("p.parked", "parked")
    assert send.record.headers == c.headers


def test_malformed_failure_with_identity_gets_a_dead_outcome() -> None:
    c = consumed(K.TIMEOUT, 1, extra=[(h.ERROR_KIND, b"nope")])
    plan = routing.failure(c, T, NOW)
    assert [s.topic for s in plan.sends] == ["p.dlq.error", "p.results"]
    assert plan.kind == "malformed" and "nope" in plan.reason
    assert h.get_str(plan.sends[0].record.headers, h.ERROR_CLASS) == "malformed"


def test_malformed_failure_without_identity_gets_only_the_dlq() -> None:
    c = consumed(K.TIMEOUT, 1)
    c = env.Consumed(
        c.topic, 0, 3, 0, c.key, c.value, [x for x in c.headers if x[0] != h.SRC_OFFSET]
    )
    plan = routing.failure(c, T, NOW)
    assert [s.topic for s in plan.sends] == ["p.dlq.error"]


def test_retry_waits_until_due_then_goes_to_work_with_the_next_attempt() -> None:
    c = consumed(K.TIMEOUT, 1, "p.retry.1s", [(h.NOT_BEFORE, b"%d" % (NOW + 10))])
    assert routing.retry(c, T, NOW) == Wait(until_ms=NOW + 10)
    assert routing.retry(c, T, NOW + 9) == Wait(until_ms=NOW + 10)
    plan = routing.retry(c, T, NOW + 250)
    assert isinstance(plan, routing.Plan)
    [send] = plan.sends
    assert (send.topic, plan.late_ms) == ("p.work", 240)
    assert h.get_int(send.record.headers, h.ATTEMPT) == 2
    assert h.get(send.record.headers, h.NOT_BEFORE) is None
    assert h.get(send.record.headers, "own") == b"1"


def test_retry_without_due_time_is_malformed() -> None:
    plan = routing.retry(consumed(K.TIMEOUT, 1, "p.retry.1s"), T, NOW)
    assert isinstance(plan, routing.Plan) and plan.dlq == "p.dlq.error" and len(plan.sends) == 2


def test_parked_goes_back_with_the_same_attempt_when_the_gate_opens() -> None:
    c = consumed(K.OUTAGE, 2, "p.parked")
    asked: list[str | None] = []

    def closed(provider: str | None) -> Wait | None:
        asked.append(provider)
        return Wait(provider=provider)

    assert routing.parked(c, T, closed) == Wait(provider="openai")
    assert asked == ["openai"]
    plan = routing.parked(c, T, lambda _p: None)
    assert isinstance(plan, routing.Plan)
    [send] = plan.sends
    assert send.topic == "p.work" and h.get_int(send.record.headers, h.ATTEMPT) == 2


def test_decide_turns_an_unforeseen_error_into_the_records_dlq_plan(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    def boom(*_: object) -> None:
        raise RuntimeError("unforeseen")

    monkeypatch.setattr(routing.env, "parse", boom)
    for role in routing.Role:
        plan = routing.decide(role, consumed(K.TIMEOUT, 1), T, NOW, lambda _p: None)
        assert isinstance(plan, routing.Plan) and plan.dlq == "p.dlq.error", role
        assert plan.kind == env.MALFORMED and "RuntimeError: unforeseen" in plan.reason


def test_decide_asks_the_gate_only_for_a_routable_parked_record() -> None:
    asked: list[str | None] = []

    def gate(provider: str | None) -> Wait | None:
        asked.append(provider)
        return Wait(provider=provider)

    parked = consumed(K.OUTAGE, 1, topic="p.parked")
    assert routing.decide(routing.Role.PARKED, parked, T, NOW, gate) == Wait(provider="openai")
    broken = env.Consumed("p.parked", 0, 1, 0, b"k", b"v", [("own", b"1")])
    plan = routing.decide(routing.Role.PARKED, broken, T, NOW, gate)
    assert isinstance(plan, routing.Plan) and plan.dlq == "p.dlq.error"
    assert asked == ["openai"]
