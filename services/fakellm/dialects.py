"""The two wire formats the fake speaks: OpenAI chat completions and Anthropic messages.

A :class:`Dialect` knows, for its provider, how a request is validated, what a
completion and an error look like, and how rate-limit state goes into headers.
Everything here is pure; the HTTP layer (``app.py``) only calls it.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from services.fakellm.answers import all_text
from services.fakellm.ratelimit import Decision, Quota

JsonObj = dict[str, Any]


@dataclass(frozen=True)
class Invalid:
    """Why a request body was refused (HTTP 400)."""

    message: str
    param: str | None = None
    code: str | None = None


class Dialect(Protocol):
    name: str
    route: str
    request_id_header: str

    def validate(self, body: Mapping[str, Any]) -> Invalid | None: ...
    def prompt_text(self, body: Mapping[str, Any]) -> str: ...
    def completion(
        self, model: str, content: str, tokens_in: int, tokens_out: int, now: float
    ) -> JsonObj: ...
    def error(
        self, status: int, message: str, *, limit: str = "requests", invalid: Invalid | None = None
    ) -> JsonObj: ...
    def error_in_200(self, kind: str | None = None) -> JsonObj: ...
    def model_list(self, models: list[str], now: float) -> JsonObj: ...
    def ratelimit_headers(self, decision: Decision, now: float) -> dict[str, str]: ...


def go_duration(seconds: float) -> str:
    """OpenAI's reset format (Go durations): ``120ms``, ``1s``, ``8.64s``, ``6m0s``, ``1h2m3s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    ms = round(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


def rfc3339(ts: float) -> str:
    """A UTC time, rounded up to the second: ``2025-01-01T00:00:30Z``."""
    return datetime.fromtimestamp(math.ceil(ts), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def retry_headers(seconds: float) -> dict[str, str]:
    """``retry-after`` (whole seconds, rounded up, at least 1) and ``retry-after-ms``."""
    return {
        "retry-after": str(max(1, math.ceil(seconds))),
        "retry-after-ms": str(max(1, math.ceil(seconds * 1000))),
    }


def _check_common(body: Mapping[str, Any], roles: frozenset[str]) -> Invalid | None:
    """Checks both providers make, phrased neutrally; ``None`` when fine."""
    model = body.get("model")
    if model is None:
        return Invalid(
            "Missing required parameter: 'model'.", "model", "missing_required_parameter"
        )
    if not isinstance(model, str) or not model:
        return Invalid("Invalid 'model': expected a non-empty string.", "model", "invalid_type")
    messages = body.get("messages")
    if messages is None:
        return Invalid(
            "Missing required parameter: 'messages'.", "messages", "missing_required_parameter"
        )
    if not isinstance(messages, list) or not messages:
        return Invalid(
            "Invalid 'messages': expected a non-empty array of messages.", "messages", "empty_array"
        )
    for i, msg in enumerate(messages):
        if not isinstance(msg, Mapping) or msg.get("role") not in roles:
            allowed = ", ".join(sorted(roles))
            return Invalid(
                f"Invalid 'messages[{i}]': each message needs a 'role' among {allowed}.",
                f"messages[{i}].role",
                "invalid_value",
            )
    if body.get("stream"):
        return Invalid("fakellm does not support 'stream': true.", "stream", "unsupported_value")
    return None


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


class OpenAIDialect:
    name = "openai"
    route = "/v1/chat/completions"
    request_id_header = "x-request-id"
    _roles = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

    def validate(self, body: Mapping[str, Any]) -> Invalid | None:
        return _check_common(body, self._roles)

    def prompt_text(self, body: Mapping[str, Any]) -> str:
        return all_text(body.get("messages") or [])

    def completion(
        self, model: str, content: str, tokens_in: int, tokens_out: int, now: float
    ) -> JsonObj:
        return {
            "id": _new_id("chatcmpl-"),
            "object": "chat.completion",
            "created": int(now),
            "model": model,
            "system_fingerprint": "fp_fakellm",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": tokens_in,
                "completion_tokens": tokens_out,
                "total_tokens": tokens_in + tokens_out,
            },
        }

    def error(
        self, status: int, message: str, *, limit: str = "requests", invalid: Invalid | None = None
    ) -> JsonObj:
        param: str | None = None
        code: str | None = None
        if status == 429:
            kind, code = limit, "rate_limit_exceeded"
        elif status < 500:
            kind = "invalid_request_error"
            if invalid is not None:
                param, code = invalid.param, invalid.code
        else:
            kind = "server_error"
        return {"error": {"message": message, "type": kind, "param": param, "code": code}}

    def error_in_200(self, kind: str | None = None) -> JsonObj:
        if kind == "overloaded":
            return self.error(503, "The engine is currently overloaded, please try again later.")
        if kind == "server_error":
            return self.error(500, "The server had an error while processing your request.")
        return self.error(
            429,
            "Rate limit reached for requests per min (RPM). Please try again in 1s.",
        )

    def model_list(self, models: list[str], now: float) -> JsonObj:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": int(now), "owned_by": "fakellm"}
                for m in models
            ],
        }

    def ratelimit_headers(self, decision: Decision, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        for dim, quota in (("requests", decision.requests), ("tokens", decision.tokens)):
            if quota is not None:
                out[f"x-ratelimit-limit-{dim}"] = str(quota.limit)
                out[f"x-ratelimit-remaining-{dim}"] = str(quota.remaining)
                out[f"x-ratelimit-reset-{dim}"] = go_duration(quota.reset_s)
        return out


class AnthropicDialect:
    name = "anthropic"
    route = "/v1/messages"
    request_id_header = "request-id"
    _roles = frozenset({"user", "assistant"})

    def validate(self, body: Mapping[str, Any]) -> Invalid | None:
        if "max_tokens" not in body:
            return Invalid("max_tokens: Field required", "max_tokens")
        max_tokens = body["max_tokens"]
        if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
            return Invalid("max_tokens: Input should be an integer of at least 1", "max_tokens")
        return _check_common(body, self._roles)

    def prompt_text(self, body: Mapping[str, Any]) -> str:
        return all_text(body.get("messages") or [], body.get("system"))

    def completion(
        self, model: str, content: str, tokens_in: int, tokens_out: int, now: float
    ) -> JsonObj:
        return {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [{"type": "text", "text": content}],
            "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
        }

    def error(
        self, status: int, message: str, *, limit: str = "requests", invalid: Invalid | None = None
    ) -> JsonObj:
        kinds = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}
        kind = kinds.get(status, "api_error" if status >= 500 else "invalid_request_error")
        return {"type": "error", "error": {"type": kind, "message": message}}

    def error_in_200(self, kind: str | None = None) -> JsonObj:
        if kind == "rate_limit":
            return self.error(
                429, "Number of request tokens has exceeded your per-minute rate limit"
            )
        if kind == "server_error":
            return self.error(500, "Internal server error")
        return self.error(529, "Overloaded")

    def model_list(self, models: list[str], now: float) -> JsonObj:
        created = rfc3339(now)
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": created} for m in models
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": models[0] if models else None,
            "last_id": models[-1] if models else None,
        }

    def ratelimit_headers(self, decision: Decision, now: float) -> dict[str, str]:
        out: dict[str, str] = {}
        quotas: tuple[tuple[str, Quota | None], ...] = (
            ("requests", decision.requests),
            ("tokens", decision.tokens),
        )
        for dim, quota in quotas:
            if quota is not None:
                out[f"anthropic-ratelimit-{dim}-limit"] = str(quota.limit)
                out[f"anthropic-ratelimit-{dim}-remaining"] = str(quota.remaining)
                out[f"anthropic-ratelimit-{dim}-reset"] = rfc3339(now + quota.reset_s)
        return out


OPENAI = OpenAIDialect()
ANTHROPIC = AnthropicDialect()
