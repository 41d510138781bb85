"""A paid answer as the result cache keeps it, and back (pure).

The entry is JSON ``{"content", "tokens_in", "tokens_out", "model",
"latency_ms"}``; an entry that cannot be read back is a cache miss, and so
is one whose answer no longer conforms to the task's schema (:func:`usable`:
what enrich serves, and what the admin's replay dry run counts as a hit).
"""

from __future__ import annotations

import orjson

from services.enrich.providers.base import CallSuccess
from services.enrich.tasks import Answer, parse_output
from shared.config_file import TaskConfig
from shared.outcomes import Failure


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


def usable(task: TaskConfig, raw: bytes | None) -> tuple[Answer, CallSuccess] | None:
    """A cache hit: the stored answer, parsed for ``task``; ``None`` is a miss
    (no entry, an unreadable one, or an answer that fails the task's schema)."""
    success = None if raw is None else decode(raw)
    if success is None:
        return None
    parsed = parse_output(task, success.content)
    return None if isinstance(parsed, Failure) else (parsed, success)
