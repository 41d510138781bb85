"""Holds, the parked drain's token bucket, health cache and gate (pure)."""

from __future__ import annotations

import pytest
from confluent_kafka import TopicPartition

from services.router.drain import DrainGate, HealthCache, TokenBucket
from services.router.holds import Hold, Holds
from services.router.pausing import Pauser
from services.router.routing import Wait


def test_token_bucket_bounds_the_rate() -> None:
    b = TokenBucket(rate=10, burst=2, now=0.0)
    assert [b.take(0.0) for _ in range(3)] == [True, True, False]
    assert b.ready_at(0.0) == pytest.approx(0.1)
    assert not b.take(0.05)
    assert b.take(0.1)
    taken = sum(b.take(t / 1000) for t in range(100, 10_100))  # 10 s, asked every ms
    assert 99 <= taken <= 102
    with pytest.raises(ValueError):
        TokenBucket(0, 1, 0)


def test_health_is_asked_at_most_once_per_refresh() -> None:
    calls: list[str] = []
    state = {"a": False}

    def check(p: str) -> bool:
        calls.append(p)
        return state.get(p, True)

    cache = HealthCache(check, refresh_s=0.5)
    assert [cache.available("a", t / 100) for t in range(50)] == [False] * 50
    assert calls == ["a"]
    state["a"] = True
    assert cache.available("a", 0.5) and cache.available("b", 0.5)
    assert calls == ["a", "a", "b"]


def test_gate_waits_for_the_provider_then_for_tokens() -> None:
    clock = [0.0]
    up = {"x": False}
    gate = DrainGate(HealthCache(lambda p: up[p], 0.5), TokenBucket(2, 1, 0.0), lambda: clock[0])
    assert gate("x") == Wait(provider="x")
    up["x"] = True
    assert gate("x") == Wait(provider="x"), "still the cached answer"
    clock[0] = 0.5
    assert gate("x") is None
    assert gate(None) == Wait(until_ms=1001)
    clock[0] = 1.0
    assert gate(None) is None


def test_holds_end_at_their_time_or_with_their_provider() -> None:
    holds = Holds()
    holds.add(("r", 0), Hold(5, "not_due", until=10.0))
    holds.add(("r", 1), Hold(7, "not_due", until=12.0))
    holds.add(("p", 0), Hold(3, "provider", provider="openai"))
    assert ("r", 0) in holds and len(holds) == 3
    assert holds.next_deadline() == 10.0
    assert holds.due(9.9) == []
    assert holds.due(10.0) == [("r", 0)]
    assert holds.next_deadline() == 12.0
    assert holds.providers() == {"openai"}
    assert holds.waiting_for("openai") == [("p", 0)]
    holds.drop([("p", 0), ("r", 1)])
    assert len(holds) == 0 and holds.next_deadline() is None
    with pytest.raises(ValueError):
        Hold(1, "x")
    with pytest.raises(ValueError):
        Hold(1, "x", until=1.0, provider="p")


class FakeConsumer:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[tuple[str, int, int]]]] = []

    def _log(self, what: str, parts: list[TopicPartition]) -> None:
        self.calls.append((what, [(p.topic, p.partition, p.offset) for p in parts]))

    def seek(self, part: TopicPartition) -> None:
        self._log("seek", [part])

    def pause(self, parts: list[TopicPartition]) -> None:
        self._log("pause", parts)

    def resume(self, parts: list[TopicPartition]) -> None:
        self._log("resume", parts)


def test_pauser_seeks_back_before_pausing_and_resumes_in_time() -> None:
    consumer = FakeConsumer()
    up = {"openai": False}
    pauser = Pauser(consumer, HealthCache(lambda p: up[p], 0.5), min_hold_s=0.2)  # type: ignore[arg-type]
    pauser.hold(("r", 1), 42, Wait(until_ms=10_500), "not_due", now=10.0)
    pauser.hold(("r", 2), 7, Wait(until_ms=10_050), "not_due", now=10.0)  # min hold: 10.2
    pauser.hold(("p", 0), 3, Wait(provider="openai"), "rate", now=10.0)
    assert consumer.calls[:2] == [("seek", [("r", 1, 42)]), ("pause", [("r", 1, -1001)])]
    assert pauser.holds.get(("r", 2)) == Hold(7, "not_due", until=10.2)
    consumer.calls.clear()
    pauser.release(10.1)
    assert consumer.calls == []
    pauser.release(10.2)
    assert consumer.calls == [("resume", [("r", 2, -1001)])]
    up["openai"] = True
    pauser.release(10.3)  # health still cached from 10.1
    assert consumer.calls[1:] == []
    pauser.release(10.6)  # r1's time has come and openai is asked again
    assert consumer.calls[1:] == [("resume", [("r", 1, -1001), ("p", 0, -1001)])]
    assert len(pauser.holds) == 0
    assert pauser.timeout(0.25) == 0.25
