"""Provider adapters against fakellm over real HTTP: every fault ends as the right kind.

No Kafka or Redis. One fakellm for the module; each test resets its
configuration. Faults are forced with the ``[[fault:NAME]]`` marker in the
record's text, so the request goes through ``tasks.render`` like in enrich.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from aiohttp import web

from services.enrich.providers import (
    CallFailure,
    CallResult,
    CallSuccess,
    Checked,
    Provider,
    ProviderRequest,
    build_provider,
)
from services.enrich.tasks import Answer, parse_output, render
from services.fakellm.config import FakeLLMConfig
from services.fakellm.server import serve_in_thread
from shared.config_file import ProviderConfig, default_config
from shared.errors import ConfigError
from shared.kinds import FailureKind as K
from shared.outcomes import Failure
from tests.support.fakellm import control_client

BASE = FakeLLMConfig(hang_seconds=5)
DEADLINE_S = 0.5
TASK = default_config({}).task("sentiment")
KINDS = ["openai", "anthropic"]


@pytest.fixture(scope="module")
def url() -> Iterator[str]:
    with serve_in_thread(BASE) as base_url:
        yield base_url


@pytest.fixture
def control(url: str) -> Iterator[httpx.Client]:
    with control_client(url, BASE) as c:
        yield c


def provider_config(kind: str, url: str, **extra: object) -> ProviderConfig:
    base = url + "/v1" if kind == "openai" else url
    return ProviderConfig.model_validate({"kind": kind, "base_url": base, **extra})


@pytest.fixture(params=KINDS)
async def provider(request: pytest.FixtureRequest, url: str, control: httpx.Client) -> AsyncIterator[Provider]:  # fmt: skip
    p = build_provider(request.param, provider_config(request.param, url, api_key="sk-test"))
    try:
        yield p
    finally:
        await p.aclose()


@pytest.fixture(params=KINDS)
async def hasty(request: pytest.FixtureRequest, url: str, control: httpx.Client) -> AsyncIterator[Provider]:  # fmt: skip
    """A provider whose ``timeout_s`` is ``DEADLINE_S``."""
    cfg = provider_config(request.param, url, api_key="sk-test", timeout_s=DEADLINE_S)
    p = build_provider(request.param, cfg)
    try:
        yield p
    finally:
        await p.aclose()


def ticket(text: str, fault: str | None = None) -> ProviderRequest:
    req = render(TASK, {"text": text + (f" [[fault:{fault}]]" if fault else "")})
    assert isinstance(req, ProviderRequest)
    return req


def failure(result: CallResult) -> Failure:
    assert isinstance(result, CallFailure), result
    return result.failure


async def test_success_validates_as_sentiment(provider: Provider) -> None:
    result = await provider.call(ticket("Great support, thanks! But the invoice was wrong"))
    assert isinstance(result, CallSuccess), result
    assert result.tokens_in > 0 and result.tokens_out > 0 and result.model == "gpt-fake"
    assert result.latency_ms >= 0 and "content-type" in result.headers
    out = parse_output(TASK, result.content)
    assert isinstance(out, Answer)
    assert out.value["sentiment"] == "positive" and "billing" in out.value["topics"]


async def test_hang_is_a_timeout_at_the_deadline(hasty: Provider) -> None:
    started = time.monotonic()
    f = failure(await hasty.call(ticket("hello", "hang")))
    elapsed = time.monotonic() - started
    assert (f.kind, f.error_class) == (K.TIMEOUT, "timeout")
    assert DEADLINE_S - 0.05 <= elapsed < DEADLINE_S + 3  # the hang itself lasts 5 s
    # the slot is free again at once: the next call on the same pool succeeds
    assert isinstance(await hasty.call(ticket("thanks")), CallSuccess)


@pytest.mark.parametrize(
    ("fault", "kind", "error_class"),
    [
        ("http_500", K.PROVIDER_ERROR, "http_500"),
        ("http_502", K.PROVIDER_ERROR, "http_502"),
        ("http_503", K.PROVIDER_ERROR, "http_503"),
        ("outage", K.PROVIDER_ERROR, "http_503"),
        ("http_529", K.OVERLOADED, "http_529"),
        ("rate_limit", K.RATE_LIMITED, "http_429"),
        ("bad_request", K.BAD_REQUEST, "http_400"),
    ],
)
async def test_http_faults(hasty: Provider, fault: str, kind: K, error_class: str) -> None:
    f = failure(await hasty.call(ticket("hello", fault)))
    assert (f.kind, f.error_class) == (kind, error_class)
    if kind is K.RATE_LIMITED:
        assert f.retry_after_s is not None and f.retry_after_s >= 1


async def test_error_body_in_200_is_classified_from_the_body(provider: Provider) -> None:
    f = failure(await provider.call(ticket("hello", "error_body")))
    expected = {
        "openai": (K.RATE_LIMITED, "error_body:rate_limit_exceeded"),
        "anthropic": (K.OVERLOADED, "error_body:overloaded_error"),
    }
    assert (f.kind, f.error_class) == expected[provider.kind]


async def test_invalid_json_content_is_invalid_output(provider: Provider) -> None:
    result = await provider.call(ticket("hello", "invalid_json"))
    assert isinstance(result, CallSuccess)
    out = parse_output(TASK, result.content)
    assert isinstance(out, Failure) and out.kind is K.INVALID_OUTPUT


async def test_rate_limit_headers_on_a_429_from_the_limiter(provider: Provider, control: httpx.Client) -> None:  # fmt: skip
    control.put("/config", json={"limits": {"rpm": 1}}).raise_for_status()
    first = await provider.call(ticket("hello"))
    assert isinstance(first, CallSuccess)
    f = failure(await provider.call(ticket("hello again")))
    assert f.kind is K.RATE_LIMITED and f.retry_after_s is not None and 50 <= f.retry_after_s <= 61


@pytest.fixture(params=KINDS)
async def nobody(request: pytest.FixtureRequest) -> AsyncIterator[Provider]:
    """A provider on a port nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = provider_config(request.param, f"http://127.0.0.1:{port}", timeout_s=2)
    p = build_provider("down", cfg)
    try:
        yield p
    finally:
        await p.aclose()


async def test_connection_refused(nobody: Provider) -> None:
    f = failure(await nobody.call(ticket("hello")))
    assert (f.kind, f.error_class) == (K.PROVIDER_ERROR, "connect_error")


async def test_the_model_list_says_whether_the_provider_answers(
    provider: Provider, control: httpx.Client
) -> None:
    assert await provider.check() == Checked(True, "HTTP 200")
    control.post("/outage", json={"seconds": 30}).raise_for_status()
    assert await provider.check() == Checked(False, "HTTP 503")
    control.post("/outage", json={"seconds": 0}).raise_for_status()
    assert control.get("/stats").json()["model_lists"] == 2


async def test_the_model_list_of_a_provider_nobody_answers_for_is_not_up(nobody: Provider) -> None:  # fmt: skip
    checked = await nobody.check()
    assert not checked.up and "connect" in checked.detail.lower()


async def test_pooled_concurrency(provider: Provider, control: httpx.Client) -> None:
    control.put("/config", json={"latency": {"kind": "fixed", "ms": 200}}).raise_for_status()
    started = time.monotonic()
    results = await asyncio.gather(*(provider.call(ticket(f"ticket {i}")) for i in range(64)))
    elapsed = time.monotonic() - started
    assert all(isinstance(r, CallSuccess) for r in results)
    # one at a time would take 12.8 s; pooled, a few rounds of 200 ms (slack for a busy machine)
    assert elapsed < 64 * 0.2 / 3, f"64 calls of 200 ms took {elapsed:.2f} s"


# -- wire details, against a recording HTTP server ------------------------------------


@dataclass(frozen=True)
class Seen:
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]


async def wire(kind: str, path: str, **extra: object) -> Seen:
    """One call of a ``kind`` adapter whose base URL is a local server + ``path``."""
    seen: list[Seen] = []
    answer = (
        {"choices": [{"message": {"content": "{}"}}], "usage": {}, "model": "m"}
        if kind == "openai"
        else {"type": "message", "content": [{"type": "text", "text": "{}"}], "model": "m"}
    )

    async def record(request: web.Request) -> web.Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        seen.append(Seen(request.path, dict(request.query), headers, await request.json()))
        return web.json_response(answer)

    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", record)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    cfg = ProviderConfig.model_validate(
        {"kind": kind, "base_url": f"http://127.0.0.1:{port}{path}", **extra}
    )
    p = build_provider("x", cfg, environ={"KEY": "sk-env"})
    assert "sk-" not in repr(p)
    try:
        assert isinstance(await p.call(ticket("hi")), CallSuccess)
    finally:
        await p.aclose()
        await runner.cleanup()
    return seen[0]


async def test_openai_wire() -> None:
    req = await wire("openai", "/v1/", api_key_env="KEY")
    assert req.path == "/v1/chat/completions" and not req.query
    assert req.headers["authorization"] == "Bearer sk-env"
    assert req.headers["content-type"] == "application/json"
    body = req.body
    assert body["messages"][0] == {"role": "system", "content": TASK.system}
    assert body["messages"][1]["role"] == "user" and body["max_tokens"] == 128


async def test_azure_wire() -> None:
    req = await wire(
        "openai",
        "/openai/deployments/d?api-version=2024-10-21",
        api_key="sk-inline",
        extra_headers={"api-key": ""},
        max_tokens_param="max_completion_tokens",
    )
    assert req.path == "/openai/deployments/d/chat/completions"
    assert req.query == {"api-version": "2024-10-21"}
    assert req.headers["api-key"] == "sk-inline" and "authorization" not in req.headers
    assert "max_completion_tokens" in req.body


@pytest.mark.parametrize(
    ("base", "path"), [("", "/v1/messages"), ("/proxy/v1", "/proxy/v1/messages")]
)
async def test_anthropic_wire(base: str, path: str) -> None:
    req = await wire("anthropic", base, api_key_env="KEY")
    assert req.path == path
    assert req.headers["x-api-key"] == "sk-env"
    assert req.headers["anthropic-version"] == "2023-06-01"
    body = req.body
    assert body["system"] == TASK.system and body["max_tokens"] == 128
    assert [m["role"] for m in body["messages"]] == ["user"]


def test_missing_key_variable_fails_at_build() -> None:
    cfg = ProviderConfig(kind="openai", base_url="http://x", api_key_env="NOPE_KEY")
    with pytest.raises(ConfigError, match="provider 'p': environment variable NOPE_KEY"):
        build_provider("p", cfg, environ={})
