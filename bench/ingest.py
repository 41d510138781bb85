"""``sluice bench ingest``: ingest throughput vs raw consume-then-produce loops.

All run in this process, one after the other, on the same broker and the same
source topic (each with its own consumer group), over several rounds; the
best round of each counts.

* **baseline**: the minimal loop teams write by hand: consume a batch,
  produce each record as it is, auto-commit.
* **stamping baseline**: the same loop, also adding the five headers every
  work record must carry (``sluice.src.*`` and ``sluice.attempt``) the
  cheapest way Python allows; nothing else.
* **sluice ingest**: stamping plus what the raw loops skip: the record's own
  headers checked, the value decoded, poison routed to the DLQ, offsets
  committed only for what the broker acknowledged.

``ratio`` = sluice / baseline (what the header contract and sluice cost
together), ``stamping_ratio`` = stamping baseline / baseline (what the header
contract costs any implementation on this client), ``ratio_vs_stamping`` =
sluice / stamping baseline (what sluice itself costs). The target is
``ratio_vs_stamping >= 0.9``.
"""

from __future__ import annotations

import argparse
import logging
import time
import uuid

from confluent_kafka import Consumer, Producer

from bench.common import emit, fill, make_topic
from devtools.stack.resolve import acquire
from services.ingest.service import Ingest
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, IngestSettings, load

log = logging.getLogger(__name__)


def baseline(bootstrap: str, source: str, sink: str, n: int, stamp: bool = False) -> float:
    """Records/s of a raw confluent-kafka consume-then-produce loop.

    ``stamp``: the loop also adds the five headers every work record must carry
    (source topic, partition, offset, timestamp, attempt) the cheapest way
    Python allows, and nothing else (no checks, no decode, auto-commit). The
    gap between the two baselines is what the header contract costs any
    implementation on this client; the gap between this one and sluice is
    sluice's own.
    """
    prefixes: dict[int, list[tuple[str, bytes]]] = {}
    consumer = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"baseline-{uuid.uuid4().hex[:6]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": True,
    })  # fmt: skip
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                         "compression.type": "lz4"})  # fmt: skip
    consumer.subscribe([source])
    done = 0
    start = None
    while done < n:
        msgs = consumer.consume(2000, 0.1)
        if msgs and start is None:
            start = time.perf_counter()
        for m in msgs:
            if m.error():
                continue
            hs = m.headers()
            if stamp:
                part = m.partition() or 0
                prefix = prefixes.get(part)
                if prefix is None:
                    prefix = prefixes[part] = [
                        (h.SRC_TOPIC, source.encode()), (h.SRC_PARTITION, b"%d" % part)]  # fmt: skip
                hs = [*(hs or ()), *prefix, (h.SRC_OFFSET, b"%d" % (m.offset() or 0)),
                      (h.SRC_TS, b"%d" % m.timestamp()[1]), (h.ATTEMPT, b"1")]  # fmt: skip
            while True:
                try:
                    producer.produce(sink, m.value(), m.key(), headers=hs)
                    break
                except BufferError:
                    producer.poll(0.05)
            done += 1
        producer.poll(0)
    producer.flush(60)
    elapsed = time.perf_counter() - (start or time.perf_counter())
    consumer.close()
    return n / elapsed


def sluice_ingest(settings: IngestSettings, n: int) -> float:
    ing = Ingest(settings)
    ing.loop.start()
    start = None
    try:
        while ing.acked < n:
            ing.loop.step()
            if start is None and ing.commits.pending:
                start = time.perf_counter()
            if sum(ing.commits.pending.values()) >= n:
                ing.commits.commit()
        elapsed = time.perf_counter() - (start or time.perf_counter())
    finally:
        ing.stop.set("bench over")
        ing.loop.close()
    return n / elapsed


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice bench ingest", description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--format", choices=["json", "bytes"], default="json", help="ingest's input format"
    )
    args = parser.parse_args(argv)
    with acquire(need_redis=False) as stack:
        pipeline = f"bench{uuid.uuid4().hex[:6]}"
        source = f"{pipeline}.source"
        make_topic(stack.bootstrap, source, args.partitions)
        make_topic(stack.bootstrap, f"{pipeline}.baseline-out", args.partitions)
        common = {
            "kafka_bootstrap": stack.bootstrap,
            "pipeline": pipeline,
            "partitions": args.partitions,
        }
        create_topics(load(CommonSettings, **common), source)
        print(f"filling {source} with {args.records} records ...", flush=True)
        fill(stack.bootstrap, source, args.records)
        base, stamped, ours = [], [], []
        sink = f"{pipeline}.baseline-out"
        for r in range(args.rounds):
            base.append(baseline(stack.bootstrap, source, sink, args.records))
            stamped.append(baseline(stack.bootstrap, source, sink, args.records, stamp=True))
            settings = load(IngestSettings, **common, source_topic=source, group_id=f"{pipeline}.ingest{r}",
                            input_format=args.format)  # fmt: skip
            ours.append(sluice_ingest(settings, args.records))
            print(
                f"round {r + 1}: baseline {base[-1]:,.0f} rec/s   stamping baseline "
                f"{stamped[-1]:,.0f} rec/s   sluice ingest {ours[-1]:,.0f} rec/s",
                flush=True,
            )
    b, st, s = max(base), max(stamped), max(ours)
    emit({"bench": "ingest", "records": args.records, "partitions": args.partitions, "rounds": args.rounds,
          "format": args.format,
          "sluice_rps": round(s), "baseline_rps": round(b), "stamping_baseline_rps": round(st),
          "stamping_ratio": round(st / b, 3), "ratio_vs_stamping": round(s / st, 3),
          "ratio": round(s / b, 3), "targets_met": {"ratio_vs_stamping>=0.9": s / st >= 0.9}})  # fmt: skip
    return 0
