"""``sluice bench replay``: a DLQ replay at the provider's limit, beside fresh traffic.

Set-up: Kafka and Redis from :func:`devtools.stack.resolve.acquire`; the whole
pipeline as processes (:mod:`devtools.fleet`: fakellm, ingest, two enrich
workers, router, sequencer) and ``sluice admin``. fakellm answers 429 above
``--limit`` requests/s (200), each call taking ``--latency`` (a fixed 300 ms:
what is measured is the replay's effect on the fresh traffic, not the
provider's tail). The providers' config gives the fleet
``requests_per_minute = floor(60 * limit * headroom)`` (``--headroom`` 0.97,
as in ``sluice bench enrich`` and for the same reason: fakellm counts
arrivals, the fleet's bucket grants). ``P.dlq.error`` is filled with
``--records`` (10,000) dead records as the router writes them, each with a text
of its own, so the result cache answers none: every one is a paid call.

One run, one fleet, one stream of fresh tickets (``--fresh-rate``/s into the
source topic, each with a text of its own) from start to end:

1. warm-up (``--warmup`` s, not measured);
2. **baseline**: ``--baseline-seconds`` of fresh traffic alone;
3. **replay**: a replay task of the whole DLQ started through the admin API
   (``POST /v1/replays``, operator token) at ``--replay-rate`` records/s; by
   default the share of the fleet's budget the fresh traffic leaves,
   ``0.96 * configured rate - fresh rate`` (the task itself never goes faster
   than the provider's request bucket refills). The phase lasts until every
   replayed record has its outcome in ``P.results``.

Figures (the last line is one JSON object, the line before it the verdict):

* ``replay_drain_s``: from the start request to the last outcome carrying the
  replay id (``P.results`` record time); ``replay_rps`` = records / that;
* ``provider_429``: fakellm's 429 answers over the whole run (target 0);
* ``utilization``: fakellm's requests during the replay phase (replayed and
  fresh calls: all the fleet asked of the provider) / (limit * drain time)
  (target >= 0.9);
* fresh traffic end to end: the time a ``read_committed`` consumer of
  ``P.output`` receives a fresh record minus its source record's time;
  p50/p99 of the records produced in each phase; ``fresh_p99_delta_ms`` =
  replay phase - baseline (target <= 100); ``ratio`` = their quotient;
  ``fresh_hops_p50_p99_ms``: per phase, where that time went (ingest; enrich
  without the call: the wait in ``P.work``, at the gate and the bookkeeping;
  the sequencer; the commit's visibility to the reader);
* ``cpu_during_replay``: the machine's busy share during the replay and each
  process kind's CPU ms per record carried (replayed and fresh), so a
  saturated machine shows which process spends it;
* the admin's dry run of the same replay before it starts (matched, paid
  calls, estimated drain time) beside what the replay did.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Producer

from bench.common import emit
from bench.enrich import cpu_pids, machine_busy_s, proc_cpu_s
from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.runs.readback import Tail, first_attempt_times
from devtools.runs.verify import Ident, percentile
from devtools.stack.ports import free_port
from devtools.stack.resolve import Stack, acquire
from shared import headers as h
from shared.envelope import Consumed, failure_dlq_record, parse
from shared.errors import SluiceError
from shared.kafka.provision import create_topics, ensure_topic
from shared.kinds import FailureKind
from shared.outcomes import Failure, Record, failure_record
from shared.settings import CommonSettings, load
from shared.topics import Topics

MODEL = "fake-sentiment-1"
RUNGS = "5s,1m"
DEFAULT_HEADROOM = 0.97
LOAD_SHARE = 0.96  # of the configured rate, replay and fresh traffic together, by default
TARGET_UTILIZATION = 0.9
TARGET_DELTA_MS = 100
POLL_S = 0.5
STALL_S = 120.0  # the replay is given up when neither sent nor outcomes move for this long


class BenchError(SluiceError):
    """The bench cannot go on (the admin never answered, the replay stopped, ...)."""


def say(line: str) -> None:
    print(line, flush=True)


# -- the records ----------------------------------------------------------------------
def dead_letter(i: int, old_topic: str, partition: int, offset: int, ts_ms: int) -> Record:
    """A ``P.dlq.error`` record as the router writes it: a work record of ``old_topic``
    whose call failed with a 500 and is not retried."""
    src = h.SourceId(old_topic, partition, offset)
    body = json.dumps({"ticket": i, "text": f"Refund #{i}: I was charged twice this month"})
    work = Record(f"old-{i % 500}".encode(), body.encode(), h.source_headers(src, ts_ms, 1))
    failed = failure_record(work, 1, Failure(FailureKind.PROVIDER_ERROR, "http_500", "boom"),
                            "fakellm")  # fmt: skip
    c = Consumed("failures", 0, i, ts_ms, failed.key, failed.value, failed.headers)
    record, _ts, _reason = failure_dlq_record(c, parse(c))
    return record


def fill_dlq(bootstrap: str, dlq: str, old_topic: str, n: int, partitions: int) -> None:
    """``n`` dead records, record ``i`` in DLQ partition ``i % partitions`` with that source
    partition: a replay walks each partition in order, so each source partition's records
    reach the sequencer in offset order, as ingest would have sent them."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True,
                  "compression.type": "lz4"})  # fmt: skip
    ts = int(time.time() * 1000)  # now: a DLQ's retention counts from its records' time
    for i in range(n):
        part = i % partitions
        r = dead_letter(i, old_topic, part, i // partitions, ts)
        headers: list[tuple[str, str | bytes | None]] = [*r.headers]
        while True:
            try:
                p.produce(dlq, r.value, r.key, partition=part, headers=headers)
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(120) != 0:
        raise BenchError(f"filling {dlq} did not finish")


def fresh_ticket(i: int) -> tuple[bytes, bytes]:
    text = f"Order {i}: the package arrived late and the box was damaged"
    return f"customer-{i % 500}".encode(), json.dumps({"id": i, "text": text}).encode()


def produce_fresh(bootstrap: str, topic: str, rate: float, stop: threading.Event) -> None:
    """Fresh tickets at ``rate``/s until ``stop`` (each stamped with its time of sending)."""
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                  "partitioner": "murmur2_random"})  # fmt: skip
    start, i = time.monotonic(), 0
    while not stop.is_set():
        while (delay := start + i / rate - time.monotonic()) > 0:
            p.poll(delay)  # returns early when a delivery report comes
        key, value = fresh_ticket(i)
        p.produce(topic, value, key)
        i += 1
    p.flush(60)


# -- the measurement (pure) -----------------------------------------------------------
@dataclass
class Phases:
    """Wall-clock ms where each phase starts; the fresh records are sorted by source time."""

    baseline_ms: int = 0
    replay_ms: int = 0
    drained_ms: int = 0

    def of(self, src_ts: int) -> str | None:
        if self.baseline_ms <= src_ts < self.replay_ms:
            return "baseline"
        if self.replay_ms <= src_ts < self.drained_ms:
            return "replay"
        return None


HOPS = ("ingest", "enrich_minus_llm", "sequencer", "commit_visibility")


@dataclass(frozen=True)
class Seen:
    """A fresh record in ``P.output``: its source time, when a read_committed reader first
    saw it, the output record's time and its LLM call's latency."""

    src_ts: int
    seen_ms: int
    out_ts: int
    llm_ms: int


@dataclass
class Fresh:
    """The fresh records as they went by: in ``P.output``, and their outcome's time in
    ``P.results``."""

    seen: dict[Ident, Seen] = field(default_factory=dict)
    result_ts: dict[Ident, int] = field(default_factory=dict)

    def latencies(self, phases: Phases) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {"baseline": [], "replay": []}
        for s in self.seen.values():
            phase = phases.of(s.src_ts)
            if phase is not None:
                out[phase].append(s.seen_ms - s.src_ts)
        for v in out.values():
            v.sort()
        return out

    def hops(self, phases: Phases, work_ts: dict[Ident, int]) -> dict[str, dict[str, list[int]]]:
        """Per phase, where a fresh record's time went (ms, sorted): ingest (source to
        ``P.work``), enrich without the call (``P.work`` to ``P.results``: the wait behind
        other work, at the gate, and the bookkeeping), the sequencer (``P.results`` to
        ``P.output``) and the commit's visibility. Records missing a time are left out."""
        out: dict[str, dict[str, list[int]]] = {
            phase: {hop: [] for hop in HOPS} for phase in ("baseline", "replay")
        }
        for key, s in self.seen.items():
            phase = phases.of(s.src_ts)
            work, result = work_ts.get(key), self.result_ts.get(key)
            if phase is None or work is None or result is None:
                continue
            for hop, ms in zip(HOPS, (work - s.src_ts, result - work - s.llm_ms,
                                      s.out_ts - result, s.seen_ms - s.out_ts), strict=True):  # fmt: skip
                out[phase][hop].append(ms)
        for by_hop in out.values():
            for v in by_hop.values():
                v.sort()
        return out


def hops_p50_p99(hops: dict[str, dict[str, list[int]]]) -> dict[str, dict[str, list[int | None]]]:
    return {phase: {hop: [percentile(v, 0.5), percentile(v, 0.99)] for hop, v in by_hop.items()}
            for phase, by_hop in hops.items()}  # fmt: skip


def interpolate(samples: list[tuple[int, int]], ms: int) -> float:
    """The count at ``ms`` on the line between the samples (time, count) around it."""
    before = [(at, n) for at, n in samples if at <= ms]
    after = [(at, n) for at, n in samples if at > ms]
    if not before or not after:
        return float(before[-1][1] if before else after[0][1] if after else 0)
    (t0, n0), (t1, n1) = before[-1], after[0]
    return n0 + (n1 - n0) * (ms - t0) / (t1 - t0)


def utilization(requests: float, limit: int, seconds: float) -> float:
    return round(requests / (limit * seconds), 4) if seconds > 0 else 0.0


def targets(provider_429: int, util: float, delta_ms: int | None) -> dict[str, bool]:
    return {"provider_429==0": provider_429 == 0,
            f"utilization>={TARGET_UTILIZATION}": util >= TARGET_UTILIZATION,
            f"fresh_p99_delta_ms<={TARGET_DELTA_MS}":
                delta_ms is not None and delta_ms <= TARGET_DELTA_MS}  # fmt: skip


def verdict(r: dict[str, Any]) -> str:
    missed = [name for name, ok in r["targets_met"].items() if not ok]
    head = "PASS" if not missed else f"FAIL ({', '.join(missed)})"
    return (f"verdict: {head}: {r['records']} records replayed in {r['replay_drain_s']} s "
            f"({r['replay_rps']}/s), {r['provider_429']} 429s, utilization {r['utilization']} "
            f"of {r['limit_rps']}/s, fresh p99 {r['fresh_p99_ms_replay']} ms during the replay "
            f"vs {r['fresh_p99_ms_baseline']} ms without (delta {r['fresh_p99_delta_ms']} ms)")  # fmt: skip


# -- the run --------------------------------------------------------------------------
@dataclass
class Run:
    stack: Stack
    args: argparse.Namespace
    fleet: Fleet
    topics: Topics
    source: str
    admin: httpx.Client
    tail: Tail  # P.output: each fresh record is timed when it is read
    results: Tail  # P.results, lazily: its records are timed by their timestamps
    fresh: Fresh = field(default_factory=Fresh)
    samples: list[tuple[int, int]] = field(default_factory=list)  # (ms, fakellm requests)
    replay_id: str = ""
    replayed: dict[tuple[str, int, int], int] = field(default_factory=dict)  # → outcome time

    def pump(self, seconds: float) -> None:
        """Read ``P.output`` and ``P.results`` for ``seconds``: when each fresh record
        arrives in ``P.output``, when each replayed record's outcome was written."""
        until = time.monotonic() + seconds
        while (left := until - time.monotonic()) > 0:
            self.fleet.check()
            got = self.tail.poll(min(left, POLL_S)) + self.results.poll(0)
            now_ms = int(time.time() * 1000)
            for m in got:
                hs = m.headers()
                src = h.source_id(hs)
                key = (src.topic, src.partition, src.offset)
                replay = h.get_str(hs, h.REPLAY_ID)
                fresh = src.topic == self.source and replay is None
                if m.topic() == self.topics.results:
                    if replay is not None and replay == self.replay_id:
                        self.replayed.setdefault(key, m.timestamp()[1])
                    elif fresh:
                        self.fresh.result_ts.setdefault(key, m.timestamp()[1])
                elif fresh and key not in self.fresh.seen:
                    self.fresh.seen[key] = Seen(int(h.get_str(hs, h.SRC_TS) or 0), now_ms,
                                                m.timestamp()[1], int(h.get_str(hs, h.LATENCY_MS) or 0))  # fmt: skip

    def sample(self) -> dict[str, Any]:
        stats = self.fleet.llm_stats()
        self.samples.append((int(time.time() * 1000), int(stats["requests_total"])))
        return stats

    def requests_at(self, ms: int) -> float:
        """fakellm's request count at ``ms``, between the samples around it."""
        return interpolate(self.samples, ms)

    def task(self, replay_id: str) -> dict[str, Any]:
        r = self.admin.get(f"/v1/replays/{replay_id}")
        r.raise_for_status()
        out: dict[str, Any] = r.json()
        return out


def configured_rps(args: argparse.Namespace) -> float:
    rpm: float = math.floor(60 * args.limit * args.headroom)
    return rpm / 60


def write_config(fleet: Fleet, args: argparse.Namespace) -> None:
    doc = {
        "providers": {"fakellm": {"kind": "openai", "base_url": f"{fleet.fake_url}/v1",
                                  "timeout_s": 30,
                                  "requests_per_minute": math.floor(60 * args.limit * args.headroom),
                                  "max_connections": args.max_in_flight}},
        "tasks": {"sentiment": {"model": MODEL, "providers": ["fakellm"]}},
        "default_task": "sentiment",
    }  # fmt: skip
    (fleet.spec.log_dir / "sluice.yaml").write_text(json.dumps(doc, indent=2))


def start_admin(fleet: Fleet, args: argparse.Namespace, token: str) -> str:
    s = fleet.spec
    port = free_port()
    env = {"SLUICE_KAFKA_BOOTSTRAP": s.bootstrap, "SLUICE_REDIS_URL": s.redis_url,
           "SLUICE_PIPELINE": s.pipeline, "SLUICE_CONFIG_FILE": str(s.log_dir / "sluice.yaml"),
           "SLUICE_LOG_FORMAT": "json", "SLUICE_ADMIN_TOKEN": token,
           "SLUICE_ADMIN_PORT": str(port), "SLUICE_PARTITIONS": str(args.partitions),
           "SLUICE_ADMIN_REPLAY_WINDOW": str(args.replay_window),
           **({"SLUICE_ADMIN_REPLAY_BATCH": str(args.replay_batch)} if args.replay_batch else {})}  # fmt: skip
    fleet.procs.spawn("admin", ["admin"], env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        fleet.check()
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise BenchError(f"the admin was not ready in 60 s; see {fleet.procs.log_path('admin')}")


def dry_run(run: Run, rate: float) -> dict[str, Any]:
    """The admin's dry run of the replay (before the baseline: it reads the whole DLQ, and
    the bench's reader, on the same thread, reads nothing while it waits for the answer)."""
    dry = run.admin.post("/v1/replays", json={"dlq": "error", "rate": rate, "dry_run": True})
    if dry.status_code != 200:
        raise BenchError(f"the dry run answered {dry.status_code}: {dry.text[:500]}")
    result: dict[str, Any] = dry.json()
    return result


class Watch(threading.Thread):
    """The replay task's status and fakellm's counters, asked every :data:`POLL_S` on a
    thread of their own. The reader of ``P.output`` must never wait for an HTTP answer:
    the fresh records that arrive meanwhile would be stamped late, and on a busy machine
    (the admin is replaying) those answers take tens to hundreds of ms, which the
    baseline phase, asking nothing, never paid."""

    def __init__(self, bench: Run, replay_id: str) -> None:
        super().__init__(name="replay-watch", daemon=True)
        self.bench, self.replay_id = bench, replay_id
        self.done = threading.Event()
        self._lock = threading.Lock()
        self._latest: tuple[dict[str, Any], dict[str, Any]] | None = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            while True:
                stats = self.bench.sample()
                task = self.bench.task(self.replay_id)
                with self._lock:
                    self._latest = (task, stats)
                if self.done.wait(POLL_S):  # samples go on until the outcomes are in
                    return
        except BaseException as exc:
            with self._lock:
                self._error = exc

    def latest(self) -> tuple[dict[str, Any], dict[str, Any]] | None:
        """(task, fakellm's counters) as last asked; raises what the asking raised."""
        with self._lock:
            if self._error is not None:
                raise self._error
            return self._latest


def replay_phase(run: Run, replay_id: str, rate: float) -> dict[str, Any]:
    """The replay until every record it sent has an outcome; the task."""
    body: dict[str, Any] = {"dlq": "error", "rate": rate}
    run.replay_id = replay_id
    r = run.admin.post("/v1/replays", json={**body, "replay_id": replay_id})
    if r.status_code != 202:
        raise BenchError(f"starting the replay answered {r.status_code}: {r.text[:500]}")
    watch = Watch(run, replay_id)
    watch.start()
    try:
        return _follow(run, watch)
    finally:
        watch.done.set()
        watch.join(60)


def _follow(run: Run, watch: Watch) -> dict[str, Any]:
    started = time.monotonic()
    last_report = progress_at = started
    progress = (0, 0)
    while True:
        run.pump(POLL_S)
        latest = watch.latest()
        if latest is None:
            continue
        task, stats = latest
        if task["status"] not in ("running", "completed"):
            raise BenchError(f"the replay ended {task['status']}: {task.get('reason')}")
        done = len(run.replayed)
        if task["status"] == "completed" and done >= task["sent"]:
            return task
        if time.monotonic() - last_report >= 5:
            last_report = time.monotonic()
            say(f"[replay] {time.monotonic() - started:5.0f}s sent {task['sent']}/{run.args.records}"
                f"  outcomes {done}  fakellm 429s {stats['rate_limited']} max1s "
                f"{stats['max_requests_1s']}  fresh seen {len(run.fresh.seen)}")  # fmt: skip
        if (task["sent"], done) != progress:
            progress, progress_at = (task["sent"], done), time.monotonic()
        elif time.monotonic() - progress_at > STALL_S:
            raise BenchError(f"the replay made no progress in {STALL_S:.0f} s: {task}")


@dataclass(frozen=True)
class CpuSample:
    procs: dict[str, float]
    """Process name (``enrich-1``, ``kafka``, ``bench``, ...) → its CPU seconds so far."""
    busy_s: float
    """The machine's busy CPU seconds so far (all cores)."""
    at: float
    """``time.monotonic()`` of the sample."""


def cpu_now(stack: Stack, fleet: Fleet) -> CpuSample:
    pids = cpu_pids(stack, fleet.procs)
    return CpuSample(
        {n: proc_cpu_s(pid) for n, pid in pids.items()}, machine_busy_s(), time.monotonic()
    )


def cpu_during(before: CpuSample, after: CpuSample, records: int) -> dict[str, Any]:
    """The machine's use between two samples and each process kind's CPU ms per record
    (``enrich-1`` and ``enrich-2`` count as ``enrich``; ``bench`` is this process: the
    fresh producer and the readers); ``records`` is what the pipeline carried between
    them. A process that restarted in between is left out (its counter began again)."""
    by_kind: dict[str, float] = {}
    for name, s in after.procs.items():
        if name in before.procs and s >= before.procs[name]:
            kind = name.split("-")[0]
            by_kind[kind] = by_kind.get(kind, 0.0) + s - before.procs[name]
    wall = after.at - before.at
    per_record = {k: round(1000 * v / max(records, 1), 2) for k, v in sorted(by_kind.items())}
    return {"machine_busy_pct": round(100 * (after.busy_s - before.busy_s) / wall, 1) if wall > 0 else None,
            "cpu_ms_per_record": per_record,
            "cpu_ms_per_record_total": round(sum(1000 * v for v in by_kind.values()) / max(records, 1), 2),
            "records": records}  # fmt: skip


def measure(stack: Stack, args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    pipeline = f"benchreplay{int(time.time()) % 100000}"
    settings = load(CommonSettings, kafka_bootstrap=stack.bootstrap, pipeline=pipeline,
                    partitions=args.partitions, retry_rungs=RUNGS)  # fmt: skip
    source = f"{pipeline}.tickets"
    ensure_topic(settings, source, args.partitions)
    create_topics(settings, source)
    topics = Topics(pipeline)
    say(f"filling {topics.dlq('error')} with {args.records} dead records ...")
    fill_dlq(stack.bootstrap, topics.dlq("error"), f"{pipeline}.old", args.records, args.partitions)
    fleet = Fleet(FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url, pipeline=pipeline,
                            source_topic=source, log_dir=log_dir, llm_rps=args.limit, rungs=RUNGS,
                            latency=args.latency, max_in_flight=args.max_in_flight,
                            call_timeout_s=30))  # fmt: skip
    token = secrets.token_hex(24)
    stop = threading.Event()
    producer = threading.Thread(target=produce_fresh, args=(stack.bootstrap, source, args.fresh_rate, stop))  # fmt: skip
    try:
        fleet.start_fakellm()
        write_config(fleet, args)
        for name in fleet.spec.names:
            fleet.start_service(name)
        url = start_admin(fleet, args, token)
        fleet.wait_ready()
        admin = httpx.Client(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})
        tail = Tail(stack.bootstrap, [topics.output])
        results = Tail(stack.bootstrap, [topics.results], lazy=True)
        run = Run(stack, args, fleet, topics, source, admin, tail, results)
        try:
            producer.start()
            say(f"[warm-up] fresh traffic at {args.fresh_rate:g}/s for {args.warmup:g}s")
            run.pump(args.warmup)
            dry = dry_run(run, args.replay_rate)
            run.pump(2)  # what the dry run held up arrives before the baseline starts
            phases = Phases(baseline_ms=int(time.time() * 1000))
            say(f"[baseline] fresh traffic alone for {args.baseline_seconds:g}s")
            run.sample()
            run.pump(args.baseline_seconds)
            phases.replay_ms = int(time.time() * 1000)
            before = run.sample()
            cpu0 = cpu_now(stack, fleet)
            say(f"[replay] {args.records} records at {args.replay_rate:g}/s, fresh traffic on")
            replay_id = f"bench-{phases.replay_ms}"
            task = replay_phase(run, replay_id, args.replay_rate)
            cpu1 = cpu_now(stack, fleet)
            stop.set()
            producer.join(60)
            phases.drained_ms = max(run.replayed.values())
            run.pump(5)  # the fresh records of the replay phase still on their way
            after = run.sample()
        finally:
            stop.set()
            tail.close()
            results.close()
            admin.close()
    finally:
        fleet.stop()
    work_ts = first_attempt_times(stack.bootstrap, topics.work, source)
    drain_s = (phases.drained_ms - phases.replay_ms) / 1000
    baseline_s = (phases.replay_ms - phases.baseline_ms) / 1000
    replay_requests = run.requests_at(phases.drained_ms) - run.requests_at(phases.replay_ms)
    base_requests = run.requests_at(phases.replay_ms) - run.requests_at(phases.baseline_ms)
    lat = run.fresh.latencies(phases)
    p99 = {k: percentile(v, 0.99) for k, v in lat.items()}
    base_p99, replay_p99 = p99["baseline"], p99["replay"]
    delta = None if base_p99 is None or replay_p99 is None else replay_p99 - base_p99
    util = utilization(replay_requests, args.limit, drain_s)
    return {
        "bench": "replay", "records": args.records, "limit_rps": args.limit,
        "configured_rps": round(configured_rps(args), 2), "headroom": args.headroom,
        "fresh_rate_rps": args.fresh_rate, "replay_rate_asked": args.replay_rate,
        "replay_drain_s": round(drain_s, 2), "replay_rps": round(args.records / drain_s, 1),
        "provider_429": int(after["rate_limited"]), "utilization": util,
        "utilization_baseline": utilization(base_requests, args.limit, baseline_s),
        "max_requests_1s": int(after["max_requests_1s"]),
        "fresh_p50_ms_baseline": percentile(lat["baseline"], 0.5),
        "fresh_p99_ms_baseline": p99["baseline"],
        "fresh_p50_ms_replay": percentile(lat["replay"], 0.5), "fresh_p99_ms_replay": p99["replay"],
        "fresh_p99_delta_ms": delta,
        "ratio": round(replay_p99 / base_p99, 3) if replay_p99 is not None and base_p99 else None,
        "fresh_measured": {k: len(v) for k, v in lat.items()},
        "fresh_hops_p50_p99_ms": hops_p50_p99(run.fresh.hops(phases, work_ts)),
        "targets_met": targets(int(after["rate_limited"]), util, delta),
        "task": {k: task[k] for k in ("status", "matched", "sent", "refused_by_cap", "cache_hits",
                                      "succeeded", "failed_again")},
        "replay_outcomes": len(run.replayed), "provider_requests_before_replay": int(before["requests_total"]),
        "dry_run": {"matched": dry["matched"], "paid_calls": dry["paid_calls"],
                    "cache_hits": dry["cache_hits"],
                    "drain_s": round(dry["drain"]["seconds"], 2) if dry["drain"] else None},
        "cpu_during_replay": {**cpu_during(cpu0, cpu1, task["sent"] + len(lat["replay"])),
                              "cores": os.cpu_count(), "load_avg_1m_at_end": round(os.getloadavg()[0], 1)},
        "latency": args.latency, "partitions": args.partitions, "baseline_s": round(baseline_s, 1),
        "warmup_s": args.warmup, "logs": str(log_dir),
    }  # fmt: skip


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="sluice bench replay", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--records", type=int, default=10_000, help="dead records to replay")
    p.add_argument("--limit", type=int, default=200, help="provider limit, requests/s")
    p.add_argument("--headroom", type=float, default=DEFAULT_HEADROOM,
                   help="the fleet's requests_per_minute as a fraction of the limit")  # fmt: skip
    p.add_argument("--fresh-rate", type=float, default=20.0, help="fresh tickets/s")
    p.add_argument("--replay-rate", type=float, default=None,
                   help=f"records/s asked of the replay (default {LOAD_SHARE} * configured rate "
                        "- fresh rate)")  # fmt: skip
    p.add_argument("--replay-batch", type=int, default=None,
                   help="the admin's SLUICE_ADMIN_REPLAY_BATCH (default: the admin's)")  # fmt: skip
    p.add_argument("--replay-window", type=int, default=200,
                   help="the admin's SLUICE_ADMIN_REPLAY_WINDOW (default 200: under the bench "
                        "fleet's two workers * --max-in-flight)")  # fmt: skip
    p.add_argument("--baseline-seconds", type=float, default=30.0)
    p.add_argument("--warmup", type=float, default=15.0, help="seconds of fresh traffic first")
    p.add_argument("--latency", default="fixed:300", help="fakellm latency")
    p.add_argument("--partitions", type=int, default=6)
    p.add_argument("--max-in-flight", type=int, default=128, help="per enrich worker")
    args = p.parse_args(argv)
    if args.replay_rate is None:
        args.replay_rate = round(LOAD_SHARE * configured_rps(args) - args.fresh_rate, 1)
    if min(args.records, args.limit, args.fresh_rate, args.replay_rate, args.baseline_seconds,
           args.replay_window) <= 0:  # fmt: skip
        p.error("--records, --limit, --fresh-rate, --replay-rate, --baseline-seconds and "
                "--replay-window must be positive (and the fresh rate below the limit)")  # fmt: skip
    return args


def run(argv: list[str]) -> int:
    args = parse_args(argv)
    log_dir = Path(".sluice", "bench-replay", str(int(time.time()))).resolve()
    stack = acquire()
    try:
        say(f"Kafka {stack.bootstrap}, Redis {stack.redis_url}; logs in {log_dir}")
        result = measure(stack, args, log_dir)
    finally:
        stack.close()
    say(verdict(result))
    emit(result)
    return 0
