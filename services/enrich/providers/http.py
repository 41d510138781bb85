"""The HTTP edge shared by the adapters: one pooled client, a hard deadline, no retries.

Each provider owns one ``aiohttp.ClientSession`` (opened in the event loop on
first use) whose connector holds up to ``max_connections`` keep-alive
connections; nothing retries. The whole exchange (waiting for a connection,
connect, send, read) runs under ``asyncio.timeout(deadline)``: at the deadline
the request is cancelled and its connection dropped, so a hanging provider
costs a timeout, never a stuck slot. The body is read with a size cap
(``max_response_bytes``, :mod:`.body`): a bigger answer fails early and its
connection is dropped, so memory per call stays bounded whatever the provider
sends. Every outcome is classified here (``services.enrich.classify``); an
outer cancellation still propagates.

aiohttp rather than httpx: with a hundred requests in flight, httpx's pool
checks every idle connection on every request (a ``poll`` and a
``getpeername`` each), which cost ~8 ms of CPU per call here against
~0.2 ms with aiohttp's connector (``bench/http_client.py``).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit, urlunsplit
from urllib.request import getproxies, proxy_bypass

import aiohttp
import yarl

from services.enrich.classify import classify_exception, classify_response
from services.enrich.providers.base import (
    CallFailure,
    CallResult,
    CallSuccess,
    Checked,
    ProviderKind,
    ProviderRequest,
)
from services.enrich.providers.body import check_declared, read_capped
from shared import jsondoc
from shared.config_file import SECRET_HEADERS, ProviderConfig
from shared.errors import BadDocument
from shared.outcomes import Failure

Clock = Callable[[], float]
_CONNECT_TIMEOUT_S = 10.0
CHECK_TIMEOUT_S = 10.0  # the model list's deadline (or the provider's timeout_s, if shorter)


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


def endpoint(base_url: str, path: str) -> str:
    """``base_url`` + ``path``, keeping a query string (Azure's ``?api-version=``)."""
    url = urlsplit(base_url)
    return urlunsplit(url._replace(path=url.path.rstrip("/") + path))


def _body(raw: bytes) -> object:
    """The answer decoded by the pipeline's decoder (bounded depth), else its text."""
    try:
        return jsondoc.loads(raw)
    except BadDocument:
        return raw[:500].decode("utf-8", "replace")


class HttpProvider:
    """A provider over HTTP; subclasses say the wire format."""

    kind: ClassVar[ProviderKind]

    def __init__(
        self,
        name: str,
        config: ProviderConfig,
        api_key: str | None,
        *,
        clock: Clock = time.time,
    ) -> None:
        self._name = name
        self._config = config
        self._clock = clock
        self._url = self.url(config)
        self._models_url = self.models_url(config)
        # HTTPS_PROXY / HTTP_PROXY / NO_PROXY, as the official SDKs honour them, read once:
        # aiohttp's trust_env looks them up (and parses ~/.netrc) on a thread for every
        # request, which tripled the edge's CPU per call.
        self._route = ProxyRoute.for_url(self._url, env_proxy(self._url))
        self._headers = {**self.headers(config, api_key), "content-type": "application/json",
                         **self._route.request_headers}  # fmt: skip
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Opened on first use: a session belongs to the event loop it was made in.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # No default headers: aiohttp merges a session's defaults into what it
                # sends a proxy (a CONNECT too), which would hand the proxy the API key.
                connector=aiohttp.TCPConnector(limit=self._config.max_connections),
                timeout=aiohttp.ClientTimeout(
                    total=None, connect=min(_CONNECT_TIMEOUT_S, self._config.timeout_s)
                ),
                proxy=self._route.proxy,
            )
        return self._session

    # -- wire format (subclasses) ------------------------------------------------
    @classmethod
    def url(cls, config: ProviderConfig) -> str:
        raise NotImplementedError

    @classmethod
    def models_url(cls, config: ProviderConfig) -> str:
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

    async def call(self, request: ProviderRequest) -> CallResult:
        deadline = self._config.timeout_s
        payload = json.dumps(self.body(self._config, request)).encode()
        status: int | None = None
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            async with (
                asyncio.timeout(deadline),
                self._client().post(
                    self._url,
                    data=payload,
                    headers=self._headers,
                    allow_redirects=False,
                    proxy_headers=self._route.connect_headers,
                ) as response,
            ):
                status = response.status
                try:
                    check_declared(response.content_length, self._config.max_response_bytes)
                    raw = await read_capped(response.content, self._config.max_response_bytes)
                except BaseException:
                    response.close()  # drop the connection: the rest is never read
                    raise
        except Exception as exc:  # every fault of the call is an outcome, not a crash
            return CallFailure(classify_exception(exc, deadline), elapsed_ms(), status=status)
        latency = elapsed_ms()
        headers = {k.lower(): v for k, v in response.headers.items()}
        outcome = classify_response(self.kind, response.status, headers, _body(raw), self._clock())
        if isinstance(outcome, Failure):
            return CallFailure(outcome, latency, headers, status=response.status)
        return CallSuccess(
            content=outcome.content,
            tokens_in=outcome.tokens_in,
            tokens_out=outcome.tokens_out,
            model=outcome.model or request.model,
            latency_ms=latency,
            headers=headers,
        )

    async def check(self) -> Checked:
        """``GET`` the model list (free at the providers, no tokens): up on any 2xx.
        The body is not read; anything else (an error status, a timeout, a refused
        connection) is not up, with what happened as the detail."""
        deadline = min(CHECK_TIMEOUT_S, self._config.timeout_s)
        try:
            async with (
                asyncio.timeout(deadline),
                self._client().get(
                    self._models_url,
                    headers=self._headers,
                    allow_redirects=False,
                    proxy_headers=self._route.connect_headers,
                ) as response,
            ):
                status = response.status
                response.close()  # the list itself does not matter
        except Exception as exc:  # every fault is a verdict, not a crash
            return Checked(False, classify_exception(exc, deadline).message)
        return Checked(200 <= status < 300, f"HTTP {status}")

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpProvider:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def env_proxy(url: str) -> yarl.URL | None:
    """The proxy the environment names for ``url`` (``<scheme>_proxy``), none for a
    host that ``no_proxy`` exempts."""
    parts = urlsplit(url)
    if parts.hostname is not None and proxy_bypass(parts.hostname):
        return None
    found = getproxies().get(parts.scheme)
    return yarl.URL(found) if found else None


@dataclass(frozen=True)
class ProxyRoute:
    """How calls reach a provider through a proxy. The proxy's own credentials
    (``http://user:pass@proxy``) go to the proxy alone: on the CONNECT for an
    ``https`` provider (never inside the tunnel), with the request itself for a
    plain one, which goes to the proxy as it is."""

    proxy: yarl.URL | None = None
    request_headers: Mapping[str, str] = field(default_factory=dict)
    connect_headers: Mapping[str, str] | None = None

    @classmethod
    def for_url(cls, url: str, proxy: yarl.URL | None) -> ProxyRoute:
        if proxy is None:
            return cls()
        auth = aiohttp.BasicAuth.from_url(proxy)
        bare = proxy.with_user(None)
        if auth is None:
            return cls(bare)
        creds = {"Proxy-Authorization": auth.encode()}
        if urlsplit(url).scheme == "https":
            return cls(bare, connect_headers=creds)
        return cls(bare, request_headers=creds)
