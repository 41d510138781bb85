"""A provider that rejects the API key, with a real Kafka and a real Redis.

The key's rejection is the provider's problem, not the records': the provider
is opened fleet-wide (breaker, reason ``auth``) at the first 401, records go
to the fallback or are parked (``outage``, attempt unchanged), and once the key
works again a half-open probe closes the breaker.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from devtools.stack.resolve import Stack
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.enrich import Worker, breaker, produce_work, src_offset, wait_breaker
from tests.support.hostile import HostileServer, base_url, hostile_server
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration

KEY = "sk-test-do-not-log-7f3a"


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


def auth_config(path: Path, server: HostileServer, *, fallback: bool, open_s: float) -> Path:
    providers: dict[str, Any] = {
        "primary": {"kind": "openai", "base_url": base_url(server, "auth", "openai"), "api_key": KEY,
                    "timeout_s": 5, "breaker": {"min_requests": 100, "open_s": open_s}},
    }  # fmt: skip
    if fallback:
        providers["backup"] = {"kind": "anthropic", "base_url": base_url(server, "ok", "anthropic"), "timeout_s": 5}  # fmt: skip
    doc = {"providers": providers,
           "tasks": {"sentiment": {"providers": list(providers), "model": "m-1"}}}  # fmt: skip
    path.write_text(json.dumps(doc))
    return path


def records(n: int, attempt: int) -> list[tuple[bytes, bytes, list[tuple[str, bytes]]]]:
    return [
        (f"k{i % 7}".encode(), json.dumps({"text": f"I was charged twice #{i}"}).encode(),
         h.source_headers(h.SourceId("src", 0, i), 1_700_000_000_000, attempt))
        for i in range(n)
    ]  # fmt: skip


def outcomes(stack: Stack, pipeline: str, n: int, timeout_s: float = 60) -> dict[int, str]:
    """source offset → "ok" or the failure's kind (results win over failures)."""
    out: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for m in read_all(stack.bootstrap, f"{pipeline}.failures", idle_s=0.5, timeout_s=5):
            out.setdefault(src_offset(m), h.get_str(m.headers(), h.ERROR_KIND) or "?")
        for m in read_all(stack.bootstrap, f"{pipeline}.results", idle_s=0.5, timeout_s=5):
            out[src_offset(m)] = "ok"
    return out


def auth_failures() -> float:
    value = REGISTRY.get_sample_value(
        "sluice_provider_auth_failures_total", {"provider": "primary"}
    )
    return value or 0.0


def test_a_rejected_key_opens_the_provider_and_records_go_to_the_fallback(
    stack: Stack, topics: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    n = 30
    with hostile_server() as server:
        cfg = auth_config(tmp_path / "c.yaml", server, fallback=True, open_s=60)
        before = auth_failures()
        produce_work(stack.bootstrap, topics, records(n, attempt=1))
        with caplog.at_level(logging.WARNING), Worker(config_file=cfg, max_in_flight=4) as w:
            got = outcomes(stack, topics, n)
            view = breaker(stack, topics)
        assert w.error is None
        assert got == dict.fromkeys(range(n), "ok"), got
        results = read_all(stack.bootstrap, f"{topics}.results")
        assert {h.get_str(m.headers(), h.PROVIDER) for m in results} == {"backup"}
        assert read_all(stack.bootstrap, f"{topics}.failures", idle_s=1) == []
        # Only the calls already in flight when the first 401 came reached the primary.
        assert 1 <= server.requests["auth"] <= 4, server.requests
        assert server.requests["ok"] == n
    assert (view.state, view.reason) == ("open", "auth")
    assert auth_failures() - before == server.requests["auth"]
    lines = [r.getMessage() for r in caplog.records]
    assert any("primary" in line and "HTTP 401" in line and "breaker opened" in line for line in lines), lines  # fmt: skip
    assert not any(KEY in line for line in lines)


def test_without_a_fallback_records_are_parked_and_a_probe_closes_the_breaker_once_the_key_works(
    stack: Stack, topics: str, tmp_path: Path
) -> None:
    n = 24
    with hostile_server() as server:
        cfg = auth_config(tmp_path / "c.yaml", server, fallback=False, open_s=2)
        produce_work(stack.bootstrap, topics, records(n, attempt=2))
        with Worker(config_file=cfg, max_in_flight=4) as w:
            view = wait_breaker(stack, topics, "open")
            assert view.reason == "auth"
            time.sleep(1.0)
            rejected = server.requests["auth"]
            assert 1 <= rejected <= 4 + 3, server.requests  # in flight, then at most the probes
            server.key_ok = True  # the operator fixed the key
            got = outcomes(stack, topics, n)
            view = wait_breaker(stack, topics, "closed")
        assert w.error is None
    assert view.reason == ""
    assert len(got) == n and set(got.values()) <= {"ok", "outage"}, got
    assert list(got.values()).count("ok") >= n - 4 - 2 * 3, got
    failures = read_all(stack.bootstrap, f"{topics}.failures")
    assert failures, "the records in flight at the first 401 are parked"
    for m in failures:
        hs = m.headers()
        assert h.get_str(hs, h.ERROR_KIND) == "outage"
        assert (h.get_str(hs, h.ERROR_CLASS) or "").startswith("breaker_open")
        assert h.get_int(hs, h.ATTEMPT) == 2, "a parked record keeps its attempt"
    assert any(h.get_str(m.headers(), h.ERROR_CLASS) == "breaker_open:auth" for m in failures)
