"""The browse cursor: where the next page starts, per partition (pure).

Opaque to clients (URL-safe base64 of a small JSON document: a version, the
topic, the next offset of each partition). It is checked when given back: a
cursor that does not decode, is of another DLQ, or holds anything but
non-negative integers is a :class:`CursorError` (the API answers 422).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping

VERSION = 1
MAX_CHARS = 16_384
MAX_PARTITIONS = 10_000


class CursorError(ValueError):
    """A cursor that cannot be used; the message says why."""


def encode(topic: str, positions: Mapping[int, int]) -> str:
    doc = {"v": VERSION, "t": topic, "p": {str(p): o for p, o in sorted(positions.items())}}
    raw = json.dumps(doc, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(text: str, topic: str) -> dict[int, int]:
    """The next offset per partition; CursorError when ``text`` is not a cursor of ``topic``."""
    if len(text) > MAX_CHARS:
        raise CursorError(f"longer than {MAX_CHARS} characters")
    try:
        doc = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
    except (binascii.Error, ValueError):
        raise CursorError("not a cursor of this API (it does not decode)") from None
    if not isinstance(doc, dict) or doc.get("v") != VERSION or not isinstance(doc.get("p"), dict):
        raise CursorError("not a cursor of this API (unknown shape)")
    if doc.get("t") != topic:
        raise CursorError(f"a cursor of another DLQ, not of {topic}")
    positions = doc["p"]
    if len(positions) > MAX_PARTITIONS:
        raise CursorError(f"more than {MAX_PARTITIONS} partitions")
    out: dict[int, int] = {}
    for p, o in positions.items():
        if not (p.isascii() and p.isdigit() and type(o) is int and o >= 0):
            raise CursorError(f"partition {p!r:.20} at {o!r:.20} is not a position")
        out[int(p)] = o
    return out
