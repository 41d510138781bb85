"""Where each adapter sends a completion and its model-list request (pure)."""

from __future__ import annotations

import pytest

from services.enrich.providers.anthropic import AnthropicProvider
from services.enrich.providers.openai import OpenAIProvider
from shared.config_file import ProviderConfig


def cfg(kind: str, base_url: str) -> ProviderConfig:
    return ProviderConfig.model_validate({"kind": kind, "base_url": base_url})


@pytest.mark.parametrize(
    ("base", "completions", "models"),
    [
        ("https://api.openai.com/v1", "/v1/chat/completions", "/v1/models"),
        ("http://vllm:8000/v1/", "/v1/chat/completions", "/v1/models"),
        # Azure: the query string is kept for both
        ("https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
         "/openai/deployments/d/chat/completions?api-version=2024-10-21",
         "/openai/deployments/d/models?api-version=2024-10-21"),
    ],
)  # fmt: skip
def test_openai_urls(base: str, completions: str, models: str) -> None:
    c = cfg("openai", base)
    assert OpenAIProvider.url(c).endswith(completions)
    assert OpenAIProvider.models_url(c).endswith(models)


@pytest.mark.parametrize(
    ("base", "messages", "models"),
    [
        ("https://api.anthropic.com", "/v1/messages", "/v1/models"),
        ("https://gw.example/proxy/v1/", "/proxy/v1/messages", "/proxy/v1/models"),
    ],
)
def test_anthropic_urls(base: str, messages: str, models: str) -> None:
    c = cfg("anthropic", base)
    assert AnthropicProvider.url(c).endswith(messages)
    assert AnthropicProvider.models_url(c).endswith(models)
