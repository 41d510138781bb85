"""What every provider adapter takes and gives back (no I/O here).

A :class:`ProviderRequest` is provider-neutral (system prompt, messages,
parameters); each adapter turns it into its own wire format. A call ends as a
:class:`CallSuccess` or a :class:`CallFailure` whose failure is already
classified (``services.enrich.classify``): adapters never raise for anything
the provider or the network did, and never retry.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

from shared.outcomes import Failure

ProviderKind = Literal["openai", "anthropic"]


@dataclass(frozen=True, slots=True)
class Message:
    role: Literal["user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    model: str
    messages: tuple[Message, ...]
    system: str | None = None
    max_tokens: int = 256
    temperature: float | None = None

    def text_chars(self) -> int:
        """Characters of prompt text (system + messages): the input-token estimate's base."""
        return len(self.system or "") + sum(len(m.content) for m in self.messages)

    def input_tokens_estimate(self) -> int:
        """Input tokens, estimated as prompt characters / 4 (+1): what the buckets reserve."""
        return self.text_chars() // 4 + 1


@dataclass(frozen=True, slots=True)
class CallSuccess:
    content: str
    tokens_in: int
    tokens_out: int
    model: str
    latency_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names

    ok: Literal[True] = True


@dataclass(frozen=True, slots=True)
class CallFailure:
    failure: Failure
    latency_ms: int
    headers: Mapping[str, str] = field(default_factory=dict)  # lower-case names
    status: int | None = None  # the HTTP status, when an answer came

    ok: Literal[False] = False


CallResult = CallSuccess | CallFailure


@dataclass(frozen=True, slots=True)
class Checked:
    """A provider's answer to a request of its own (its model list), which no record shapes."""

    up: bool  # it answered 2xx
    detail: str  # ``HTTP 200``, ``HTTP 503``, ``timeout``, ...


class Provider(Protocol):
    """One configured provider with its own pooled HTTP client."""

    @property
    def name(self) -> str: ...

    @property
    def kind(self) -> ProviderKind: ...

    async def call(self, request: ProviderRequest) -> CallResult:
        """One attempt, cancelled after the provider's ``timeout_s``; never raises for provider faults."""
        ...

    async def check(self) -> Checked:
        """List the provider's models (free, no tokens): is the provider itself answering?
        Never raises for provider faults."""
        ...

    async def aclose(self) -> None: ...
