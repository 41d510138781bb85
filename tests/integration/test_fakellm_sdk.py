"""fakellm over real HTTP, driven by the official OpenAI and Anthropic SDKs.

No Kafka or Redis: one server in a background thread for the module; each
test starts from the default configuration and zeroed counters.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from services.fakellm.config import FakeLLMConfig
from services.fakellm.server import serve_in_thread
from tests.support.fakellm import control_client

HANG_S = 3.0  # longer than the client timeout, short enough to end fast
CLIENT_TIMEOUT_S = 0.5
BASE = FakeLLMConfig(hang_seconds=HANG_S)


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(BASE) as base_url:
        yield base_url


@pytest.fixture
def control(url: str) -> Iterator[httpx.Client]:
    with control_client(url, BASE) as c:
        yield c


@pytest.fixture
def oai(url: str, control: httpx.Client) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(
        base_url=url + "/v1", api_key="test", max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as client:
        yield client


@pytest.fixture
def ant(url: str, control: httpx.Client) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=url, api_key="test", max_retries=0, timeout=CLIENT_TIMEOUT_S
    ) as client:
        yield client


def user(text: str) -> list[Any]:
    return [{"role": "user", "content": text}]


def ask_openai(client: openai.OpenAI, text: str, fault: str | None = None) -> Any:
    headers = {"x-fakellm-fault": fault} if fault else None
    return client.chat.completions.create(
        model="gpt-fake", messages=user(text), extra_headers=headers
    )


def ask_anthropic(client: anthropic.Anthropic, text: str, fault: str | None = None) -> Any:
    headers = {"x-fakellm-fault": fault} if fault else None
    return client.messages.create(
        model="claude-fake", max_tokens=64, messages=user(text), extra_headers=headers
    )


# --- normal completions ------------------------------------------------------------


def test_openai_completion_is_the_sentiment_json(oai: openai.OpenAI) -> None:
    r = ask_openai(oai, "I was charged twice, terrible! Where is my refund?")
    answer = json.loads(r.choices[0].message.content)
    assert answer == {"sentiment": "negative", "confidence": 0.7, "topics": ["billing", "refund"]}
    assert r.object == "chat.completion"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage is not None
    assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens > 0


def test_anthropic_completion_is_the_sentiment_json(ant: anthropic.Anthropic) -> None:
    m = ask_anthropic(ant, "Great, fast shipping. Thanks!")
    block = m.content[0]
    assert block.type == "text"
    assert json.loads(block.text)["sentiment"] == "positive"
    assert m.stop_reason == "end_turn"
    assert m.usage.input_tokens > 0 and m.usage.output_tokens > 0


def test_success_carries_ratelimit_headers(
    oai: openai.OpenAI, ant: anthropic.Anthropic, control: httpx.Client
) -> None:
    control.put("/config", json={"limits": {"rpm": 100, "tpm": 10_000}}).raise_for_status()
    raw = oai.chat.completions.with_raw_response.create(model="m", messages=user("hi"))
    h = raw.http_response.headers
    assert h["x-ratelimit-limit-requests"] == "100"
    assert h["x-ratelimit-remaining-requests"] == "99"
    assert h["x-ratelimit-reset-requests"].endswith("s")
    assert h["x-ratelimit-limit-tokens"] == "10000"
    assert int(h["x-ratelimit-remaining-tokens"]) < 10_000
    raw2 = ant.messages.with_raw_response.create(model="m", max_tokens=5, messages=user("hi"))
    h2 = raw2.http_response.headers
    assert h2["anthropic-ratelimit-requests-remaining"] == "98"
    assert h2["anthropic-ratelimit-tokens-reset"].endswith("Z")


# --- every fault as the SDKs see it ---------------------------------------------------

STATUS_FAULTS = [
    ("http_500", 500),
    ("http_502", 502),
    ("http_503", 503),
    ("http_529", 529),
    ("outage", 503),
]


@pytest.mark.parametrize(("fault", "status"), STATUS_FAULTS)
def test_openai_5xx_faults(oai: openai.OpenAI, fault: str, status: int) -> None:
    with pytest.raises(openai.InternalServerError) as exc:
        ask_openai(oai, "hi", fault)
    assert exc.value.status_code == status
    with pytest.raises(openai.InternalServerError) as exc:  # same via the message marker
        ask_openai(oai, f"hi [[fault:{fault}]]")
    assert exc.value.status_code == status


@pytest.mark.parametrize(("fault", "status"), STATUS_FAULTS)
def test_anthropic_5xx_faults(ant: anthropic.Anthropic, fault: str, status: int) -> None:
    with pytest.raises(anthropic.InternalServerError) as exc:
        ask_anthropic(ant, f"hi [[fault:{fault}]]")
    assert exc.value.status_code == status
    if status == 529:
        assert isinstance(exc.value, anthropic.OverloadedError)
        assert exc.value.type == "overloaded_error"
    else:
        assert exc.value.type == "api_error"


def test_rate_limit_fault_reaches_both_sdks_with_retry_headers(
    oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.RateLimitError) as o_exc:
        ask_openai(oai, "hi", "rate_limit")
    assert o_exc.value.status_code == 429
    assert o_exc.value.code == "rate_limit_exceeded"
    assert o_exc.value.type == "requests"
    assert o_exc.value.response.headers["retry-after"] == "1"
    assert o_exc.value.response.headers["retry-after-ms"] == "1000"
    with pytest.raises(anthropic.RateLimitError) as a_exc:
        ask_anthropic(ant, "hi [[fault:rate_limit]]")
    assert a_exc.value.type == "rate_limit_error"
    assert a_exc.value.response.headers["retry-after"] == "1"


def test_bad_requests(oai: openai.OpenAI, ant: anthropic.Anthropic, url: str) -> None:
    with pytest.raises(openai.BadRequestError) as o_exc:
        ask_openai(oai, "hi", "bad_request")
    assert o_exc.value.status_code == 400
    with pytest.raises(openai.BadRequestError, match="non-empty array"):
        oai.chat.completions.create(model="m", messages=[])
    with pytest.raises(anthropic.BadRequestError) as a_exc:
        ask_anthropic(ant, "[[fault:bad_request]]")
    assert a_exc.value.type == "invalid_request_error"
    with pytest.raises(anthropic.BadRequestError, match="role"):
        ant.messages.create(model="m", max_tokens=5, messages=[{"role": "system", "content": "x"}])
    with pytest.raises(openai.BadRequestError, match="unknown fault"):
        ask_openai(oai, "hi", "meteor_strike")
    r = httpx.post(url + "/v1/messages", json={"model": "m", "messages": user("hi")})
    assert r.status_code == 400
    assert r.json() == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
    }


def _times_out(call: Callable[[], object], exc_type: type[BaseException]) -> float:
    start = time.monotonic()
    with pytest.raises(exc_type):
        call()
    return time.monotonic() - start


def test_hang_is_cut_by_the_client_deadline(
    oai: openai.OpenAI, ant: anthropic.Anthropic, control: httpx.Client
) -> None:
    took = _times_out(lambda: ask_openai(oai, "hi", "hang"), openai.APITimeoutError)
    assert CLIENT_TIMEOUT_S <= took < HANG_S
    took = _times_out(lambda: ask_anthropic(ant, "[[fault:hang]]"), anthropic.APITimeoutError)
    assert CLIENT_TIMEOUT_S <= took < HANG_S
    stats = control.get("/stats").json()
    assert stats["faults"]["hang"] == 2


def test_error_body_is_http_200_with_an_error_object(
    oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="m", messages=user("hi [[fault:error_body]]")
    )
    assert raw.http_response.status_code == 200
    err = raw.http_response.json()["error"]
    assert (err["type"], err["code"]) == ("requests", "rate_limit_exceeded")
    assert "choices" not in raw.http_response.json()
    raw2 = ant.messages.with_raw_response.create(
        model="m",
        max_tokens=5,
        messages=user("hi"),
        extra_headers={"x-fakellm-fault": "error_body"},
    )
    assert raw2.http_response.status_code == 200
    assert raw2.http_response.json()["error"]["type"] == "overloaded_error"
    assert str(raw2.parse().type) == "error"  # the SDK hands the error object back as a "message"


def test_invalid_json_content(oai: openai.OpenAI, ant: anthropic.Anthropic) -> None:
    r = ask_openai(oai, "great [[fault:invalid_json]]")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.choices[0].message.content)
    m = ask_anthropic(ant, "great", "invalid_json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(m.content[0].text)


def test_outage_window_over_control_endpoint(
    oai: openai.OpenAI, ant: anthropic.Anthropic, control: httpx.Client
) -> None:
    assert control.post("/outage", json={"seconds": 30}).json()["outage_remaining_s"] > 29
    with pytest.raises(openai.InternalServerError) as o_exc:
        ask_openai(oai, "hi")
    assert o_exc.value.status_code == 503
    with pytest.raises(anthropic.ServiceUnavailableError):
        ask_anthropic(ant, "hi")
    control.post("/outage", json={"seconds": 0})
    assert ask_openai(oai, "hi").choices[0].message.content


def test_both_sdks_list_the_models_asked_for_and_an_outage_fails_the_list_too(
    oai: openai.OpenAI, ant: anthropic.Anthropic, control: httpx.Client
) -> None:
    ask_openai(oai, "hi")
    ask_anthropic(ant, "hi")
    assert {"gpt-fake", "claude-fake"} <= {m.id for m in oai.models.list()}
    assert {"gpt-fake", "claude-fake"} <= {m.id for m in ant.models.list()}
    stats = control.get("/stats").json()
    assert (stats["model_lists"], stats["requests_total"]) == (2, 2)  # a list is no completion
    control.post("/outage", json={"seconds": 30})
    with pytest.raises(openai.InternalServerError):
        oai.models.list()
    with pytest.raises(anthropic.ServiceUnavailableError):
        ant.models.list()
    control.post("/outage", json={"seconds": 0})


def test_fault_mix_switched_at_run_time(oai: openai.OpenAI, control: httpx.Client) -> None:
    control.put("/config", json={"faults": {"http_502": 1.0}}).raise_for_status()
    with pytest.raises(openai.InternalServerError):
        ask_openai(oai, "hi")
    control.put("/config", json={"faults": {"http_502": 0}}).raise_for_status()
    ask_openai(oai, "hi")


# --- counters and limits ---------------------------------------------------------------


def test_burst_is_counted_in_the_windows(oai: openai.OpenAI, control: httpx.Client) -> None:
    for i in range(25):
        ask_openai(oai, f"message {i}")
    stats = control.get("/stats").json()
    assert stats["requests_total"] == 25
    assert stats["requests_by_route"] == {"/v1/chat/completions": 25}
    # how many share one second depends on this machine's speed; the window arithmetic
    # itself is tested with an injected clock in tests/unit/test_fakellm_counters.py
    assert 1 <= stats["max_requests_1s"] <= 25
    assert stats["max_requests_60s"] == 25
    assert stats["repeated_requests"] == 0


def test_rate_limit_returns_429_once_exceeded(
    oai: openai.OpenAI, ant: anthropic.Anthropic, control: httpx.Client
) -> None:
    control.put("/config", json={"limits": {"rpm": 5}}).raise_for_status()
    outcomes = []
    for i in range(8):
        try:
            ask_openai(oai, f"n{i}")
            outcomes.append(200)
        except openai.RateLimitError as exc:
            outcomes.append(exc.status_code)
            headers = exc.response.headers
            assert headers["x-ratelimit-remaining-requests"] == "0"
            assert 50 <= int(headers["retry-after"]) <= 60
            assert float(headers["retry-after-ms"]) > 0
    assert outcomes == [200] * 5 + [429] * 3
    with pytest.raises(anthropic.RateLimitError) as a_exc:
        ask_anthropic(ant, "hi")
    assert a_exc.value.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    stats = control.get("/stats").json()
    assert stats["rate_limited"] == 4
    assert stats["responses_by_status"] == {"200": 5, "429": 4}


def test_repeated_identical_requests_are_counted(oai: openai.OpenAI, control: httpx.Client) -> None:
    for _ in range(3):
        ask_openai(oai, "same question")
    ask_openai(oai, "another question")
    with pytest.raises(openai.InternalServerError):
        ask_openai(oai, "failing [[fault:http_500]]")
    with pytest.raises(openai.InternalServerError):
        ask_openai(oai, "failing [[fault:http_500]]")
    stats = control.get("/stats").json()
    assert stats["repeated_requests"] == 3
    assert stats["repeated_paid_requests"] == 2  # failures were never paid


# --- the command line in a subprocess ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_command_line_serves_and_stops_on_sigterm() -> None:
    port = _free_port()
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.fakellm",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--latency",
            "fixed:1",
            "--rpm",
            "7",
        ],
        cwd=root,
        env={**os.environ, "SLUICE_LOG_FORMAT": "json"},
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "fakellm did not come up"
            time.sleep(0.05)
        config = httpx.get(f"http://127.0.0.1:{port}/_control/config").json()
        assert config["limits"]["rpm"] == 7
        assert config["latency"] == {"kind": "fixed", "ms": 1.0}
    finally:
        proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal: 0 or -SIGTERM
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
    assert proc.stderr is not None
    assert b"Traceback" not in proc.stderr.read()
