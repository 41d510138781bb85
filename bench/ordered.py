"""The partition-ordered baseline of ``sluice bench e2e``.

What teams build when they need order and concurrency without sluice, in the
manner of Flink's ``orderedWait``: one consumer reads every partition, calls
the provider concurrently (up to ``max_in_flight`` calls), and emits each
partition's results strictly in offset order. A failed call is retried in
place after the same delays as sluice's ladder (5 s, then 1 m) and then given
up; meanwhile every later record of its partition, whatever its key, waits
behind it. That wait is the head-of-line blocking sluice removes.

Latency of a record = the time its result is emitted minus the source
record's timestamp, the same measure as sluice's (output record timestamp
minus source timestamp). Records still waiting when the run stops are counted
with the latency they have accrued so far (a lower bound), and reported.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from dataclasses import dataclass, field

import aiohttp
from confluent_kafka import Consumer, TopicPartition

from bench.naive import chat_body


@dataclass
class Slot:
    key: bytes | None
    ts_ms: int
    done: bool = False


@dataclass
class OrderedResult:
    emitted: list[tuple[bytes | None, int, int]] = field(default_factory=list)  # key, src ts, ms
    censored: int = 0  # records still held when the run stopped
    failed_calls: int = 0


class Ordered:
    """Concurrent calls, emission in partition order, failures retried in place."""

    def __init__(self, http: aiohttp.ClientSession, model: str, max_in_flight: int,
                 delays_s: tuple[float, ...], skip_keys: set[bytes]) -> None:  # fmt: skip
        self.http = http
        self.model = model
        self.sem = asyncio.Semaphore(max_in_flight)
        self.delays_s = delays_s
        self.skip_keys = skip_keys
        self.queues: dict[int, deque[Slot]] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.out = OrderedResult()
        self.wanted = self.emitted = self.seen = 0

    def take(self, part: int, key: bytes | None, ts_ms: int, value: bytes) -> None:
        self.seen += 1
        slot = Slot(key, ts_ms)
        self.queues.setdefault(part, deque()).append(slot)
        self.wanted += key not in self.skip_keys
        t = asyncio.create_task(self._call(part, slot, value))
        self.tasks.add(t)
        t.add_done_callback(self.tasks.discard)

    async def _call(self, part: int, slot: Slot, value: bytes) -> None:
        body = chat_body(value, self.model)
        for delay in (0.0, *self.delays_s):
            await asyncio.sleep(delay)
            async with self.sem:
                try:
                    async with self.http.post("/v1/chat/completions", json=body) as r:
                        if r.status == 200 and "error" not in await r.json():
                            break
                except (aiohttp.ClientError, TimeoutError, ValueError):
                    pass
                self.out.failed_calls += 1
        slot.done = True
        self._emit_ready(part)

    def _emit_ready(self, part: int) -> None:
        q = self.queues[part]
        now_ms = int(time.time() * 1000)
        while q and q[0].done:
            s = q.popleft()
            self.out.emitted.append((s.key, s.ts_ms, now_ms - s.ts_ms))
            self.emitted += s.key not in self.skip_keys

    def finish(self) -> OrderedResult:
        """Count what is still held (latency so far: a lower bound) and cancel the calls."""
        now_ms = int(time.time() * 1000)
        for q in self.queues.values():
            for s in q:
                self.out.emitted.append((s.key, s.ts_ms, now_ms - s.ts_ms))
                self.out.censored += 1
        for t in list(self.tasks):
            t.cancel()
        return self.out


async def run_ordered(bootstrap: str, topic: str, fake_url: str, model: str, n: int,
                      max_in_flight: int, delays_s: tuple[float, ...], timeout_s: float,
                      skip_keys: set[bytes]) -> OrderedResult:  # fmt: skip
    """Process the first ``n`` records of ``topic``; stop when every record whose key
    is not in ``skip_keys`` was emitted, or after ``timeout_s``."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-ordered-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})  # fmt: skip
    md = c.list_topics(topic, timeout=10)
    c.assign([TopicPartition(topic, p, 0) for p in md.topics[topic].partitions])
    deadline = time.monotonic() + timeout_s
    try:
        # The same HTTP client as enrich's (aiohttp), so only the ordering differs.
        async with aiohttp.ClientSession(
            base_url=fake_url,
            connector=aiohttp.TCPConnector(limit=max_in_flight),
            timeout=aiohttp.ClientTimeout(total=30.0),
        ) as http:
            o = Ordered(http, model, max_in_flight, delays_s, skip_keys)
            while time.monotonic() < deadline and not (o.seen >= n and o.emitted >= o.wanted):
                for m in c.consume(500, 0.0) if o.seen < n else []:
                    if m.error() is None:
                        o.take(m.partition() or 0, m.key(), m.timestamp()[1], m.value() or b"")
                await asyncio.sleep(0.01)
            return o.finish()
    finally:
        c.close()
