"""What ingest does to one source record (pure).

A good record becomes a work record: same key and value, the record's own
headers plus the source coordinates and ``sluice.attempt=1``. A record that
can never be processed becomes a poison record with its reason and raw bytes.

This is ingest's hot path: per record it does one header check, two size
checks, one JSON decode (:mod:`shared.jsondoc`, the pipeline's one decoder)
and builds the header list from a cached per-partition prefix.

The record's own ``sluice.*`` headers are dropped (only sluice sets them), so
a producer cannot forge an identity, an attempt, a retry-after, a replay or a
late mark. A header that cannot be read at all (a name that is not UTF-8)
makes the record poison (``bad_headers``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from operator import call
from typing import Literal

from orjson import JSONDecodeError, loads

from shared import headers as h
from shared import jsondoc
from shared.errors import BadDocument, PoisonRecord
from shared.headers import KAFKA_MESSAGE, MESSAGE_HEADERS
from shared.jsondoc import SHORTEST_TOO_DEEP, too_deep
from shared.kafka.message import Message
from shared.kafka.sizes import FRAMING, HEADROOM, record_bytes
from shared.kinds import FailureKind

MAX_HEADER_BYTES = 64 * 1024
DLQ_VALUE_MAX = 4 * 1024 * 1024
DLQ_KEY_MAX = 64 * 1024
_ATTEMPT_1 = (h.ATTEMPT, b"1")


@dataclass(frozen=True, slots=True)
class Poison:
    """A record for the poison DLQ."""

    key: bytes | None
    value: bytes | None
    headers: h.HeaderList
    timestamp: int
    reason: str


def _check_headers(raw: object) -> tuple[h.HeaderList, int, int]:
    """The record's own headers without sluice's (``sluice.*``), their size, and
    how many ``sluice.*`` headers were dropped.

    PoisonRecord when they are broken. The fast path covers what the client
    delivers (a list of ``(str, bytes)``); anything else goes through
    :func:`shared.headers.check_headers`.
    """
    if type(raw) is not list:
        return _check_headers_slow(raw)
    total = 0
    reserved = False
    for item in raw:
        if type(item) is not tuple or len(item) != 2:
            return _check_headers_slow(raw)
        name, value = item
        if type(name) is not str or type(value) is not bytes or not name:
            return _check_headers_slow(raw)
        size = len(value)
        if size > h.MAX_HEADER_VALUE:
            raise PoisonRecord(
                "bad_headers", f"header {name!r:.100} is {size} bytes (max {h.MAX_HEADER_VALUE})"
            )
        if name[:7] == "sluice.":
            reserved = True
        total += len(name) + size
    if total > MAX_HEADER_BYTES:
        raise PoisonRecord("bad_headers", f"headers total {total} bytes (max {MAX_HEADER_BYTES})")
    if reserved:
        kept, dropped = h.without_reserved(raw)
        return kept, total, dropped
    return raw, total, 0


def _check_headers_slow(raw: object) -> tuple[h.HeaderList, int, int]:
    try:
        hs = h.check_headers(raw)
    except h.HeaderError as exc:
        raise PoisonRecord("bad_headers", str(exc)) from None
    return _check_headers(hs) if hs else (hs, 0, 0)


def unexpected(exc: Exception) -> PoisonRecord:
    """An error nobody foresaw while wrapping a record: the record's, as ``unprocessable``."""
    return PoisonRecord(
        "unprocessable", f"{type(exc).__name__}: {exc}"[:1024], headers_readable=False
    )


class Wrapper:
    """Turns source records into work headers, or raises PoisonRecord."""

    def __init__(
        self,
        fmt: Literal["json", "bytes"],
        max_bytes: int,
        topic: str | None = None,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        """``max_bytes``: the largest value accepted; ``max_message_bytes``: what every
        topic of the pipeline takes (a work record must fit it with
        :data:`~shared.kafka.sizes.HEADROOM` to spare). ``topic``: the one source
        topic, when known; then the hot path never asks a message for its topic
        (each call builds a new string)."""
        self.json = fmt == "json"
        self.max_bytes = max_bytes
        self.max_record = max_message_bytes - HEADROOM - FRAMING - 256  # 256: our headers
        self.max_message_bytes = max_message_bytes
        self.stripped = 0  # sluice.* headers dropped from source records so far
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

    def source_headers(self, msg: Message) -> h.HeaderList:
        """sluice's headers for ``msg``: coordinates, timestamp, attempt 1."""
        return [
            *self._prefix_for(msg.topic(), msg.partition()),
            (h.SRC_OFFSET, b"%d" % (msg.offset() or 0)),
            (h.SRC_TS, b"%d" % msg.timestamp()[1]),
            _ATTEMPT_1,
        ]

    def work_record(
        self, msg: Message, part: int, offset: int
    ) -> tuple[bytes | None, bytes, h.HeaderList]:
        """Key, value and headers of the work record for ``msg`` (read from partition
        ``part`` at ``offset``, which the caller has read already); PoisonRecord if it
        is poison. Each of the message's fields is read once (this is the hot path).

        The record's own ``sluice.*`` headers are dropped (counted in
        :attr:`stripped`): only sluice sets them.
        """
        try:  # h.read_raw inlined: this is per record
            raw = call(MESSAGE_HEADERS, msg) if type(msg) is KAFKA_MESSAGE else msg.headers()
        except SystemError:  # a header name that is not UTF-8 (see h.read_raw)
            raise PoisonRecord(
                "bad_headers", "a header name is not valid UTF-8", headers_readable=False
            ) from None
        own: h.HeaderList | None = None
        size = 0
        if raw is not None:
            own, size, stripped = _check_headers(raw)
            self.stripped += stripped
        value = msg.value()
        if value is None:
            raise PoisonRecord("undecodable", "record has no value (tombstone)")
        key = msg.key()
        size += len(value) + (len(key) if key else 0)
        if size > self.max_record or len(value) > self.max_bytes:
            self._oversize(len(value), size)
        if self.json:
            # jsondoc.loads_object inlined (this is per record): the same grammar
            # (orjson) and the same depth rule (jsondoc.too_deep)
            try:
                doc = loads(value)
            except JSONDecodeError:
                doc = None
            if type(doc) is not dict or (len(value) > SHORTEST_TOO_DEEP and too_deep(value, doc)):
                self._undecodable(value)
        prefix = self._by_partition.get(part)
        if prefix is None:
            prefix = self._prefix_for(self.topic if self.topic is not None else msg.topic(), part)
            if self.topic is not None:
                self._by_partition[part] = prefix
        ours = [
            *prefix,
            (h.SRC_OFFSET, b"%d" % offset),
            (h.SRC_TS, b"%d" % msg.timestamp()[1]),
            _ATTEMPT_1,
        ]
        return key, value, own + ours if own else ours

    @staticmethod
    def _undecodable(value: bytes) -> None:
        try:
            jsondoc.loads_object(value)
        except BadDocument as exc:
            raise PoisonRecord("undecodable", f"value is {exc}") from None
        raise AssertionError("jsondoc.loads_object and the inlined check disagree")

    def _oversize(self, value_size: int, size: int) -> None:
        if value_size > self.max_bytes:
            raise PoisonRecord("oversize", f"value is {value_size} bytes (limit {self.max_bytes})")
        raise PoisonRecord(
            "oversize",
            f"key, value and headers are {size} bytes; a work record may have "
            f"{self.max_record} (SLUICE_MAX_MESSAGE_BYTES less room for the pipeline's own)",
        )

    def poison(self, msg: Message, bad: PoisonRecord) -> Poison:
        """The poison DLQ record: raw key, value and headers, cut to fit the DLQ."""
        own: h.HeaderList = []
        if bad.headers_readable:
            with contextlib.suppress(h.HeaderError):  # broken: the reason says so
                own = h.read(msg)
        if record_bytes(None, None, own) > MAX_HEADER_BYTES:
            own = []  # too large to keep: the reason says so
        key, value = msg.key(), msg.value()
        extra: h.HeaderList = []
        if key is not None and len(key) > DLQ_KEY_MAX:
            extra.append((h.POISON_KEY_TRUNCATED, str(len(key)).encode()))
            key = key[:DLQ_KEY_MAX]
        if value is not None and len(value) > DLQ_VALUE_MAX:
            extra.append((h.POISON_TRUNCATED, str(len(value)).encode()))
            value = value[:DLQ_VALUE_MAX]
        error = [
            (h.ERROR_KIND, FailureKind.POISON.value.encode()),
            (h.ERROR_CLASS, bad.reason.encode()),
            (h.ERROR_MESSAGE, bad.message.encode()[:1024]),
        ]
        headers = h.merge(own, [*self.source_headers(msg), *error, *extra])
        return Poison(key, value, headers, msg.timestamp()[1], bad.reason)
