"""OpenAI chat completions (and any compatible server: Azure, vLLM, fakellm).

``POST {base_url}/chat/completions`` with ``Authorization: Bearer <key>`` (and
``GET {base_url}/models`` to ask whether the provider answers at all); an
``api-key`` entry in ``extra_headers`` (value left empty) sends the key the
Azure way instead. A query string in ``base_url`` (``?api-version=...``) is kept.
"""

from __future__ import annotations

from typing import Any, ClassVar

from services.enrich.providers.base import ProviderKind, ProviderRequest
from services.enrich.providers.http import HttpProvider, endpoint, merge_headers
from shared.config_file import ProviderConfig


def chat_body(request: ProviderRequest, max_tokens_param: str = "max_tokens") -> dict[str, Any]:
    messages = [{"role": "system", "content": request.system}] if request.system else []
    messages += [{"role": m.role, "content": m.content} for m in request.messages]
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        max_tokens_param: request.max_tokens,
    }
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


class OpenAIProvider(HttpProvider):
    kind: ClassVar[ProviderKind] = "openai"

    @classmethod
    def url(cls, config: ProviderConfig) -> str:
        return endpoint(config.base_url, "/chat/completions")

    @classmethod
    def models_url(cls, config: ProviderConfig) -> str:
        return endpoint(config.base_url, "/models")

    @classmethod
    def headers(cls, config: ProviderConfig, api_key: str | None) -> dict[str, str]:
        azure = any(name.lower() == "api-key" for name in config.extra_headers)
        defaults = {"authorization": f"Bearer {api_key}"} if api_key and not azure else {}
        return merge_headers(defaults, config.extra_headers, api_key)

    @classmethod
    def body(cls, config: ProviderConfig, request: ProviderRequest) -> dict[str, Any]:
        return chat_body(request, config.max_tokens_param)
