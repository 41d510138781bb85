"""What a provider call's outcome means: a completion, or a classified Failure (pure).

::

    exception     our deadline / socket read timeout .. timeout
                  body over max_response_bytes ........ provider_error response_too_large
                  connect / network / protocol ........ provider_error (connect_error, ...)
    HTTP status   402, or a spend/credit error body ... rate_limited  spend_limit, >= 1 h
                  429 ................................. rate_limited  (retry_after_s from headers)
                  529, or an "overloaded" error body .. overloaded
                  401 / 403 (or an auth error body) ... provider_error auth
                  408 ................................. timeout
                  400 / 404 / 413 / 422 ............... bad_request (not retryable)
                  other ............................... provider_error http_<status>
    HTTP 2xx      error object in the body ............ by the body: rate limit, overloaded,
                                                        invalid request, else provider_error
                  content filter / refusal ............ bad_request
                  not a completion .................... provider_error malformed_response

Cooldowns come from ``retry-after`` (seconds or HTTP-date), ``retry-after-ms``,
``x-ratelimit-reset-*`` (Go durations) and ``anthropic-ratelimit-*-reset``
(RFC 3339); the longest applicable one wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

from services.enrich.providers.body import ResponseTooLarge
from services.enrich.providers.ratelimit_headers import (
    MAX_COOLDOWN_S,
    cooldown_from_headers,
    hint_from_message,
    retry_after_from_headers,
)
from shared.kinds import FailureKind
from shared.outcomes import Failure

__all__ = [
    "SPEND_LIMIT_COOLDOWN_S",
    "Completion",
    "classify_exception",
    "classify_response",
    "cooldown_from_headers",
    "retry_after_from_headers",
]

SPEND_LIMIT_COOLDOWN_S = 3600.0
SPEND_CODES = frozenset(
    {
        "insufficient_quota",
        "enforced_spend_limit_reached",
        "billing_hard_limit_reached",
        "billing_not_active",
    }
)
SPEND_PHRASES = ("credit balance is too low", "exceeded your current quota")
AUTH_LABELS = frozenset({"authentication_error", "permission_error", "invalid_api_key"})
INVALID_LABELS = frozenset(
    {"invalid_request_error", "not_found_error", "request_too_large", "context_length_exceeded"}
)
BAD_REQUEST_STATUSES = frozenset({400, 404, 413, 422})


@dataclass(frozen=True, slots=True)
class Completion:
    content: str
    tokens_in: int
    tokens_out: int
    model: str


@dataclass(frozen=True, slots=True)
class ErrorInfo:
    """An error object from a body: OpenAI ``{"error": {...}}`` or Anthropic ``{"type": "error", ...}``."""

    type: str
    code: str
    message: str

    @property
    def labels(self) -> frozenset[str]:
        return frozenset(x.lower() for x in (self.type, self.code) if x)

    @property
    def label(self) -> str:
        return self.code or self.type or "unknown"

    def has(self, fragment: str) -> bool:
        return any(fragment in x for x in self.labels)

    @property
    def overloaded(self) -> bool:
        """Anthropic's ``overloaded_error``, or OpenAI's ``server_error`` saying "overloaded"."""
        return self.has("overloaded") or "overloaded" in self.message.lower()


def error_info(body: object) -> ErrorInfo | None:
    if not isinstance(body, Mapping):
        return None
    err = body.get("error")
    if isinstance(err, str) and err:
        return ErrorInfo("", "", err)
    if not isinstance(err, Mapping):
        return ErrorInfo("", "", "") if body.get("type") == "error" else None
    code = err.get("code")
    return ErrorInfo(
        str(err.get("type") or ""), "" if code is None else str(code), str(err.get("message") or "")
    )


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in headers.items()}


def _is_spend(info: ErrorInfo | None) -> bool:
    if info is None:
        return False
    text = info.message.lower()
    return bool(info.labels & SPEND_CODES) or any(p in text for p in SPEND_PHRASES)


def _spend(message: str, headers: dict[str, str], now: float) -> Failure:
    wait = max(SPEND_LIMIT_COOLDOWN_S, retry_after_from_headers(headers, now) or 0.0)
    return Failure(FailureKind.RATE_LIMITED, "spend_limit", message, min(wait, MAX_COOLDOWN_S))


def _rate_limited(
    error_class: str, message: str, headers: dict[str, str], now: float, info: ErrorInfo | None
) -> Failure:
    waits = [
        retry_after_from_headers(headers, now),
        hint_from_message(info.message if info else ""),
    ]
    known = [w for w in waits if w is not None]
    return Failure(FailureKind.RATE_LIMITED, error_class, message, max(known) if known else None)


def _status_failure(status: int, headers: dict[str, str], body: object, now: float) -> Failure:
    info = error_info(body)
    detail = info.message if info and info.message else (str(body)[:200] if body else "")
    message = f"HTTP {status}: {detail}" if detail else f"HTTP {status}"
    cls = f"http_{status}"
    retry = retry_after_from_headers(headers, now)
    if status == 402 or _is_spend(info):
        return _spend(message, headers, now)
    if status == 429:
        return _rate_limited(cls, message, headers, now, info)
    if status == 529 or (info is not None and info.has("overloaded")):
        return Failure(FailureKind.OVERLOADED, cls, message, retry)
    if status in (401, 403):
        return Failure(FailureKind.PROVIDER_ERROR, "auth", message, retry)
    if status == 408:
        return Failure(FailureKind.TIMEOUT, cls, message, retry)
    if status in BAD_REQUEST_STATUSES:
        return Failure(FailureKind.BAD_REQUEST, cls, message)
    return Failure(FailureKind.PROVIDER_ERROR, cls, message, retry)


def _body_failure(info: ErrorInfo, headers: dict[str, str], now: float) -> Failure:
    """An error object in a 2xx body: classified by what it says."""
    message = f"error in HTTP 200 body: {info.message or info.label}"
    cls = f"error_body:{info.label}"
    if _is_spend(info):
        return _spend(message, headers, now)
    if info.has("rate_limit"):
        return _rate_limited(cls, message, headers, now, info)
    retry = retry_after_from_headers(headers, now)
    if info.overloaded:
        return Failure(FailureKind.OVERLOADED, cls, message, retry)
    if info.labels & AUTH_LABELS:
        return Failure(FailureKind.PROVIDER_ERROR, "auth", message, retry)
    if info.labels & INVALID_LABELS:
        return Failure(FailureKind.BAD_REQUEST, cls, message)
    return Failure(FailureKind.PROVIDER_ERROR, cls, message, retry)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _malformed(what: str) -> Failure:
    return Failure(FailureKind.PROVIDER_ERROR, "malformed_response", f"HTTP 200 but {what}")


def _refused(error_class: str, message: str) -> Failure:
    return Failure(FailureKind.BAD_REQUEST, error_class, message)


def _text(content: object, block_type: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(b.get("text") or "")
            for b in content
            if isinstance(b, Mapping) and b.get("type") == block_type
        )
    return ""


def _obj(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _openai(body: Mapping[str, Any]) -> Completion | Failure:
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return _malformed("no choices in the body")
    choice, usage = choices[0], _obj(body.get("usage"))
    message = _obj(choice.get("message"))
    if choice.get("finish_reason") == "content_filter":
        return _refused("content_filter", "answer withheld by the provider's content filter")
    if message.get("refusal"):
        return _refused("refusal", f"the model refused: {str(message['refusal'])[:300]}")
    tokens_in, tokens_out = _int(usage.get("prompt_tokens")), _int(usage.get("completion_tokens"))
    return Completion(_text(message.get("content"), "text"), tokens_in, tokens_out, str(body.get("model") or ""))  # fmt: skip


def _anthropic(body: Mapping[str, Any]) -> Completion | Failure:
    content = body.get("content")
    if not isinstance(content, list):
        return _malformed("no content blocks in the body")
    if body.get("stop_reason") == "refusal":
        return _refused("refusal", "the model refused to answer (stop_reason=refusal)")
    usage = _obj(body.get("usage"))
    tokens_in: int = sum(_int(usage.get(k)) for k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))  # fmt: skip
    tokens_out = _int(usage.get("output_tokens"))
    return Completion(_text(content, "text"), tokens_in, tokens_out, str(body.get("model") or ""))


def classify_response(
    kind: str, status: int, headers: Mapping[str, str], body: object, now: float
) -> Completion | Failure:
    """An HTTP answer (``body`` parsed JSON, or the raw text when it was not JSON)."""
    lower = _lower(headers)
    if not 200 <= status < 300:
        return _status_failure(status, lower, body, now)
    info = error_info(body)
    if info is not None:
        return _body_failure(info, lower, now)
    if not isinstance(body, Mapping):
        return _malformed("the body is not a JSON object")
    return _anthropic(body) if kind == "anthropic" else _openai(body)


_EXCEPTIONS: tuple[tuple[type[BaseException], FailureKind, str], ...] = (
    (ResponseTooLarge, FailureKind.PROVIDER_ERROR, "response_too_large"),
    (aiohttp.ConnectionTimeoutError, FailureKind.PROVIDER_ERROR, "connect_timeout"),
    (TimeoutError, FailureKind.TIMEOUT, "timeout"),  # our deadline, or a socket read timeout
    (aiohttp.ClientConnectorError, FailureKind.PROVIDER_ERROR, "connect_error"),
    (aiohttp.ServerDisconnectedError, FailureKind.PROVIDER_ERROR, "protocol_error"),
    (aiohttp.ClientPayloadError, FailureKind.PROVIDER_ERROR, "protocol_error"),
    (aiohttp.ClientResponseError, FailureKind.PROVIDER_ERROR, "protocol_error"),
    (aiohttp.ClientOSError, FailureKind.PROVIDER_ERROR, "network_error"),
    (aiohttp.ClientError, FailureKind.PROVIDER_ERROR, "http_error"),
    (ConnectionError, FailureKind.PROVIDER_ERROR, "connect_error"),
    (OSError, FailureKind.PROVIDER_ERROR, "network_error"),
)


def classify_exception(exc: BaseException, deadline_s: float | None = None) -> Failure:
    """A call that raised instead of answering (``TimeoutError`` is our own deadline)."""
    kind, error_class = next(
        ((k, c) for t, k, c in _EXCEPTIONS if isinstance(exc, t)),
        (FailureKind.PROVIDER_ERROR, f"unexpected:{type(exc).__name__}"),
    )
    if isinstance(exc, TimeoutError) and deadline_s is not None:
        return Failure(kind, error_class, f"no answer within the {deadline_s:g} s deadline")
    if isinstance(exc, ResponseTooLarge):
        return Failure(kind, error_class, str(exc))
    detail = re.sub(r"\s+", " ", str(exc)).strip() or type(exc).__name__
    return Failure(kind, error_class, f"{type(exc).__name__}: {detail}")
