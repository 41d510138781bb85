"""Anthropic Messages API: ``POST {base_url}/v1/messages`` with ``x-api-key`` (and
``GET {base_url}/v1/models`` to ask whether the provider answers at all).

``base_url`` is the host as the official SDK takes it (``https://api.anthropic.com``);
one that already ends in ``/v1`` works too. ``anthropic-version`` defaults to
``2023-06-01``; ``extra_headers`` may override it or add ``anthropic-beta``.
"""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

from services.enrich.providers.base import ProviderKind, ProviderRequest
from services.enrich.providers.http import HttpProvider, endpoint, merge_headers
from shared.config_file import ProviderConfig

ANTHROPIC_VERSION = "2023-06-01"


def messages_body(request: ProviderRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": request.max_tokens,
        "messages": [{"role": m.role, "content": m.content} for m in request.messages],
    }
    if request.system:
        body["system"] = request.system
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def _v1(config: ProviderConfig, path: str) -> str:
    """``path`` under the API's ``/v1``, whether or not ``base_url`` names it."""
    base = urlsplit(config.base_url).path.rstrip("/")
    return endpoint(config.base_url, path if base.endswith("/v1") else "/v1" + path)


class AnthropicProvider(HttpProvider):
    kind: ClassVar[ProviderKind] = "anthropic"

    @classmethod
    def url(cls, config: ProviderConfig) -> str:
        return _v1(config, "/messages")

    @classmethod
    def models_url(cls, config: ProviderConfig) -> str:
        return _v1(config, "/models")

    @classmethod
    def headers(cls, config: ProviderConfig, api_key: str | None) -> dict[str, str]:
        defaults = {"anthropic-version": ANTHROPIC_VERSION}
        if api_key:
            defaults["x-api-key"] = api_key
        return merge_headers(defaults, config.extra_headers, api_key)

    @classmethod
    def body(cls, config: ProviderConfig, request: ProviderRequest) -> dict[str, Any]:
        return messages_body(request)
