"""enrich's provider adapters against a hostile server over real sockets.

Huge, endless, dripping, compressed-bomb, non-JSON and error-in-200 answers
each end as a classified failure, and memory stays bounded with many such
calls in flight (``max_response_bytes``). No Kafka or Redis.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Iterator

import pytest

from services.enrich.providers import CallFailure, ProviderRequest, build_provider
from services.enrich.tasks import render
from shared.config_file import MAX_RESPONSE_BYTES_DEFAULT, ProviderConfig, default_config
from shared.kinds import FailureKind as K
from tests.support.hostile import HostileServer, base_url, hostile_server

KINDS = ["openai", "anthropic"]
TASK = default_config({}).task("sentiment")
PAGE = os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def server() -> Iterator[HostileServer]:
    with hostile_server() as s:
        yield s


def request() -> ProviderRequest:
    req = render(TASK, {"text": "I was charged twice"})
    assert isinstance(req, ProviderRequest)
    return req


def config(server: HostileServer, mode: str, kind: str, **extra: object) -> ProviderConfig:
    return ProviderConfig.model_validate(
        {"kind": kind, "base_url": base_url(server, mode, kind), "api_key": "sk-test", **extra}
    )


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("mode", "want_kind", "want_class", "in_message"),
    [
        ("big", K.PROVIDER_ERROR, "response_too_large", "stopped after reading"),
        ("declared", K.PROVIDER_ERROR, "response_too_large", "Content-Length 50000000"),
        ("endless", K.PROVIDER_ERROR, "response_too_large", "stopped after reading"),
        ("gzip_bomb", K.PROVIDER_ERROR, "response_too_large", "stopped after reading"),
        ("drip", K.TIMEOUT, "timeout", "deadline"),
        ("not_json", K.PROVIDER_ERROR, "malformed_response", "not a JSON object"),
        ("deep", K.PROVIDER_ERROR, "malformed_response", "not a JSON object"),
        ("error_200", K.PROVIDER_ERROR, "error_body:server_error", "internal failure"),
        ("auth", K.PROVIDER_ERROR, "auth", "HTTP 401"),
    ],
)
async def test_each_hostile_answer_is_a_classified_failure(
    server: HostileServer, kind: str, mode: str, want_kind: K, want_class: str, in_message: str
) -> None:
    async with build_provider("hostile", config(server, mode, kind, timeout_s=2.0)) as p:
        started = time.monotonic()
        result = await p.call(request())
        took = time.monotonic() - started
    assert isinstance(result, CallFailure), result
    f = result.failure
    assert (f.kind, f.error_class) == (want_kind, want_class), f
    assert in_message in f.message, f.message
    if want_class == "response_too_large":
        assert "4 MiB cap" in f.message and "max_response_bytes" in f.message
    assert took < 10, "a hostile answer must end at the cap or the deadline"


async def test_the_cap_is_a_provider_setting(server: HostileServer) -> None:
    cfg = config(server, "ok", "openai", max_response_bytes=1024)
    async with build_provider("hostile", cfg) as p:
        result = await p.call(request())  # the completion is a few hundred bytes
        assert not isinstance(result, CallFailure), result
    async with build_provider("hostile", config(server, "big", "openai", max_response_bytes=4096)) as p:  # fmt: skip
        result = await p.call(request())
    assert isinstance(result, CallFailure)
    assert result.failure.error_class == "response_too_large"
    assert "4 KiB cap" in result.failure.message


class PeakRss:
    """Samples this process's resident memory every 10 ms in a thread; keeps the peak."""

    def __init__(self) -> None:
        self.baseline = self.peak = self.now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def now() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * PAGE

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, self.now())

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.peak = max(self.peak, self.now())

    @property
    def growth_mb(self) -> float:
        return (self.peak - self.baseline) / 1e6


@pytest.mark.parametrize("kind", KINDS)
async def test_memory_stays_bounded_with_16_huge_answers_in_flight(
    server: HostileServer, kind: str
) -> None:
    in_flight = 16
    assert MAX_RESPONSE_BYTES_DEFAULT == 4 * 1024 * 1024
    providers = {
        mode: build_provider(mode, config(server, mode, kind, timeout_s=5.0))
        for mode in ("big", "endless", "gzip_bomb")
    }
    try:
        # Warm up: sessions, connection pools and the parser exist before the baseline.
        await asyncio.gather(*(p.call(request()) for p in providers.values()))
        classes: dict[str, set[str]] = {}
        with PeakRss() as rss:
            for mode, p in providers.items():
                results = await asyncio.gather(*(p.call(request()) for _ in range(in_flight)))
                classes[mode] = {r.failure.error_class if isinstance(r, CallFailure) else "ok" for r in results}  # fmt: skip
    finally:
        for p in providers.values():
            await p.aclose()
    assert rss.growth_mb < 100, f"RSS grew {rss.growth_mb:.0f} MB with {in_flight} calls in flight"
    assert all(c == {"response_too_large"} for c in classes.values()), classes
