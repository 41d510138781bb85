"""``sluice bench e2e``: what sluice adds to an LLM call's latency, and head-of-line isolation.

Three runs on one Kafka and Redis, each on a fresh pipeline, each fed the same
paced stream of support tickets (``--rate`` records/s, by default half the
provider limit, for ``--seconds``; Zipf-skewed over ``--keys`` keys):

* **clean**: the whole pipeline (ingest, two enrich workers, router,
  sequencer) against fakellm (``--latency``, limit ``--limit`` req/s), no
  faults. Per record: end-to-end latency = the moment a ``read_committed``
  consumer of ``P.output`` receives it minus the source record's timestamp;
  overhead = end-to-end minus the LLM call's own latency (``sluice.latency-ms``,
  measured by enrich around the HTTP call) minus the ordering wait: the time
  its outcome waited in the sequencer for an earlier record of the same key
  whose call took longer (per-key order is the product; what it costs depends
  on the keys and the call latencies, not on sluice, so it is reported on its
  own: ``ordering_wait`` and ``overhead_with_ordering_*``). The overhead is
  split into hops (ingest; enrich without the call; ordering wait; sequencer;
  transaction commit until visible) from the record timestamps of ``P.work``,
  ``P.results`` and ``P.output``.
* **failing**: the same with 1% of the keys (``--failing-keys``) failing on
  every attempt (a fakellm fault marker in their text), so their records go
  through the 5 s and then the 1 m rung. Only the *other* keys are measured:
  their p99 is compared with the clean run's.
* **ordered baseline**: the failing workload through a partition-ordered
  consumer (``bench/ordered.py``: concurrent calls, results emitted in
  partition order, failures retried in place after 5 s and 1 m), the usual
  way to keep order without sluice. Its other-key p99 shows the head-of-line
  blocking.

A freshly started broker is measured warming up, not sluice: in its first
minutes the JVM compiles, the broker costs about twice the CPU for the same
traffic, and on two cores every hop's tail pays for it. So an unmeasured
clean run (``--stack-warmup`` seconds, at 90% of the limit) goes first.
Records of the first ``--warmup`` seconds of each run (a new fleet's
start-up) are left out of every figure; the per-record figures of each run
(hops included) are written to ``records.csv`` in its log folder, to see
when the tail happened. Each run also reports ``llm_calls_per_record``:
fakellm's requests in that run (each run has its own fakellm) / records that
reached ``P.output`` (warm-up included). The producer keeps ``--rate``: record
``i`` goes at start + ``i`` / rate. The last line is one JSON object, with the
clean run's ``llm_calls_per_record`` at top level; targets:
``overhead_p99_ms <= 100``, ``others_p99_delta_ms <= 100`` and
``llm_calls_per_record == 1.0`` (exactly one call per record: no retry, no
repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer

from bench.common import emit, per_call
from bench.ordered import run_ordered
from bench.promtext import merged_buckets, quantile_le
from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.runs.readback import Tail, first_attempt_times, ident, read_topic
from devtools.runs.verify import Ident, percentile
from devtools.stack.resolve import Stack, acquire
from shared import headers as h
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.topics import Topics, parse_rungs

RUNGS = "5s,1m"
MODEL = "fake-sentiment-1"
FAIL_MARK = "[[fault:http_503]]"


@dataclass(frozen=True)
class Feed:
    """The stream every run gets: (key, value, failing?) in send order."""

    records: list[tuple[bytes, bytes, bool]]
    rate: float
    warmup_n: int

    @property
    def failing_keys(self) -> set[bytes]:
        return {k for k, _, bad in self.records if bad}


def feed(args: argparse.Namespace, failing: bool) -> Feed:
    import bisect
    import itertools
    import random

    rnd = random.Random(5)
    keys = args.keys
    cum = list(itertools.accumulate(1.0 / (k + 1) for k in range(keys)))
    # 1% of the keys fail, spread over the popularity ranks (not just the busiest).
    step = max(1, round(100 / args.failing_keys)) if args.failing_keys > 0 else 0
    bad = (
        {f"customer-{k}".encode() for k in range(step // 2, keys, step)}
        if failing and step
        else set()
    )
    n = int(args.rate * (args.seconds + args.warmup))
    out = []
    for i in range(n):
        key = f"customer-{bisect.bisect_left(cum, rnd.random() * cum[-1])}".encode()
        text = f"Order {i}: the package arrived late and the box was damaged"
        if key in bad:
            text += f" {FAIL_MARK}"
        out.append((key, json.dumps({"id": i, "text": text}).encode(), key in bad))
    return Feed(out, args.rate, int(args.rate * args.warmup))


def paced(
    n: int, rate: float, now: Callable[[], float], wait: Callable[[float], object]
) -> Iterator[int]:
    """``0 .. n-1``, each once it is due: ``i`` at the first ``now()`` + ``i / rate``.

    ``wait(seconds)`` may return early (a producer's ``poll`` returns on the first
    delivery report): it is called again until the record is due, so the stream
    keeps ``rate`` instead of running ahead of it; a record already due goes at once.
    """
    start = now()
    for i in range(n):
        due = start + i / rate
        while (left := due - now()) > 0:
            wait(left)
        yield i


def produce_paced(bootstrap: str, topic: str, f: Feed) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "partitioner": "murmur2_random",
                  "enable.idempotence": True})  # fmt: skip
    for i in paced(len(f.records), f.rate, time.monotonic, p.poll):
        key, value, _ = f.records[i]
        p.produce(topic, value, key)
    p.flush(60)


def _pipeline(stack: Stack, label: str, partitions: int) -> tuple[str, Topics, str]:
    pipeline = f"benche2e{label}{int(time.time()) % 100000}"
    source = f"{pipeline}.tickets"
    settings = load(CommonSettings, kafka_bootstrap=stack.bootstrap, pipeline=pipeline,
                    partitions=partitions, retry_rungs=RUNGS)  # fmt: skip
    ensure_topic(settings, source, partitions)
    create_topics(settings, source)
    return pipeline, Topics(pipeline, parse_rungs(RUNGS)), source


def enrich_steps(scrapes: list[str]) -> dict[str, list[float | str | None]]:
    """p50 and p99 of enrich's steps around the call, over the whole run (warm-up
    included), from the workers' histograms: the upper bound of the bucket (ms)."""
    series: dict[str, tuple[str, dict[str, str]]] = {
        "bucket_wait": ("sluice_bucket_wait_seconds", {})
    } | {step: ("sluice_enrich_step_seconds", {"step": step}) for step in ("admit", "settle")}
    out: dict[str, list[float | str | None]] = {}
    for name, (metric, match) in series.items():
        buckets = merged_buckets(scrapes, metric, match)
        out[name] = [_ms(quantile_le(buckets, q)) for q in (0.5, 0.99)]
    return out


def commit_times(scrape: str) -> list[float | str | None]:
    """p50 and p99 of the sequencer's transaction commits over the whole run (flush,
    offsets, commit), from its histogram: the upper bound of the bucket (ms). A slow
    commit holds both the records in it (commit visibility) and those read meanwhile
    (the sequencer hop)."""
    buckets = merged_buckets([scrape], "sluice_sequencer_txn_commit_seconds", {})
    return [_ms(quantile_le(buckets, q)) for q in (0.5, 0.99)]


def _ms(seconds: float | None) -> float | str | None:
    if seconds is None:
        return None
    return "inf" if math.isinf(seconds) else round(seconds * 1000, 1)


def scrape_steps(fleet: Fleet) -> dict[str, Any]:
    """:func:`enrich_steps` of the fleet's enrich workers; a failed scrape says why
    instead of losing the run's other figures."""
    try:
        scrapes = [fleet.metrics(n) for n in fleet.spec.names if n.startswith("enrich")]
    except httpx.HTTPError as exc:
        return {"unavailable": f"scraping the enrich workers' /metrics failed: {exc}"}
    return enrich_steps(scrapes)


def scrape_commits(fleet: Fleet) -> list[float | str | None] | dict[str, str]:
    """:func:`commit_times` of the fleet's sequencer, or why it could not be scraped."""
    try:
        return commit_times(fleet.metrics("sequencer"))
    except httpx.HTTPError as exc:
        return {"unavailable": f"scraping the sequencer's /metrics failed: {exc}"}


def llm_requests(fleet: Fleet) -> int | None:
    """fakellm's requests since it started (one fleet, one fakellm per run); ``None``
    when its stats cannot be read."""
    try:
        return int(fleet.llm_stats()["requests_total"])
    except (httpx.HTTPError, KeyError, ValueError):
        return None


def sluice_run(
    stack: Stack, args: argparse.Namespace, f: Feed, label: str, log_root: Path
) -> dict[str, Any]:
    pipeline, topics, source = _pipeline(stack, label, args.partitions)
    fleet = Fleet(FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url, pipeline=pipeline,
                            source_topic=source, log_dir=log_root / label, rungs=RUNGS, llm_rps=args.limit,
                            latency=args.latency, max_in_flight=args.max_in_flight, call_timeout_s=30))  # fmt: skip
    skip = f.failing_keys
    wanted = sum(1 for k, _, _ in f.records if k not in skip)
    try:
        fleet.start()
        fleet.wait_ready()
        print(f"[{label}] producing {len(f.records)} records at {f.rate:g}/s", flush=True)
        producer = threading.Thread(target=produce_paced, args=(stack.bootstrap, source, f))
        producer.start()
        tail = Tail(stack.bootstrap, [topics.output])
        seen: dict[Ident, int] = {}  # when a read_committed reader first saw each record
        deadline = time.monotonic() + args.seconds + args.warmup + 60
        try:
            while len(seen) < wanted and time.monotonic() < deadline:
                fleet.check()
                got = tail.poll(1.0)
                now_ms = int(time.time() * 1000)
                for m in got:
                    if m.key() not in skip and h.get_str(m.headers(), h.LATE) != "true":
                        seen.setdefault(ident(m), now_ms)
        finally:
            tail.close()
        producer.join()
        print(f"[{label}] {len(seen)}/{wanted} records of the measured keys emitted", flush=True)
        steps = scrape_steps(fleet)
        commits = scrape_commits(fleet)
        calls = llm_requests(fleet)
    finally:
        fleet.stop()
    work_ts = first_attempt_times(stack.bootstrap, topics.work)
    result_ts = {ident(m): m.timestamp()[1] for m in read_topic(stack.bootstrap, topics.results)}
    out = read_topic(stack.bootstrap, topics.output)
    completed = len({ident(m) for m in out})
    since = min((int(h.get_str(m.headers(), h.SRC_TS) or 0) for m in out), default=0)
    since += int(args.warmup * 1000)
    e2e: list[int] = []
    overhead: list[int] = []  # sluice's own: end to end minus the call minus the ordering wait
    with_order: list[int] = []  # end to end minus the call
    hops: dict[str, list[int]] = {"ingest": [], "enrich_minus_llm": [], "ordering_wait": [],
                                  "sequencer": [], "commit_visibility": []}  # fmt: skip
    previous: dict[tuple[str, int, bytes], int] = {}  # scope → output ts of its last record
    rows = [
        "src_ts,partition,offset,llm_ms,ingest,enrich_minus_llm,ordering_wait,sequencer,commit_visibility"
    ]
    for m in out:
        hs = m.headers()
        src_ts = int(h.get_str(hs, h.SRC_TS) or 0)
        i, key, out_ts = ident(m), m.key(), m.timestamp()[1]
        before = previous.get((i[0], i[1], key)) if key is not None else None
        if key is not None:
            previous[(i[0], i[1], key)] = out_ts
        if key in skip or h.get_str(hs, h.OUTCOME) != "ok" or src_ts < since or i not in seen:
            continue
        if i not in work_ts or i not in result_ts:
            continue
        llm = int(h.get_str(hs, h.LATENCY_MS) or 0)
        total = seen[i] - src_ts
        # Its outcome was there before the key's previous record was out: it had to wait.
        order_wait = max(0, before - result_ts[i]) if before is not None else 0
        e2e.append(total)
        with_order.append(total - llm)
        overhead.append(total - llm - order_wait)
        hops["ingest"].append(work_ts[i] - src_ts)
        hops["enrich_minus_llm"].append(result_ts[i] - work_ts[i] - llm)
        hops["ordering_wait"].append(order_wait)
        hops["sequencer"].append(out_ts - result_ts[i] - order_wait)
        hops["commit_visibility"].append(seen[i] - out_ts)
        rows.append(
            ",".join(str(v) for v in (src_ts, i[1], i[2], llm, *(hop[-1] for hop in hops.values())))
        )
    # Per record, for a look at where and when the tail happened.
    (log_root / label / "records.csv").write_text("\n".join(rows) + "\n")
    for v in (e2e, overhead, with_order, *hops.values()):
        v.sort()
    return {"measured": len(e2e), "emitted": len(seen), "wanted": wanted,
            "e2e_p50_ms": percentile(e2e, 0.5), "e2e_p99_ms": percentile(e2e, 0.99),
            "overhead_p50_ms": percentile(overhead, 0.5), "overhead_p99_ms": percentile(overhead, 0.99),
            "overhead_with_ordering_p50_ms": percentile(with_order, 0.5),
            "overhead_with_ordering_p99_ms": percentile(with_order, 0.99),
            "waited_for_order": sum(1 for w in hops["ordering_wait"] if w > 0),
            "llm_requests": calls, "records_completed": completed,
            "llm_calls_per_record": None if calls is None else per_call(calls, completed, 4),
            "enrich_steps_le_ms": steps, "sequencer_commit_le_ms": commits,
            "hops_p50_p99_ms": {k: [percentile(v, 0.5), percentile(v, 0.99)] for k, v in hops.items()}}  # fmt: skip


def one_call_per_record(run: dict[str, Any]) -> bool:
    """Every record of the run completed with exactly one LLM call each (no retry, no
    repeat; a run without records or without fakellm's count does not pass)."""
    return bool(run["records_completed"]) and run["llm_requests"] == run["records_completed"]


def ordered_run(stack: Stack, args: argparse.Namespace, f: Feed, log_root: Path) -> dict[str, Any]:
    pipeline, _, source = _pipeline(stack, "ordered", args.partitions)
    fleet = Fleet(FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url, pipeline=pipeline,
                            source_topic=source, log_dir=log_root / "ordered", llm_rps=args.limit,
                            latency=args.latency))  # fmt: skip
    try:
        fake_url = fleet.start_fakellm()
        print(f"[ordered] producing {len(f.records)} records at {f.rate:g}/s", flush=True)
        producer = threading.Thread(target=produce_paced, args=(stack.bootstrap, source, f))
        producer.start()
        result = asyncio.run(run_ordered(stack.bootstrap, source, fake_url, MODEL, len(f.records),
                                         args.max_in_flight * 2, (5.0, 60.0),
                                         args.seconds + args.warmup + 90, f.failing_keys))  # fmt: skip
        producer.join()
    finally:
        fleet.stop()
    skip = f.failing_keys
    since = min((ts for _, ts, _ in result.emitted), default=0) + int(args.warmup * 1000)
    warm = sorted(lat for key, ts, lat in result.emitted if key not in skip and ts >= since)
    return {"others_p50_ms": percentile(warm, 0.5), "others_p99_ms": percentile(warm, 0.99),
            "censored": result.censored, "failed_calls": result.failed_calls}  # fmt: skip


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="sluice bench e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--limit", type=int, default=200, help="provider limit, requests/s")
    parser.add_argument("--rate", type=float, default=None, help="records/s (default limit/2)")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window")
    parser.add_argument(
        "--warmup",
        type=float,
        default=15.0,
        help="seconds left out at the start (broker JIT, pools)",
    )
    parser.add_argument(
        "--stack-warmup",
        type=float,
        default=45.0,
        help="seconds of an unmeasured clean run first, to warm a freshly started broker (0 = none)",
    )
    parser.add_argument("--latency", default="lognormal:500:0.3", help="fakellm latency")
    parser.add_argument("--keys", type=int, default=500)
    parser.add_argument("--failing-keys", type=float, default=1.0, help="percent of keys failing")
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--max-in-flight", type=int, default=128, help="per enrich worker")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args(argv)
    args.rate = args.rate or args.limit / 2
    if args.rate <= 0 or args.seconds <= 0 or args.keys < 1:
        parser.error("--rate, --seconds and --keys must be positive")
    if args.stack_warmup < 0:
        parser.error("--stack-warmup must be >= 0")
    stack = acquire()
    log_root = Path(".sluice", "bench-e2e", str(int(time.time()))).resolve()
    try:
        if args.stack_warmup > 0:
            # Near the provider's limit: the JIT counts invocations, more traffic warms sooner.
            warm = argparse.Namespace(**{**vars(args), "seconds": args.stack_warmup, "warmup": 0.0,
                                         "rate": 0.9 * args.limit})  # fmt: skip
            sluice_run(stack, warm, feed(warm, failing=False), "stack-warmup", log_root)
        clean = sluice_run(stack, args, feed(args, failing=False), "clean", log_root)
        failing_feed = feed(args, failing=True)
        failing = sluice_run(stack, args, failing_feed, "failing", log_root)
        ordered = None if args.no_baseline else ordered_run(stack, args, failing_feed, log_root)
    finally:
        stack.close()
    delta = (None if failing["e2e_p99_ms"] is None or clean["e2e_p99_ms"] is None
             else failing["e2e_p99_ms"] - clean["e2e_p99_ms"])  # fmt: skip
    failing_records = sum(1 for _, _, bad in failing_feed.records if bad)
    result: dict[str, Any] = {
        "bench": "e2e", "limit_rps": args.limit, "rate_rps": args.rate, "latency": args.latency,
        "seconds": args.seconds,
        "overhead_p50_ms": clean["overhead_p50_ms"], "overhead_p99_ms": clean["overhead_p99_ms"],
        "overhead_with_ordering_p50_ms": clean["overhead_with_ordering_p50_ms"],
        "overhead_with_ordering_p99_ms": clean["overhead_with_ordering_p99_ms"],
        "e2e_p50_ms": clean["e2e_p50_ms"], "e2e_p99_ms": clean["e2e_p99_ms"],
        "failing_keys": len(failing_feed.failing_keys), "failing_records": failing_records,
        "others_p99_ms_clean": clean["e2e_p99_ms"], "others_p99_ms_failing": failing["e2e_p99_ms"],
        "others_p99_delta_ms": delta,
        "baseline_others_p99_ms": ordered["others_p99_ms"] if ordered else None,
        "baseline_others_p50_ms": ordered["others_p50_ms"] if ordered else None,
        "baseline_censored": ordered["censored"] if ordered else None,
        "llm_calls_per_record": clean["llm_calls_per_record"],
        "targets_met": {"overhead_p99_ms<=100": (clean["overhead_p99_ms"] or 10**9) <= 100,
                        "others_p99_delta_ms<=100": delta is not None and delta <= 100,
                        "llm_calls_per_record==1.0": one_call_per_record(clean)},
        "runs": {"clean": clean, "failing": failing, "ordered": ordered}, "logs": str(log_root),
    }  # fmt: skip
    emit(result)
    return 0
