"""Helpers for enrich tests: config files, work records, running workers."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Message

from devtools.stack.resolve import Stack
from services.enrich.service import EnrichService
from services.enrich.settings import EnrichSettings
from shared import headers as h
from shared.kafka.shutdown import StopFlag
from shared.redis.breaker import Breakers, BreakerView
from shared.redis.breaker_logic import BreakerSpec
from shared.redis.client import connect
from shared.settings import load
from tests.support.kafka import produce


def write_config(path: Path, fake_url: str, *, rpm: int = 0, timeout_s: float = 5.0, fallback_url: str | None = None,
                 min_requests: int = 5, open_s: float = 5.0) -> Path:  # fmt: skip
    providers: dict[str, Any] = {
        "primary": {"kind": "openai", "base_url": f"{fake_url}/v1", "timeout_s": timeout_s,
                    "requests_per_minute": rpm,
                    "breaker": {"min_requests": min_requests, "open_s": open_s, "window_s": 10}},
    }  # fmt: skip
    chain = ["primary"]
    if fallback_url:
        providers["backup"] = {
            "kind": "anthropic",
            "base_url": fallback_url,
            "timeout_s": timeout_s,
        }
        chain.append("backup")
    doc = {
        "providers": providers,
        "tasks": {"sentiment": {"providers": chain, "model": "fake-1"}},
        "default_task": "sentiment",
    }
    path.write_text(json.dumps(doc))  # JSON is YAML
    return path


def work_records(n: int, text: str = "I was charged twice, please refund", keys: int = 50,
                 start: int = 0, markers: dict[int, str] | None = None) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:  # fmt: skip
    out = []
    for i in range(start, start + n):
        t = text + (f" [[fault:{markers[i]}]]" if markers and i in markers else "") + f" #{i}"
        value = json.dumps({"ticket": i, "text": t}).encode()
        out.append(
            (
                f"k{i % keys}".encode(),
                value,
                h.source_headers(h.SourceId("src", 0, i), 1_700_000_000_000, 1),
            )
        )
    return out


def produce_work(bootstrap: str, pipeline: str, records: list[Any]) -> None:
    produce(bootstrap, f"{pipeline}.work", records)


def src_offset(m: Message) -> int:
    return h.source_id(m.headers()).offset


class Worker:
    """An enrich worker in a thread of the test process."""

    def __init__(self, **overrides: Any) -> None:
        self.stop = StopFlag()
        self.service = EnrichService(load(EnrichSettings, **overrides), self.stop)
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> Worker:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set("test over")
        self.thread.join(60)
        assert not self.thread.is_alive(), "enrich did not stop"


def spawn_worker(env: dict[str, str], **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "services.cli", "enrich"],
                            env={**os.environ, **env, "SLUICE_KAFKA_PROP_SESSION_TIMEOUT_MS": "6000", **extra},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip


def fake_stats(url: str) -> dict[str, Any]:
    result: dict[str, Any] = httpx.get(f"{url}/_control/stats", timeout=5).json()
    return result


def fake_config(url: str, update: dict[str, Any]) -> None:
    httpx.put(f"{url}/_control/config", json=update, timeout=5).raise_for_status()


def wait_stats(url: str, cond: Any, timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = fake_stats(url)
        if cond(s):
            return s
        time.sleep(0.1)
    raise AssertionError(f"fakellm stats never satisfied the condition: {fake_stats(url)}")


def breaker(stack: Stack, pipeline: str, provider: str = "primary") -> BreakerView:
    async def view() -> BreakerView:
        r = connect(stack.redis_url)
        try:
            return await Breakers(r, pipeline).view(provider)
        finally:
            await r.aclose()

    return asyncio.run(view())


def wait_breaker(stack: Stack, pipeline: str, state: str, timeout_s: float = 30) -> BreakerView:
    deadline = time.monotonic() + timeout_s
    while (view := breaker(stack, pipeline)).state != state:
        assert time.monotonic() < deadline, f"breaker never {state}: {view}"
        time.sleep(0.1)
    return view


def trip(redis_url: str, pipeline: str, provider: str, open_s: float) -> None:
    """Open ``provider``'s breaker for ``open_s``, as an outage would have."""

    async def go() -> None:
        r = connect(redis_url)
        try:
            await Breakers(r, pipeline, BreakerSpec(open_s=open_s)).trip(provider, "failure_rate")
        finally:
            await r.aclose()

    asyncio.run(go())
