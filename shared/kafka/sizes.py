"""How large a record may be on its way through the pipeline (pure).

Every topic of the pipeline takes records up to ``SLUICE_MAX_MESSAGE_BYTES``
(``sluice topics create`` sets ``max.message.bytes`` to that plus the framing
allowance). A stage checks a record's size before producing it, so a record
that would not fit becomes that record's failure instead of a produce error
that stops the stage:

* ingest forwards a source record only if it fits with :data:`HEADROOM`
  to spare, room for the headers later stages add (error fields, bounded
  history, dead-letter headers) and for a result's own fields;
* enrich checks each outcome against the full budget (kind ``oversize``);
* the sequencer checks each output record (a gap marker takes its place);
* ingest cuts a poison record's key and value to fit ``P.dlq.poison``.

Sizes are counted uncompressed: a record that fits uncompressed fits on the
wire whatever the compression.
"""

from __future__ import annotations

from collections.abc import Iterable

FRAMING = 1024
"""Record-batch and record framing, generously: a batch header is 61 bytes."""

HEADROOM = 64 * 1024
"""What ingest leaves for later stages' headers and a result's own fields."""


def record_bytes(
    key: bytes | None, value: bytes | None, headers: Iterable[tuple[str, bytes]] | None
) -> int:
    """The uncompressed size of one record's key, value and headers."""
    size = (len(key) if key else 0) + (len(value) if value else 0)
    if headers:
        for name, v in headers:
            size += len(name.encode()) + (len(v) if v else 0) + 8
    return size


def fits(size: int, max_message_bytes: int) -> bool:
    """Whether a record of ``size`` bytes fits a topic of the pipeline."""
    return size + FRAMING <= max_message_bytes


def topic_max_message_bytes(max_message_bytes: int) -> int:
    """The ``max.message.bytes`` that ``sluice topics create`` gives each topic."""
    return max_message_bytes + FRAMING
