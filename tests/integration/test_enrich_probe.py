"""A record the provider always fails on, alone behind an open breaker (real Kafka, Redis, HTTP).

Parked by an outage, such a record is the half-open probe every ``open_s``
when nothing else is sent to the provider: it must not hold the breaker open
for good. Its first failure as the probe re-opens the breaker (the outage may
be real); its second is judged by the provider's model list, which fakellm
answers, so the breaker closes and the failure is the record's own.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from confluent_kafka import Message
from prometheus_client import REGISTRY

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.enrich import (
    Worker,
    breaker,
    fake_stats,
    produce_work,
    trip,
    wait_breaker,
    write_config,
)  # fmt: skip
from tests.support.kafka import read_all

pytestmark = pytest.mark.integration

OPEN_S = 2.0


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


def failures(stack: Stack, pipeline: str, n: int) -> list[Message]:
    got = read_all(stack.bootstrap, f"{pipeline}.failures", expect=n, timeout_s=60)
    assert len(got) == n, f"{len(got)} failures, expected {n}"
    return got


def error_of(m: Message) -> tuple[str | None, str | None, int]:
    hs = m.headers()
    return h.get_str(hs, h.ERROR_KIND), h.get_str(hs, h.ERROR_CLASS), h.get_int(hs, h.ATTEMPT)


def checks(verdict: str) -> float:
    labels = {"provider": "primary", "verdict": verdict}
    return REGISTRY.get_sample_value("sluice_provider_probe_checks_total", labels) or 0.0


def test_a_lone_record_failing_as_the_probe_twice_closes_the_breaker_and_spends_its_attempt(
    stack: Stack, topics: str, tmp_path: Path
) -> None:
    value = json.dumps({"text": "always breaks the provider [[fault:http_500]]"}).encode()
    work = (b"k1", value, h.source_headers(h.SourceId("src", 0, 1), 1_700_000_000_000, 1))
    ups = checks("up")
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        cfg = write_config(tmp_path / "c.yaml", url, open_s=OPEN_S)
        trip(stack.redis_url, topics, "primary", OPEN_S)
        produce_work(stack.bootstrap, topics, [work])
        with Worker(config_file=cfg, max_in_flight=4) as w:
            # First time as the probe: the provider may really be down; re-opened, parked.
            [first] = failures(stack, topics, 1)
            assert error_of(first) == ("outage", "probe_failed:http_500", 1)
            assert breaker(stack, topics).reason == "probe_failed"
            assert fake_stats(url)["model_lists"] == 0
            # The router sends a parked record back to work as it is (same attempt).
            produce_work(stack.bootstrap, topics, [(first.key(), first.value(), first.headers())])
            [_, second] = failures(stack, topics, 2)
            view = wait_breaker(stack, topics, "closed")
        assert w.error is None
        stats = fake_stats(url)
    # Second time: the provider lists its models, so the failure is the record's.
    assert error_of(second) == ("provider_error", "http_500", 1)
    assert view.reason == ""
    assert stats["model_lists"] == 1
    assert stats["requests_total"] == 2  # the record's two calls; the list is no completion
    assert checks("up") == ups + 1
