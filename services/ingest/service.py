"""The ingest loop: consume the source, forward to ``P.work``, commit what is acked.

No LLM and no per-record network call other than Kafka. Records are
forwarded as they are consumed; about once a second the loop takes a
checkpoint: it notes the consumed positions, flushes the producer (every
record produced so far is then acknowledged by the broker) and commits those
positions. On revoke and on shutdown the same checkpoint runs synchronously
for the partitions concerned. A delivery failure stops the service without
committing past it: a restart re-reads from the last checkpoint.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from services.ingest import metrics as m
from services.ingest.wrap import Wrapper, unexpected
from shared.errors import PoisonRecord
from shared.kafka.clients import KAFKA, Clients
from shared.kafka.commits import Checkpoints
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.loop import ConsumerLoop, Handler, Subscription, consumer_error
from shared.kafka.message import Message
from shared.kafka.producer import CheckpointProducer
from shared.kafka.shutdown import StopFlag
from shared.logs import coords
from shared.metrics import lag_stats_callback
from shared.settings import IngestSettings
from shared.topics import Topics

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0
POLL_WAIT_S = 0.1


class Ingest(Handler):
    def __init__(self, settings: IngestSettings, stop: StopFlag | None = None,
                 clients: Clients = KAFKA) -> None:  # fmt: skip
        self.settings = settings
        self.topics = Topics(settings.pipeline)
        self.stop = stop or StopFlag()
        self.wrapper = Wrapper(
            settings.input_format,
            settings.max_record_bytes,
            settings.source_topic,
            settings.max_message_bytes,
        )
        self.acked = 0  # records (work + poison) acknowledged at the last checkpoint
        self._sent = 0
        self.producer = CheckpointProducer(producer_config(settings), clients.producer)
        self.consumer = clients.consumer(
            consumer_config(
                settings,
                settings.group,
                **{
                    "auto.offset.reset": settings.start_from,
                    "stats_cb": lag_stats_callback(settings.group),
                    "isolation.level": "read_uncommitted",
                    "on_commit": self._commit_result,
                },
            )
        )
        self.commits = Checkpoints(self.consumer, self._flush, CHECKPOINT_INTERVAL_S, m.COMMITS.inc)
        source, t = settings.source_topic, self.topics
        subscription = Subscription([source], [t.work, t.dlq("poison")], t.co_partitioned,
                                    external={source}, reset=settings.start_from)  # fmt: skip
        self.loop = ConsumerLoop("ingest", settings, self.consumer, subscription, self,
                                 self.commits, self.stop, settings.batch_size, POLL_WAIT_S)  # fmt: skip

    def run(self) -> None:
        self.loop.run()

    def _commit_result(self, err: KafkaError | None, parts: list[TopicPartition]) -> None:
        self.commits.commit_result(err, parts)

    def started(self, partitions: dict[str, int]) -> None:
        log.info("ingest %s → %s", self.settings.source_topic, self.topics.work)

    def after_batch(self) -> None:
        self.producer.poll(0)

    def _flush(self) -> None:
        """Everything sent so far is acknowledged when this returns (else DeliveryError)."""
        sent = self._sent
        self.producer.checkpoint()
        m.RECORDS_OUT.inc(sent - self.acked)
        self.acked = sent

    # -- forwarding ----------------------------------------------------------
    def handle(self, msgs: Sequence[Message]) -> None:
        """One pass over the batch: wrap and send each record, note positions.

        A batch holds runs of partitions; the next offset to read is noted when a
        run ends, not per record (this loop is ingest's whole cost).
        """
        work = self.topics.work
        send, work_record = self.producer.send, self.wrapper.work_record
        consumed = self.commits.pending
        topic = self.settings.source_topic
        n = 0
        part: int | None = None
        offset = -1
        for msg in msgs:
            err = msg.error()
            if err is not None:
                consumer_error(err)
                continue
            p = msg.partition() or 0
            if p != part:
                if part is not None:
                    consumed[(topic, part)] = offset + 1
                part = p
            offset = msg.offset() or 0
            try:
                key, value, headers = work_record(msg, p, offset)
                send(work, value, key, headers)
            except PoisonRecord as bad:
                self._send_poison(msg, bad)
            except (BufferError, KafkaException):
                raise  # the producer's problem, not the record's
            except Exception as exc:  # anything else is this record's failure
                log.exception("cannot wrap record; it goes to the poison DLQ")
                self._send_poison(msg, unexpected(exc))
            n += 1
        if part is not None:
            consumed[(topic, part)] = offset + 1
        self._sent += n
        m.RECORDS_IN.inc(n)
        if self.wrapper.stripped:
            m.HEADERS_STRIPPED.inc(self.wrapper.stripped)
            self.wrapper.stripped = 0

    def _send_poison(self, msg: Message, bad: PoisonRecord) -> None:
        p = self.wrapper.poison(msg, bad)
        self._log_poison(msg, p.reason)
        self.producer.send_at(self.topics.dlq("poison"), p.value, p.key, p.headers, p.timestamp)

    def _log_poison(self, msg: Message, reason: str) -> None:
        m.POISON.labels(reason).inc()
        log.warning(
            "poison record → %s (%s)",
            self.topics.dlq("poison"),
            reason,
            extra={
                "record": coords(
                    msg.topic() or "", msg.partition() or 0, msg.offset() or 0, msg.key()
                )
            },
        )


def run(settings: IngestSettings, stop: StopFlag | None = None) -> None:
    Ingest(settings, stop).run()
