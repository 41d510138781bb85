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

import json
import zlib
from typing import Any, Protocol

from services.sequencer.model import Announcement, Emit, Kind, Outcome
from shared import headers as h
from shared.outcomes import decode_input

KINDS: dict[str, Kind] = {"ok": "ok", "dead": "dead", "release": "release"}


class Msg(Protocol):
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> object: ...


class Malformed(ValueError):
    """A record the sequencer cannot place (missing or broken sluice headers)."""


def announcement(msg: Msg) -> Announcement | None:
    """The announcement a work record makes, or None for a later attempt."""
    try:
        hs = h.check_headers(msg.headers())
        if h.get_int(hs, h.ATTEMPT) != 1:
            return None
        return Announcement(h.source_id(hs), msg.key())
    except h.HeaderError as exc:
        raise Malformed(str(exc)) from None


def outcome(msg: Msg) -> Outcome:
    try:
        hs = h.check_headers(msg.headers())
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
    if o.kind == "ok":
        try:
            doc = json.loads(o.value) if o.value is not None else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            doc = {"input": decode_input(o.value)}
        out: dict[str, Any] = {"enrichment": doc.get("enrichment"), "input": doc.get("input"),
                               "task": doc.get("task"), "outcome": "ok"}  # fmt: skip
    else:
        out = {"enrichment": None, "input": decode_input(o.value), "task": None,
               "outcome": "dead", "error": {
                   "kind": h.get_str(o.headers, h.ERROR_KIND),
                   "class": h.get_str(o.headers, h.ERROR_CLASS),
                   "message": h.get_str(o.headers, h.ERROR_MESSAGE)}}  # fmt: skip
    return json.dumps(out).encode()


def output_record(e: Emit) -> tuple[bytes | None, bytes, h.HeaderList]:
    """Key, value and headers of the ``P.output`` record for ``e``."""
    ours: h.HeaderList = [(h.OUTCOME, e.outcome.kind.encode())]
    if e.late:
        ours.append((h.LATE, b"true"))
    return e.outcome.key, output_value(e.outcome), h.merge(e.outcome.headers, ours)
