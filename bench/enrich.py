"""``sluice bench enrich``: how close enrich gets to a provider's rate limit.

Set-up (everything but the bench's bookkeeping and the baseline runs in
subprocesses, so the cores are shared as they would be in production):

* Kafka and Redis from :func:`devtools.stack.resolve.acquire`;
* fakellm as ``sluice fakellm`` with log-normal latency (mean 1 s, sigma 0.5)
  and its own limit of ``--limit`` requests/s (it answers 429 above it);
* the provider config gives the fleet a budget a little below that limit,
  as an operator would: ``requests_per_minute = floor(60 * limit *
  headroom)`` with ``--headroom`` 0.97 by default (reported as
  ``configured_rps``), ``timeout_s`` 30 and ``max_connections`` = the
  worker's ``max_in_flight``. Why headroom: the fleet's buckets bound when
  requests are *granted* (never more than the configured rate in any 1 s
  window), but fakellm counts *arrivals*, and a request granted at the end of
  one window can reach it in the next (event-loop, garbage-collector and
  scheduler stalls in the worker, the HTTP client or fakellm on a shared
  2-core machine). Measured: granted/sent ≤ 193 per 1 s window arrived as up
  to 201-202 per window at fakellm; every 429 then costs the fleet a whole
  second (fakellm's ``retry-after`` is at least 1 s and the fleet obeys it).
  3% covers that jitter; the request bucket's 10 ms burst costs another 1%,
  so the fleet can use at most about 0.96 of the provider's limit.
  ``utilization`` is still measured against the provider's limit;
* ``P.work`` is filled up front with ``limit * (startup + warm-up + steady) *
  1.2`` work records carrying source headers (unique texts, so the result
  cache never answers);
* ``--workers`` ``sluice enrich`` processes; once the consumer group is stable
  (every member has its partitions) a warm-up, then fakellm's counters and
  limiter are reset and the steady window starts.

Throughput = completed outcomes per second in the steady window: the sum of
the end offsets of ``P.results`` and ``P.failures`` sampled at the start and
at the end of the window (a record's outcome counts once the broker has
acknowledged it). fakellm's ``requests_total`` over the same window is
reported beside it (``provider_rps``) as a cross-check. ``utilization`` =
throughput / limit; ``max_1s_window_over_limit`` = max(0, fakellm's busiest
1 s window - limit); ``provider_429`` = 429s fakellm answered in the window;
``worker_rss_mb_max`` = the highest VmRSS of any worker, sampled every second.

What one provider call costs, per call = over the window / fakellm's
``requests_total`` in the window (``None`` without a call):

* ``redis_roundtrips_per_call``: the workers' ``sluice_redis_requests_total``
  (every request a process sends to Redis, a pipeline or a script being one),
  summed over workers and ops; ``redis_roundtrips_per_call_by_op`` the same
  per op (``bucket``, ``breaker``, ``cache``, ``heartbeat``, ...);
* ``redis_scripts_per_call`` and ``redis_commands_per_call``: from Redis's
  ``INFO commandstats`` read at the window's start and end (nothing reset):
  ``evalsha`` + ``eval`` calls, and all commands but the bench's own
  ``info``. commandstats also counts each command a Lua script runs inside
  (a script is one round trip but several commands), and it counts the
  whole server (another client of the same Redis counts too): it cannot
  count round trips by itself, hence the client-side counter;
* ``regrants_per_call_by_reason``: grants scheduled ahead that the workers gave
  back before their call started (``sluice_enrich_regrants_total``: woke too
  late for the start, a 429 meanwhile, or the provider unavailable);
* ``cpu_ms_per_call``: CPU ms per process kind (``enrich``, the window's
  workers summed; ``fakellm``; ``kafka`` and ``redis`` when the bench
  started them; ``bench``).

Baseline (:mod:`bench.naive`): the LLM call inside the poll loop, one consumer
per partition, on its own copy of the records, for ``--baseline-seconds``.

``--find-max`` then repeats shorter windows (``--find-max-seconds``) at rising
limits (``--find-max-limits``), each on a fresh pipeline with fresh workers
whose ``max_in_flight`` grows with the limit, until two limits in a row miss
utilization 0.95; the main run counts as the first point.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from confluent_kafka import Consumer, ConsumerGroupState, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from bench.common import TEXTS, emit, per_call
from bench.naive import run_baseline
from bench.promtext import counter_by_label
from devtools.fleet.processes import Processes, start_fakellm
from devtools.stack.ports import free_port
from devtools.stack.resolve import Stack, acquire
from shared import headers as h
from shared.errors import SluiceError
from shared.kafka.provision import create_topics, ensure_topic
from shared.settings import CommonSettings, load
from shared.topics import Topics

MODEL = "fake-1"
TARGET_UTILIZATION = 0.95
DEFAULT_HEADROOM = 0.97
STARTUP_ALLOWANCE_S = 10.0  # records for the time between spawn and a stable group
STOP_TIMEOUT_S = 30.0
REDIS_REQUESTS = "sluice_redis_requests_total"
REGRANTS = "sluice_enrich_regrants_total"
SCRIPT_COMMANDS = ("evalsha", "eval", "evalsha_ro", "eval_ro")
BENCH_COMMANDS = ("info",)  # the bench's own reads of commandstats
PROCESS_KINDS = ("fakellm", "kafka", "redis", "bench")  # and enrich: the window's workers
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(SluiceError):
    """The bench cannot go on (a process died, the group never formed, ...)."""


def say(line: str) -> None:
    print(line, flush=True)


# -- processes ----------------------------------------------------------------------
def proc_rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (0 if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_s() -> float:
    """CPU seconds the whole machine spent busy (all cores, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = v
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def cpu_pids(stack: Stack, procs: Processes) -> dict[str, int]:
    pids = {name: p.pid for name, p in procs.running.items()}
    for name, server in (("kafka", stack.kafka), ("redis", stack.redis)):
        if server is not None and server.proc is not None:
            pids[name] = server.proc.pid
    pids["bench"] = os.getpid()
    return pids


# -- Kafka --------------------------------------------------------------------------
def produce_work(bootstrap: str, topic: str, n: int, first: int = 0, keys: int = 500) -> None:
    """``n`` work records as ingest writes them: keyed, source headers, attempt 1."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True,
                  "partitioner": "murmur2_random", "compression.type": "lz4"})  # fmt: skip
    errors: list[str] = []

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    ts = int(time.time() * 1000)
    for i in range(first, first + n):
        value = json.dumps({"id": i, "customer": f"c{i % keys}", "text": f"{TEXTS[i % len(TEXTS)]} #{i}"})  # fmt: skip
        hs: list[tuple[str, str | bytes | None]] = [
            *h.source_headers(h.SourceId(f"{topic}.source", 0, i), ts, 1)
        ]
        while True:
            try:
                p.produce(topic, value.encode(), f"c{i % keys}".encode(), headers=hs, on_delivery=on_delivery)  # fmt: skip
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120) != 0 or errors:
        raise BenchError(f"producing work records failed: {errors[:3]}")


def end_total(probe: Consumer, topic: str, partitions: int) -> int:
    total = 0
    for part in range(partitions):
        _lo, hi = probe.get_watermark_offsets(TopicPartition(topic, part), timeout=10, cached=False)
        total += hi
    return int(total)


def failure_kinds(bootstrap: str, topic: str, partitions: int) -> dict[str, int]:
    """``kind/class`` → count over every record of ``topic`` (read after the window)."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"kinds-{uuid.uuid4().hex[:6]}",
                  "enable.auto.commit": False})  # fmt: skip
    try:
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in range(partitions)}  # fmt: skip
        c.assign([TopicPartition(topic, p, 0) for p, end in ends.items() if end > 0])
        left, kinds = sum(ends.values()), Counter[str]()
        deadline = time.monotonic() + 60
        while left > 0 and time.monotonic() < deadline:
            for m in c.consume(1000, 0.5):
                if m.error() is None:
                    left -= 1
                    hs = h.check_headers(m.headers())
                    kinds[f"{h.get_str(hs, h.ERROR_KIND)}/{h.get_str(hs, h.ERROR_CLASS)}"] += 1
        return dict(kinds.most_common())
    finally:
        c.close()


def group_ready(admin: AdminClient, group: str, members: int, partitions: int) -> bool:
    try:
        desc = admin.describe_consumer_groups([group])[group].result(10)
    except Exception:
        return False
    assigned = sum(len(m.assignment.topic_partitions) for m in desc.members if m.assignment)
    return bool(desc.state == ConsumerGroupState.STABLE and len(desc.members) == members
                and assigned == partitions)  # fmt: skip


# -- fakellm ------------------------------------------------------------------------
class Fake:
    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)

    def stats(self) -> dict[str, Any]:
        r = self.http.get("/_control/stats")
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out

    def set_limit(self, rps: int) -> None:
        self.http.put("/_control/config", json={"limits": {"rps": rps}}).raise_for_status()

    def reset(self) -> None:
        self.http.post("/_control/reset").raise_for_status()


def start_fake(procs: Processes, latency: str, limit: int) -> Fake:
    return Fake(start_fakellm(procs, latency, limit))


# -- worker metrics (Prometheus text) ----------------------------------------------
def scrape(port: int) -> str:
    """A worker's ``/metrics`` text ("" when it does not answer)."""
    try:
        return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return ""


def enrich_figures(text: str) -> dict[str, float]:
    """The few enrich metrics the bench reports, summed over labels."""
    want = ("sluice_bucket_wait_seconds_sum", "sluice_bucket_wait_seconds_count",
            "sluice_llm_latency_seconds_sum", "sluice_llm_latency_seconds_count",
            "sluice_llm_cache_hits_total", "sluice_enrich_in_flight",
            "sluice_enrich_concurrency_limit")  # fmt: skip
    out: dict[str, float] = dict.fromkeys(want, 0.0)
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in out:
            out[name] += float(line.rsplit(" ", 1)[1])
    return out


# -- per provider call (pure) -------------------------------------------------------
def counter_delta(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """``after - before`` for every key of ``after`` (a key new in ``after`` counts from 0)."""
    return {k: v - before.get(k, 0.0) for k, v in after.items()}


def command_calls(commandstats: Mapping[str, Any]) -> dict[str, float]:
    """``{command: calls}`` from redis-py's ``INFO commandstats`` (``cmdstat_<name>`` keys)."""
    return {k.removeprefix("cmdstat_"): float(v["calls"]) for k, v in commandstats.items()
            if k.startswith("cmdstat_") and isinstance(v, Mapping)}  # fmt: skip


def cpu_s_by_kind(cpu: Mapping[str, float], workers: Iterable[str]) -> dict[str, float]:
    """CPU seconds per process kind: ``enrich`` summed over ``workers``, then each of
    :data:`PROCESS_KINDS` that was sampled."""
    return {"enrich": sum(cpu.get(w, 0.0) for w in workers),
            **{kind: cpu[kind] for kind in PROCESS_KINDS if kind in cpu}}  # fmt: skip


def redis_per_call(
    requests: Mapping[str, float], commands: Mapping[str, float], calls: int
) -> dict[str, Any]:
    """The window's Redis figures per provider call, from the deltas of the workers'
    ``sluice_redis_requests_total`` by op and of Redis's commandstats by command."""
    scripts = sum(commands.get(c, 0.0) for c in SCRIPT_COMMANDS)
    executed = sum(n for c, n in commands.items() if c not in BENCH_COMMANDS)
    return {
        "redis_roundtrips_per_call": per_call(sum(requests.values()), calls),
        "redis_roundtrips_per_call_by_op": {
            op: per_call(n, calls) for op, n in sorted(requests.items()) if n
        },
        "redis_scripts_per_call": per_call(scripts, calls),
        "redis_commands_per_call": per_call(executed, calls),
    }


# -- one measured window ------------------------------------------------------------
@dataclass
class Ctx:
    stack: Stack
    fake: Fake
    procs: Processes
    args: argparse.Namespace
    log_dir: str
    redis: redis.Redis


@dataclass
class Snapshot:
    at: float
    outcomes: int
    failures: int
    cpu: dict[str, float]
    busy: float
    metrics: dict[int, dict[str, float]]
    redis_requests: dict[str, float]  # the workers' sluice_redis_requests_total by op
    regrants: dict[str, float]  # the workers' sluice_enrich_regrants_total by reason
    commands: dict[str, float]  # Redis's commandstats: calls by command


@dataclass
class Window:
    """A steady window's live state: workers, ports, samples."""

    pipeline: str
    workers: list[str]
    metrics_ports: list[int]
    rss_max: dict[str, float] = field(default_factory=dict)


def configured_rpm(limit: int, headroom: float) -> int:
    """The fleet's ``requests_per_minute`` for a provider limit of ``limit``/s."""
    return math.floor(limit * 60 * headroom)


def write_config(path: str, fake_url: str, rpm: int, max_connections: int) -> None:
    doc = {
        "providers": {"fakellm": {"kind": "openai", "base_url": f"{fake_url}/v1", "timeout_s": 30,
                                  "requests_per_minute": rpm,
                                  "max_connections": max_connections}},
        "tasks": {"sentiment": {"providers": ["fakellm"], "model": MODEL}},
        "default_task": "sentiment",
    }  # fmt: skip
    with open(path, "w") as f:
        json.dump(doc, f)  # JSON is YAML


def prepare(ctx: Ctx, label: str, limit: int, seconds: float) -> tuple[str, int]:
    """A fresh pipeline with its topics and enough work records; (pipeline, records)."""
    pipeline = f"benchenrich{uuid.uuid4().hex[:6]}{label}"
    settings = load(CommonSettings, kafka_bootstrap=ctx.stack.bootstrap, pipeline=pipeline,
                    partitions=ctx.args.partitions)  # fmt: skip
    create_topics(settings)
    records = math.ceil(limit * (STARTUP_ALLOWANCE_S + ctx.args.warmup + seconds) * 1.2)
    say(f"[{label}] producing {records} work records to {pipeline}.work ...")
    produce_work(ctx.stack.bootstrap, Topics(pipeline).work, records)
    return pipeline, records


def spawn_workers(ctx: Ctx, pipeline: str, label: str, limit: int, mif: int) -> Window:
    config = os.path.join(ctx.log_dir, f"{pipeline}.json")
    write_config(config, ctx.fake.url, configured_rpm(limit, ctx.args.headroom), max(mif, 1))
    win = Window(pipeline, [], [])
    for i in range(ctx.args.workers):
        port = free_port()
        env = {"SLUICE_KAFKA_BOOTSTRAP": ctx.stack.bootstrap, "SLUICE_REDIS_URL": ctx.stack.redis_url,
               "SLUICE_PIPELINE": pipeline, "SLUICE_CONFIG_FILE": config, "SLUICE_MAX_IN_FLIGHT": str(mif),
               "SLUICE_PARTITIONS": str(ctx.args.partitions), "SLUICE_METRICS_PORT": str(port),
               "SLUICE_LOG_FORMAT": "json", "SLUICE_WORKER_ID": f"{label}-w{i}"}  # fmt: skip
        name = f"enrich-{label}-{i}"
        ctx.procs.spawn(name, ["enrich"], env)
        win.workers.append(name)
        win.metrics_ports.append(port)
    return win


def snapshot(ctx: Ctx, probe: Consumer, win: Window) -> Snapshot:
    t = Topics(win.pipeline)
    parts = ctx.args.partitions
    fails = end_total(probe, t.failures, parts)
    texts = {port: scrape(port) for port in win.metrics_ports}
    return Snapshot(
        at=time.monotonic(),
        outcomes=end_total(probe, t.results, parts) + fails,
        failures=fails,
        cpu={n: proc_cpu_s(pid) for n, pid in cpu_pids(ctx.stack, ctx.procs).items()},
        busy=machine_busy_s(),
        metrics={port: enrich_figures(text) for port, text in texts.items()},
        redis_requests=counter_by_label(texts.values(), REDIS_REQUESTS, "op"),
        regrants=counter_by_label(texts.values(), REGRANTS, "reason"),
        commands=command_calls(ctx.redis.info("commandstats")),
    )


def sample_rss(ctx: Ctx, win: Window) -> None:
    for name in win.workers:
        rss = proc_rss_mb(ctx.procs.running[name].pid)
        win.rss_max[name] = max(win.rss_max.get(name, 0.0), rss)


def wait_group(ctx: Ctx, win: Window, label: str) -> None:
    admin = AdminClient({"bootstrap.servers": ctx.stack.bootstrap})
    group = f"{win.pipeline}.enrich"
    start = time.monotonic()
    while not group_ready(admin, group, ctx.args.workers, ctx.args.partitions):
        ctx.procs.check()
        if time.monotonic() - start > 90:
            raise BenchError(f"consumer group {group} not stable after 90 s")
        time.sleep(0.5)
    say(f"[{label}] group stable after {time.monotonic() - start:.1f}s: {ctx.args.workers} workers, {ctx.args.partitions} partitions")  # fmt: skip


def steady(ctx: Ctx, probe: Consumer, win: Window, label: str, limit: int, seconds: float) -> tuple[Snapshot, Snapshot, dict[str, Any]]:  # fmt: skip
    """Reset fakellm, then sample for ``seconds``; (start, end, fakellm stats at the end)."""
    ctx.fake.reset()
    s0 = snapshot(ctx, probe, win)
    last, last_at = s0.outcomes, s0.at
    next_report = s0.at + 5
    while (now := time.monotonic()) < s0.at + seconds:
        ctx.procs.check()
        sample_rss(ctx, win)
        if now >= next_report:
            got = end_total(probe, Topics(win.pipeline).results, ctx.args.partitions) + end_total(probe, Topics(win.pipeline).failures, ctx.args.partitions)  # fmt: skip
            st = ctx.fake.stats()
            say(f"[{label}] steady {now - s0.at:4.0f}/{seconds:.0f}s  {(got - last) / (now - last_at):6.1f} outcomes/s  "
                f"(window {(got - s0.outcomes) / (now - s0.at):6.1f}/s, limit {limit})  fakellm max1s {st['max_requests_1s']} "
                f"429s {st['rate_limited']}  rss {' '.join(f'{win.rss_max.get(w, 0):.0f}' for w in win.workers)} MB")  # fmt: skip
            last, last_at = got, now
            next_report += 5
        time.sleep(max(0.0, min(1.0, s0.at + seconds - time.monotonic())))
    stats = ctx.fake.stats()
    s1 = snapshot(ctx, probe, win)
    sample_rss(ctx, win)
    return s0, s1, stats


def warm(ctx: Ctx, probe: Consumer, win: Window, label: str) -> None:
    start = time.monotonic()
    first = end_total(probe, Topics(win.pipeline).results, ctx.args.partitions)
    while (elapsed := time.monotonic() - start) < ctx.args.warmup:
        ctx.procs.check()
        sample_rss(ctx, win)
        time.sleep(min(1.0, ctx.args.warmup - elapsed))
    got = end_total(probe, Topics(win.pipeline).results, ctx.args.partitions) - first
    say(
        f"[{label}] warm-up {ctx.args.warmup:.0f}s: {got / max(ctx.args.warmup, 1e-9):.1f} results/s"
    )


def measure(ctx: Ctx, label: str, limit: int, mif: int, seconds: float) -> dict[str, Any]:
    """One steady window at ``limit`` with ``mif`` in flight per worker."""
    ctx.fake.set_limit(limit)
    pipeline, records = prepare(ctx, label, limit, seconds)
    win = spawn_workers(ctx, pipeline, label, limit, mif)
    probe = Consumer({"bootstrap.servers": ctx.stack.bootstrap, "group.id": f"probe-{pipeline}"})
    try:
        wait_group(ctx, win, label)
        warm(ctx, probe, win, label)
        s0, s1, stats = steady(ctx, probe, win, label, limit, seconds)
    finally:
        ctx.procs.stop(win.workers, grace_s=STOP_TIMEOUT_S)
        probe.close()
    result = summarize(ctx, win, limit, mif, records, s0, s1, stats)
    kinds = failure_kinds(ctx.stack.bootstrap, Topics(pipeline).failures, ctx.args.partitions)
    return {**result, "failure_kinds_whole_run": kinds}


def _delta_mean_ms(win: Window, s0: Snapshot, s1: Snapshot, metric: str) -> float | None:
    """Mean of a Prometheus histogram over the window, in ms, summed over the workers."""
    total = sum(s1.metrics[p][f"{metric}_sum"] - s0.metrics[p][f"{metric}_sum"] for p in win.metrics_ports)  # fmt: skip
    n = sum(s1.metrics[p][f"{metric}_count"] - s0.metrics[p][f"{metric}_count"] for p in win.metrics_ports)  # fmt: skip
    return round(1000 * total / n, 1) if n else None


def _gauge(win: Window, snap: Snapshot, metric: str) -> list[int]:
    """A gauge of each worker at one snapshot."""
    return [round(snap.metrics[p][metric]) for p in win.metrics_ports]


def _cpu(win: Window, s0: Snapshot, s1: Snapshot) -> dict[str, float]:
    """CPU % (of one core) per process over the window, plus the machine and everyone else."""
    span = s1.at - s0.at
    cpu = {n: round(100 * (s1.cpu[n] - c0) / span, 1) for n, c0 in s0.cpu.items()
           if n in s1.cpu and (n in win.workers or not n.startswith("enrich-"))}  # fmt: skip
    machine = 100 * (s1.busy - s0.busy) / span
    cpu["machine"] = round(machine, 1)
    cpu["not_this_bench"] = round(max(0.0, machine - sum(v for k, v in cpu.items() if k != "machine")), 1)  # fmt: skip
    return cpu


def summarize(ctx: Ctx, win: Window, limit: int, mif: int, records: int, s0: Snapshot, s1: Snapshot, stats: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    span = s1.at - s0.at
    rps = (s1.outcomes - s0.outcomes) / span
    failed = s1.failures - s0.failures
    calls = int(stats["requests_total"])
    cpu_s = counter_delta(cpu_s_by_kind(s0.cpu, win.workers), cpu_s_by_kind(s1.cpu, win.workers))
    return {
        "pipeline": win.pipeline,
        "limit_rps": limit,
        "configured_rps": round(configured_rpm(limit, ctx.args.headroom) / 60, 2),
        "max_in_flight": mif,
        "window_s": round(span, 2),
        "throughput_rps": round(rps, 2),
        "utilization": round(rps / limit, 4),
        "ok_rps": round((s1.outcomes - s0.outcomes - failed) / span, 2),
        "provider_rps": round(stats["requests_total"] / span, 2),
        "max_1s_window_over_limit": max(0, int(stats["max_requests_1s"]) - limit),
        "max_requests_1s": int(stats["max_requests_1s"]),
        "provider_429": int(stats["rate_limited"]),
        "failed_outcomes": failed,
        "repeated_paid_requests": int(stats.get("repeated_paid_requests", 0)),
        "worker_rss_mb_max": round(max(win.rss_max.values(), default=0.0), 1),
        "bucket_wait_mean_ms": _delta_mean_ms(win, s0, s1, "sluice_bucket_wait_seconds"),
        "llm_latency_mean_ms": _delta_mean_ms(win, s0, s1, "sluice_llm_latency_seconds"),
        "cpu_pct": _cpu(win, s0, s1),
        "cpu_ms_per_call": {kind: per_call(1000 * s, calls, 2) for kind, s in cpu_s.items()},
        **redis_per_call(
            counter_delta(s0.redis_requests, s1.redis_requests),
            counter_delta(s0.commands, s1.commands),
            calls,
        ),
        "regrants_per_call_by_reason": {
            why: per_call(n, calls)
            for why, n in sorted(counter_delta(s0.regrants, s1.regrants).items())
            if n
        },
        "in_flight_start_end": [_gauge(win, s, "sluice_enrich_in_flight") for s in (s0, s1)],
        "aimd_limit_start_end": [
            _gauge(win, s, "sluice_enrich_concurrency_limit") for s in (s0, s1)
        ],
        "records": records,
        "work_left_at_end": records - s1.outcomes,
    }


# -- the command --------------------------------------------------------------------
def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sluice bench enrich", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--seconds", type=float, default=60.0, help="steady window (default 60)")
    p.add_argument("--warmup", type=float, default=10.0, help="warm-up after the group is stable")
    p.add_argument("--limit", type=int, default=200, help="provider limit, requests/s")
    p.add_argument(
        "--headroom",
        type=float,
        default=DEFAULT_HEADROOM,
        help="the fleet's requests_per_minute as a fraction of the provider's limit "
        f"(default {DEFAULT_HEADROOM})",
    )
    p.add_argument("--latency", default="lognormal:1000:0.5", help="fakellm latency")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--max-in-flight", type=int, default=256, help="per worker")
    p.add_argument("--partitions", type=int, default=int(os.environ.get("SLUICE_PARTITIONS", "6")))  # fmt: skip
    p.add_argument("--baseline-seconds", type=float, default=20.0)
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument(
        "--find-max", action="store_true", help="also find the highest limit held at 95%%"
    )
    p.add_argument("--find-max-seconds", type=float, default=20.0)
    p.add_argument("--find-max-limits", default="300,400,600,800,1000")
    return p.parse_args(argv)


def baseline(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    name = f"benchnaive{uuid.uuid4().hex[:6]}"
    settings = load(CommonSettings, kafka_bootstrap=ctx.stack.bootstrap, pipeline=name, partitions=a.partitions)  # fmt: skip
    ensure_topic(settings, f"{name}.work", a.partitions)
    ensure_topic(settings, f"{name}.out", a.partitions)
    n = math.ceil(a.partitions * (a.baseline_seconds + 3 + STARTUP_ALLOWANCE_S) * 3)
    produce_work(ctx.stack.bootstrap, f"{name}.work", n)
    ctx.fake.set_limit(a.limit)
    ctx.fake.reset()
    say(f"[baseline] {a.partitions} naive consumers (LLM call in the poll loop) on {n} records, {a.baseline_seconds:.0f}s ...")  # fmt: skip
    return run_baseline(ctx.stack.bootstrap, f"{name}.work", f"{name}.out", a.partitions,
                        f"{ctx.fake.url}/v1", MODEL, a.baseline_seconds, 3.0, say)  # fmt: skip


def find_max(ctx: Ctx, main: dict[str, Any]) -> dict[str, Any]:
    """Rising limits until two in a row miss the target; the main run is the first point."""
    a = ctx.args
    tried: dict[str, Any] = {str(a.limit): _point(main, f"main run, {a.seconds:.0f}s window")}
    passed = [a.limit] if main["utilization"] >= TARGET_UTILIZATION else []
    misses = 0 if passed else 1
    for limit in sorted(int(x) for x in a.find_max_limits.split(",") if int(x) > a.limit):
        if misses >= 2:
            break
        mif = math.ceil(a.max_in_flight * limit / a.limit)
        r = measure(ctx, f"max{limit}", limit, mif, a.find_max_seconds)
        tried[str(limit)] = _point(r, f"{a.find_max_seconds:.0f}s window")
        say(f"[max{limit}] utilization {r['utilization']:.3f}  429s {r['provider_429']}  cpu {r['cpu_pct']}")  # fmt: skip
        ok = r["utilization"] >= TARGET_UTILIZATION
        misses = 0 if ok else misses + 1
        passed += [limit] if ok else []
    return {
        "max_limit_at_95pct": max(passed, default=None),
        "find_max_method": (
            f"fresh pipeline + {a.workers} fresh workers per limit, fakellm --rps and the config's "
            f"requests_per_minute set to {a.headroom} of the limit, max_in_flight scaled as {a.max_in_flight}*limit/{a.limit}, "
            f"{a.warmup:.0f}s warm-up, {a.find_max_seconds:.0f}s window; rising limits, stop after two "
            f"in a row under {TARGET_UTILIZATION}"
        ),
        "limits_tried": tried,
    }


def _point(r: dict[str, Any], window: str) -> dict[str, Any]:
    keys = ("throughput_rps", "configured_rps", "utilization", "ok_rps", "provider_rps", "max_in_flight", "provider_429",
            "max_1s_window_over_limit", "max_requests_1s", "failed_outcomes", "worker_rss_mb_max", "bucket_wait_mean_ms",
            "cpu_pct", "redis_roundtrips_per_call", "cpu_ms_per_call")  # fmt: skip
    return {"window": window, **{k: r[k] for k in keys}}


def run(argv: list[str]) -> int:
    args = parse(argv)
    log_dir = tempfile.mkdtemp(prefix="sluice-bench-enrich-")
    procs = Processes(Path(log_dir))
    say(f"logs and configs in {log_dir}")
    with acquire() as stack:
        commandstats = redis.Redis.from_url(stack.redis_url)
        try:
            say(f"Kafka {stack.bootstrap} ({stack.kafka_source}), Redis {stack.redis_url} ({stack.redis_source})")  # fmt: skip
            fake = start_fake(procs, args.latency, args.limit)
            ctx = Ctx(stack, fake, procs, args, log_dir, commandstats)
            main = measure(ctx, "main", args.limit, args.max_in_flight, args.seconds)
            say(f"[main] {json.dumps(main)}")
            base = {} if args.no_baseline else baseline(ctx)
            extra = find_max(ctx, main) if args.find_max else {}
        finally:
            procs.stop(grace_s=STOP_TIMEOUT_S)
            commandstats.close()
    result = result_line(args, main, base, extra, log_dir)
    emit(result)
    return 0


def result_line(args: argparse.Namespace, main: dict[str, Any], base: dict[str, Any],
                extra: dict[str, Any], log_dir: str) -> dict[str, Any]:  # fmt: skip
    b = base.get("baseline_rps")
    keep = ("ok_rps", "provider_rps", "max_requests_1s", "failed_outcomes", "repeated_paid_requests", "bucket_wait_mean_ms",
            "llm_latency_mean_ms", "cpu_pct", "redis_roundtrips_per_call", "redis_roundtrips_per_call_by_op", "regrants_per_call_by_reason",
            "redis_scripts_per_call", "redis_commands_per_call", "cpu_ms_per_call", "records", "work_left_at_end",
            "failure_kinds_whole_run")  # fmt: skip
    return {
        "bench": "enrich",
        "throughput_rps": main["throughput_rps"],
        "limit_rps": args.limit,
        "configured_rps": main["configured_rps"],
        "headroom": args.headroom,
        "utilization": main["utilization"],
        "max_1s_window_over_limit": main["max_1s_window_over_limit"],
        "provider_429": main["provider_429"],
        "baseline_rps": round(b, 2) if b is not None else None,
        "speedup": round(main["throughput_rps"] / b, 1) if b else None,
        "worker_rss_mb_max": main["worker_rss_mb_max"],
        "seconds": args.seconds,
        "workers": args.workers,
        "max_in_flight": args.max_in_flight,
        "targets_met": {
            "utilization>=0.95": main["utilization"] >= TARGET_UTILIZATION,
            "provider_429==0": main["provider_429"] == 0,
            "worker_rss_mb<=300": main["worker_rss_mb_max"] <= 300,
        },
        "warmup_s": args.warmup,
        "partitions": args.partitions,
        "latency": args.latency,
        "measured_by": "sum of P.results + P.failures end offsets at window start and end",
        **{k: main[k] for k in keep},
        **{k: v for k, v in base.items() if k != "baseline_rps"},
        **extra,
        "logs": log_dir,
    }
