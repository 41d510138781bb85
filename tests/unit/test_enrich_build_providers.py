"""Building the adapters: every key is read before a client opens, and read once."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pytest

from services.enrich.providers import build_providers
from shared.config_file import ProviderConfig
from shared.errors import ConfigError


class CountingEnv(Mapping[str, str]):
    """An environment that counts how often each variable is read."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.reads: dict[str, int] = {}

    def __getitem__(self, name: str) -> str:
        self.reads[name] = self.reads.get(name, 0) + 1
        return self.values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def cfg(kind: str, env: str) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"kind": kind, "base_url": "http://127.0.0.1:1/v1", "api_key_env": env}
    )


def test_each_key_is_read_once() -> None:
    env = CountingEnv({"KEY_A": "sk-a", "KEY_B": "sk-b"})
    built = build_providers(
        {"a": cfg("openai", "KEY_A"), "b": cfg("anthropic", "KEY_B")}, environ=env
    )
    assert {n: p.kind for n, p in built.items()} == {"a": "openai", "b": "anthropic"}
    assert env.reads == {"KEY_A": 1, "KEY_B": 1}


def test_a_missing_key_names_its_provider() -> None:
    env = CountingEnv({"KEY_A": "sk-a"})
    with pytest.raises(ConfigError, match=r"provider 'b'.*KEY_B"):
        build_providers({"a": cfg("openai", "KEY_A"), "b": cfg("openai", "KEY_B")}, environ=env)
