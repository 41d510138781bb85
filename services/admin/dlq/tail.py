"""An incremental read of one topic that goes on where the last poll stopped (I/O, blocking).

    tail = Tail(tailing_consumer(settings), topic, start)  # start None: from the end
    tail.poll(Budget(0.5, 50_000), visit)                  # again and again

The consumer is assigned once, at the first poll (every partition of the
topic at its start offset; a partition not in ``start``, or below the log
start, from its first record). It fetches in the background from then on
(``read_committed``: up to the last stable offset). A poll hands out what it
has fetched by then (at most the budget) and never waits for more: on a topic
that receives records all the time, a poll that waited for a quiet moment ran
to the end of its budget, and the runner, which reads and sends on one
thread, sent nothing meanwhile. Nothing is re-assigned between polls: a fetch
in flight is never dropped, and what arrives after a poll is handed out at
the next one. The replay runner reads its outcomes this way; re-assigning a
consumer at each read (every 0.2 s while a window waits) let reads miss the
records they were waiting for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, TopicPartition

from services.admin.dlq.reader import Budget, passing_error
from shared.envelope import Consumed
from shared.errors import StackError


class Tail:
    def __init__(self, consumer: Consumer, topic: str, start: Mapping[int, int] | None) -> None:
        self.consumer = consumer
        self.topic = topic
        # the next offset to read per partition; None until the first poll when reading from the end
        self.positions: dict[int, int] | None = dict(start) if start is not None else None
        self._assigned = False

    def poll(self, budget: Budget, visit: Callable[[Consumed], None]) -> int:
        """Hand what is readable now to ``visit`` (within ``budget``); how many records."""
        deadline = time.monotonic() + budget.seconds
        try:
            if not self._assigned:
                self._assign(max(0.5, budget.seconds))
            read = 0
            while read < budget.records and deadline > time.monotonic():
                batch = self.consumer.consume(500, 0)
                if not batch:
                    break
                for m in batch:  # every record of a batch: the consumer has moved past it
                    err = m.error()
                    if err is not None:
                        if err.code() != KafkaError._PARTITION_EOF:
                            passing_error(err, self.topic, m.partition() or 0)
                        continue
                    assert self.positions is not None
                    self.positions[m.partition() or 0] = (m.offset() or 0) + 1
                    visit(Consumed.of(m))
                    read += 1
            return read
        except KafkaException as exc:
            raise StackError(f"cannot read {self.topic}: {exc}") from exc

    def _assign(self, timeout: float) -> None:
        md = self.consumer.list_topics(self.topic, timeout=timeout).topics.get(self.topic)
        if md is None or md.error is not None or not md.partitions:
            raise StackError(f"topic {self.topic!r} does not exist: run `sluice topics create`")
        if self.positions is None:  # from the end: what comes after now
            self.positions = {
                p: self.consumer.get_watermark_offsets(
                    TopicPartition(self.topic, p), timeout=timeout
                )[1]
                for p in sorted(md.partitions)
            }
        start = self.positions
        self.consumer.assign([TopicPartition(self.topic, p, start.get(p, OFFSET_BEGINNING))
                              for p in sorted(md.partitions)])  # fmt: skip
        self._assigned = True
