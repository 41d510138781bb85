"""What ingest does to one source record (pure).

A good record becomes a work record: same key and value, the record's own
headers plus the source coordinates and ``sluice.attempt=1``. A record that
can never be processed becomes a poison record with its reason and raw bytes.

This is ingest's hot path: per record it does one header check, one size
check, one JSON decode (orjson) and builds the header list from a cached
per-partition prefix.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import orjson

from shared import headers as h
from shared.errors import PoisonRecord
from shared.kinds import FailureKind

MAX_HEADER_BYTES = 64 * 1024
DLQ_VALUE_MAX = 4 * 1024 * 1024
TRUNCATED = "sluice.poison.truncated-from"
_ATTEMPT_1 = (h.ATTEMPT, b"1")


class SourceRecord(Protocol):
    """The part of a consumed message that ingest reads (confluent-kafka's Message)."""

    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> object: ...
    def timestamp(self) -> tuple[int, int]: ...


@dataclass(frozen=True, slots=True)
class Poison:
    """A record for the poison DLQ."""

    key: bytes | None
    value: bytes | None
    headers: h.HeaderList
    timestamp: int
    reason: str


def _check_headers(raw: object) -> h.HeaderList:
    """Validate the record's own headers; PoisonRecord when they are broken.

    The fast path covers what the client delivers (a list of ``(str, bytes)``);
    anything else goes through :func:`shared.headers.check_headers`.
    """
    if type(raw) is not list:
        return _check_headers_slow(raw)
    total = 0
    for item in raw:
        if type(item) is not tuple or len(item) != 2:
            return _check_headers_slow(raw)
        name, value = item
        if type(name) is not str or type(value) is not bytes or not name:
            return _check_headers_slow(raw)
        size = len(value)
        if size > h.MAX_HEADER_VALUE:
            raise PoisonRecord(
                "bad_headers", f"header {name!r} is {size} bytes (max {h.MAX_HEADER_VALUE})"
            )
        if name[:7] == "sluice." and (name.startswith("sluice.src.") or name == h.ATTEMPT):
            raise PoisonRecord("bad_headers", f"reserved header {name!r} set by the producer")
        total += len(name) + size
    if total > MAX_HEADER_BYTES:
        raise PoisonRecord("bad_headers", f"headers total {total} bytes (max {MAX_HEADER_BYTES})")
    return raw


def _check_headers_slow(raw: object) -> h.HeaderList:
    try:
        hs = h.check_headers(raw)
    except h.HeaderError as exc:
        raise PoisonRecord("bad_headers", str(exc)) from None
    return _check_headers(hs) if hs else hs


def _check_json(value: bytes) -> None:
    try:
        doc = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise PoisonRecord("undecodable", f"value is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise PoisonRecord("undecodable", f"JSON value is a {type(doc).__name__}, not an object")


class Wrapper:
    """Turns source records into work headers, or raises PoisonRecord."""

    def __init__(
        self, fmt: Literal["json", "bytes"], max_bytes: int, topic: str | None = None
    ) -> None:
        """``topic``: the one source topic, when known; then the hot path never asks
        a message for its topic (each call builds a new string)."""
        self.json = fmt == "json"
        self.max_bytes = max_bytes
        self.topic = topic
        self._prefix: dict[tuple[str | None, int | None], h.HeaderList] = {}
        self._by_partition: dict[int | None, h.HeaderList] = {}

    def _prefix_for(self, topic: str | None, partition: int | None) -> h.HeaderList:
        prefix = self._prefix.get((topic, partition))
        if prefix is None:
            prefix = [
                (h.SRC_TOPIC, (topic or "").encode()),
                (h.SRC_PARTITION, b"%d" % (partition or 0)),
            ]
            self._prefix[(topic, partition)] = prefix
        return prefix

    def source_headers(self, msg: SourceRecord) -> h.HeaderList:
        """sluice's headers for ``msg``: coordinates, timestamp, attempt 1."""
        return [
            *self._prefix_for(msg.topic(), msg.partition()),
            (h.SRC_OFFSET, b"%d" % (msg.offset() or 0)),
            (h.SRC_TS, b"%d" % msg.timestamp()[1]),
            _ATTEMPT_1,
        ]

    def work_headers(self, msg: SourceRecord) -> h.HeaderList:
        """Headers of the work record for ``msg``; PoisonRecord if it is poison."""
        raw = msg.headers()
        own = _check_headers(raw) if raw is not None else None
        value = msg.value()
        if value is None:
            raise PoisonRecord("undecodable", "record has no value (tombstone)")
        if len(value) > self.max_bytes:
            raise PoisonRecord("oversize", f"value is {len(value)} bytes (limit {self.max_bytes})")
        if self.json:
            _check_json(value)
        part = msg.partition()
        prefix = self._by_partition.get(part)
        if prefix is None:
            prefix = self._prefix_for(self.topic if self.topic is not None else msg.topic(), part)
            if self.topic is not None:
                self._by_partition[part] = prefix
        ours = [
            *prefix,
            (h.SRC_OFFSET, b"%d" % (msg.offset() or 0)),
            (h.SRC_TS, b"%d" % msg.timestamp()[1]),
            _ATTEMPT_1,
        ]
        return own + ours if own else ours

    def poison(self, msg: SourceRecord, bad: PoisonRecord) -> Poison:
        try:
            own = h.check_headers(msg.headers())
        except h.HeaderError:
            own = []  # the headers are what is broken; the reason says so
        value = msg.value()
        extra: h.HeaderList = []
        if value is not None and len(value) > DLQ_VALUE_MAX:
            extra.append((TRUNCATED, str(len(value)).encode()))
            value = value[:DLQ_VALUE_MAX]
        error = [
            (h.ERROR_KIND, FailureKind.POISON.value.encode()),
            (h.ERROR_CLASS, bad.reason.encode()),
            (h.ERROR_MESSAGE, bad.message.encode()[:1024]),
        ]
        headers = h.merge(own, [*self.source_headers(msg), *error, *extra])
        return Poison(msg.key(), value, headers, msg.timestamp()[1], bad.reason)
