"""Provider sessions honour the environment's proxy, read once (``env_proxy``), and a
call really goes through it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable

import pytest
import yarl

from services.enrich.providers import (
    CallResult,
    CallSuccess,
    Message,
    ProviderRequest,
    build_provider,
)
from services.enrich.providers.http import env_proxy
from shared.config_file import ProviderConfig


def test_the_urls_scheme_picks_the_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("no_proxy", "NO_PROXY", "HTTPS_PROXY", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://user:pw@proxy:3128")
    monkeypatch.setenv("http_proxy", "http://plain:8080")
    assert env_proxy("https://api.openai.com/v1/chat/completions") == yarl.URL(
        "http://user:pw@proxy:3128"
    )
    assert env_proxy("http://fakellm:8900/v1") == yarl.URL("http://plain:8080")
    monkeypatch.delenv("https_proxy")
    assert env_proxy("https://api.anthropic.com/v1/messages") is None


def test_no_proxy_exempts_a_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("https_proxy", "http://proxy:3128")
    monkeypatch.setenv("no_proxy", "internal.example")
    assert env_proxy("https://internal.example/v1") is None
    assert env_proxy("https://api.openai.com/v1") == yarl.URL("http://proxy:3128")


ANSWER = {"id": "x", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "ok"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}  # fmt: skip


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def call_through(monkeypatch: pytest.MonkeyPatch, scheme: str, proxy: Handler) -> CallResult:
    """One call of an OpenAI adapter at ``<scheme>://llm.invalid/v1`` with the
    environment's proxy for that scheme at a local server running ``proxy``."""
    server = await asyncio.start_server(proxy, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv(f"{scheme}_proxy", f"http://who:secret@127.0.0.1:{port}")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    cfg = ProviderConfig(kind="openai", base_url=f"{scheme}://llm.invalid/v1", api_key="sk-test",
                         timeout_s=10)  # fmt: skip
    provider = build_provider("p", cfg)
    try:
        return await provider.call(ProviderRequest("m", (Message("user", "hi"),), max_tokens=5))
    finally:
        await provider.aclose()
        server.close()


async def test_a_call_goes_through_the_proxy_with_its_credentials(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))  # fmt: skip
        await reader.readexactly(length)
        seen.append(head)
        body = json.dumps(ANSWER).encode()
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     b"content-length: %d\r\n\r\n%s" % (len(body), body))  # fmt: skip
        await writer.drain()
        writer.close()

    got = await call_through(monkeypatch, "http", proxy)
    assert isinstance(got, CallSuccess), got
    [head] = seen
    assert head.startswith(b"POST http://llm.invalid/v1/chat/completions HTTP/1.1\r\n"), head
    assert b"\r\nProxy-Authorization: Basic d2hvOnNlY3JldA==\r\n" in head, head
    assert head.count(b"sk-test") == 1 and b"\r\nauthorization: Bearer sk-test\r\n" in head, head


async def test_the_api_key_never_reaches_the_proxy_of_an_https_provider(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Through a CONNECT tunnel the proxy sees only the CONNECT request: no API key."""
    seen: list[bytes] = []

    async def proxy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        seen.append(await reader.readuntil(b"\r\n\r\n"))
        writer.write(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    got = await call_through(monkeypatch, "https", proxy)
    assert not isinstance(got, CallSuccess)
    [head] = seen
    assert head.startswith(b"CONNECT llm.invalid:443 HTTP/1.1\r\n"), head
    assert b"sk-test" not in head, head
    assert b"\r\nProxy-Authorization: Basic d2hvOnNlY3JldA==\r\n" in head, head
