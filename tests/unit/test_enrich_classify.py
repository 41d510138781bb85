from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

import aiohttp
import pytest

from services.enrich.classify import (
    SPEND_LIMIT_COOLDOWN_S,
    Completion,
    classify_exception,
    classify_response,
    cooldown_from_headers,
    retry_after_from_headers,
)
from services.enrich.providers.ratelimit_headers import (
    MAX_COOLDOWN_S,
    hint_from_message,
    parse_duration,
    seconds_until,
)
from shared.kinds import FailureKind as K
from shared.outcomes import Failure

NOW = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def iso(offset: float) -> str:
    return datetime.fromtimestamp(NOW + offset, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def openai_error(type_: str, code: str | None, message: str = "m") -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


def anthropic_error(type_: str, message: str = "m") -> dict[str, Any]:
    return {"type": "error", "error": {"type": type_, "message": message}}


def fail(
    kind: str, status: int, body: object = None, headers: dict[str, str] | None = None
) -> Failure:
    out = classify_response(kind, status, headers or {}, body, NOW)
    assert isinstance(out, Failure), out
    return out


# -- exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "kind", "error_class"),
    [
        (TimeoutError(), K.TIMEOUT, "timeout"),
        (aiohttp.SocketTimeoutError("read"), K.TIMEOUT, "timeout"),
        (aiohttp.ConnectionTimeoutError("connect"), K.PROVIDER_ERROR, "connect_timeout"),
        (aiohttp.ServerDisconnectedError(), K.PROVIDER_ERROR, "protocol_error"),
        (aiohttp.ClientPayloadError("truncated body"), K.PROVIDER_ERROR, "protocol_error"),
        (aiohttp.ClientOSError(104, "reset"), K.PROVIDER_ERROR, "network_error"),
        (aiohttp.ClientConnectionError("closed"), K.PROVIDER_ERROR, "http_error"),
        (ConnectionRefusedError(111, "refused"), K.PROVIDER_ERROR, "connect_error"),
        (OSError("boom"), K.PROVIDER_ERROR, "network_error"),
        (ValueError("weird"), K.PROVIDER_ERROR, "unexpected:ValueError"),
    ],
)
def test_exceptions(exc: BaseException, kind: K, error_class: str) -> None:
    f = classify_exception(exc, 2.5)
    assert (f.kind, f.error_class) == (kind, error_class)
    assert f.message


def test_our_deadline_says_so() -> None:
    assert classify_exception(TimeoutError(), 0.5).message == "no answer within the 0.5 s deadline"
    assert "TimeoutError" in classify_exception(TimeoutError()).message


# -- HTTP statuses ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
@pytest.mark.parametrize(
    ("status", "expected", "error_class"),
    [
        (500, K.PROVIDER_ERROR, "http_500"),
        (502, K.PROVIDER_ERROR, "http_502"),
        (503, K.PROVIDER_ERROR, "http_503"),
        (504, K.PROVIDER_ERROR, "http_504"),
        (529, K.OVERLOADED, "http_529"),
        (429, K.RATE_LIMITED, "http_429"),
        (401, K.PROVIDER_ERROR, "auth"),
        (403, K.PROVIDER_ERROR, "auth"),
        (408, K.TIMEOUT, "http_408"),
        (400, K.BAD_REQUEST, "http_400"),
        (404, K.BAD_REQUEST, "http_404"),
        (413, K.BAD_REQUEST, "http_413"),
        (422, K.BAD_REQUEST, "http_422"),
        (409, K.PROVIDER_ERROR, "http_409"),
        (302, K.PROVIDER_ERROR, "http_302"),
    ],
)
def test_statuses(kind: str, status: int, expected: K, error_class: str) -> None:
    f = fail(kind, status, {"error": {"message": "nope", "type": "x"}})
    assert (f.kind, f.error_class) == (expected, error_class)
    assert f.message == f"HTTP {status}: nope"
    assert not f.kind.retryable if expected is K.BAD_REQUEST else f.kind.retryable


def test_status_with_non_json_body() -> None:
    f = fail("openai", 502, "<html>Bad Gateway</html>")
    assert f.error_class == "http_502" and "Bad Gateway" in f.message
    assert fail("openai", 500, None).message == "HTTP 500"


def test_overloaded_error_body_on_any_status() -> None:
    f = fail("anthropic", 500, anthropic_error("overloaded_error", "Overloaded"))
    assert f.kind is K.OVERLOADED
    # ...but a 503 whose message merely mentions overload stays a provider error
    assert (
        fail("openai", 503, openai_error("server_error", None, "overloaded or not ready")).kind
        is K.PROVIDER_ERROR
    )


def test_429_retry_after_from_headers_and_message() -> None:
    assert fail("openai", 429, None, {"Retry-After": "7"}).retry_after_s == 7
    hinted = fail(
        "openai", 429, openai_error("requests", "rate_limit_exceeded", "Please try again in 1.5s.")
    )
    assert hinted.retry_after_s == 1.5
    assert fail("openai", 429, None).retry_after_s is None


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (402, None),
        (
            429,
            openai_error(
                "insufficient_quota", "insufficient_quota", "You exceeded your current quota"
            ),
        ),
        (429, openai_error("requests", "enforced_spend_limit_reached")),
        (400, openai_error("invalid_request_error", "billing_hard_limit_reached")),
        (
            400,
            anthropic_error(
                "invalid_request_error", "Your credit balance is too low to access the API."
            ),
        ),
        (200, openai_error("insufficient_quota", None)),
        (200, anthropic_error("invalid_request_error", "Your credit balance is too low")),
    ],
)
def test_spend_limits_cool_down_for_long(status: int, body: object) -> None:
    f = fail("openai", status, body, {"retry-after": "1", "retry-after-ms": "20"})
    assert (f.kind, f.error_class) == (K.RATE_LIMITED, "spend_limit")
    assert f.retry_after_s == SPEND_LIMIT_COOLDOWN_S == 3600


def test_spend_limit_takes_a_longer_header() -> None:
    assert fail("openai", 402, None, {"retry-after": "7200"}).retry_after_s == 7200


# -- errors in HTTP 200 bodies -------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "body", "expected", "error_class"),
    [
        (
            "openai",
            openai_error("requests", "rate_limit_exceeded", "Please try again in 1s."),
            K.RATE_LIMITED,
            "error_body:rate_limit_exceeded",
        ),
        (
            "anthropic",
            anthropic_error("rate_limit_error"),
            K.RATE_LIMITED,
            "error_body:rate_limit_error",
        ),
        (
            "anthropic",
            anthropic_error("overloaded_error", "Overloaded"),
            K.OVERLOADED,
            "error_body:overloaded_error",
        ),
        (
            "openai",
            openai_error("invalid_request_error", None),
            K.BAD_REQUEST,
            "error_body:invalid_request_error",
        ),
        (
            "anthropic",
            anthropic_error("not_found_error"),
            K.BAD_REQUEST,
            "error_body:not_found_error",
        ),
        ("anthropic", anthropic_error("api_error"), K.PROVIDER_ERROR, "error_body:api_error"),
        (
            "openai",
            openai_error("server_error", None),
            K.PROVIDER_ERROR,
            "error_body:server_error",
        ),
        (
            "anthropic",
            anthropic_error("authentication_error"),
            K.PROVIDER_ERROR,
            "auth",
        ),
        ("openai", {"error": "something broke"}, K.PROVIDER_ERROR, "error_body:unknown"),
        ("anthropic", {"type": "error"}, K.PROVIDER_ERROR, "error_body:unknown"),
    ],
)
def test_error_bodies_in_200(kind: str, body: object, expected: K, error_class: str) -> None:
    f = fail(kind, 200, body)
    assert (f.kind, f.error_class) == (expected, error_class)
    assert f.message.startswith("error in HTTP 200 body")


def test_rate_limit_body_in_200_takes_its_hint() -> None:
    body = openai_error("requests", "rate_limit_exceeded", "Please try again in 6m0s.")
    assert fail("openai", 200, body).retry_after_s == 360


# -- successes, refusals, malformed answers -------------------------------------------------


def test_openai_success() -> None:
    body = {
        "model": "gpt-x",
        "choices": [
            {
                "message": {"role": "assistant", "content": "{}", "refusal": None},
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3},
    }
    assert classify_response("openai", 200, {}, body, NOW) == Completion("{}", 12, 3, "gpt-x")


def test_openai_success_with_parts_and_no_usage() -> None:
    body = {
        "choices": [
            {"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}
        ]
    }
    assert classify_response("openai", 200, {}, body, NOW) == Completion("ab", 0, 0, "")


def test_anthropic_success_counts_cached_input() -> None:
    body = {
        "type": "message",
        "model": "claude-x",
        "content": [
            {"type": "text", "text": "{"},
            {"type": "tool_use"},
            {"type": "text", "text": "}"},
        ],
        "stop_reason": "end_turn",
        "usage": {
            "input_tokens": 10,
            "output_tokens": 4,
            "cache_read_input_tokens": 5,
            "cache_creation_input_tokens": None,
        },
    }
    assert classify_response("anthropic", 200, {}, body, NOW) == Completion("{}", 15, 4, "claude-x")


@pytest.mark.parametrize(
    ("kind", "body", "error_class"),
    [
        (
            "openai",
            {"choices": [{"message": {"content": None}, "finish_reason": "content_filter"}]},
            "content_filter",
        ),
        (
            "openai",
            {"choices": [{"message": {"content": None, "refusal": "I can't help with that."}}]},
            "refusal",
        ),
        ("anthropic", {"content": [], "stop_reason": "refusal"}, "refusal"),
    ],
)
def test_refusals_are_bad_requests(kind: str, body: object, error_class: str) -> None:
    f = fail(kind, 200, body)
    assert (f.kind, f.error_class) == (K.BAD_REQUEST, error_class)
    assert not f.kind.retryable


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("openai", "<html>proxy page</html>"),
        ("openai", None),
        ("openai", {"choices": []}),
        ("openai", {"object": "list"}),
        ("anthropic", {"type": "message"}),
        ("anthropic", [1, 2]),
    ],
)
def test_malformed_successes(kind: str, body: object) -> None:
    f = fail(kind, 200, body)
    assert (f.kind, f.error_class) == (K.PROVIDER_ERROR, "malformed_response")


# -- header parsing ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1s", 1.0),
        ("6m0s", 360.0),
        ("20ms", 0.02),
        ("1h2m3.5s", 3723.5),
        ("8.64s", 8.64),
        ("1.5", 1.5),
        ("0", 0.0),
        ("-3", 0.0),
        (" 2s ", 2.0),
        ("500us", 0.0005),
        ("", None),
        ("abc", None),
        ("1x", None),
        ("s", None),
        ("1s2", None),
        ("nan", None),
        ("99999h", MAX_COOLDOWN_S),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_seconds_until() -> None:
    assert seconds_until(iso(30), NOW) == 30
    assert seconds_until(iso(-30), NOW) == 0
    assert seconds_until("2027-01-15T08:00:30+00:00", NOW) == 30
    http_date = format_datetime(datetime.fromtimestamp(NOW + 45, UTC), usegmt=True)
    assert seconds_until(http_date, NOW) == 45
    assert seconds_until("not a date", NOW) is None


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        (
            {"retry-after": format_datetime(datetime.fromtimestamp(NOW + 20, UTC), usegmt=True)},
            20.0,
        ),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after": "1", "retry-after-ms": "1500"}, 1.5),
        ({"retry-after": "1", "retry-after-ms": "120"}, 0.12),  # the exact one wins
        ({"retry-after": "2", "retry-after-ms": "junk"}, 2.0),
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "6m0s"}, 360.0),
        ({"x-ratelimit-remaining-requests": "5", "x-ratelimit-reset-requests": "6m0s"}, None),
        ({"x-ratelimit-reset-tokens": "20ms"}, 0.02),
        (
            {
                "x-ratelimit-remaining-requests": "3",
                "x-ratelimit-reset-requests": "1m",
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "2s",
                "retry-after": "1",
            },
            2.0,
        ),
        (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": iso(42),
            },
            42.0,
        ),
        (
            {
                "anthropic-ratelimit-output-tokens-remaining": "0",
                "anthropic-ratelimit-output-tokens-reset": iso(9),
                "anthropic-ratelimit-requests-remaining": "10",
                "anthropic-ratelimit-requests-reset": iso(50),
            },
            9.0,
        ),
        ({"x-ratelimit-reset-requests": "garbage"}, None),
        ({"retry-after": "9999999"}, MAX_COOLDOWN_S),
    ],
)
def test_retry_after_from_headers(headers: dict[str, str], seconds: float | None) -> None:
    got = retry_after_from_headers(headers, NOW)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


def test_header_names_are_case_insensitive_through_classify() -> None:
    f = fail(
        "openai",
        429,
        None,
        {"X-RateLimit-Remaining-Requests": "0", "X-RateLimit-Reset-Requests": "3s"},
    )
    assert f.retry_after_s == 3


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1s"}, 1.0),
        ({"X-Ratelimit-Remaining-Requests": "0", "X-Ratelimit-Reset-Requests": "250ms"}, 0.25),
        ({"x-ratelimit-remaining-requests": "4", "x-ratelimit-reset-requests": "1s"}, None),
        (
            {
                "x-ratelimit-remaining-tokens": "0",
                "x-ratelimit-reset-tokens": "5s",
                "x-ratelimit-remaining-requests": "0",
                "x-ratelimit-reset-requests": "2s",
            },
            5.0,
        ),
        (
            {
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": iso(12),
            },
            12.0,
        ),
        (
            {
                "anthropic-ratelimit-requests-remaining": "1",
                "anthropic-ratelimit-requests-reset": iso(12),
            },
            None,
        ),
        ({"x-ratelimit-remaining-requests": "0"}, None),
        ({"x-ratelimit-reset-requests": "1s"}, None),  # no "remaining": not known to be exhausted
        ({"retry-after": "5"}, None),
        ({}, None),
    ],
)
def test_cooldown_from_headers_on_success(headers: dict[str, str], seconds: float | None) -> None:
    got = cooldown_from_headers(headers, NOW)
    assert got == pytest.approx(seconds) if seconds is not None else got is None


@pytest.mark.parametrize(
    ("headers", "tokens", "seconds"),
    [
        # 3 requests/min, nothing left, full again in 57 s: one request is back in 19 s
        ({"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "57s"}, None, 19.0),
        ({"anthropic-ratelimit-requests-limit": "3", "anthropic-ratelimit-requests-remaining": "0",
          "anthropic-ratelimit-requests-reset": iso(57)}, None, 19.0),
        # a tokens dimension: the request's tokens of the limit, when they are known
        ({"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-tokens": "60s"}, 500, 3.0),
        ({"x-ratelimit-limit-tokens": "10000", "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-tokens": "60s"}, None, 60.0),
        ({"anthropic-ratelimit-output-tokens-limit": "1000",
          "anthropic-ratelimit-output-tokens-remaining": "0",
          "anthropic-ratelimit-output-tokens-reset": iso(30)}, 100, 3.0),
        # never more than the whole reset, never based on a limit that is not a number
        ({"x-ratelimit-limit-tokens": "100", "x-ratelimit-remaining-tokens": "0",
          "x-ratelimit-reset-tokens": "8s"}, 5000, 8.0),
        ({"x-ratelimit-limit-requests": "lots", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "57s"}, None, 57.0),
        ({"x-ratelimit-limit-requests": "0", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "57s"}, None, 57.0),
        # the longest dimension still wins
        ({"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
          "x-ratelimit-reset-requests": "57s", "x-ratelimit-limit-tokens": "1000",
          "x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "40s"}, 600, 24.0),
    ],
)  # fmt: skip
def test_an_exhausted_dimension_waits_for_one_requests_worth(
    headers: dict[str, str], tokens: int | None, seconds: float
) -> None:
    assert cooldown_from_headers(headers, NOW, tokens) == pytest.approx(seconds)


def test_a_refused_request_waits_for_one_requests_worth_or_its_retry_after() -> None:
    exhausted = {"x-ratelimit-limit-requests": "3", "x-ratelimit-remaining-requests": "0",
                 "x-ratelimit-reset-requests": "57s"}  # fmt: skip
    assert retry_after_from_headers(exhausted, NOW) == pytest.approx(19.0)
    assert retry_after_from_headers({**exhausted, "retry-after": "30"}, NOW) == 30
    # a limit the response does not name: the whole reset, as before
    unnamed = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "57s"}
    assert retry_after_from_headers(unnamed, NOW) == pytest.approx(57.0)


def test_hint_from_message() -> None:
    assert hint_from_message("Rate limit reached. Please try again in 20ms. Visit ...") == 0.02
    assert hint_from_message("Please retry after 6 seconds.") == 6
    assert hint_from_message("Slow down") is None
