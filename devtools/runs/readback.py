"""Reading a run's topics back as a ``read_committed`` consumer sees them."""

from __future__ import annotations

import time

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaException,
    Message,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient

from devtools.runs.verify import Ident, OutRec, Verdict, verdict
from shared import headers as h
from shared.errors import SluiceError
from shared.kafka.config import TAIL_READ
from shared.kafka.consume import consume_available
from shared.topics import Topics


def read_topic(bootstrap: str, topic: str, timeout_s: float = 120.0) -> list[Message]:
    """Every committed record of ``topic`` up to its current end, partition by partition."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sluice-readback-{time.time_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    try:
        md = c.list_topics(topic, timeout=10)
        if topic not in md.topics or md.topics[topic].error is not None:
            raise SluiceError(f"topic {topic} does not exist")
        # For read_committed the high watermark is the last stable offset.
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in md.topics[topic].partitions}  # fmt: skip
        pending = {p for p, end in ends.items() if end > 0}
        c.assign([TopicPartition(topic, p, 0) for p in pending])
        per_part: dict[int, list[Message]] = {p: [] for p in ends}
        deadline = time.monotonic() + timeout_s
        while pending:
            if time.monotonic() > deadline:
                raise SluiceError(f"reading {topic} back took over {timeout_s:.0f}s")
            for m in c.consume(5000, 0.5):
                if m.error() is not None:
                    continue
                p, off = m.partition() or 0, m.offset() or 0
                if off < ends[p]:
                    per_part[p].append(m)
                if off + 1 >= ends[p]:
                    pending.discard(p)
            # Offsets of transaction markers are never delivered: a partition whose
            # position reached its end is done even without a record at end - 1.
            for tp in c.position([TopicPartition(topic, p) for p in list(pending)]):
                if tp.offset >= ends[tp.partition]:
                    pending.discard(tp.partition)
        return [m for p in sorted(per_part) for m in per_part[p]]
    except KafkaException as exc:
        raise SluiceError(f"reading {topic} back failed: {exc}") from None
    finally:
        c.close()


def ident(m: Message) -> Ident:
    src = h.source_id(m.headers())
    return (src.topic, src.partition, src.offset)


def first_attempt_times(
    bootstrap: str, work_topic: str, source: str | None = None
) -> dict[Ident, int]:
    """Source record → the time (ms) its first attempt was written to ``work_topic``
    (``P.work``): when ingest handed it on. ``source``: only that source topic's."""
    return {ident(m): m.timestamp()[1] for m in read_topic(bootstrap, work_topic)
            if h.get_int(m.headers(), h.ATTEMPT) == 1
            and (source is None or h.source_id(m.headers()).topic == source)}  # fmt: skip


def out_rec(m: Message) -> OutRec:
    hs = m.headers()
    ts = m.timestamp()[1]
    src_ts = h.get_str(hs, h.SRC_TS)
    latency = ts - int(src_ts) if ts > 0 and src_ts and src_ts.isdigit() else None
    return OutRec(
        ident=ident(m),
        key=m.key(),
        ok=h.get_str(hs, h.OUTCOME) == "ok",
        late=h.get_str(hs, h.LATE) == "true",
        latency_ms=latency,
    )


def check_run(
    bootstrap: str, topics: Topics, source_topic: str, gap_markers: bool = True
) -> Verdict:
    """Read the source, ``P.output`` and the DLQs and judge the run."""
    source = [(source_topic, m.partition() or 0, m.offset() or 0)
              for m in read_topic(bootstrap, source_topic)]  # fmt: skip
    outputs = [out_rec(m) for m in read_topic(bootstrap, topics.output)]
    dlq = [ident(m) for t in topics.dlqs if t != topics.dlq("poison")
           for m in read_topic(bootstrap, t)]  # fmt: skip
    poison = [ident(m) for m in read_topic(bootstrap, topics.dlq("poison"))]
    return verdict(source, outputs, dlq, poison, gap_markers)


class Tail:
    """A ``read_committed`` reader that follows topics from the start, for live counts.

    Its fetches wait at most 50 ms at the broker (librdkafka's default is 500): at a few
    records/s, a ``read_committed`` fetch parked at the broker was often answered only
    when that wait ran out, not when the sequencer's commit made the records readable,
    and the benches that time records with it measured that wait.

    ``lazy``: for topics whose records are timed by their own timestamps, not by when
    they are read. The broker then holds each fetch up to 100 ms for more records
    (``TAIL_READ``, as the replay runner's outcome reads); a busy topic read eagerly
    costs the broker (on the pipeline's cores) a fetch per record or two."""

    def __init__(self, bootstrap: str, topics: list[str], lazy: bool = False) -> None:
        fetch = TAIL_READ if lazy else {"fetch.wait.max.ms": 50}
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"sluice-tail-{time.time_ns()}",
                           "enable.auto.commit": False, "isolation.level": "read_committed",
                           **fetch})  # fmt: skip
        parts = []
        for topic in topics:
            md = self.c.list_topics(topic, timeout=10)
            parts += [TopicPartition(topic, p, 0) for p in md.topics[topic].partitions]
        self.c.assign(parts)

    def poll(self, max_s: float = 0.2) -> list[Message]:
        """What arrived since the last call: returns as soon as something did, or after
        ``max_s``; whatever is already fetched comes along."""
        return [m for m in consume_available(self.c, 5000, max_s) if m.error() is None]

    def close(self) -> None:
        self.c.close()


class Probe:
    """End offsets and a group's committed offsets (cheap: nothing is read)."""

    def __init__(self, bootstrap: str) -> None:
        self.c = Consumer(
            {"bootstrap.servers": bootstrap, "group.id": f"sluice-probe-{time.time_ns()}"}
        )
        self.admin = AdminClient({"bootstrap.servers": bootstrap})

    def _parts(self, topic: str) -> list[TopicPartition]:
        md = self.c.list_topics(topic, timeout=10)
        return [TopicPartition(topic, p) for p in md.topics[topic].partitions]

    def end(self, topic: str) -> int:
        return sum(self.c.get_watermark_offsets(tp, timeout=10)[1] for tp in self._parts(topic))

    def committed(self, group: str, topic: str) -> dict[int, int]:
        """Partition → the offset ``group`` has committed on ``topic`` (0: none)."""
        req = [ConsumerGroupTopicPartitions(group, self._parts(topic))]
        got = self.admin.list_consumer_group_offsets(req)[group].result(10)
        return {tp.partition: max(tp.offset, 0) for tp in got.topic_partitions}

    def lag(self, group: str, topic: str) -> int:
        """Records of ``topic`` that ``group`` has not committed past."""
        return sum(
            max(0, self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] - off)
            for p, off in self.committed(group, topic).items()
        )

    def close(self) -> None:
        self.c.close()
