"""Failure kinds: what went wrong with a record, and what that implies.

Each kind knows whether another attempt may succeed and which dead-letter
topic it ends in, so callers read an attribute instead of keeping lists.
"""

from __future__ import annotations

from enum import StrEnum


class FailureKind(StrEnum):
    TIMEOUT = "timeout"
    RATE_LIMITED = "rate_limited"
    OVERLOADED = "overloaded"
    PROVIDER_ERROR = "provider_error"
    INVALID_OUTPUT = "invalid_output"
    BAD_REQUEST = "bad_request"
    OUTAGE = "outage"
    POISON = "poison"
    OVERSIZE = "oversize"

    @property
    def retryable(self) -> bool:
        return self not in (FailureKind.BAD_REQUEST, FailureKind.POISON, FailureKind.OVERSIZE)

    @property
    def dlq_suffix(self) -> str:
        """Which dead-letter topic (``P.dlq.<suffix>``) this kind ends in."""
        if self is FailureKind.TIMEOUT:
            return "timeout"
        if self is FailureKind.POISON:
            return "poison"
        return "error"

    @classmethod
    def parse(cls, text: str) -> FailureKind:
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown failure kind {text!r}") from None
