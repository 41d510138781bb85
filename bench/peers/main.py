"""``sluice bench peers``: one workload through sluice and through the tools users pick instead.

Every run gets a fresh source topic (``--partitions``) on the same broker, its
own fakellm (``--latency``, 1 s lognormal by default; 429 above ``--limit``
requests/s) and the same paced stream of support tickets: ``--rate`` records/s
(by default 0.9 of the limit) for ``--seconds``, Zipf-skewed over ``--keys``
keys, 1% of the keys (``--failing-keys``) failing on every call (fakellm
answers 503). The tools:

* ``sluice``: the whole pipeline (ingest, two enrich workers, router,
  sequencer), its defaults; failures go through the 5 s and 1 m rungs to the
  error DLQ.
* ``pc-default`` / ``pc-tuned``: Confluent Parallel Consumer (Java, KEY
  ordering) calling fakellm over HTTP, each record's answer produced to an
  output topic; a failed call (429, 5xx) is retried after its default retry
  delay, with no retry limit (its defaults). ``pc-default`` keeps its
  ``maxConcurrency`` (16); ``pc-tuned`` sets ``--pc-concurrency``.
* ``litellm``: LiteLLM's ``Router`` in two processes sharing the provider's
  rpm through Redis (its documented multi-instance set-up), each called from
  an asyncio Kafka consumer (aiokafka, ``--litellm-concurrency`` calls at
  once); a call that still fails after the Router's retries goes to an
  errors topic. It runs in a virtual environment of its own.

Columns (one row per tool, :mod:`bench.peers.score`): records answered and
dead-lettered, completed records/s (answers / from the first send to the last
answer), utilization of the limit (the provider's non-429 answers per second
over that span / limit), provider 429s, LLM calls per answered record, e2e
p50/p99 of the healthy keys (a ``read_committed`` reader's receive time minus
the source record's time; the first ``--warmup`` seconds left out),
``neighbours_p99_ms`` (healthy keys in a partition that also holds a failing
key: where head-of-line blocking would show), per-key order violations,
records unfinished at the end (no answer, no dead letter), and records lost
(unfinished, committed past by the tool's consumer, held nowhere durable).
A run ends when every healthy record is answered or ``--drain`` seconds after
the last send. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from bench.common import emit
from bench.e2e import MODEL, Feed, feed, produce_paced
from bench.peers import litellm_peer, pc
from bench.peers.score import Provider, Seen, Sent, row
from devtools.fleet.fleet import Fleet, FleetSpec, wait_groups
from devtools.fleet.processes import Processes
from devtools.runs.readback import Probe, Tail, ident, read_topic
from devtools.stack.resolve import Stack, acquire
from shared import headers as h
from shared.errors import SluiceError
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.topics import Topics, parse_rungs

RUNGS = "5s,1m"
STOP_READ_S = 5.0
TOOLS = ("sluice", "pc-default", "pc-tuned", "litellm")
COLUMNS = ("answered", "completed_rps", "utilization", "provider_429", "calls_per_record",
           "e2e_p50_ms", "e2e_p99_ms", "neighbours_p99_ms", "order_violations", "unfinished",
           "lost")  # fmt: skip


class Run:
    """One tool's run: its topics, its fakellm, its processes, what its reader saw."""

    def __init__(self, stack: Stack, args: argparse.Namespace, tool: str, log_root: Path) -> None:
        self.stack, self.args, self.tool = stack, args, tool
        self.pipeline = f"benchpeers{tool.replace('-', '')}{int(time.time()) % 100000}"
        self.source = f"{self.pipeline}.tickets"
        self.topics = Topics(self.pipeline, parse_rungs(RUNGS))
        self.log_dir = log_root / tool
        self.fleet = Fleet(FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url,
                                     pipeline=self.pipeline, source_topic=self.source,
                                     log_dir=self.log_dir, rungs=RUNGS, llm_rps=args.limit,
                                     latency=args.latency, max_in_flight=args.max_in_flight,
                                     call_timeout_s=30))  # fmt: skip
        self.peers = Processes(self.log_dir, launcher=[])
        self.settings = load(CommonSettings, kafka_bootstrap=stack.bootstrap,
                             pipeline=self.pipeline, partitions=args.partitions,
                             retry_rungs=RUNGS)  # fmt: skip
        ensure_topic(self.settings, self.source, args.partitions)

    # -- the tools ----------------------------------------------------------------
    def start(self) -> tuple[list[str], str]:
        """Start the tool; the topics its reader follows and its consumer group on the source."""
        if self.tool == "sluice":
            create_topics(self.settings, self.source)
            self.fleet.start()
            self.fleet.wait_ready()
            return [self.topics.output, *self.topics.dlqs], f"{self.pipeline}.ingest"
        url = self.fleet.start_fakellm()
        out, errors, group = (
            f"{self.pipeline}.out",
            f"{self.pipeline}.errors",
            f"{self.pipeline}.peer",
        )
        for topic in (out, errors):
            ensure_topic(self.settings, topic, self.args.partitions)
        if self.tool.startswith("pc-"):
            conc = None if self.tool == "pc-default" else self.args.pc_concurrency
            pc.start(self.peers, self.tool, bootstrap=self.stack.bootstrap, source=self.source,
                     output=out, group=group, url=f"{url}/v1/chat/completions", model=MODEL,
                     concurrency=conc)  # fmt: skip
            members = 1
        else:
            members = 2
            for i in range(members):
                litellm_peer.start(self.peers, f"litellm-{i + 1}", bootstrap=self.stack.bootstrap,
                                   source=self.source, output=out, errors=errors, group=group,
                                   api_base=f"{url}/v1", model=MODEL, rpm=self.args.limit * 60,
                                   redis_url=self.stack.redis_url,
                                   concurrency=self.args.litellm_concurrency)  # fmt: skip
        if not wait_groups(self.stack.bootstrap, {group: members}, self.peers.check, 180):
            raise SluiceError(
                f"{self.tool} did not join its consumer group; logs in {self.log_dir}"
            )
        return [out, errors], group

    def stop(self) -> dict[str, Any]:
        """Stop the tool and its fakellm; fakellm's counters."""
        try:
            self.peers.stop(grace_s=30)
            stats: dict[str, Any] = self.fleet.llm_stats()
        finally:
            self.fleet.stop()
        return stats

    # -- one run ------------------------------------------------------------------
    def measure(self, f: Feed, say: Callable[[str], None]) -> dict[str, Any]:
        try:
            followed, group = self.start()
        except BaseException:
            with contextlib.suppress(Exception):  # the start's own error is the one to see
                self.stop()  # nothing it started outlives a failed start
            raise
        healthy = sum(1 for _, _, bad in f.records if not bad)
        say(f"[{self.tool}] producing {len(f.records)} records at {f.rate:g}/s")
        producer = threading.Thread(
            target=produce_paced, args=(self.stack.bootstrap, self.source, f)
        )
        producer.start()
        raw: list[tuple[Message, int]] = []
        answered = 0
        tail = Tail(self.stack.bootstrap, followed)
        end_at = time.monotonic() + len(f.records) / f.rate + self.args.drain
        next_note = time.monotonic() + 10
        try:
            while answered < healthy and time.monotonic() < end_at:
                self.peers.check()
                self.fleet.check()
                for m in tail.poll(1.0):
                    raw.append((m, int(time.time() * 1000)))
                    answered += self._is_answer(m)
                if time.monotonic() >= next_note:
                    next_note += 10
                    say(f"[{self.tool}] {answered}/{healthy} healthy records answered")
        finally:
            producer.join()
            try:
                stats = self.stop()
                # what the tool finished while it stopped (it commits those offsets)
                end = time.monotonic() + STOP_READ_S
                while time.monotonic() < end:
                    raw += [(m, int(time.time() * 1000)) for m in tail.poll(0.5)]
            finally:
                tail.close()
        probe = Probe(self.stack.bootstrap)
        try:
            committed = probe.committed(group, self.source)
        finally:
            probe.close()
        sent = self._sent(f)
        seen = self._seen(raw, sent)
        durable = self._durable(sent) if self.tool == "sluice" else set()
        by_status = stats.get("responses_by_status", {})
        provider = Provider(
            int(stats["requests_total"]), int(by_status.get("429", 0)), self.args.limit
        )
        return row(sent, seen, provider, committed, durable, int(self.args.warmup * 1000))

    def _is_answer(self, m: Message) -> bool:
        if self.tool == "sluice":
            return m.topic() == self.topics.output and h.get_str(m.headers(), h.OUTCOME) == "ok"
        return m.topic() == f"{self.pipeline}.out"

    def _sent(self, f: Feed) -> list[Sent]:
        bad = f.failing_keys
        out = []
        for m in read_topic(self.stack.bootstrap, self.source):
            key = m.key() or b""
            out.append(Sent(json.loads(m.value() or b"{}")["id"], key, m.partition() or 0,
                            m.offset() or 0, m.timestamp()[1], key in bad))  # fmt: skip
        return out

    def _seen(self, raw: Iterable[tuple[Message, int]], sent: list[Sent]) -> list[Seen]:
        if self.tool != "sluice":
            return [
                Seen(json.loads(m.value() or b"{}")["id"], at, self._is_answer(m)) for m, at in raw
            ]
        ids = {(self.source, s.partition, s.offset): s.id for s in sent}
        out = []
        for m, at in raw:
            i = ids.get(ident(m))
            if i is None:
                continue
            if m.topic() != self.topics.output:
                out.append(Seen(i, at, False))  # a dead letter
            elif h.get_str(m.headers(), h.OUTCOME) == "ok":
                out.append(Seen(i, at, True))
        return out

    def _durable(self, sent: list[Sent]) -> set[int]:
        """Records sluice holds in its work, retry or parked topics (each ends in the
        output or a DLQ)."""
        ids = {(self.source, s.partition, s.offset): s.id for s in sent}
        held: set[int] = set()
        for topic in (
            self.topics.work,
            self.topics.parked,
            *map(self.topics.retry, self.topics.rungs),
        ):
            for m in read_topic(self.stack.bootstrap, topic):
                i = ids.get(ident(m))
                if i is not None:
                    held.add(i)
        return held


def table(rows: dict[str, dict[str, Any]]) -> str:
    head = "| tool | " + " | ".join(COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    for tool, r in rows.items():
        lines.append(f"| {tool} | " + " | ".join(str(r.get(c)) for c in COLUMNS) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sluice bench peers", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--tools", default=",".join(TOOLS), help=f"which of {','.join(TOOLS)}")
    p.add_argument("--limit", type=int, default=200, help="provider limit, requests/s")
    p.add_argument("--rate", type=float, default=None, help="records/s (default 0.9 * limit)")
    p.add_argument("--seconds", type=float, default=60.0, help="how long records are sent")
    p.add_argument("--warmup", type=float, default=10.0,
                   help="records of the first seconds are left out of latency figures")  # fmt: skip
    p.add_argument("--drain", type=float, default=30.0, help="seconds to wait after the last send")
    p.add_argument("--latency", default="lognormal:1000:0.3", help="fakellm latency")
    p.add_argument("--keys", type=int, default=500)
    p.add_argument("--failing-keys", type=float, default=1.0, help="percent of keys failing")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--max-in-flight", type=int, default=128, help="per sluice enrich worker")
    p.add_argument("--pc-concurrency", type=int, default=256, help="pc-tuned's maxConcurrency")
    p.add_argument("--litellm-concurrency", type=int, default=128,
                   help="calls at once per LiteLLM process")  # fmt: skip
    args = p.parse_args(argv)
    args.rate = args.rate or 0.9 * args.limit
    tools = [t for t in args.tools.split(",") if t]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown or not tools:
        p.error(f"--tools: unknown {unknown}; choose from {','.join(TOOLS)}")
    if args.rate <= 0 or args.seconds <= 0 or args.keys < 1:
        p.error("--rate, --seconds and --keys must be positive")
    args.tools = tools
    return args


def say(text: str) -> None:
    print(text, flush=True)


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    if any(t.startswith("pc-") for t in args.tools):
        pc.classpath()  # resolve once, before any clock starts
    if "litellm" in args.tools:
        litellm_peer.ensure_venv(say)
    stack = acquire()
    log_root = Path(".sluice", "bench-peers", str(int(time.time()))).resolve()
    f = feed(args, failing=True)
    rows: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    try:
        for tool in args.tools:
            rows[tool] = Run(stack, args, tool, log_root).measure(f, say)
            say(f"[{tool}] {json.dumps(rows[tool])}")
    finally:
        stack.close()
    print(table(rows), flush=True)
    emit({"bench": "peers", "limit_rps": args.limit, "rate_rps": args.rate, "seconds": args.seconds,
          "latency": args.latency, "failing_keys": len(f.failing_keys),
          "failing_records": sum(1 for _, _, bad in f.records if bad),
          "wall_s": round(time.monotonic() - started, 1), "rows": rows, "logs": str(log_root)})  # fmt: skip
    return 0
