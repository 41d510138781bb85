"""Pydantic's validation errors as one line a person reads (pure)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pydantic import ValidationError

__all__ = ["dotted", "one_line"]


def dotted(loc: Sequence[str | int]) -> str:
    """``providers.a.timeout_s``"""
    return ".".join(str(p) for p in loc)


def one_line(exc: ValidationError, where: Callable[[Sequence[str | int]], str] = dotted) -> str:
    """``providers.a.timeout_s: Input should be greater than 0; ...``: each error after
    its place (``where`` names it; an error of the whole model has none), without the
    ``Value error,`` that pydantic puts before a validator's own message."""
    parts = []
    for err in exc.errors():
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{where(err['loc'])}: {msg}" if err["loc"] else msg)
    return "; ".join(parts)
