"""A DLQ record made a ``P.work`` record again, for one replay (pure).

    record = work_record(consumed, replay_id)

Key, value and the record's own headers are kept. It goes back as attempt 1
(a fresh climb of the retry ladder) with ``sluice.replay-id`` set and
``sluice.replay-count`` one higher than the DLQ record's (an unreadable count
counts as 0). What the last death added is dropped: the error fields
(``sluice.error.kind|class|message``: the next failure writes its own), the
router's due time and retry-after, the outcome, ``sluice.late`` and the
``kafka_dlt-*`` headers (the router writes them again if it dies again).
``sluice.error.history`` stays: it is bounded (``shared.outcomes.HISTORY_MAX``),
so a record's headers do not grow however often it is replayed.

A record whose ``sluice.src.*`` are missing but whose ``kafka_dlt-original-*``
say where it came from gets its identity back from those (the sequencer
needs it); :func:`services.admin.dlq.facts.source_of` reads both.
"""

from __future__ import annotations

from services.admin.dlq.facts import replay_count, source_of
from shared import headers as h
from shared.envelope import Consumed, original_timestamp
from shared.outcomes import Record

DLT_PREFIX = "kafka_dlt-"
DROPPED = frozenset({h.ERROR_KIND, h.ERROR_CLASS, h.ERROR_MESSAGE, h.NOT_BEFORE, h.RETRY_AFTER,
                     h.OUTCOME, h.LATE, h.ATTEMPT, h.REPLAY_ID, h.REPLAY_COUNT})  # fmt: skip


def work_record(c: Consumed, replay_id: str) -> Record:
    """The ``P.work`` record that replays ``c`` under ``replay_id``."""
    kept = [(n, v) for n, v in c.headers if n not in DROPPED and not n.startswith(DLT_PREFIX)]
    ours: h.HeaderList = []
    src = source_of(c.headers)
    if src is not None:
        try:
            h.source_id(c.headers)
        except h.HeaderError:
            ours += [x for x in h.source_headers(src, original_timestamp(c)) if x[0] != h.ATTEMPT]
    ours += [
        (h.ATTEMPT, b"1"),
        (h.REPLAY_ID, replay_id.encode()),
        (h.REPLAY_COUNT, b"%d" % (replay_count(c.headers) + 1)),
    ]
    return Record(c.key, c.value, h.merge(kept, ours))
