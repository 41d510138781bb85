"""Header names and the envelope codec (pure).

A record's identity is its source coordinates; every stage carries them in
``sluice.src.*`` headers. The record's own headers are preserved: sluice only
adds or replaces headers whose names start with ``sluice.`` (and
``traceparent`` / ``kafka_dlt-*`` where documented).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import confluent_kafka

SRC_TOPIC = "sluice.src.topic"
SRC_PARTITION = "sluice.src.partition"
SRC_OFFSET = "sluice.src.offset"
SRC_TS = "sluice.src.ts"
ATTEMPT = "sluice.attempt"
NOT_BEFORE = "sluice.not-before"
ERROR_KIND = "sluice.error.kind"
ERROR_CLASS = "sluice.error.class"
ERROR_MESSAGE = "sluice.error.message"
ERROR_HISTORY = "sluice.error.history"
OUTCOME = "sluice.outcome"
PROVIDER = "sluice.provider"
MODEL = "sluice.model"
LATENCY_MS = "sluice.latency-ms"
TOKENS_IN = "sluice.tokens.in"
TOKENS_OUT = "sluice.tokens.out"
REPLAY_ID = "sluice.replay-id"
REPLAY_COUNT = "sluice.replay-count"
LATE = "sluice.late"
TRACEPARENT = "traceparent"
RETRY_AFTER = "sluice.retry-after-s"
"""The provider's retry-after (seconds) on a failure; the router caps it at the longest rung."""
POISON_TRUNCATED = "sluice.poison.truncated-from"
POISON_KEY_TRUNCATED = "sluice.poison.key-truncated-from"

MAX_HEADER_VALUE = 16_384
RESERVED_PREFIX = "sluice."
"""Headers with this prefix are sluice's own: ingest strips them from source records."""

HeaderList = list[tuple[str, bytes]]
KAFKA_MESSAGE = confluent_kafka.Message
MESSAGE_HEADERS = confluent_kafka.Message.headers
"""``operator.call(MESSAGE_HEADERS, msg)`` is ``msg.headers()`` through the C API, which
checks the result (see :func:`read_raw`); as cheap as the plain call."""


class HeaderError(ValueError):
    """Headers that cannot be read (wrong type, undecodable name, missing field)."""


@dataclass(frozen=True, slots=True)
class SourceId:
    """A record's identity: its coordinates in the source topic."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}@{self.offset}"


def check_headers(raw: object) -> HeaderList:
    """Validate headers as delivered by the client; raise HeaderError if broken."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise HeaderError(f"headers are a {type(raw).__name__}, not a list")
    out: HeaderList = []
    for item in raw:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise HeaderError(f"malformed header entry {item!r:.80}")
        name, value = item
        if not name:
            raise HeaderError("empty header name")
        if value is None:
            value = b""
        elif isinstance(value, str):
            value = value.encode()
        elif not isinstance(value, bytes):
            raise HeaderError(f"header {name!r} has a {type(value).__name__} value")
        # A name that is not UTF-8 never gets here (read_raw): a literal U+FFFD is a
        # valid character, and ingest forwards it, so no later stage may refuse it.
        out.append((name, value))
    return out


def read_raw(msg: object) -> object:
    """A consumed message's headers as the client delivers them; HeaderError if unreadable.

    confluent-kafka builds the list lazily and fails inside C on a header name
    that is not UTF-8: it returns a list with a hole in it *and* an exception
    set. A call from Python bytecode may not notice (the interpreter's fast
    path for C methods skips the check), so the error surfaces at some later
    call, or the hole crashes the interpreter when touched. Calling through
    :func:`operator.call` goes through the C API, which checks and raises
    ``SystemError`` at once. Read a message's headers through here, once;
    after a HeaderError never call ``headers()`` on it again. (Other objects
    with a ``headers()`` method, such as test doubles, are called plainly.)
    """
    try:
        if type(msg) is KAFKA_MESSAGE:
            return operator.call(MESSAGE_HEADERS, msg)
        return msg.headers()  # type: ignore[attr-defined]
    except SystemError:
        raise HeaderError("a header name is not valid UTF-8") from None


def read(msg: object) -> HeaderList:
    """A consumed message's headers, checked (:func:`check_headers`); HeaderError if broken."""
    return check_headers(read_raw(msg))


def without_reserved(headers: HeaderList) -> tuple[HeaderList, int]:
    """``headers`` without sluice's own (``sluice.*``), and how many were dropped."""
    kept = [item for item in headers if not item[0].startswith(RESERVED_PREFIX)]
    return kept, len(headers) - len(kept)


def source_headers(src: SourceId, ts_ms: int, attempt: int = 1) -> HeaderList:
    return [
        (SRC_TOPIC, src.topic.encode()),
        (SRC_PARTITION, str(src.partition).encode()),
        (SRC_OFFSET, str(src.offset).encode()),
        (SRC_TS, str(ts_ms).encode()),
        (ATTEMPT, str(attempt).encode()),
    ]


def merge(original: Iterable[tuple[str, bytes]], ours: Sequence[tuple[str, bytes]]) -> HeaderList:
    """The record's own headers with ours set on top (ours replace same names)."""
    names = {n for n, _ in ours}
    return [h for h in original if h[0] not in names] + list(ours)


def get(headers: object, name: str) -> bytes | None:
    """The last value of ``name`` (Kafka allows repeats; the last one wins).

    ``headers`` is what a client delivers (a list of pairs, or None).
    """
    found: bytes | None = None
    if not isinstance(headers, list | tuple):
        return None
    for item in headers:
        if item[0] == name:
            v = item[1]
            found = v.encode() if isinstance(v, str) else (v if v is not None else b"")
    return found


def get_str(headers: object, name: str) -> str | None:
    v = get(headers, name)
    return None if v is None else v.decode("utf-8", "replace")


def get_int(headers: object, name: str) -> int:
    v = get(headers, name)
    if v is None:
        raise HeaderError(f"header {name} is missing")
    try:
        return int(v)
    except ValueError:
        raise HeaderError(f"header {name} is not an integer: {v!r:.40}") from None


def source_id(headers: object) -> SourceId:
    """Read the record's identity; HeaderError if any coordinate is missing."""
    hs = check_headers(headers)
    topic = get_str(hs, SRC_TOPIC)
    if not topic:
        raise HeaderError(f"header {SRC_TOPIC} is missing")
    return SourceId(topic, get_int(hs, SRC_PARTITION), get_int(hs, SRC_OFFSET))
