"""The baseline of ``sluice bench enrich``: the LLM call inside the poll loop.

This is the pattern sluice exists to replace, written the way teams write it:
one consumer per partition (threads of one process, one ``Consumer`` each, all
in one group), each polls a record, calls the provider synchronously with
``httpx``, parses the answer, produces the result and commits that record's
offset synchronously before polling the next one. A partition therefore
advances one record per LLM round trip, whatever the provider's rate limit.

Throughput is counted the same way as for sluice: records finished (answer
produced and offset committed) per second, inside a window that starts after
every consumer got its partition and a short warm-up.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
from confluent_kafka import Consumer, Message, Producer, TopicPartition

from shared.config_file import SENTIMENT
from shared.errors import SluiceError

CALL_TIMEOUT_S = 30.0


def chat_body(record_value: bytes, model: str) -> dict[str, Any]:
    """The same request sluice's ``sentiment`` task sends (system + prompt)."""
    text = json.loads(record_value)["text"]
    return {
        "model": model,
        "messages": [
            {"role": "system", "content": SENTIMENT["system"]},
            {"role": "user", "content": str(SENTIMENT["prompt"]).format(text=text)},
        ],
        "max_tokens": SENTIMENT["max_tokens"],
        "temperature": SENTIMENT["temperature"],
    }


@dataclass
class Shared:
    """What the consumer threads report to the bench (appends are atomic under the GIL)."""

    stop: threading.Event = field(default_factory=threading.Event)
    assigned: set[int] = field(default_factory=set)
    done_at: list[float] = field(default_factory=list)  # monotonic time of each finished record
    failed: list[str] = field(
        default_factory=list
    )  # provider errors (the record is still committed)
    errors: list[BaseException] = field(default_factory=list)  # a thread that crashed


class NaiveConsumer(threading.Thread):
    def __init__(self, i: int, conf: dict[str, Any], topic: str, out_topic: str, url: str,
                 model: str, shared: Shared) -> None:  # fmt: skip
        super().__init__(name=f"naive-{i}", daemon=True)
        self.conf, self.topic, self.out_topic = conf, topic, out_topic
        self.url, self.model, self.shared = url, model, shared

    def _on_assign(self, _c: Consumer, parts: list[TopicPartition]) -> None:
        self.shared.assigned.update(p.partition for p in parts)

    def run(self) -> None:
        try:
            self._loop()
        except BaseException as exc:
            self.shared.errors.append(exc)

    def _loop(self) -> None:
        consumer = Consumer(self.conf)
        producer = Producer({"bootstrap.servers": self.conf["bootstrap.servers"], "linger.ms": 0})
        client = httpx.Client(timeout=CALL_TIMEOUT_S)
        consumer.subscribe([self.topic], on_assign=self._on_assign)
        try:
            while not self.shared.stop.is_set():
                msg = consumer.poll(0.1)
                if msg is None or msg.error() is not None:
                    continue
                self._one(msg, client, producer)
                consumer.commit(message=msg, asynchronous=False)
                self.shared.done_at.append(time.monotonic())
        finally:
            client.close()
            producer.flush(10)
            consumer.close()

    def _one(self, msg: Message, client: httpx.Client, producer: Producer) -> None:
        """The LLM call in the poll loop: blocks this partition for one round trip."""
        try:
            r = client.post(self.url, json=chat_body(msg.value() or b"{}", self.model))
            r.raise_for_status()
            answer = json.loads(r.json()["choices"][0]["message"]["content"])
            out = json.dumps({"input": json.loads(msg.value() or b"{}"), "answer": answer})
        except Exception as exc:  # the naive loop logs and moves on
            self.shared.failed.append(type(exc).__name__)
            out = json.dumps({"error": str(exc)[:200]})
        producer.produce(self.out_topic, out.encode(), msg.key())
        producer.poll(0)


def run_baseline(bootstrap: str, topic: str, out_topic: str, partitions: int, base_url: str,
                 model: str, seconds: float, warmup_s: float,
                 progress: Callable[[str], None]) -> dict[str, Any]:  # fmt: skip
    """Records/s of ``partitions`` naive consumers over ``seconds`` after the warm-up."""
    shared = Shared()
    conf = {"bootstrap.servers": bootstrap, "group.id": f"naive-{uuid.uuid4().hex[:6]}",
            "enable.auto.commit": False, "auto.offset.reset": "earliest"}  # fmt: skip
    url = base_url.rstrip("/") + "/chat/completions"
    threads = [NaiveConsumer(i, conf, topic, out_topic, url, model, shared) for i in range(partitions)]  # fmt: skip
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while len(shared.assigned) < partitions and not shared.errors:
            if time.monotonic() > deadline:
                raise SluiceError(f"naive consumers got {len(shared.assigned)}/{partitions} partitions in 60 s")  # fmt: skip
            time.sleep(0.1)
        time.sleep(warmup_s)
        t0 = time.monotonic()
        end = t0 + seconds
        while time.monotonic() < end and not shared.errors:
            time.sleep(min(5.0, max(0.0, end - time.monotonic())))
            n = sum(1 for x in shared.done_at if x >= t0)
            progress(f"baseline {time.monotonic() - t0:4.0f}/{seconds:.0f}s  {n} records  {n / max(time.monotonic() - t0, 1e-9):.1f}/s")  # fmt: skip
        t1 = time.monotonic()
    finally:
        shared.stop.set()
        for t in threads:
            t.join(CALL_TIMEOUT_S + 15)
    if shared.errors:
        raise SluiceError(f"a naive consumer failed: {shared.errors[0]!r}")
    done = sum(1 for x in shared.done_at if t0 <= x < t1)
    return {
        "baseline_rps": done / (t1 - t0),
        "baseline_records": done,
        "baseline_consumers": partitions,
        "baseline_failed_calls": len(shared.failed),
    }
