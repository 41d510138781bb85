"""``sluice tickets``: produce sample support tickets to a source topic (compose's ``demo``).

The tickets of :func:`devtools.runs.tickets.tickets` (skewed keys, a little poison), sent
at ``--rate`` records/s to ``--topic`` (default ``SLUICE_SOURCE_TOPIC``) with the Kafka
settings every sluice service reads (``SLUICE_KAFKA_BOOTSTRAP``, ``SLUICE_KAFKA_PROP_*``).
It ends once the broker has acknowledged every record and prints one JSON line:
``{"topic": ..., "produced": N}``. A pipeline must be running to see them through.
"""

from __future__ import annotations

import argparse
import json
import time

from devtools.runs.tickets import tickets
from shared.kafka.producer import CheckpointProducer
from shared.kafka.rdlog import rdkafka_logger
from shared.settings import IngestSettings, load_with_flags


def due(elapsed_s: float, rate: float, total: int) -> int:
    """How many records a paced producer has sent ``elapsed_s`` after it began (pure)."""
    return min(total, int(elapsed_s * rate))


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice tickets", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--topic", help="overrides SLUICE_SOURCE_TOPIC")
    parser.add_argument("--records", type=int, default=1_000)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--rate", type=float, default=50.0, help="records/s (default 50)")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    if args.records < 1 or args.keys < 1 or args.rate <= 0:
        parser.error("--records, --keys and --rate must be positive")
    settings = load_with_flags(IngestSettings, source_topic=args.topic)
    data = tickets(args.records, args.keys, seed=args.seed)
    producer = CheckpointProducer(settings.kafka_config("producer", **{
        "linger.ms": 10, "partitioner": "murmur2_random", "message.timeout.ms": 30_000,
        "logger": rdkafka_logger()}))  # fmt: skip
    start, sent = time.monotonic(), 0
    while sent < len(data):
        for key, value in data[sent : due(time.monotonic() - start, args.rate, len(data))]:
            producer.send(settings.source_topic, value, key, None)
            sent += 1
        producer.poll(0.05)
    producer.checkpoint(timeout=60.0)
    print(json.dumps({"topic": settings.source_topic, "produced": sent}), flush=True)
    return 0
