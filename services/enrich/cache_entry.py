"""A paid answer as the result cache keeps it, and back (pure).

The entry is JSON ``{"content", "tokens_in", "tokens_out", "model",
"latency_ms"}``; an entry that cannot be read back is a cache miss.
"""

from __future__ import annotations

import orjson

from services.enrich.providers.base import CallSuccess


def encode(result: CallSuccess) -> bytes:
    return orjson.dumps(
        {
            "content": result.content,
            "tokens_in": result.tokens_in,
            "tokens_out": result.tokens_out,
            "model": result.model,
            "latency_ms": result.latency_ms,
        }
    )


def decode(raw: bytes) -> CallSuccess | None:
    """The stored answer, or ``None`` when the entry is unreadable (a miss)."""
    try:
        doc = orjson.loads(raw)
        return CallSuccess(
            doc["content"], int(doc["tokens_in"]), int(doc["tokens_out"]), doc["model"],
            int(doc.get("latency_ms", 0)),
        )  # fmt: skip
    except (ValueError, KeyError, TypeError):
        return None
