"""The retry ladder decision (pure)."""

import pytest

from services.router.ladder import Route, next_hop, waiting_rung
from shared.kinds import FailureKind as K
from shared.topics import Topics, parse_rungs

T = Topics("p")  # default rungs 5s,1m
NOW = 1_000_000


@pytest.mark.parametrize("kind", [k for k in K if k.retryable and k is not K.OUTAGE])
def test_retryable_kinds_climb_the_default_ladder_then_die(kind: K) -> None:
    first = next_hop(T, kind, 1, NOW)
    assert (first.route, first.topic, first.not_before_ms) == (
        Route.RETRY,
        "p.retry.5s",
        NOW + 5000,
    )
    second = next_hop(T, kind, 2, NOW)
    assert (second.route, second.topic, second.not_before_ms) == (
        Route.RETRY,
        "p.retry.1m",
        NOW + 60_000,
    )
    third = next_hop(T, kind, 3, NOW)
    expected = "p.dlq.timeout" if kind is K.TIMEOUT else "p.dlq.error"
    assert (third.route, third.topic, third.not_before_ms) == (Route.DLQ, expected, None)
    assert next_hop(T, kind, 9, NOW).topic == expected


@pytest.mark.parametrize("kind", [K.BAD_REQUEST, K.POISON])
def test_non_retryable_kinds_die_at_once_in_the_error_dlq(kind: K) -> None:
    for attempt in (1, 2, 5):
        hop = next_hop(T, kind, attempt, NOW)
        assert (hop.route, hop.topic, hop.label) == (Route.DLQ, "p.dlq.error", "dlq.error")


@pytest.mark.parametrize("attempt", [1, 2, 3, 50])
def test_outage_parks_whatever_the_attempt(attempt: int) -> None:
    hop = next_hop(T, K.OUTAGE, attempt, NOW)
    assert (hop.route, hop.topic, hop.not_before_ms) == (Route.PARKED, "p.parked", None)


def test_a_third_rung_adds_an_attempt() -> None:
    t = Topics("p", parse_rungs("5s,1m,10m"))
    assert next_hop(t, K.TIMEOUT, 3, NOW).topic == "p.retry.10m"
    assert next_hop(t, K.TIMEOUT, 3, NOW).not_before_ms == NOW + 600_000
    assert next_hop(t, K.TIMEOUT, 4, NOW).topic == "p.dlq.timeout"
    one = Topics("p", parse_rungs("1s"))
    assert next_hop(one, K.OVERLOADED, 1, NOW).topic == "p.retry.1s"
    assert next_hop(one, K.OVERLOADED, 2, NOW).topic == "p.dlq.error"


def test_a_longer_provider_retry_after_is_honoured() -> None:
    hop = next_hop(T, K.RATE_LIMITED, 1, NOW, retry_after_s=30.0)
    assert hop.not_before_ms == NOW + 30_000
    # it waits in the 1m rung so it does not hold up the 5s rung's partition
    assert hop.topic == "p.retry.1m" and hop.label == "1m"


def test_a_shorter_retry_after_does_not_shorten_the_rung() -> None:
    hop = next_hop(T, K.RATE_LIMITED, 1, NOW, retry_after_s=1.5)
    assert (hop.topic, hop.not_before_ms) == ("p.retry.5s", NOW + 5000)
    assert next_hop(T, K.RATE_LIMITED, 1, NOW, retry_after_s=0).not_before_ms == NOW + 5000


def test_a_retry_after_beyond_every_rung_is_capped_at_the_longest_rung() -> None:
    hop = next_hop(T, K.OVERLOADED, 1, NOW, retry_after_s=600)
    assert (hop.topic, hop.not_before_ms) == ("p.retry.1m", NOW + 60_000)
    forged = next_hop(T, K.RATE_LIMITED, 2, NOW, retry_after_s=100_000)  # ~28 h
    assert (forged.topic, forged.not_before_ms) == ("p.retry.1m", NOW + 60_000)


def test_waiting_rung_never_goes_below_the_ladder_rung() -> None:
    rungs = parse_rungs("1s,3s,10s")
    assert waiting_rung(rungs, 1, 0.5).label == "3s"
    assert waiting_rung(rungs, 0, 2).label == "3s"
    assert waiting_rung(rungs, 0, 3).label == "3s"
    assert waiting_rung(rungs, 0, 11).label == "10s"


def test_attempt_must_be_positive() -> None:
    with pytest.raises(ValueError):
        next_hop(T, K.TIMEOUT, 0, NOW)
