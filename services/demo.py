"""``sluice demo``: the pipeline end to end on the local stack, with live progress.

It starts (or finds) Kafka and Redis, provisions the topics, starts fakellm
and the sluice services as real processes, produces a realistic, skewed set
of support tickets (with a little poison mixed in) and shows each stage's
progress. The summary's last line is one JSON object.

Stages in this release: ingest. The enrich, router and sequencer
stages join the demo as they land; the summary names what ran.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared import headers as h
from shared.errors import SluiceError
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.stack.resolve import Stack, acquire
from shared.topics import Topics

TEXTS = (
    "I was charged twice for my invoice, please refund the extra payment",
    "Great support, the login issue is fixed. Thanks a lot!",
    "The package arrived late and the box was damaged",
    "The app crashes every time I open settings, looks like a bug",
    "How do I change my shipping address for the next order?",
    "Password reset email never arrives, I cannot log in",
    "Love the new dashboard, works perfectly",
)
POISON = (b"{this is not json", b"[1, 2, 3]", b"\xff\xfe binary junk")


def tickets(n: int, keys: int, seed: int = 7) -> list[tuple[bytes, bytes]]:
    """Skewed keys (a few customers write a lot), ~0.5% poison records."""
    rnd = random.Random(seed)
    out = []
    for i in range(n):
        cust = min(int(rnd.paretovariate(1.2)) - 1, keys - 1)
        key = f"customer-{cust}".encode()
        if rnd.random() < 0.005:
            out.append((key, rnd.choice(POISON)))
        else:
            doc = {"ticket_id": i, "customer": key.decode(), "text": rnd.choice(TEXTS)}
            out.append((key, json.dumps(doc).encode()))
    return out


def _end_total(consumer: Consumer, topic: str) -> int:
    md = consumer.list_topics(topic, timeout=10)
    return sum(
        consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in md.topics[topic].partitions
    )


def _committed_total(consumer: Consumer, topic: str) -> int:
    md = consumer.list_topics(topic, timeout=10)
    parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
    return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))


def _read_ids(bootstrap: str, topic: str) -> Counter[tuple[int, int]]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-verify-{time.time_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    md = c.list_topics(topic, timeout=10)
    ends = {
        p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in md.topics[topic].partitions
    }
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    ids: Counter[tuple[int, int]] = Counter()
    seen = dict.fromkeys(ends, 0)
    deadline = time.monotonic() + 120
    while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for m in c.consume(5000, 0.5):
            if m.error() is None:
                src = h.source_id(m.headers())
                ids[(src.partition, src.offset)] += 1
                seen[m.partition()] = (m.offset() or 0) + 1
    c.close()
    return ids


def _spawn(name: str, env: dict[str, str], log_dir: str, *args: str) -> subprocess.Popen[bytes]:
    out = open(os.path.join(log_dir, f"{name}.log"), "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "services.cli", name, *args], env={**os.environ, **env},
                            stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice demo", description=__doc__)
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--rate", type=float, default=5000.0, help="records/s produced to the source topic"
    )
    args = parser.parse_args(argv)
    console = Console(stderr=True)
    with console.status("starting Kafka and Redis ..."):
        stack = acquire()
    try:
        return _demo(args, stack, console)
    finally:
        with console.status("stopping the local stack ..."):
            stack.close()


def _demo(args: argparse.Namespace, stack: Stack, console: Console) -> int:
    pipeline = f"demo{int(time.time()) % 100000}"
    topics = Topics(pipeline)
    source = f"{pipeline}.tickets"
    console.print(
        f"Kafka {stack.bootstrap} ({stack.kafka_source}) · Redis {stack.redis_url} ({stack.redis_source})"
    )
    settings = load(
        CommonSettings,
        kafka_bootstrap=stack.bootstrap,
        pipeline=pipeline,
        partitions=args.partitions,
    )
    ensure_topic(settings, source, args.partitions)
    create_topics(settings, source)
    log_dir = os.path.abspath(os.path.join(".sluice", "demo", pipeline))
    os.makedirs(log_dir, exist_ok=True)
    env = {"SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap, "SLUICE_REDIS_URL": stack.redis_url,
           "SLUICE_PIPELINE": pipeline, "SLUICE_SOURCE_TOPIC": source, "SLUICE_LOG_FORMAT": "json"}  # fmt: skip
    procs = {"ingest": _spawn("ingest", env, log_dir)}
    data = tickets(args.records, args.keys)
    producer = Producer(
        {"bootstrap.servers": stack.bootstrap, "linger.ms": 10, "partitioner": "murmur2_random"}
    )
    probe = Consumer({"bootstrap.servers": stack.bootstrap, "group.id": f"{pipeline}.ingest"})
    start = time.monotonic()
    cols = (
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*cols, console=console) as progress:
            t_src = progress.add_task("produced", total=len(data), note="")
            t_ing = progress.add_task("ingested", total=len(data), note="")
            t_poi = progress.add_task("poison", total=None, note="")
            sent = 0
            while True:
                due = min(len(data), int((time.monotonic() - start) * args.rate))
                while sent < due:
                    key, value = data[sent]
                    producer.produce(source, value, key)
                    sent += 1
                producer.poll(0)
                try:
                    work = _end_total(probe, topics.work)
                    poison = _end_total(probe, topics.dlq("poison"))
                    committed = _committed_total(probe, source)
                    lag = _end_total(probe, source) - committed
                except KafkaException:
                    time.sleep(0.25)  # a partition without its leader yet, or a broker hiccup
                    continue
                progress.update(t_src, completed=sent)
                progress.update(t_ing, completed=min(work + poison, len(data)), note=f"lag {lag}")
                progress.update(
                    t_poi, completed=poison, note="undecodable input, kept with its reason"
                )
                for name, p in procs.items():
                    if p.poll() is not None:
                        raise SluiceError(
                            f"{name} exited with {p.returncode}; see {log_dir}/{name}.log"
                        )
                if sent == len(data) and work + poison >= len(data) and committed >= len(data):
                    break
                if time.monotonic() - start > 600:
                    raise SluiceError("demo did not finish in 10 minutes")
                time.sleep(0.25)
            producer.flush(30)
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            p.wait(60)
        probe.close()
    elapsed = time.monotonic() - start
    work_ids, poison_ids = (
        _read_ids(stack.bootstrap, topics.work),
        _read_ids(stack.bootstrap, topics.dlq("poison")),
    )
    all_ids = work_ids + poison_ids
    summary: dict[str, Any] = {
        "records": len(data),
        "ingested": sum(work_ids.values()),
        "poison": sum(poison_ids.values()),
        "lost": len(data) - len(all_ids),
        "duplicates": sum(c - 1 for c in all_ids.values()),
        "elapsed_s": round(elapsed, 1),
        "stages": ["ingest"],
        "not_yet_in_this_release": ["enrich", "router", "sequencer"],
        "logs": log_dir,
    }
    console.print(f"\n[bold]sluice demo[/bold]: {summary['records']} tickets over {args.keys} keys; "
                  f"{summary['ingested']} forwarded to {topics.work}, {summary['poison']} poison kept in "
                  f"{topics.dlq('poison')}, {summary['lost']} lost.")  # fmt: skip
    console.print(
        "This release runs ingest; enrich, router and sequencer join the demo as they land."
    )
    print(json.dumps(summary), flush=True)
    return 0 if summary["lost"] == 0 else 1
