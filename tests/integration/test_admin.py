"""The admin API against a real Kafka and Redis (and enrich workers, for pause)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import pytest
from confluent_kafka.admin import AdminClient

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared.call_stats import CallTally
from shared.config_file import load_config
from shared.kafka.provision import create_topics
from shared.redis.client import connect
from shared.redis.fleet import Fleet
from shared.redis.health import provider_health
from shared.redis.provider_config import bucket_limits
from shared.settings import CommonSettings, load
from tests.support.admin import (
    OP,
    VIEW,
    admin_config,
    audit_end,
    inflight_by_worker,
    redis_snapshot,
    serve_admin,
)
from tests.support.enrich import Worker, fake_stats, produce_work, work_records
from tests.support.kafka import wait_for
from tests.support.redis_ops import BreakersOps, CooldownsOps, LimiterOps

pytestmark = pytest.mark.integration

MUTATIONS = ["/v1/providers/primary/pause", "/v1/providers/primary/resume"]
READS = ["/v1/providers", "/v1/audit"]


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        yield admin_config(tmp_path / "c.yaml", url)


def test_probes_docs_and_metrics(stack: Stack, topics: str, config: Path) -> None:
    with serve_admin(config_file=config) as admin:
        assert admin.get("/healthz", None).json() == {"status": "ok"}
        ready = admin.get("/readyz", None)
        assert ready.status_code == 200, ready.text
        assert ready.json() == {"ready": True, "checks": {"kafka": {"ok": True, "error": None},
                                                          "redis": {"ok": True, "error": None}}}  # fmt: skip
        schema = admin.get("/openapi.json", None).json()
        assert {"/v1/providers", "/v1/providers/{name}/pause", "/v1/providers/{name}/resume",
                "/v1/audit", "/healthz", "/readyz", "/metrics"} <= set(schema["paths"])  # fmt: skip
        assert schema["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
        assert "PauseIn" in schema["components"]["schemas"]
        docs = admin.get("/docs", None)
        assert docs.status_code == 200 and "swagger" in docs.text.lower()
        admin.get("/v1/providers", "wrong-token-0123456789")
        admin.get("/v1/providers", VIEW)
        metrics = admin.get("/metrics", None)
        assert metrics.status_code == 200
        assert (
            'sluice_admin_requests_total{endpoint="list_providers",method="GET",status="401"}'
            in metrics.text
        )
        assert OP not in metrics.text and VIEW not in metrics.text
        assert "set-cookie" not in {k.lower() for k in ready.headers}
        assert "access-control-allow-origin" not in {k.lower() for k in ready.headers}


def test_the_app_samples_lag_and_serves_it_behind_the_token(
    stack: Stack, topics: str, config: Path
) -> None:
    with serve_admin(config_file=config, admin_lag_interval_s=0.5, admin_lag_window_s=2.0) as admin:
        assert admin.get("/v1/lag", None).status_code == 401
        deadline = time.monotonic() + 60
        # no sample yet (503), or a first one that failed (topics just created: no leader yet)
        while (lag := admin.get("/v1/lag", VIEW)).status_code == 503 or lag.json()["error"]:
            assert time.monotonic() < deadline, lag.text
            time.sleep(0.2)
        assert lag.status_code == 200, lag.text
        report = lag.json()
        assert {g["group"] for g in report["groups"]} == {
            f"{topics}.{stage}" for stage in ("ingest", "enrich", "router", "sequencer")
        }
        assert admin.get("/v1/lag", VIEW, params={"group": "nope"}).status_code == 404
        assert "/v1/lag" in admin.get("/openapi.json", None).json()["paths"]
        assert "sluice_lag_sampled_at_seconds " in admin.get("/metrics", None).text


def test_readyz_names_the_dependency_that_failed(stack: Stack, topics: str, config: Path) -> None:
    with serve_admin(config_file=config, redis_url="redis://:s3cret-pw@127.0.0.1:1/0") as admin:
        r = admin.get("/readyz", None)
        assert r.status_code == 503
        checks = r.json()["checks"]
        assert checks["kafka"]["ok"] and not checks["redis"]["ok"] and checks["redis"]["error"]
        assert "s3cret-pw" not in r.text
        assert admin.get("/healthz", None).status_code == 200  # alive, not ready
    with serve_admin(config_file=config, kafka_bootstrap="127.0.0.1:1") as admin:
        checks = admin.get("/readyz", None).json()["checks"]
        assert not checks["kafka"]["ok"] and "127.0.0.1:1" in checks["kafka"]["error"]
        assert checks["redis"]["ok"]
    # without P.replays no replay task can be kept: not ready, and the answer names the topic
    kafka = AdminClient({"bootstrap.servers": stack.bootstrap})
    kafka.delete_topics([f"{topics}.replays"])[f"{topics}.replays"].result(30)
    with serve_admin(config_file=config) as admin:

        def kafka_error() -> str:
            return admin.get("/readyz", None).json()["checks"]["kafka"].get("error") or ""

        wait_for(lambda: f"{topics}.replays" in kafka_error(), 30, what="/readyz naming P.replays")
        assert admin.get("/readyz", None).status_code == 503


def test_without_the_right_token_nothing_is_read_or_changed(
    stack: Stack, topics: str, config: Path
) -> None:
    with serve_admin(config_file=config) as admin:
        before = (redis_snapshot(stack.redis_url, topics), audit_end(stack.bootstrap, topics))
        bodies = []
        for path in MUTATIONS + READS:
            call = admin.post if path in MUTATIONS else admin.get
            kw = {"json": {"reason": "x"}} if path.endswith("pause") else {}
            for token in (None, "wrong-token-0123456789", OP[:-1]):
                r = call(path, token, **kw)
                assert r.status_code == 401, (path, token, r.text)
                assert r.headers["www-authenticate"] == "Bearer"
                bodies.append(r.text)
            r = admin.http.request(
                "POST" if path in MUTATIONS else "GET",
                path,
                headers={"Authorization": f"Basic {OP}"},
                **kw,
            )
            assert r.status_code == 401
            if path in MUTATIONS:
                r = call(path, VIEW, **kw)
                assert r.status_code == 403, r.text
                assert "operator token" in r.json()["detail"]
                bodies.append(r.text)
            else:
                assert call(path, VIEW).status_code == 200
        after = (redis_snapshot(stack.redis_url, topics), audit_end(stack.bootstrap, topics))
        assert after == before
        assert not any(OP in b or VIEW in b for b in bodies)


def test_bad_input_is_422_naming_the_field_and_an_unknown_provider_404(
    stack: Stack, topics: str, config: Path
) -> None:
    with serve_admin(config_file=config) as admin:
        before = redis_snapshot(stack.redis_url, topics)
        for body in ({}, {"reason": ""}, {"reason": "   "}, {"reason": 5}):
            r = admin.post("/v1/providers/primary/pause", json=body)
            assert r.status_code == 422, (body, r.text)
            assert [e["loc"] for e in r.json()["detail"]] == [["body", "reason"]]
        r = admin.post("/v1/providers/primary/pause", json={"reason": "x", "extra": 1})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "extra"]
        r = admin.post("/v1/providers/primary/pause")  # no body at all
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body"]
        r = admin.get("/v1/audit", params={"limit": 0})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["query", "limit"]
        for path in ("/v1/providers/nope/pause", "/v1/providers/nope/resume"):
            r = admin.post(path, json={"reason": "x"})
            assert r.status_code == 404
            assert r.json()["detail"] == "unknown provider 'nope'; configured: primary"
        assert redis_snapshot(stack.redis_url, topics) == before


def test_pause_and_resume_are_audited_and_listed_newest_first(
    stack: Stack, topics: str, config: Path
) -> None:
    with serve_admin(config_file=config) as admin:
        r = admin.post("/v1/providers/primary/pause", json={"reason": " incident 42 "},
                       headers={"X-Request-ID": "req-1"})  # fmt: skip
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["paused"] and body["changed"] and body["request_id"] == "req-1"
        assert body["pause"]["by"] == "operator" and body["pause"]["reason"] == "incident 42"
        assert r.headers["x-request-id"] == "req-1"
        p = admin.provider("primary", VIEW)
        assert p["paused"] and p["pause"] == body["pause"]
        h = asyncio.run(provider_health(connect(stack.redis_url), topics, "primary"))
        assert h.paused and not h.available  # what every worker and the router read
        again = admin.post("/v1/providers/primary/pause", json={"reason": "other"}).json()
        assert not again["changed"] and again["pause"] == body["pause"]  # the first pause stays
        r = admin.post("/v1/providers/primary/resume")
        assert r.status_code == 200 and r.json()["changed"] and not r.json()["paused"]
        assert r.json()["pause"]["reason"] == "incident 42"  # the pause it ended
        assert not admin.provider("primary")["paused"]
        records = admin.get("/v1/audit", VIEW).json()["records"]
        assert [(a["action"], a["result"]["changed"]) for a in records] == [
            ("provider.resume", True), ("provider.pause", False), ("provider.pause", True)]  # fmt: skip
        first = records[-1]
        assert (
            first["id"] == "req-1" and first["who"] == "operator" and first["target"] == "primary"
        )
        assert first["params"] == {"reason": "incident 42"}
        assert first["result"]["in_flight"] == 0
        assert [a["action"] for a in admin.get("/v1/audit", params={"limit": 2}).json()["records"]] \
            == ["provider.resume", "provider.pause"]  # fmt: skip


def test_a_mutation_that_cannot_be_audited_is_undone_and_answers_503(
    stack: Stack, kafka_env: dict[str, str], pipeline: str, config: Path
) -> None:
    # No topics at all: P.audit does not exist, so no audit record can be delivered.
    with serve_admin(config_file=config, admin_audit_timeout_s=1.0) as admin:
        r = admin.post("/v1/providers/primary/pause", json={"reason": "x"})
        assert r.status_code == 503, r.text
        assert "audit record could not be written" in r.json()["detail"]
        assert "the change was undone" in r.json()["detail"]
        assert not admin.provider("primary")["paused"]
        assert admin.get("/readyz", None).json()["checks"]["kafka"]["ok"] is False
        assert admin.get("/v1/audit").status_code == 503


def test_no_token_in_the_log_metrics_or_any_error_body(
    stack: Stack, kafka_env: dict[str, str], pipeline: str, config: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    caplog.set_level(logging.DEBUG)
    answers: dict[int, list[str]] = defaultdict(list)

    def keep(r: httpx.Response) -> None:
        answers[r.status_code].append(f"{r.text} {r.headers}")

    # No topics: P.audit does not exist, so a mutation cannot be audited (503) nor the log read.
    with serve_admin(config_file=config, admin_audit_timeout_s=1.0) as admin:
        for token in (OP, VIEW, OP + "x", VIEW[:-1]):  # right, and wrong but close
            keep(admin.get("/v1/providers", token))
            keep(admin.post("/v1/providers/primary/pause", token, json={"reason": "x"}))
            keep(admin.post("/v1/providers/nope/pause", token, json={"reason": "x"}))
            keep(admin.post("/v1/providers/primary/pause", token, json={"reason": " "}))
            keep(admin.get("/v1/audit", token))
            keep(admin.get("/v1/lag", token, params={"group": "nope"}))
        keep(admin.get("/metrics", None))
    with serve_admin(config_file=config, redis_url="redis://127.0.0.1:1/0") as admin:  # no Redis
        for token in (OP, VIEW):
            keep(admin.get("/v1/providers", token))
            keep(admin.post("/v1/providers/primary/resume", token))
    assert {200, 401, 403, 404, 422, 503} <= set(answers), sorted(answers)
    assert len(answers[503]) >= 5  # audit not written, audit not read (2), Redis away (2)
    logged = [
        (r.name, r.getMessage(), str(r.__dict__))
        for r in caplog.records
        if not r.name.startswith(("httpx", "httpcore"))
    ]  # the app's, not the test client's
    assert any("audit record not written" in m for _, m, _ in logged)  # the 503s were logged
    for token in (OP, VIEW):
        assert not [a for found in answers.values() for a in found if token in a]
        assert not [(n, m) for n, m, d in logged if token in d], f"a token in the log: {token}"


def test_providers_show_what_the_fleet_keeps_in_redis(
    stack: Stack, topics: str, config: Path
) -> None:
    cfg = load_config(config).providers["primary"]

    async def fleet_state() -> None:
        r = connect(stack.redis_url)
        await BreakersOps(r, topics).trip("primary", "auth")
        limiter = LimiterOps(r, topics, {"primary": bucket_limits(cfg)})
        assert (await limiter.reserve("primary", "slow-model", 0)).granted
        await CooldownsOps(r, topics).extend_cooldown("primary", 30)
        fleet = Fleet(r, topics)
        for worker, latencies in (("w1", [80] * 49 + [4000]), ("w2", [80] * 50)):
            tally = CallTally()
            for ms in latencies:
                tally.add(ms, ms > 1000)
            await fleet.heartbeat("primary", worker, 3, calls=tally)
            assert tally.calls == 0  # handed over
        await r.aclose()

    asyncio.run(fleet_state())
    with serve_admin(config_file=config) as admin:
        p = admin.provider("primary")
    assert p["kind"] == "openai" and not p["paused"] and p["pause"] is None
    assert p["breaker"]["state"] == "open" and p["breaker"]["reason"] == "auth"
    assert p["breaker"]["open_until"] is not None
    assert p["cooldown_until"] is not None
    assert (p["in_flight"], p["workers"]) == (6, 2)
    rpm, slow = p["buckets"]
    assert (rpm["bucket"], rpm["kind"], rpm["model"]) == ("rpm", "requests", None)
    assert 0 < rpm["refill_per_s"] <= 10 and rpm["left"] == rpm["capacity"]  # untouched
    assert (slow["bucket"], slow["model"]) == ("rpm:slow-model", "slow-model")
    assert slow["refill_per_s"] == pytest.approx(1 / 60) and slow["left"] < 0.5  # taken
    minute = p["last_minute"]
    assert (minute["calls"], minute["errors"]) == (100, 1)
    assert minute["error_rate"] == pytest.approx(0.01)
    assert 50 < minute["p50_ms"] <= 100 and 50 < minute["p99_ms"] <= 100


def test_pause_stops_four_busy_workers_within_a_second_drains_and_resume_restarts(
    stack: Stack, kafka_env: dict[str, str], pipeline: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setenv("SLUICE_PARTITIONS", "4")  # a partition of P.work for each worker
    create_topics(load(CommonSettings))
    names = [f"w{i}" for i in range(4)]

    def inflight() -> dict[str, int]:
        return inflight_by_worker(stack.redis_url, pipeline, "primary")

    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=300))) as url:
        cfg = admin_config(tmp_path / "c.yaml", url, rpm=0)  # no bucket: load, not a budget
        produce_work(stack.bootstrap, pipeline, work_records(4000, keys=400))
        with ExitStack() as running, serve_admin(config_file=cfg) as admin:
            for name in names:
                running.enter_context(Worker(config_file=cfg, max_in_flight=4, worker_id=name))
            wait_for(lambda: sorted(w for w, n in inflight().items() if n > 0) == names, 60,
                     what="all four workers with calls in flight")  # fmt: skip
            asked = time.time()  # fakellm's clock: the same wall clock
            r = admin.post("/v1/providers/primary/pause", json={"reason": "load test"})
            answered = time.time()
            assert r.status_code == 200, r.text
            assert r.json()["changed"] and r.json()["in_flight"] >= 0
            # the last new call started within a second of the answer: after it, 2 s of quiet
            wait_for(lambda: time.time() - fake_stats(url)["last_request_at"] > 2.0, 20,
                     what="fakellm to get no new call for 2 s after the pause")  # fmt: skip
            stopped = fake_stats(url)
            late = stopped["last_request_at"] - answered
            assert late < 1.0, (f"a call started {late:.2f} s after the pause answered "
                                f"(which took {answered - asked:.2f} s)")  # fmt: skip
            # the calls in flight at the pause finish: every worker's in-flight drains to 0
            wait_for(lambda: admin.provider("primary")["in_flight"] == 0, 10, what="drain")
            assert inflight() == dict.fromkeys(names, 0)
            p = admin.provider("primary")
            assert p["paused"] and p["pause"]["reason"] == "load test" and p["workers"] == 4
            minute = p["last_minute"]  # counted by the workers, handed over with heartbeats
            assert minute["calls"] >= 16 and minute["errors"] == 0
            assert 250 <= minute["p50_ms"] <= 500 and minute["p99_ms"] <= 1500
            r = admin.post("/v1/providers/primary/resume")
            assert r.status_code == 200 and r.json()["changed"]
            wait_for(lambda: sorted(w for w, n in inflight().items() if n > 0) == names, 20,
                     what="all four workers calling again after the resume")  # fmt: skip
            assert fake_stats(url)["requests_total"] > stopped["requests_total"]
            actions = [a["action"] for a in admin.get("/v1/audit").json()["records"]]
            assert actions == ["provider.resume", "provider.pause"]
