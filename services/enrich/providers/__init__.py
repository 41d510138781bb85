"""Provider adapters: OpenAI-compatible chat completions and Anthropic messages.

``build_provider(name, config)`` gives a :class:`~.base.Provider` with its own
pooled HTTP client; close it with ``await provider.aclose()``.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.enrich.providers.base import (
    CallFailure,
    CallResult,
    CallSuccess,
    Checked,
    Message,
    Provider,
    ProviderRequest,
)
from shared.config_file import ProviderConfig
from shared.errors import ConfigError

__all__ = [
    "CallFailure",
    "CallResult",
    "CallSuccess",
    "Checked",
    "Message",
    "Provider",
    "ProviderRequest",
    "build_provider",
    "build_providers",
]


def build_provider(
    name: str,
    config: ProviderConfig,
    *,
    environ: Mapping[str, str] | None = None,
) -> Provider:
    """The adapter for ``config.kind``; ConfigError when its API key variable is unset."""
    return _adapter(name, config, _api_key(name, config, environ))


def build_providers(
    configs: Mapping[str, ProviderConfig], *, environ: Mapping[str, str] | None = None
) -> dict[str, Provider]:
    """Every configured provider, by name (every key is read before a client opens)."""
    keys = {name: _api_key(name, cfg, environ) for name, cfg in configs.items()}
    return {name: _adapter(name, cfg, keys[name]) for name, cfg in configs.items()}


def _api_key(name: str, config: ProviderConfig, environ: Mapping[str, str] | None) -> str | None:
    try:
        return config.resolve_api_key(environ)
    except ConfigError as exc:
        raise ConfigError(f"provider {name!r}: {exc}") from None


def _adapter(name: str, config: ProviderConfig, api_key: str | None) -> Provider:
    # Imported here: the adapters import ``classify``, which imports this package.
    from services.enrich.providers.anthropic import AnthropicProvider
    from services.enrich.providers.openai import OpenAIProvider

    adapter = AnthropicProvider if config.kind == "anthropic" else OpenAIProvider
    return adapter(name, config, api_key)
