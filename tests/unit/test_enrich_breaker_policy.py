"""A failed call's meaning for the breaker and the record (pure)."""

from __future__ import annotations

import pytest

from services.enrich.breaker_policy import (
    Effect,
    auth_outage,
    breaker_effect,
    failed_probes,
    outage_if_opened,
)
from services.enrich.classify import classify_response
from shared import headers as h
from shared.kinds import FailureKind as K
from shared.outcomes import Failure, failure_record
from shared.outcomes import Record as Rec

NOW = 1_700_000_000.0
OPENAI_401 = {"error": {"message": "Incorrect API key provided", "code": "invalid_api_key"}}
ANTHROPIC_AUTH = {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}  # fmt: skip


def classified(status: int, body: object, kind: str = "openai") -> Failure:
    f = classify_response(kind, status, {}, body, NOW)
    assert isinstance(f, Failure)
    return f


@pytest.mark.parametrize(
    ("status", "body", "kind"),
    [
        (401, OPENAI_401, "openai"),
        (403, {"error": {"message": "forbidden", "type": "permission_error"}}, "openai"),
        (401, ANTHROPIC_AUTH, "anthropic"),
        (200, ANTHROPIC_AUTH, "anthropic"),  # an auth error in an HTTP 200 body
    ],
)
def test_a_rejected_key_trips_the_breaker_with_reason_auth(
    status: int, body: object, kind: str
) -> None:
    f = classified(status, body, kind)
    assert breaker_effect(f) is Effect.TRIP_AUTH


@pytest.mark.parametrize(
    ("status", "effect"),
    [(500, Effect.FAILURE), (529, Effect.FAILURE), (400, Effect.ANSWERED), (429, Effect.ANSWERED)],
)
def test_other_failures_feed_the_window_or_count_as_an_answer(status: int, effect: Effect) -> None:
    assert breaker_effect(classified(status, {"error": {"message": "x"}})) is effect


def test_the_record_of_a_rejected_key_is_parked_without_spending_an_attempt() -> None:
    out = auth_outage(classified(401, OPENAI_401), "primary", 401)
    assert out.kind is K.OUTAGE  # parked: the router spends no attempt on an outage
    assert out.error_class == "breaker_open:auth"
    assert out.message.startswith("provider primary rejected the API key (HTTP 401)")
    body = auth_outage(classified(200, ANTHROPIC_AUTH, "anthropic"), "backup", 200)
    assert "an auth error body in HTTP 200" in body.message


def test_a_failure_that_opened_the_breaker_is_the_outages_except_a_timeout() -> None:
    err = Failure(K.PROVIDER_ERROR, "http_503", "HTTP 503")
    assert outage_if_opened(err, "closed") is err
    out = outage_if_opened(err, "open")
    assert (out.kind, out.error_class) == (K.OUTAGE, "breaker_open:http_503")
    timeout = Failure(K.TIMEOUT, "timeout", "no answer")
    assert outage_if_opened(timeout, "open") is timeout


def test_a_failed_probe_is_an_outage_marked_as_the_probes() -> None:
    err = Failure(K.PROVIDER_ERROR, "http_500", "HTTP 500")
    out = outage_if_opened(err, "open", probe=True)
    assert (out.kind, out.error_class) == (K.OUTAGE, "probe_failed:http_500")
    assert outage_if_opened(err, "half_open", probe=True) is err


def test_failed_probes_are_counted_from_the_records_history() -> None:
    rec = Rec(b"k", b"{}", h.source_headers(h.SourceId("src", 0, 1), 5))
    assert failed_probes(rec.headers) == 0
    err = Failure(K.PROVIDER_ERROR, "http_500", "HTTP 500")
    for failure in (
        outage_if_opened(err, "open"),  # opened the breaker: not a probe
        outage_if_opened(err, "open", probe=True),
        err,
        outage_if_opened(err, "open", probe=True),
    ):
        rec = failure_record(rec, 1, failure, "a")
    assert failed_probes(rec.headers) == 2
    garbled = h.merge(rec.headers, [(h.ERROR_HISTORY, b"not json")])
    assert failed_probes(garbled) == 0
