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
import time

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from services.ingest import metrics as m
from services.ingest.wrap import Wrapper, unexpected
from shared.errors import DeliveryError, PoisonRecord
from shared.kafka.config import consumer_config, producer_config
from shared.kafka.consume import consume_available
from shared.kafka.message import TP
from shared.kafka.producer import CheckpointProducer
from shared.kafka.shutdown import StopFlag
from shared.kafka.startup import check_topics
from shared.logs import coords
from shared.metrics import lag_stats_callback
from shared.settings import IngestSettings
from shared.topics import Topics

log = logging.getLogger(__name__)

CHECKPOINT_INTERVAL_S = 1.0


class Ingest:
    def __init__(self, settings: IngestSettings, stop: StopFlag | None = None) -> None:
        self.settings = settings
        self.topics = Topics(settings.pipeline)
        self.stop = stop or StopFlag()
        self.wrapper = Wrapper(
            settings.input_format,
            settings.max_record_bytes,
            settings.source_topic,
            settings.max_message_bytes,
        )
        self.consumed: dict[TP, int] = {}  # next offset to read, per partition
        self.committed: dict[TP, int] = {}
        self.acked = 0  # records (work + poison) acknowledged at the last checkpoint
        self._sent = 0
        self._last_checkpoint = time.monotonic()
        self.producer = CheckpointProducer(producer_config(settings))
        self.consumer = Consumer(
            consumer_config(
                settings,
                settings.group,
                **{
                    "auto.offset.reset": settings.start_from,
                    "stats_cb": lag_stats_callback(settings.group),
                    "isolation.level": "read_uncommitted",
                },
            )
        )

    # -- lifecycle ---------------------------------------------------------
    def run(self) -> None:
        self.check_topics()
        self.consumer.subscribe(
            [self.settings.source_topic],
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
            on_lost=self._on_lost,
        )
        log.info("ingest %s → %s", self.settings.source_topic, self.topics.work)
        try:
            while not self.stop.is_set():
                self.step()
        finally:
            self.close()

    def step(self) -> None:
        msgs = consume_available(self.consumer, self.settings.batch_size, 0.1)
        if msgs:
            self._forward(msgs)
        self.producer.poll(0)
        if time.monotonic() - self._last_checkpoint >= CHECKPOINT_INTERVAL_S:
            self.checkpoint(asynchronous=True)

    def check_topics(self) -> None:
        source, t = self.settings.source_topic, self.topics
        check_topics(self.consumer, self.settings, [source, t.work, t.dlq("poison")],
                     t.co_partitioned, external={source})  # fmt: skip

    def close(self) -> None:
        """Final checkpoint, then leave the group. A failed checkpoint commits nothing."""
        log.info("ingest stopping (%s): flushing and committing", self.stop.reason or "error")
        try:
            self.checkpoint(asynchronous=False)
        except (DeliveryError, KafkaException):
            log.exception("final checkpoint failed; uncommitted records will be re-read")
            raise
        finally:
            self.consumer.close()

    # -- forwarding ----------------------------------------------------------
    def _forward(self, msgs: list[Message]) -> None:
        """One pass over the batch: wrap and send each record, note positions.

        A batch holds runs of partitions; the next offset to read is noted when a
        run ends, not per record (this loop is ingest's whole cost).
        """
        work = self.topics.work
        send, work_record = self.producer.send, self.wrapper.work_record
        consumed = self.consumed
        topic = self.settings.source_topic
        n = 0
        part: int | None = None
        offset = -1
        for msg in msgs:
            err = msg.error()
            if err is not None:
                self._consumer_error(err)
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

    def _consumer_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal() or err.code() in (
            KafkaError.UNKNOWN_TOPIC_OR_PART,
            KafkaError.TOPIC_AUTHORIZATION_FAILED,
        ):
            raise KafkaException(err)
        log.warning("consumer error: %s", err)

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

    # -- checkpoints and rebalances -------------------------------------------
    def checkpoint(self, asynchronous: bool, only: set[TP] | None = None) -> None:
        """Flush, then commit the positions consumed before the flush."""
        self._last_checkpoint = time.monotonic()
        positions = {tp: o for tp, o in self.consumed.items() if only is None or tp in only}
        sent = self._sent
        self.producer.checkpoint()
        m.RECORDS_OUT.inc(sent - self.acked)
        self.acked = sent
        offsets = [
            TopicPartition(t, p, o)
            for (t, p), o in positions.items()
            if self.committed.get((t, p)) != o
        ]
        if not offsets:
            return
        if asynchronous:
            self.consumer.commit(offsets=offsets, asynchronous=True)
        else:
            self.consumer.commit(offsets=offsets, asynchronous=False)
        self.committed.update(positions)
        m.COMMITS.inc()

    def _on_assign(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        log.info("assigned %s", [f"{p.topic}[{p.partition}]" for p in parts])

    def _on_revoke(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        revoked = {(p.topic, p.partition) for p in parts}
        log.info("revoked %s: checkpointing", sorted(revoked))
        try:
            self.checkpoint(asynchronous=False, only=revoked)
        except (DeliveryError, KafkaException):
            log.exception(
                "checkpoint on revoke failed; the next owner re-reads from the last commit"
            )
        self._drop(revoked)

    def _on_lost(self, _consumer: Consumer, parts: list[TopicPartition]) -> None:
        lost = {(p.topic, p.partition) for p in parts}
        log.warning("partitions lost (no commit possible): %s", sorted(lost))
        self._drop(lost)

    def _drop(self, tps: set[TP]) -> None:
        for tp in tps:
            self.consumed.pop(tp, None)
            self.committed.pop(tp, None)


def run(settings: IngestSettings, stop: StopFlag | None = None) -> None:
    Ingest(settings, stop).run()
