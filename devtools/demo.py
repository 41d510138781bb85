"""``sluice demo``: the whole pipeline end to end on the local stack, with live progress.

It starts (or finds) Kafka and Redis, provisions the topics, starts fakellm
(lognormal latency, a rate limit, a fault mix) and every sluice service as a
real process (ingest, two enrich workers, router, sequencer), produces a
realistic, skewed set of support tickets with a little poison mixed in, and
shows each stage's progress. A stage that exits on its own is started again
after a back-off, as a deployment's supervisor would (``--max-restarts``). It
ends when every ticket is accounted for in
``P.output`` (enriched, or a gap marker for a record that died) or in
``P.dlq.poison``, then reads the topics back as a ``read_committed`` consumer
and prints a summary whose last line is one JSON object: records, enriched,
dead (in a DLQ with its reason, poison included), lost, duplicates and
order violations in ``P.output``, LLM calls, end-to-end latency, and the
stages started again.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

from confluent_kafka import KafkaException, Producer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.fleet.restarts import RestartPolicy, Restarts
from devtools.runs.readback import Probe, Tail, check_run, ident
from devtools.runs.tickets import tickets
from devtools.stack.resolve import Stack, acquire
from shared.errors import SluiceError
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.topics import Topics, parse_rungs

# HTTP 200 error bodies say "server error" here: a rate-limit body orders the whole
# fleet to back off (a shared cooldown), which a provider does only when the fleet is
# over its limit, and the demo's fleet never is.
FAULTS = {"http_503": 0.02, "http_500": 0.01, "error_body": 0.01, "invalid_json": 0.01,
          "hang": 0.005}  # fmt: skip
STAGES = ("produced", "ingested", "enriched", "retried", "dead", "emitted")


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--records", type=int, default=5_000)
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument(
        "--rate",
        type=float,
        default=100.0,
        help="records/s produced to the source topic (default 100: what two enrich workers on a 2-core laptop keep up with, so latency is not queueing)",
    )
    parser.add_argument("--llm-rps", type=int, default=400, help="the provider's rate limit")
    parser.add_argument(
        "--rungs", default="2s,10s", help="retry ladder for the demo (production default 5s,1m)"
    )
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="give up after this many seconds"
    )
    parser.add_argument(
        "--max-restarts",
        type=int,
        default=RestartPolicy.max_restarts,
        help="a stage that exits is started again, as a deployment's supervisor would; give up "
        f"when one exits more often than this in {RestartPolicy.window_s:.0f} s (0: at its first exit)",
    )
    args = parser.parse_args(argv)
    if args.records < 1 or args.keys < 1 or args.partitions < 1 or args.rate <= 0:
        parser.error("--records, --keys, --partitions and --rate must be positive")
    if args.max_restarts < 0:
        parser.error("--max-restarts must be 0 or more")
    console = Console(stderr=True)
    logging.getLogger("shared").setLevel(logging.WARNING)  # the progress bars tell the story
    with console.status("starting Kafka and Redis ..."):
        stack = acquire()
    try:
        return _demo(args, stack, console)
    finally:
        with console.status("stopping the local stack ..."):
            stack.close()


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
    fleet = Fleet(FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url, pipeline=pipeline,
                            source_topic=source, log_dir=log_dir, rungs=args.rungs, llm_rps=args.llm_rps,
                            faults=FAULTS, fake_config={"error_body_kind": "server_error"}))  # fmt: skip
    restarts = Restarts(RestartPolicy(max_restarts=args.max_restarts))
    start = time.monotonic()
    try:
        fleet.start()
        with console.status("waiting for the services to join their consumer groups ..."):
            fleet.wait_ready()
        _produce_and_follow(args, stack, fleet, restarts, topics, source, console)
        llm_calls = fleet.llm_stats()["requests_total"]
    finally:
        with console.status("stopping the services (SIGTERM) ..."):
            fleet.stop()
    elapsed = time.monotonic() - start
    with console.status(f"reading {topics.output} and the DLQs back (read_committed) ..."):
        v = check_run(stack.bootstrap, topics, source)
    summary: dict[str, Any] = {
        "records": v.records, "enriched": v.enriched, "dead": v.dead + v.poison, "poison": v.poison,
        "lost": v.lost, "duplicates": v.duplicates, "order_violations": v.order_violations,
        "late": v.late, "llm_calls": llm_calls,
        "llm_calls_per_record": round(llm_calls / max(1, v.records - v.poison), 3),
        "p50_ms": v.p50_ms, "p99_ms": v.p99_ms, "elapsed_s": round(elapsed, 1),
        "stages": ["ingest", "enrich", "router", "sequencer"], "restarts": restarts.total,
        "logs": str(log_dir),
    }  # fmt: skip
    restarted = ", ".join(f"{n} ({k})" for n, k in sorted(restarts.total.items()))
    console.print(
        f"\n[bold]sluice demo[/bold]: {v.records} tickets over {args.keys} keys → "
        f"{v.enriched} enriched, {summary['dead']} dead (with reasons, in {', '.join(topics.dlqs)}), "
        f"{v.lost} lost; {v.duplicates} duplicates and {v.order_violations} order violations in "
        f"{topics.output}; {llm_calls} LLM calls; end-to-end p50 {v.p50_ms} ms, p99 {v.p99_ms} ms."
        + (f" Stages started again after exiting: {restarted}." if restarted else "")
    )
    print(json.dumps(summary), flush=True)
    return 0 if v.exact and v.records == args.records else 1


def _produce_and_follow(args: argparse.Namespace, stack: Stack, fleet: Fleet, restarts: Restarts,
                        topics: Topics, source: str, console: Console) -> None:  # fmt: skip
    data = tickets(args.records, args.keys)
    producer = Producer(
        {"bootstrap.servers": stack.bootstrap, "linger.ms": 10, "partitioner": "murmur2_random"}
    )
    probe = Probe(stack.bootstrap)
    tail = Tail(stack.bootstrap, [topics.output, topics.dlq("poison")])
    done: set[tuple[str, int, int]] = set()
    emitted = 0
    start = time.monotonic()
    cols = (TextColumn("{task.description:>10}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn())  # fmt: skip
    try:
        with Progress(*cols, console=console, refresh_per_second=4) as progress:
            bars = {n: progress.add_task(n, total=len(data), note="") for n in STAGES}
            sent = 0
            while True:
                due = min(len(data), int((time.monotonic() - start) * args.rate))
                while sent < due:
                    key, value = data[sent]
                    producer.produce(source, value, key)
                    sent += 1
                producer.poll(0)
                for m in tail.poll():
                    done.add(ident(m))
                    emitted += m.topic() == topics.output
                try:
                    counts = {
                        "ingested": probe.end(topics.work), "enriched": probe.end(topics.results),
                        "retried": sum(probe.end(topics.retry(r)) for r in topics.rungs),
                        "dead": sum(probe.end(t) for t in topics.dlqs),
                        "parked": probe.end(topics.parked),
                        "lag": probe.lag(f"{topics.pipeline}.ingest", source)
                        + probe.lag(f"{topics.pipeline}.enrich", topics.work),
                    }  # fmt: skip
                except (KafkaException, TimeoutError):
                    time.sleep(0.25)  # a partition without its leader yet, or a broker hiccup
                    continue
                notes = {"ingested": f"lag {counts['lag']}", "retried": f"parked {counts['parked']}",
                         "dead": "poison / error / timeout DLQs", "enriched": "outcomes",
                         "emitted": f"{topics.output}, exactly once"}  # fmt: skip
                progress.update(bars["produced"], completed=sent)
                for name in STAGES[1:]:
                    count = emitted if name == "emitted" else counts[name]
                    progress.update(bars[name], completed=min(count, len(data)), note=notes[name])
                for line in fleet.supervise(restarts, time.monotonic()):
                    console.print(line)
                if sent == len(data) and len(done) >= len(data):
                    break
                if time.monotonic() - start > args.timeout:
                    raise SluiceError(
                        f"demo did not finish in {args.timeout:.0f}s; logs in {fleet.spec.log_dir}"
                    )
                time.sleep(0.25)
            producer.flush(30)
    finally:
        tail.close()
        probe.close()
