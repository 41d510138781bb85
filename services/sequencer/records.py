"""Input records to events, emits to output records (pure).

Input: a ``P.work`` record with ``sluice.attempt=1`` is an :class:`Announcement`
(later attempts are ignored); a ``P.results`` record is an :class:`Outcome`
(``sluice.outcome`` ok, dead or release). Both need the ``sluice.src.*``
headers; without them a record is malformed.

Unkeyed outcomes land in any partition (no key to hash), and so do their
duplicates. Each unkeyed identity has a *home* partition (:func:`home`); an
unkeyed outcome read elsewhere is forwarded to ``P.results[home]`` inside the
transaction, and only the home partition's state emits it and drops its
duplicates.

Output (``P.output``): key = the source key; headers = the outcome's headers
(source coordinates, provider, model, latency, tokens, the record's own) with
``sluice.outcome`` and, for a late replay, ``sluice.late=true``; value = JSON
``{"enrichment", "input", "task", "outcome"}``. A gap marker (a dead record
skipped) has ``"outcome": "dead"``, null task and enrichment, the original
input, and ``"error": {"kind", "class", "message"}`` from the error headers.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

from services.sequencer.model import Announcement, Emit, Kind, Outcome
from shared import headers as h
from shared import jsondoc
from shared.errors import BadDocument
from shared.kafka.message import Message
from shared.kafka.sizes import fits, record_bytes

KINDS: dict[str, Kind] = {"ok": "ok", "dead": "dead", "release": "release"}


class Malformed(ValueError):
    """A record the sequencer cannot place (missing or broken sluice headers)."""


def announcement(msg: Message) -> Announcement | None:
    """The announcement a work record makes, or None for a later attempt."""
    try:
        hs = h.read(msg)
        if h.get_int(hs, h.ATTEMPT) != 1:
            return None
        return Announcement(h.source_id(hs), msg.key())
    except h.HeaderError as exc:
        raise Malformed(str(exc)) from None


def outcome(msg: Message) -> Outcome:
    try:
        hs = h.read(msg)
        ident = h.source_id(hs)
    except h.HeaderError as exc:
        raise Malformed(str(exc)) from None
    name = h.get_str(hs, h.OUTCOME)
    kind = KINDS.get(name or "")
    if kind is None:
        raise Malformed(f"header {h.OUTCOME} is {name!r}, not ok, dead or release")
    return Outcome(ident, msg.key(), kind, msg.value(), tuple(hs))


def home(ident: h.SourceId, partitions: int) -> int:
    """The input partition that deduplicates unkeyed records of this source partition."""
    return zlib.crc32(f"{ident.topic}\0{ident.partition}".encode()) % partitions


def output_value(o: Outcome) -> bytes:
    """The ``P.output`` value for ``o``; never raises, whatever the outcome holds.

    The input is never decoded for its own sake: a result document (decoded by
    the pipeline's one decoder, so within its depth limit) is re-encoded; a gap
    marker embeds the dead record's value verbatim when that decoder accepts it
    (else as base64).
    """
    if o.kind == "ok":
        try:
            doc = jsondoc.loads(o.value) if o.value is not None else None
        except BadDocument:
            doc = None
        if not isinstance(doc, dict):
            doc = {"input": jsondoc.embeddable(o.value)}
        out: dict[str, Any] = {"enrichment": doc.get("enrichment"), "input": doc.get("input"),
                               "task": doc.get("task"), "outcome": "ok"}  # fmt: skip
    else:
        out = {"enrichment": None, "input": jsondoc.embeddable(o.value), "task": None,
               "outcome": "dead", "error": _error(o.headers)}  # fmt: skip
    return jsondoc.dumps(out)


def _error(headers: Sequence[tuple[str, bytes]]) -> dict[str, str | None]:
    return {"kind": h.get_str(headers, h.ERROR_KIND), "class": h.get_str(headers, h.ERROR_CLASS),
            "message": h.get_str(headers, h.ERROR_MESSAGE)}  # fmt: skip


def too_large_value(size: int, limit: int) -> bytes:
    """What is emitted instead of an output record that would not fit ``P.output``."""
    return jsondoc.dumps({"enrichment": None, "input": None, "task": None, "outcome": "dead",
                          "error": {"kind": "oversize", "class": "output_too_large",
                                    "message": f"the output record would be {size} bytes; "
                                               f"the pipeline's topics take {limit}"}})  # fmt: skip


def output_record(
    e: Emit, max_message_bytes: int = 1_048_576
) -> tuple[bytes | None, bytes, h.HeaderList]:
    """Key, value and headers of the ``P.output`` record for ``e``.

    An output record that would not fit the topic becomes a dead marker that
    says so (enrich keeps results within the budget, so this is a last guard).
    """
    ours: h.HeaderList = [(h.OUTCOME, e.outcome.kind.encode())]
    if e.late:
        ours.append((h.LATE, b"true"))
    value = output_value(e.outcome)
    headers = h.merge(e.outcome.headers, ours)
    size = record_bytes(e.outcome.key, value, headers)
    if not fits(size, max_message_bytes):
        value = too_large_value(size, max_message_bytes)
        headers = h.merge(e.outcome.headers, [(h.OUTCOME, b"dead")])
    return e.outcome.key, value, headers
