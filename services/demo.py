"""``sluice demo``: the pipeline end to end on the local stack, with live progress.

It starts (or finds) Kafka and Redis, provisions the topics, starts fakellm
(lognormal latency, a rate limit, a fault mix) and the sluice services as real
processes (ingest, two enrich workers, router), produces a realistic, skewed
set of support tickets with a little poison mixed in, and shows each stage's
progress. It ends when every ticket is accounted for (enriched, or dead in a
DLQ with its reason) and prints a summary whose last line is one JSON object.

Stages in this release: ingest, enrich, router. The sequencer (per-key order
at ``P.output``) joins the demo when it lands; until then ``order_violations``
is reported as null.
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
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from shared import headers as h
from shared.errors import SluiceError
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.stack.ports import free_port, port_open, wait_until
from shared.stack.resolve import Stack, acquire
from shared.topics import Topics, parse_rungs

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
# No random rate-limit bodies here: each one orders the whole fleet to back off (a shared
# cooldown), which a real provider does only when the fleet is over its limit.
FAULTS = {
    "http_503": 0.02,
    "http_500": 0.01,
    "invalid_json": 0.01,
    "hang": 0.005,
}


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
            text = f"{rnd.choice(TEXTS)} (order {rnd.randrange(10**6):06d})"  # distinct prompts: no cache hits
            doc = {"ticket_id": i, "customer": key.decode(), "text": text}
            out.append((key, json.dumps(doc).encode()))
    return out


class Probe:
    """End offsets and committed offsets, for live progress (cheap: no reads)."""

    def __init__(self, bootstrap: str, group: str) -> None:
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})

    def end(self, topic: str) -> int:
        md = self.c.list_topics(topic, timeout=10)
        return sum(
            self.c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in md.topics[topic].partitions
        )

    def committed(self, topic: str) -> int:
        md = self.c.list_topics(topic, timeout=10)
        parts = [TopicPartition(topic, p) for p in md.topics[topic].partitions]
        return sum(max(tp.offset, 0) for tp in self.c.committed(parts, timeout=10))

    def close(self) -> None:
        self.c.close()


def read_topic(bootstrap: str, topic: str) -> list[Message]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"demo-verify-{time.time_ns()}",
                  "enable.auto.commit": False, "isolation.level": "read_committed"})  # fmt: skip
    md = c.list_topics(topic, timeout=10)
    ends = {
        p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
        for p in md.topics[topic].partitions
    }
    c.assign([TopicPartition(topic, p, 0) for p in ends])
    out: list[Message] = []
    seen = dict.fromkeys(ends, 0)
    deadline = time.monotonic() + 120
    while any(seen[p] < ends[p] for p in ends) and time.monotonic() < deadline:
        for m in c.consume(5000, 0.5):
            if m.error() is None:
                out.append(m)
                seen[m.partition() or 0] = (m.offset() or 0) + 1
    c.close()
    return out


def _ids(msgs: list[Message]) -> Counter[tuple[int, int]]:
    ids: Counter[tuple[int, int]] = Counter()
    for m in msgs:
        src = h.source_id(m.headers())
        ids[(src.partition, src.offset)] += 1
    return ids


def _spawn(name: str, env: dict[str, str], log_dir: Path, *args: str) -> subprocess.Popen[bytes]:
    out = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
    return subprocess.Popen([sys.executable, "-m", "services.cli", name.split("-")[0], *args],
                            env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT)  # fmt: skip


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice demo", description=__doc__)
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--rate", type=float, default=1000.0, help="records/s produced to the source topic"
    )
    parser.add_argument("--llm-rps", type=int, default=400, help="the provider's rate limit")
    parser.add_argument(
        "--rungs", default="2s,10s", help="retry ladder for the demo (production default 5s,1m)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up after this many seconds"
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


def _start(
    args: argparse.Namespace, stack: Stack, pipeline: str, log_dir: Path
) -> dict[str, subprocess.Popen[bytes]]:
    port = free_port()
    fake_url = f"http://127.0.0.1:{port}"
    procs = {"fakellm": _spawn("fakellm", {}, log_dir, "--host", "127.0.0.1", "--port", str(port),
                               "--latency", "lognormal:400:0.5", "--rps", str(args.llm_rps))}  # fmt: skip
    if not wait_until(
        lambda: port_open("127.0.0.1", port), 20, lambda: procs["fakellm"].poll() is not None
    ):
        raise SluiceError(f"fakellm did not start; see {log_dir}/fakellm.log")
    httpx.put(
        f"{fake_url}/_control/config", json={"faults": FAULTS, "hang_seconds": 30}, timeout=5
    ).raise_for_status()
    config = {
        "providers": {"fakellm": {"kind": "openai", "base_url": f"{fake_url}/v1", "timeout_s": 3,
                                  "requests_per_minute": args.llm_rps * 60, "max_connections": 128}},
        "tasks": {"sentiment": {"model": "fake-sentiment-1", "providers": ["fakellm"]}},
        "default_task": "sentiment",
    }  # fmt: skip
    (log_dir / "sluice.yaml").write_text(json.dumps(config, indent=2))
    env = {"SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap, "SLUICE_REDIS_URL": stack.redis_url,
           "SLUICE_PIPELINE": pipeline, "SLUICE_SOURCE_TOPIC": f"{pipeline}.tickets", "SLUICE_LOG_FORMAT": "json",
           "SLUICE_CONFIG_FILE": str(log_dir / "sluice.yaml"), "SLUICE_RETRY_RUNGS": args.rungs,
           "SLUICE_MAX_IN_FLIGHT": "128"}  # fmt: skip
    procs["ingest"] = _spawn("ingest", env, log_dir)
    procs["enrich-1"] = _spawn("enrich-1", {**env, "SLUICE_WORKER_ID": "demo-enrich-1"}, log_dir)
    procs["enrich-2"] = _spawn("enrich-2", {**env, "SLUICE_WORKER_ID": "demo-enrich-2"}, log_dir)
    procs["router"] = _spawn("router", env, log_dir)
    return procs


def _demo(args: argparse.Namespace, stack: Stack, console: Console) -> int:
    pipeline = f"demo{int(time.time()) % 100000}"
    topics = Topics(pipeline, parse_rungs(args.rungs))
    source = f"{pipeline}.tickets"
    console.print(
        f"Kafka {stack.bootstrap} ({stack.kafka_source}) · Redis {stack.redis_url} ({stack.redis_source})"
    )
    settings = load(CommonSettings, kafka_bootstrap=stack.bootstrap, pipeline=pipeline, partitions=args.partitions,
                    retry_rungs=args.rungs)  # fmt: skip
    ensure_topic(settings, source, args.partitions)
    create_topics(settings, source)
    log_dir = Path(".sluice", "demo", pipeline).resolve()
    log_dir.mkdir(parents=True, exist_ok=True)
    procs = _start(args, stack, pipeline, log_dir)
    with console.status("waiting for the services to join their consumer groups ..."):
        _wait_ready(stack.bootstrap, pipeline, procs, log_dir)
    fake_url = None
    data = tickets(args.records, args.keys)
    producer = Producer(
        {"bootstrap.servers": stack.bootstrap, "linger.ms": 10, "partitioner": "murmur2_random"}
    )
    probe = Probe(stack.bootstrap, f"{pipeline}.ingest")
    dlqs = topics.dlqs
    start = time.monotonic()
    cols = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn())  # fmt: skip
    try:
        with Progress(*cols, console=console, refresh_per_second=4) as progress:
            bars = {name: progress.add_task(name, total=len(data), note="") for name in
                    ("produced", "ingested", "enriched", "retried", "dead")}  # fmt: skip
            sent = 0
            while True:
                due = min(len(data), int((time.monotonic() - start) * args.rate))
                while sent < due:
                    key, value = data[sent]
                    producer.produce(source, value, key)
                    sent += 1
                producer.poll(0)
                try:
                    work_first = probe.end(topics.work)
                    ok = probe.end(topics.results)
                    dead = sum(probe.end(t) for t in dlqs)
                    retried = sum(probe.end(topics.retry(r)) for r in topics.rungs)
                    parked = probe.end(topics.parked)
                    lag = probe.end(source) - probe.committed(source)
                except KafkaException:
                    time.sleep(0.25)  # a partition without its leader yet, or a broker hiccup
                    continue
                progress.update(bars["produced"], completed=sent)
                progress.update(
                    bars["ingested"], completed=min(work_first, len(data)), note=f"ingest lag {lag}"
                )
                progress.update(bars["enriched"], completed=min(ok, len(data)), note="")
                progress.update(
                    bars["retried"], completed=min(retried, len(data)), note=f"parked {parked}"
                )
                progress.update(
                    bars["dead"],
                    completed=min(dead, len(data)),
                    note="poison / error / timeout DLQs",
                )
                for name, p in procs.items():
                    if p.poll() is not None:
                        raise SluiceError(
                            f"{name} exited with {p.returncode}; see {log_dir}/{name}.log"
                        )
                if (
                    sent == len(data)
                    and ok + dead >= len(data)
                    and _accounted(stack.bootstrap, topics, len(data))
                ):
                    break
                if time.monotonic() - start > args.timeout:
                    raise SluiceError(
                        f"demo did not finish in {args.timeout:.0f}s; logs in {log_dir}"
                    )
                time.sleep(0.5)
            producer.flush(30)
        fake_url = _fake_url(log_dir)
        llm_calls = (
            httpx.get(f"{fake_url}/_control/stats", timeout=5).json()["requests_total"]
            if fake_url
            else None
        )
    finally:
        for p in procs.values():
            p.send_signal(signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                p.kill()
        probe.close()
    return _summary(
        args, stack, topics, len(data), time.monotonic() - start, llm_calls, log_dir, console
    )


def _wait_ready(
    bootstrap: str, pipeline: str, procs: dict[str, subprocess.Popen[bytes]], log_dir: Path
) -> None:
    from confluent_kafka import ConsumerGroupState
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": bootstrap})
    want = {f"{pipeline}.ingest": 1, f"{pipeline}.enrich": 2, f"{pipeline}.router": 1}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        for name, p in procs.items():
            if p.poll() is not None:
                raise SluiceError(f"{name} exited with {p.returncode}; see {log_dir}/{name}.log")
        try:
            futs = admin.describe_consumer_groups(list(want))
            groups = {g: f.result(10) for g, f in futs.items()}
        except KafkaException:
            groups = {}
        if groups and all(
            g.state == ConsumerGroupState.STABLE and len(g.members) >= want[name]
            for name, g in groups.items()
        ):
            return
        time.sleep(0.5)
    raise SluiceError(f"services did not join their consumer groups in 90 s; logs in {log_dir}")


def _fake_url(log_dir: Path) -> str | None:
    try:
        cfg = json.loads((log_dir / "sluice.yaml").read_text())
        return str(cfg["providers"]["fakellm"]["base_url"]).removesuffix("/v1")
    except (OSError, ValueError, KeyError):
        return None


_ACCOUNTED_CACHE: dict[str, float] = {}


def _accounted(bootstrap: str, topics: Topics, n: int) -> bool:
    """Every ticket is enriched or dead (read at most every 3 s: it reads topics)."""
    now = time.monotonic()
    if now - _ACCOUNTED_CACHE.get(topics.pipeline, 0.0) < 3:
        return False
    _ACCOUNTED_CACHE[topics.pipeline] = now
    ids = _ids(read_topic(bootstrap, topics.results))
    for t in topics.dlqs:
        ids.update(_ids(read_topic(bootstrap, t)))
    return len(ids) >= n


def _summary(args: argparse.Namespace, stack: Stack, topics: Topics, n: int, elapsed: float,
             llm_calls: int | None, log_dir: Path, console: Console) -> int:  # fmt: skip
    results = read_topic(stack.bootstrap, topics.results)
    ok = [m for m in results if h.get_str(m.headers(), h.OUTCOME) == "ok"]
    ok_ids = _ids(ok)
    dead_ids: Counter[tuple[int, int]] = Counter()
    for t in topics.dlqs:
        dead_ids.update(_ids(read_topic(stack.bootstrap, t)))
    all_ids = set(ok_ids) | set(dead_ids)
    latencies = sorted(
        (m.timestamp()[1] - int(h.get_str(m.headers(), h.SRC_TS) or 0))
        for m in ok
        if m.timestamp()[1] > 0
    )

    def pct(q: float) -> int | None:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else None

    summary: dict[str, Any] = {
        "records": n,
        "enriched": len(ok_ids),
        "dead": len(set(dead_ids) - set(ok_ids)),
        "lost": n - len(all_ids),
        "duplicates": sum(c - 1 for c in ok_ids.values()),
        "order_violations": None,
        "llm_calls": llm_calls,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "elapsed_s": round(elapsed, 1),
        "stages": ["ingest", "enrich", "router"],
        "logs": str(log_dir),
    }
    console.print(
        f"\n[bold]sluice demo[/bold]: {n} tickets over {args.keys} keys → {summary['enriched']} enriched, "
        f"{summary['dead']} dead (with reasons, in {', '.join(topics.dlqs)}), {summary['lost']} lost; "
        f"{llm_calls} LLM calls; end-to-end p50 {summary['p50_ms']} ms, p99 {summary['p99_ms']} ms."
    )
    console.print(
        "Duplicates here are at-least-once repeats in P.results; the sequencer (next release) drops them."
    )
    print(json.dumps(summary), flush=True)
    return 0 if summary["lost"] == 0 else 1
