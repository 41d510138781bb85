import pytest

from services.fakellm.dialects import ANTHROPIC, OPENAI, go_duration, retry_headers, rfc3339
from services.fakellm.ratelimit import Decision, Quota


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.12, "120ms"),
        (0.0001, "1ms"),
        (1, "1s"),
        (8.64, "8.64s"),
        (59.9994, "59.999s"),
        (60, "1m0s"),
        (360, "6m0s"),
        (90.5, "1m30.5s"),
        (3723, "1h2m3s"),
    ],
)
def test_go_duration(seconds: float, text: str) -> None:
    assert go_duration(seconds) == text


def test_rfc3339_rounds_up() -> None:
    assert rfc3339(0.2) == "1970-01-01T00:00:01Z"
    assert rfc3339(86400) == "1970-01-02T00:00:00Z"


def test_retry_headers() -> None:
    assert retry_headers(0.2) == {"retry-after": "1", "retry-after-ms": "200"}
    assert retry_headers(20.0001) == {"retry-after": "21", "retry-after-ms": "20001"}


def test_ratelimit_headers_of_both_providers() -> None:
    d = Decision(True, 0.0, None, Quota(60, 59, 1.0), Quota(1000, 900, 6.0))
    assert OPENAI.ratelimit_headers(d, 0.0) == {
        "x-ratelimit-limit-requests": "60",
        "x-ratelimit-remaining-requests": "59",
        "x-ratelimit-reset-requests": "1s",
        "x-ratelimit-limit-tokens": "1000",
        "x-ratelimit-remaining-tokens": "900",
        "x-ratelimit-reset-tokens": "6s",
    }
    assert ANTHROPIC.ratelimit_headers(d, 0.0) == {
        "anthropic-ratelimit-requests-limit": "60",
        "anthropic-ratelimit-requests-remaining": "59",
        "anthropic-ratelimit-requests-reset": "1970-01-01T00:00:01Z",
        "anthropic-ratelimit-tokens-limit": "1000",
        "anthropic-ratelimit-tokens-remaining": "900",
        "anthropic-ratelimit-tokens-reset": "1970-01-01T00:00:06Z",
    }
    assert OPENAI.ratelimit_headers(Decision(True, 0.0, None, None, None), 0.0) == {}


GOOD = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": GOOD["messages"]}, "model"),
        ({"model": 3, "messages": GOOD["messages"]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({**GOOD, "stream": True}, "stream"),
    ],
)
def test_openai_validation(body: dict[str, object], param: str) -> None:
    assert OPENAI.validate(GOOD) is None
    invalid = OPENAI.validate(body)
    assert invalid is not None and invalid.param == param
    err = OPENAI.error(400, invalid.message, invalid=invalid)["error"]
    assert err["type"] == "invalid_request_error" and err["param"] == param


def test_anthropic_validation_needs_max_tokens_and_user_or_assistant_roles() -> None:
    assert ANTHROPIC.validate({**GOOD, "max_tokens": 5}) is None
    missing = ANTHROPIC.validate(GOOD)
    assert missing is not None and missing.message == "max_tokens: Field required"
    assert ANTHROPIC.validate({**GOOD, "max_tokens": 0}) is not None
    system_role = {"model": "m", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}
    assert ANTHROPIC.validate(system_role) is not None


@pytest.mark.parametrize(
    ("status", "openai_type", "anthropic_type"),
    [
        (400, "invalid_request_error", "invalid_request_error"),
        (429, "requests", "rate_limit_error"),
        (500, "server_error", "api_error"),
        (503, "server_error", "api_error"),
        (529, "server_error", "overloaded_error"),
    ],
)
def test_error_shapes(status: int, openai_type: str, anthropic_type: str) -> None:
    o = OPENAI.error(status, "boom")
    assert set(o["error"]) == {"message", "type", "param", "code"}
    assert o["error"]["type"] == openai_type
    if status == 429:
        assert o["error"]["code"] == "rate_limit_exceeded"
        assert OPENAI.error(429, "x", limit="tokens")["error"]["type"] == "tokens"
    a = ANTHROPIC.error(status, "boom")
    assert a == {"type": "error", "error": {"type": anthropic_type, "message": "boom"}}


def test_completion_shapes() -> None:
    o = OPENAI.completion("gpt", "{}", 3, 4, 1700000000.5)
    assert o["object"] == "chat.completion" and o["created"] == 1700000000
    assert o["choices"][0]["message"] == {"role": "assistant", "content": "{}", "refusal": None}
    assert o["choices"][0]["finish_reason"] == "stop"
    assert o["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    a = ANTHROPIC.completion("claude", "{}", 3, 4, 0.0)
    assert (a["type"], a["role"], a["stop_reason"]) == ("message", "assistant", "end_turn")
    assert a["content"] == [{"type": "text", "text": "{}"}]
    assert a["usage"] == {"input_tokens": 3, "output_tokens": 4}
