"""The one JSON decoder of the pipeline (pure).

Every stage that reads a record's value as JSON goes through :func:`loads`, so
ingest and every later stage agree on what is valid: orjson's grammar (UTF-8,
no NaN or Infinity) and at most :data:`MAX_DEPTH` levels of nesting. A value
that ingest accepted can therefore always be decoded again, embedded in a
result and encoded by any later stage (orjson encodes up to 254 levels; the
standard library's decoder recurses in Python and fails near 1,000).

Encoding is orjson too: compact and without ASCII escaping, so a result is not
inflated by ``\\uXXXX`` escapes (non-Latin text would double in size).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson

from shared.errors import BadDocument

MAX_DEPTH = 64
"""Deepest nesting of objects and arrays a record's value may have."""

SHORTEST_TOO_DEEP = 2 * (MAX_DEPTH + 1) - 1  # a document this long cannot nest deeper


def depth(doc: Any) -> int:
    """Nesting depth of a decoded document (a scalar is 0); iterative, no recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(doc, 0)]
    while stack:
        node, level = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((child, level) for child in children if isinstance(child, dict | list))
    return deepest


def loads(raw: bytes | bytearray | memoryview | str) -> Any:
    """Decode ``raw``; :class:`BadDocument` if it is not JSON or nested too deeply."""
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadDocument(f"not JSON: {exc}") from None
    if _may_nest_too_deep(raw) and depth(doc) > MAX_DEPTH:
        raise BadDocument(f"JSON nested deeper than {MAX_DEPTH} levels")
    return doc


def loads_object(raw: bytes | bytearray | memoryview | str) -> dict[str, Any]:
    """Decode a JSON object; :class:`BadDocument` for anything else.

    Ingest's hot path: one orjson call, two scans in C, no walk of the document
    unless it has more brackets than the depth limit.
    """
    try:
        doc = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadDocument(f"not JSON: {exc}") from None
    if type(doc) is not dict:
        raise BadDocument(f"JSON value is a {type(doc).__name__}, not an object")
    if type(raw) is bytes:  # inline on ingest's path: a call costs as much as a scan
        if (
            len(raw) > SHORTEST_TOO_DEEP
            and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
            and depth(doc) > MAX_DEPTH
        ):
            raise BadDocument(f"JSON nested deeper than {MAX_DEPTH} levels")
    elif _may_nest_too_deep(raw) and depth(doc) > MAX_DEPTH:
        raise BadDocument(f"JSON nested deeper than {MAX_DEPTH} levels")
    return doc


def too_deep(raw: bytes, doc: Any) -> bool:
    """Whether ``doc`` (decoded from ``raw`` by orjson) nests deeper than the limit.

    For a caller that decodes with orjson itself on a hot path (ingest), after
    checking ``len(raw) > SHORTEST_TOO_DEEP``: the same rule as :func:`loads`.
    """
    return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and depth(doc) > MAX_DEPTH


def _may_nest_too_deep(raw: bytes | bytearray | memoryview | str) -> bool:
    """Fewer brackets than the limit cannot nest deeper than it (the usual case), and a
    document shorter than ``MAX_DEPTH + 1`` pairs of brackets has fewer."""
    if type(raw) is not bytes:
        raw = raw.encode() if isinstance(raw, str) else bytes(raw)
    return len(raw) > SHORTEST_TOO_DEEP and raw.count(b"[") + raw.count(b"{") > MAX_DEPTH


def dumps(doc: Any) -> bytes:
    """Compact UTF-8 JSON, no ASCII escaping (non-str keys are not allowed)."""
    return orjson.dumps(doc)


def embeddable(value: bytes | None, *, is_json: bool = False) -> Any:
    """``value`` as it goes inside another JSON document, without re-encoding it.

    Valid JSON (by :func:`loads`) is embedded verbatim; anything else as
    ``{"base64": ...}``; no value as null. Never raises. ``is_json``: the
    caller decoded ``value`` with :func:`loads` already (it is not checked again).
    """
    if value is None:
        return None
    if not is_json:
        try:
            loads(value)
        except BadDocument:
            return {"base64": base64.b64encode(value).decode()}
    return orjson.Fragment(value)
