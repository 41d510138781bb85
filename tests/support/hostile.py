"""A hostile LLM provider on 127.0.0.1 (aiohttp.web in a thread, real sockets).

Every request path starts with the behaviour to serve, so a provider's
``base_url`` picks it: ``{url}/endless/v1`` (OpenAI shape: ``/chat/completions``
is appended) or ``{url}/endless`` (Anthropic: ``/v1/messages``).

=============  ===========================================================
``ok``         a valid completion in the caller's shape (sentiment JSON)
``big``        50 MB, chunked (no Content-Length)
``declared``   50 MB with an honest Content-Length
``endless``    a chunked body that never ends, as fast as the socket takes it
``drip``       a chunked body that never ends, one byte every 50 ms
``not_json``   HTTP 200 with an HTML page
``gzip_bomb``  ``Content-Encoding: gzip``: ~64 KiB on the wire, 64 MiB decoded
``error_200``  HTTP 200 whose body is an error object
``auth``       401 (key rejected) until ``key_ok`` is set, then like ``ok``
``deep``       HTTP 200 whose body is JSON nested 5,000 levels deep
=============  ===========================================================

Nothing it serves is ever held whole in memory except the small gzip bomb.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from aiohttp import web

BIG_BYTES = 50 * 1000 * 1000
CHUNK = b"x" * (64 * 1024)
BOMB_DECODED_BYTES = 64 * 1024 * 1024
SENTIMENT = json.dumps({"sentiment": "negative", "confidence": 0.9, "topics": ["billing"]})


def completion(anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "message", "role": "assistant", "model": "hostile-1",
                "content": [{"type": "text", "text": SENTIMENT}], "stop_reason": "end_turn",
                "usage": {"input_tokens": 10, "output_tokens": 12}}  # fmt: skip
    return {"object": "chat.completion", "model": "hostile-1",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": SENTIMENT},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 12}}  # fmt: skip


def auth_error(anthropic: bool) -> dict[str, Any]:
    if anthropic:
        return {"type": "error", "error": {"type": "authentication_error", "message": "invalid x-api-key"}}  # fmt: skip
    return {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error",
                      "code": "invalid_api_key"}}  # fmt: skip


class HostileServer:
    def __init__(self) -> None:
        self.key_ok = False
        self.requests: Counter[str] = Counter()
        self._bomb = gzip.compress(bytes(BOMB_DECODED_BYTES), compresslevel=9)
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self.url = ""

    # -- handlers ------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        mode = request.match_info["mode"]
        anthropic = request.path.endswith("/messages")
        await request.read()
        self.requests[mode] += 1
        if mode == "ok" or (mode == "auth" and self.key_ok):
            return web.json_response(completion(anthropic))
        if mode == "auth":
            return web.json_response(auth_error(anthropic), status=401)
        if mode == "not_json":
            return web.Response(text="<html><body>502 Bad Gateway</body></html>", content_type="text/html")  # fmt: skip
        if mode == "error_200":
            return web.json_response({"error": {"message": "internal failure", "type": "server_error"}})  # fmt: skip
        if mode == "deep":
            return web.Response(body=b"[" * 5000 + b"]" * 5000, content_type="application/json")
        if mode == "gzip_bomb":
            return web.Response(body=self._bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"})  # fmt: skip
        return await self._stream(request, mode)

    async def _stream(self, request: web.Request, mode: str) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        if mode == "declared":
            resp.content_length = BIG_BYTES
        else:
            resp.enable_chunked_encoding()
        await resp.prepare(request)
        sent = 0
        # The client hanging up ends the loop (a write to a closed transport raises).
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while mode in ("endless", "drip") or sent < BIG_BYTES:
                if mode == "drip":
                    await resp.write(b" ")
                    await asyncio.sleep(0.05)
                    continue
                piece = CHUNK[: BIG_BYTES - sent] if mode != "endless" else CHUNK
                await resp.write(piece)
                sent += len(piece)
            await resp.write_eof()
        return resp

    # -- lifecycle -----------------------------------------------------------------
    async def _start(self) -> None:
        app = web.Application()
        app.router.add_route("POST", "/{mode}/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, handler_cancellation=True)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{self._runner.addresses[0][1]}"

    async def _stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileServer]:
        thread = threading.Thread(target=self._loop.run_forever, name="hostile", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
            yield self
        finally:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            thread.join(10)
            self._loop.close()


@contextlib.contextmanager
def hostile_server() -> Iterator[HostileServer]:
    with HostileServer().running() as server:
        yield server


def base_url(server: HostileServer, mode: str, kind: str) -> str:
    """The provider ``base_url`` that makes a ``kind`` adapter hit ``mode``."""
    return f"{server.url}/{mode}/v1" if kind == "openai" else f"{server.url}/{mode}"
