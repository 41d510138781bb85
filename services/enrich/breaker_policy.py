"""What a failed call means for the provider's breaker and for the record (pure).

::

    failure                                   breaker                  the record
    provider_error/auth (401, 403, an auth .. tripped open fleet-wide  outage (parked, no attempt
      error body: the key is wrong/revoked)   with reason ``auth``     spent; the fallback is tried)
    timeout / overloaded / provider_error ... a failure in the window  its failure; ``outage`` if
                                                                       this one opened the breaker
                                                                       (a timeout stays a timeout)
    anything else (bad request, rate limit) . untouched; a probe       its failure
                                              counts as an answer
    (no call: the provider paused or its .... -                        outage ``paused`` or
    breaker open, seen before or while                                 ``breaker_open[:reason]``
    waiting)
    a half-open probe's failure (not a ...... re-opened (``probe_      outage ``probe_failed:<class>``
      timeout)                                failed``)
    the same, by a record that failed as .... closed, when the         its failure (its attempt
      a probe before, while the provider      provider answers a       spent: the record, not the
      lists its models                        request of its own       provider, is at fault)

An auth failure is the provider's problem, not the record's: retrying the
record cannot fix a key, so the provider is taken out of service at once and
a half-open probe after ``open_s`` tests the key again (or an operator fixes
it and the probe closes the breaker).

A probe's verdict depends on its record. A record that the provider always
fails on (say a 500 for that one text), parked by an outage, would be the
probe again whenever it is the provider's only traffic, re-opening the
breaker every ``open_s`` for good: never in a DLQ, the provider reading as
down. So when a record fails as the probe a second time
(:func:`failed_probes`, from its error history), enrich asks the provider a
question of its own first: its model list (free). If that is answered, the
breaker closes and the failure is the record's (it spends an attempt and
goes down the retry rungs to its DLQ); if not, the outage goes on as before.
A provider whose model list fails or does not exist (a 404) keeps the old
behaviour, which never sends a record to a DLQ because of an outage.
"""

from __future__ import annotations

from dataclasses import replace
from enum import Enum

from shared.headers import HeaderList
from shared.kinds import FailureKind
from shared.outcomes import Failure, history
from shared.provider_state import Health
from shared.redis.breaker_logic import AUTH, CLOSED, OPEN, PROBE_FAILED

__all__ = [
    "AUTH",
    "Effect",
    "auth_outage",
    "breaker_effect",
    "failed_probes",
    "opened_for_auth",
    "outage_if_opened",
    "unavailable",
]

# Failures that say the provider itself is unwell (they feed the breaker's window).
PROVIDER_SIDE = frozenset({FailureKind.TIMEOUT, FailureKind.OVERLOADED, FailureKind.PROVIDER_ERROR})


class Effect(Enum):
    TRIP_AUTH = "trip_auth"  # force the breaker open, reason auth
    FAILURE = "failure"  # count a failure in the breaker's window
    ANSWERED = "answered"  # the provider answered; the request was at fault


def is_auth(failure: Failure) -> bool:
    return failure.error_class == AUTH


def breaker_effect(failure: Failure) -> Effect:
    if is_auth(failure):
        return Effect.TRIP_AUTH
    if failure.kind in PROVIDER_SIDE:
        return Effect.FAILURE
    return Effect.ANSWERED


def status_text(status: int | None) -> str:
    """How the rejection came: ``HTTP 401``, or an auth error in an HTTP 200 body."""
    if status is None:
        return "an auth error"
    return f"HTTP {status}" if status >= 300 else f"an auth error body in HTTP {status}"


def auth_outage(failure: Failure, provider: str, status: int | None) -> Failure:
    """The record's failure after its provider rejected the key: parked, not spent."""
    return Failure(
        FailureKind.OUTAGE,
        f"breaker_open:{AUTH}",
        f"provider {provider} rejected the API key ({status_text(status)}); "
        f"breaker open fleet-wide (reason auth): {failure.message}",
        failure.retry_after_s,
    )


def outage_if_opened(failure: Failure, breaker_state: str, probe: bool = False) -> Failure:
    """A failure that tripped the breaker is the outage's, not the record's (timeouts
    excepted); a half-open probe's is marked as such (class ``probe_failed:<class>``)."""
    if breaker_state == "open" and failure.kind is not FailureKind.TIMEOUT:
        return Failure(
            FailureKind.OUTAGE,
            f"{PROBE_FAILED if probe else 'breaker_open'}:{failure.error_class}",
            failure.message,
            failure.retry_after_s,
        )
    return failure


def failed_probes(headers: HeaderList) -> int:
    """How many times this record failed as a half-open probe (in its bounded history)."""
    prefix = PROBE_FAILED + ":"
    return sum(1 for item in history(headers) if str(item.get("class", "")).startswith(prefix))


def unavailable(provider: str, health: Health | None) -> Failure:
    """The record's failure when ``provider`` would not take the call (paused or open)."""
    if health is not None and health.paused:
        return Failure(FailureKind.OUTAGE, "paused", f"provider {provider} is paused")
    reason = health.reason if health is not None else ""
    return Failure(
        FailureKind.OUTAGE,
        f"breaker_open:{reason}" if reason else "breaker_open",
        f"provider {provider}: breaker open" + (f" (reason {reason})" if reason else ""),
    )


def refused(health: Health | None, refused_by: str | None) -> Health:
    """What a worker knows at once when the fleet's state refused a call: the provider
    is paused, or its breaker admits no more (open, or half-open with every probe out),
    until its next health refresh says otherwise."""
    known = health if health is not None else Health(paused=False, breaker=CLOSED)
    if refused_by == "paused":
        return replace(known, paused=True)
    return replace(known, breaker=OPEN)


def opened_for_auth(health: Health | None) -> Health:
    """What a worker knows at once after tripping the breaker for auth (the fleet: at its refresh)."""
    if health is None:
        return Health(paused=False, breaker=OPEN, reason=AUTH)
    return replace(health, breaker=OPEN, reason=AUTH)  # a pause stays, with its start
