"""The HTTP edge shared by the adapters: one pooled client, a hard deadline, no retries.

Each provider owns one ``httpx.AsyncClient`` whose pool holds up to
``max_connections`` keep-alive connections; the transport never retries. The
whole exchange (pool wait, connect, send, read) runs under
``asyncio.timeout(deadline)``: at the deadline the request is cancelled and
its connection dropped, so a hanging provider costs a timeout, never a stuck
slot. Every outcome is classified here (``services.enrich.classify``); an
outer cancellation still propagates.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

import httpx

from services.enrich.classify import classify_exception, classify_response
from services.enrich.providers.base import (
    CallFailure,
    CallResult,
    CallSuccess,
    ProviderKind,
    ProviderRequest,
)
from shared.config_file import SECRET_HEADERS, ProviderConfig
from shared.outcomes import Failure

Clock = Callable[[], float]
_CONNECT_TIMEOUT_S = 10.0


def merge_headers(
    defaults: Mapping[str, str], extra: Mapping[str, str], api_key: str | None
) -> dict[str, str]:
    """Defaults overlaid with ``extra``; an empty key-carrying header gets the key."""
    out = {k.lower(): v for k, v in defaults.items()}
    for name, value in extra.items():
        lower = name.lower()
        if lower in SECRET_HEADERS and not value:
            if api_key:
                out[lower] = f"Bearer {api_key}" if lower == "authorization" else api_key
        else:
            out[lower] = value
    return out


def endpoint(base_url: str, path: str) -> httpx.URL:
    """``base_url`` + ``path``, keeping a query string (Azure's ``?api-version=``)."""
    url = httpx.URL(base_url)
    return url.copy_with(path=url.path.rstrip("/") + path)


def _body(response: httpx.Response) -> object:
    try:
        return response.json()
    except (ValueError, UnicodeDecodeError):
        return response.text[:500]


class HttpProvider:
    """A provider over HTTP; subclasses say the wire format."""

    kind: ClassVar[ProviderKind]

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_key: str | None,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._name = name
        self._config = config
        self._clock = clock
        self._url = self.url(config)
        limits = httpx.Limits(
            max_connections=config.max_connections,
            max_keepalive_connections=config.max_connections,
        )
        self._client = httpx.AsyncClient(
            transport=transport or httpx.AsyncHTTPTransport(retries=0, limits=limits),
            headers=self.headers(config, api_key),
            timeout=httpx.Timeout(
                config.timeout_s, connect=min(_CONNECT_TIMEOUT_S, config.timeout_s)
            ),
            follow_redirects=False,
        )

    # -- wire format (subclasses) ------------------------------------------------
    @classmethod
    def url(cls, config: ProviderConfig) -> httpx.URL:
        raise NotImplementedError

    @classmethod
    def headers(cls, config: ProviderConfig, api_key: str | None) -> dict[str, str]:
        raise NotImplementedError

    @classmethod
    def body(cls, config: ProviderConfig, request: ProviderRequest) -> dict[str, Any]:
        raise NotImplementedError

    # -- Provider ----------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def config(self) -> ProviderConfig:
        return self._config

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._name!r} {self._url}>"

    async def call(self, request: ProviderRequest, deadline_s: float | None = None) -> CallResult:
        deadline = self._config.timeout_s
        if deadline_s is not None:
            deadline = min(deadline, deadline_s)
        payload = json.dumps(self.body(self._config, request)).encode()
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            async with asyncio.timeout(deadline):
                response = await self._client.post(
                    self._url, content=payload, headers={"content-type": "application/json"}
                )
        except Exception as exc:  # every fault of the call is an outcome, not a crash
            return CallFailure(classify_exception(exc, deadline), elapsed_ms())
        latency = elapsed_ms()
        headers = {k.lower(): v for k, v in response.headers.items()}
        outcome = classify_response(
            self.kind, response.status_code, headers, _body(response), self._clock()
        )
        if isinstance(outcome, Failure):
            return CallFailure(outcome, latency, headers)
        return CallSuccess(
            content=outcome.content,
            tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out,
            model=outcome.model or request.model,
            latency_ms=latency,
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> HttpProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
