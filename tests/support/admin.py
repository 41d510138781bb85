"""Helpers for admin tests: a config, the app in a thread, a client with tokens, what must not change."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import redis
import redis.asyncio as aioredis
from confluent_kafka import KafkaException

from services.admin.app import create_app
from services.admin.server import serve_in_thread
from services.admin.settings import AdminSettings
from shared.redis.client import connect
from shared.redis.fleet import Fleet
from shared.redis.pause import PauseInfo, Pauses
from shared.settings import load
from tests.support.enrich import write_config
from tests.support.kafka import end_offsets, wait_for

OP = "operator-token-5f1c0a9e7b3d"
VIEW = "viewer-token-9a7e3c5b1d0f"


def admin_config(path: Path, fake_url: str, rpm: int = 600) -> Path:
    """enrich's test config, plus a model of its own with a budget of one call a minute."""
    write_config(path, fake_url, rpm=rpm)
    doc = json.loads(path.read_text())
    doc["providers"]["primary"]["models"] = {"slow-model": {"requests_per_minute": 1}}
    path.write_text(json.dumps(doc))
    return path


@contextmanager
def serve_admin(**overrides: Any) -> Iterator[Client]:
    """The admin app (operator + viewer tokens unless overridden) on a free loopback port."""
    overrides = {"admin_token": OP, "admin_viewer_token": VIEW, **overrides}
    insecure = overrides.pop("insecure_dev", False)
    settings = load(AdminSettings, **overrides)
    app = create_app(settings, insecure_dev=insecure)
    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Client(http)


class Client:
    def __init__(self, http: httpx.Client) -> None:
        self.http = http

    @staticmethod
    def _headers(token: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path: str, token: str | None = OP, **kw: Any) -> httpx.Response:
        return self.http.get(path, headers=self._headers(token), **kw)

    def post(self, path: str, token: str | None = OP, **kw: Any) -> httpx.Response:
        return self.http.post(path, headers={**self._headers(token), **kw.pop("headers", {})}, **kw)

    def wait_ready(self, timeout_s: float) -> None:
        """Until ``/readyz`` says ready and ``/v1/lag`` has its first sample."""
        wait_for(
            lambda: self.get("/readyz", None).status_code == 200, timeout_s, what="/readyz 200"
        )
        wait_for(lambda: self.get("/v1/lag").status_code == 200, timeout_s,
                 what="the first lag sample (GET /v1/lag 200)")  # fmt: skip

    def provider(self, name: str, token: str | None = OP) -> dict[str, Any]:
        r = self.get("/v1/providers", token)
        assert r.status_code == 200, r.text
        [p] = [p for p in r.json()["providers"] if p["name"] == name]
        return p  # type: ignore[no-any-return]


T = TypeVar("T")


def on_redis(url: str, read: Callable[[aioredis.Redis], Awaitable[T]]) -> T:
    """``read(client)`` with an async client of ``url``, closed after."""

    async def run() -> T:
        r = connect(url)
        try:
            return await read(r)
        finally:
            await r.aclose()

    return asyncio.run(run())


def inflight_by_worker(url: str, pipeline: str, provider: str) -> dict[str, int]:
    """Each live worker's calls in flight to ``provider``, from their heartbeats in Redis."""
    return on_redis(url, lambda r: Fleet(r, pipeline).list_workers(provider))


def pause_in_redis(url: str, pipeline: str, name: str) -> PauseInfo | None:
    """The provider's pause as every worker reads it from Redis (None: not paused)."""
    return on_redis(url, lambda r: Pauses(r, pipeline).read(name))


def redis_snapshot(url: str, pipeline: str) -> dict[bytes, bytes | None]:
    """Every key of the pipeline with its serialized value."""
    r = redis.Redis.from_url(url)
    try:
        return {k: r.dump(k) for k in sorted(r.scan_iter(match=f"sluice:{pipeline}:*"))}
    finally:
        r.close()


def audit_end(bootstrap: str, pipeline: str) -> dict[int, int]:
    """End offsets of P.audit (retried while a new topic has no leader yet)."""
    for _ in range(50):
        try:
            return end_offsets(bootstrap, f"{pipeline}.audit")
        except KafkaException:
            time.sleep(0.2)
    return end_offsets(bootstrap, f"{pipeline}.audit")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
