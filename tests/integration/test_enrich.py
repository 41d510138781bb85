"""enrich against fakellm, a real Kafka and a real Redis."""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.redis.client import connect
from shared.redis.health import set_paused
from shared.settings import CommonSettings, load
from tests.support.enrich import (
    Worker,
    fake_config,
    fake_stats,
    produce_work,
    spawn_worker,
    src_offset,
    wait_stats,
    work_records,
    write_config,
)  # fmt: skip
from tests.support.kafka import read_all
from tests.support.rawheaders import produce_raw

pytestmark = pytest.mark.integration


@pytest.fixture
def fake() -> Iterator[str]:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20), hang_seconds=30)) as url:
        yield url


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


def outcomes(
    stack: Stack, pipeline: str, n: int, timeout_s: float = 60
) -> dict[int, tuple[str, str]]:
    """source offset → ("ok", "") or ("failed", kind), reading results + failures."""
    out: dict[int, tuple[str, str]] = {}
    deadline = time.monotonic() + timeout_s
    while len(out) < n and time.monotonic() < deadline:
        for m in read_all(stack.bootstrap, f"{pipeline}.results", idle_s=0.5, timeout_s=5):
            out[src_offset(m)] = ("ok", "")
        for m in read_all(stack.bootstrap, f"{pipeline}.failures", idle_s=0.5, timeout_s=5):
            out.setdefault(src_offset(m), ("failed", h.get_str(m.headers(), h.ERROR_KIND) or "?"))
    return out


def test_every_fault_kind_ends_as_the_right_failure_kind(
    stack: Stack, topics: str, fake: str, tmp_path: Path
) -> None:
    expected = {0: "ok", 1: "timeout", 2: "provider_error", 3: "provider_error", 4: "provider_error",
                5: "overloaded", 6: "rate_limited", 7: "rate_limited", 8: "invalid_output", 9: "bad_request"}  # fmt: skip
    markers = {1: "hang", 2: "http_500", 3: "http_502", 4: "http_503", 5: "http_529", 6: "rate_limit",
               7: "error_body", 8: "invalid_json", 9: "bad_request"}  # fmt: skip
    cfg = write_config(tmp_path / "c.yaml", fake, timeout_s=1.0, min_requests=100)
    produce_work(stack.bootstrap, topics, work_records(10, markers=markers))
    with Worker(config_file=cfg) as w:
        got = outcomes(stack, topics, 10, timeout_s=60)
    assert w.error is None
    assert {o: (k or s) for o, (s, k) in got.items()} == expected
    fail = {src_offset(m): m for m in read_all(stack.bootstrap, f"{topics}.failures")}
    for offset, m in fail.items():
        hs = m.headers()
        assert h.get_str(hs, h.ERROR_CLASS) and h.get_str(hs, h.ERROR_MESSAGE)
        history = json.loads(h.get(hs, h.ERROR_HISTORY) or b"[]")
        assert history and history[-1]["attempt"] == 1 and history[-1]["kind"] == expected[offset]
        assert h.get_str(hs, h.PROVIDER) == "primary"
    ok = read_all(stack.bootstrap, f"{topics}.results")[0]
    doc = json.loads(ok.value())
    assert doc["enrichment"]["sentiment"] in ("positive", "neutral", "negative")
    assert doc["input"]["ticket"] == 0
    assert h.get_str(ok.headers(), h.OUTCOME) == "ok"
    assert int(h.get_str(ok.headers(), h.TOKENS_IN) or 0) > 0


def test_pause_stops_new_calls_fleet_wide_within_a_second_and_resume_restarts(
    stack: Stack, topics: str, tmp_path: Path
) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=200))) as url:
        cfg = write_config(tmp_path / "c.yaml", url)
        produce_work(stack.bootstrap, topics, work_records(400))
        with Worker(config_file=cfg, max_in_flight=8):
            wait_stats(url, lambda s: s["requests_total"] >= 20, 30)
            r = connect(stack.redis_url)
            import asyncio

            asyncio.run(set_paused(r, topics, "primary", True))
            time.sleep(1.0)
            frozen = fake_stats(url)["requests_total"]
            time.sleep(2.0)
            assert fake_stats(url)["requests_total"] == frozen, (
                "calls continued more than 1 s after pause"
            )
            asyncio.run(set_paused(connect(stack.redis_url), topics, "primary", False))
            wait_stats(url, lambda s: s["requests_total"] > frozen + 10, 10)
            got = outcomes(stack, topics, 400, timeout_s=90)
        # every record has its outcome: ok, or (in flight when paused) parked as outage
        assert len(got) == 400, f"{400 - len(got)} records without an outcome"
        kinds = {kind for status, kind in got.values() if status == "failed"}
        assert kinds <= {"outage"}, kinds
        assert sum(status == "ok" for status, _ in got.values()) >= 400 - 8


def test_outage_without_fallback_parks_and_with_fallback_uses_it(
    stack: Stack, topics: str, tmp_path: Path
) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        cfg = write_config(tmp_path / "c.yaml", url, min_requests=5, open_s=30)
        fake_config(url, {"faults": {"http_503": 1.0}})
        produce_work(stack.bootstrap, topics, work_records(100))
        with Worker(config_file=cfg, max_in_flight=4):
            kinds: list[str | None] = []
            deadline = time.monotonic() + 60
            while "outage" not in kinds and time.monotonic() < deadline:
                fails = read_all(stack.bootstrap, f"{topics}.failures", idle_s=0.5, timeout_s=5)
                kinds = [h.get_str(m.headers(), h.ERROR_KIND) for m in fails]
        # before the breaker trips a few calls fail as provider_error (attempt 1: a retry, not a DLQ);
        # after that, only outage failures; the rest of the records wait in P.work uncommitted
        assert kinds.count("provider_error") <= 5
        assert "outage" in kinds
        assert set(kinds) <= {"provider_error", "outage"}
        assert len(fails) < 100, "records must wait in P.work, not all fail"


def test_fallback_provider_serves_while_the_primary_is_paused(
    stack: Stack, topics: str, tmp_path: Path
) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=10))) as primary, \
         serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=10))) as backup:  # fmt: skip
        cfg = write_config(tmp_path / "c.yaml", primary, fallback_url=backup)
        import asyncio

        asyncio.run(set_paused(connect(stack.redis_url), topics, "primary", True))
        produce_work(stack.bootstrap, topics, work_records(30))
        with Worker(config_file=cfg):
            got = outcomes(stack, topics, 30)
        assert all(s == "ok" for s, _ in got.values()) and len(got) == 30
        assert fake_stats(primary)["requests_total"] == 0
        assert fake_stats(backup)["requests_total"] == 30
        providers = {
            h.get_str(m.headers(), h.PROVIDER)
            for m in read_all(stack.bootstrap, f"{topics}.results")
        }
        assert providers == {"backup"}


def test_three_workers_share_a_20_per_second_limit(
    stack: Stack, kafka_env: dict[str, str], topics: str, tmp_path: Path
) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=100))) as url:
        fake_config(url, {"limits": {"rps": 20}})  # the fake answers 429 above 20 in any second
        # 5% under the provider's limit, as README says to configure it: the fleet's
        # grants never exceed the budget in any second, but arrivals at the provider
        # jitter (on a busy machine a call granted earlier can arrive after one
        # granted later), and with no margin one such pair puts 21 in a second.
        cfg = write_config(tmp_path / "c.yaml", url, rpm=1140)
        n = 240
        produce_work(stack.bootstrap, topics, work_records(n, keys=97))
        env = {**kafka_env, "SLUICE_CONFIG_FILE": str(cfg), "SLUICE_MAX_IN_FLIGHT": "32"}
        procs = [spawn_worker(env) for _ in range(3)]
        try:
            stats = wait_stats(url, lambda s: s["requests_total"] >= n, 60)
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            errs = [p.communicate(timeout=60)[1].decode() for p in procs]
        assert stats["max_requests_1s"] <= 20, stats
        assert stats["rate_limited"] == 0, stats
        assert all(p.returncode == 0 for p in procs), errs[0][-2000:]
        got = outcomes(stack, topics, n)
        assert len(got) == n and all(s == "ok" for s, _ in got.values())


def test_sigkill_mid_flight_loses_nothing_and_answers_come_from_the_cache(
    stack: Stack, kafka_env: dict[str, str], topics: str, tmp_path: Path
) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=400))) as url:
        cfg = write_config(tmp_path / "c.yaml", url)
        n = 200
        produce_work(stack.bootstrap, topics, work_records(n, keys=200))
        env = {**kafka_env, "SLUICE_CONFIG_FILE": str(cfg), "SLUICE_MAX_IN_FLIGHT": "20"}
        proc = spawn_worker(env)
        wait_stats(url, lambda s: s["requests_total"] >= 60, 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        paid_before = fake_stats(url)["requests_total"]
        proc = spawn_worker(env)
        try:
            got = outcomes(stack, topics, n, timeout_s=90)
        finally:
            proc.send_signal(signal.SIGTERM)
            err = proc.communicate(timeout=60)[1].decode()
        assert len(got) == n, f"{n - len(got)} work records have no outcome; worker: {err[-3000:]}"
        stats = fake_stats(url)
        assert stats["repeated_paid_requests"] == 0, "an answer already received was paid for again"
        assert stats["requests_total"] - paid_before <= n - (paid_before - 20), stats


def test_a_30s_latency_spike_causes_no_rebalance(stack: Stack, topics: str, tmp_path: Path) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=30_000))) as url:
        cfg = write_config(tmp_path / "c.yaml", url, timeout_s=40)
        produce_work(stack.bootstrap, topics, work_records(30))
        import os

        os.environ["SLUICE_KAFKA_PROP_MAX_POLL_INTERVAL_MS"] = "10000"
        os.environ["SLUICE_KAFKA_PROP_SESSION_TIMEOUT_MS"] = "6000"
        try:
            with Worker(config_file=cfg, max_in_flight=8) as w:
                got = outcomes(stack, topics, 8, timeout_s=60)
                rebalances = w.service.stats.rebalances
        finally:
            del os.environ["SLUICE_KAFKA_PROP_MAX_POLL_INTERVAL_MS"]
            del os.environ["SLUICE_KAFKA_PROP_SESSION_TIMEOUT_MS"]
        assert len(got) >= 8 and all(s == "ok" for s, _ in got.values())
        assert rebalances == 1, f"{rebalances} rebalance callbacks: the group saw the worker stall"


def test_sigterm_with_calls_hanging_exits_cleanly_within_the_shutdown_grace(
    stack: Stack, kafka_env: dict[str, str], topics: str, tmp_path: Path
) -> None:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=60_000))) as url:
        cfg = write_config(tmp_path / "c.yaml", url, timeout_s=120)
        produce_work(stack.bootstrap, topics, work_records(10))
        env = {**kafka_env, "SLUICE_CONFIG_FILE": str(cfg), "SLUICE_SHUTDOWN_GRACE_S": "6"}
        proc = spawn_worker(env)
        wait_stats(url, lambda s: s["requests_total"] >= 10, 60)  # every call is hanging
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode()
        took = time.monotonic() - started
    # The hanging calls are cancelled within the grace (their records stay uncommitted
    # for the next owner) and the worker closes cleanly; before, it waited 15 s whatever
    # the setting said.
    assert proc.returncode == 0, err[-2000:]
    assert took < 6 + 3, f"SIGTERM took {took:.1f}s with SLUICE_SHUTDOWN_GRACE_S=6"
    assert read_all(stack.bootstrap, f"{topics}.results", idle_s=1, timeout_s=5) == []


def test_a_result_too_large_for_the_topics_is_a_failure_of_kind_oversize(
    stack: Stack, fake: str, topics: str, tmp_path: Path
) -> None:
    cfg = write_config(tmp_path / "c.yaml", fake)
    # Over what ingest forwards (it would be poison there), written to P.work directly:
    # the result embeds the input, so it would not fit P.results.
    big = json.dumps({"text": "refund please", "notes": "x" * 1_047_000}).encode()
    ours = h.source_headers(h.SourceId("src", 0, 0), 1_700_000_000_000, 1)
    produce_raw(
        stack.bootstrap, f"{topics}.work", [(b"k", big, [(n.encode(), v) for n, v in ours])]
    )
    produce_work(stack.bootstrap, topics, work_records(3, start=1))
    with Worker(config_file=cfg) as w:
        got = outcomes(stack, topics, 4, timeout_s=60)
        assert w.error is None and w.thread.is_alive(), "one record must not stop the worker"
    assert got[0] == ("failed", "oversize")
    assert all(got[i] == ("ok", "") for i in (1, 2, 3)), got
    [failure] = read_all(stack.bootstrap, f"{topics}.failures", expect=1)
    hs = failure.headers()
    assert h.get_str(hs, h.ERROR_CLASS) == "result_too_large"
    assert "SLUICE_MAX_MESSAGE_BYTES" in (h.get_str(hs, h.ERROR_MESSAGE) or "")
