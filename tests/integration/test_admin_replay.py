"""Replay tasks on a real Kafka and Redis: exactly once per replay id, cancel, pause, SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.integration.test_admin_cli import admin_cmd, clean_env, wait_up
from tests.integration.test_admin_ctl import lines, sluice
from tests.support.admin import OP, VIEW, Client, free_port, serve_admin
from tests.support.cli import error_line
from tests.support.dlq import dead_record
from tests.support.enrich import write_config
from tests.support.kafka import produce, read_all, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    """One provider, 6000 requests a minute (a pace of 100 records/s at most)."""
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        yield write_config(tmp_path / "c.yaml", url, rpm=6000)


def put_dead(stack: Stack, pipeline: str, n: int, capped: int = 0, **kw: Any) -> None:
    """n records in P.dlq.error (source offsets 0..n-1, spread over keys); the last ``capped``
    replayed 3 times already."""
    records = [dead_record(i, key=b"k%d" % (i % 7), text=f"ticket {i}",
                           replay_count=3 if i >= n - capped else (1 if i % 5 == 0 else None),
                           **kw) for i in range(n)]  # fmt: skip
    produce(
        stack.bootstrap, f"{pipeline}.dlq.error", [(r.key, r.value, r.headers) for r in records]
    )


def replayed(stack: Stack, pipeline: str, replay_id: str) -> list[Any]:
    """The records in P.work (read_committed) that replay ``replay_id``."""
    return [m for m in read_all(stack.bootstrap, f"{pipeline}.work", idle_s=2)
            if h.get_str(m.headers(), h.REPLAY_ID) == replay_id]  # fmt: skip


def src_offsets(msgs: list[Any]) -> Counter[int]:
    return Counter(h.source_id(m.headers()).offset for m in msgs)


def task(admin: Client, replay_id: str) -> dict[str, Any]:
    r = admin.get(f"/v1/replays/{replay_id}", VIEW)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def wait_status(
    admin: Client, replay_id: str, status: str, timeout_s: float = 60
) -> dict[str, Any]:
    wait_for(lambda: task(admin, replay_id)["status"] == status, timeout_s,
             what=f"replay {replay_id} {status}")  # fmt: skip
    return task(admin, replay_id)


def test_a_replay_sends_each_matching_record_once_per_replay_id(
    stack: Stack, topics: str, config: Path
) -> None:
    put_dead(stack, topics, 20, capped=2)
    body = {"dlq": "error", "kind": ["timeout"], "src_offset_min": 2, "max_records": 12}
    before = REGISTRY.get_sample_value("sluice_admin_replayed_total", {"dlq": "error"}) or 0
    with serve_admin(config_file=config) as admin:
        dry = admin.post("/v1/replays", VIEW, json={**body, "dry_run": True}).json()
        params = {k: v for k, v in body.items() if k not in ("dlq", "max_records")}
        shown = admin.get("/v1/dlq/error/records", VIEW, params={**params, "limit": 500})
        first = sorted((r["partition"], r["offset"], r["source"]["offset"])
                       for r in shown.json()["records"] if r["replay_count"] < 3)[:12]  # fmt: skip
        r = admin.post("/v1/replays", OP, json={**body, "replay_id": "r-1"})
        assert r.status_code == 202, r.text
        assert r.json()["id"] == "r-1" and r.json()["status"] == "running"
        done = wait_status(admin, "r-1", "completed")
        # the dry run said what the task did: same selection, same cap
        assert (done["matched"], done["refused_by_cap"], done["sent"]) == (
            dry["matched"], dry["refused_by_cap"], dry["selected"]) == (18, 2, 12)  # fmt: skip
        again = admin.post("/v1/replays", OP, json={**body, "replay_id": "r-1"})
        assert again.status_code == 200 and again.json()["id"] == "r-1", again.text
        assert again.json()["sent"] == 12
        replayed_total = REGISTRY.get_sample_value("sluice_admin_replayed_total", {"dlq": "error"})
        assert replayed_total == before + 12  # the dashboard's replay rate counts each once
        other = admin.post("/v1/replays", OP, json={**body, "max_records": 3, "replay_id": "r-1"})
        assert other.status_code == 409 and "another request" in other.json()["detail"]
        listed = admin.get("/v1/replays", VIEW).json()["replays"]
        assert [t["id"] for t in listed] == ["r-1"]
        audit = admin.get("/v1/audit", VIEW).json()["records"]
        actions = {(a["action"], a["target"]) for a in audit}
        assert {("replay.start", "error"), ("replay.completed", "error")} <= actions
        [start] = [a for a in audit if a["action"] == "replay.start"]
        assert start["who"] == "operator" and start["params"]["kind"] == ["timeout"]
        [end] = [a for a in audit if a["action"] == "replay.completed"]
        assert end["result"]["sent"] == 12 and end["params"]["filters"]["src_offset_min"] == 2
    sent = replayed(stack, topics, "r-1")
    # the first 12 by (partition, offset) of the DLQ, as the dry run selects them; each once
    assert src_offsets(sent) == Counter(src for _p, _o, src in first)
    for m in sent:
        hs = m.headers()
        assert h.get_int(hs, h.ATTEMPT) == 1
        assert h.get_int(hs, h.REPLAY_COUNT) == (2 if h.source_id(hs).offset % 5 == 0 else 1)
        assert h.get(hs, h.ERROR_KIND) is None and h.get(hs, "kafka_dlt-original-offset") is None
        assert len(json.loads(h.get(hs, h.ERROR_HISTORY) or b"[]")) == 3  # bounded history kept
        assert [n for n, _ in hs].count(h.REPLAY_COUNT) == 1


def test_replay_refusals(stack: Stack, topics: str, config: Path) -> None:
    put_dead(stack, topics, 3)
    with serve_admin(config_file=config) as admin:
        body = {"dlq": "error", "replay_id": "r-2"}
        assert admin.post("/v1/replays", None, json=body).status_code == 401
        r = admin.post("/v1/replays", VIEW, json=body)
        assert r.status_code == 403 and "operator token" in r.json()["detail"]
        for bad, loc in [({"dlq": "error"}, ["body", "replay_id"]),
                         ({**body, "replay_id": "no spaces"}, ["body", "replay_id"]),
                         ({**body, "rate": 0}, ["body", "rate"]),
                         ({**body, "dlq": "parked"}, ["body", "dlq"])]:  # fmt: skip
            r = admin.post("/v1/replays", OP, json=bad)
            assert r.status_code == 422, (bad, r.text)
            assert r.json()["detail"][0]["loc"] == loc, r.text
        assert admin.get("/v1/replays/nope", VIEW).status_code == 404
        assert admin.post("/v1/replays/nope/cancel", OP).status_code == 404
        assert admin.get("/v1/replays", None).status_code == 401
        assert admin.post("/v1/replays", OP, json=body).status_code == 202
        assert admin.post("/v1/replays/r-2/cancel", VIEW).status_code == 403
        wait_status(admin, "r-2", "completed")
        r = admin.post("/v1/replays/r-2/cancel", OP)
        assert r.status_code == 409 and "completed" in r.json()["detail"]


def test_cancel_stops_within_a_second_and_one_task_per_dlq(
    stack: Stack, topics: str, config: Path
) -> None:
    put_dead(stack, topics, 40)
    with serve_admin(config_file=config) as admin:
        r = admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": "slow", "rate": 4})
        assert r.status_code == 202, r.text
        wait_for(lambda: task(admin, "slow")["sent"] >= 3, 30, what="3 records sent")
        busy = admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": "second"})
        assert busy.status_code == 409 and "'slow'" in busy.json()["detail"]
        started = time.monotonic()
        r = admin.post("/v1/replays/slow/cancel", OP)
        took = time.monotonic() - started
        assert r.status_code == 200, r.text
        assert r.json()["status"] == "cancelled" and took < 1.0, (r.json(), took)
        sent = r.json()["sent"]
        assert 3 <= sent < 40
        time.sleep(2)
        assert task(admin, "slow")["sent"] == sent
        audit = {a["action"] for a in admin.get("/v1/audit", VIEW).json()["records"]}
        assert {"replay.start", "replay.cancel", "replay.cancelled"} <= audit
        assert admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": "second",
                                                    "max_records": 1}).status_code == 202  # fmt: skip
        wait_status(admin, "second", "completed")
    assert sum(src_offsets(replayed(stack, topics, "slow")).values()) == sent


def test_a_paused_provider_holds_the_task_until_resumed(
    stack: Stack, topics: str, config: Path
) -> None:
    put_dead(stack, topics, 30)
    with serve_admin(config_file=config) as admin:
        r = admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": "p", "rate": 5})
        assert r.status_code == 202, r.text
        wait_for(lambda: task(admin, "p")["sent"] >= 2, 30, what="2 records sent")
        assert (
            admin.post("/v1/providers/primary/pause", OP, json={"reason": "t"}).status_code == 200
        )
        wait_for(lambda: task(admin, "p")["waiting"], 10, what="the task to wait")
        held = task(admin, "p")["sent"]
        time.sleep(2)
        assert task(admin, "p")["sent"] == held < 30 and task(admin, "p")["status"] == "running"
        assert admin.post("/v1/providers/primary/resume", OP).status_code == 200
        done = wait_status(admin, "p", "completed")
        assert done["sent"] == 30 and done["waiting"] is None
    assert src_offsets(replayed(stack, topics, "p")) == Counter(range(30))


def test_sigkill_mid_task_then_the_same_request_sends_each_record_once(
    stack: Stack, kafka_env: dict[str, str], topics: str, config: Path
) -> None:
    put_dead(stack, topics, 60)
    port = free_port()
    env = clean_env(**kafka_env, SLUICE_ADMIN_TOKEN=OP, SLUICE_ADMIN_VIEWER_TOKEN=VIEW,
                    SLUICE_CONFIG_FILE=str(config), SLUICE_ADMIN_REPLAY_BATCH="3")  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    body = {"dlq": "error", "replay_id": "k", "rate": 20}
    auth = {"Authorization": f"Bearer {OP}"}

    def run() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(admin_cmd(env, "--port", str(port)), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
        wait_up(url, proc)
        return proc

    proc = run()
    try:
        r = httpx.post(f"{url}/v1/replays", json=body, headers=auth, timeout=30)
        assert r.status_code == 202, r.text
        wait_for(lambda: httpx.get(f"{url}/v1/replays/k", headers=auth).json()["sent"] >= 10, 30,
                 what="10 records sent")  # fmt: skip
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    proc = run()
    try:
        r = httpx.post(f"{url}/v1/replays", json=body, headers=auth, timeout=60)
        assert r.status_code == 200 and r.json()["id"] == "k", r.text
        wait_for(lambda: httpx.get(f"{url}/v1/replays/k", headers=auth).json()["status"]
                 == "completed", 90, what="the resumed replay completed")  # fmt: skip
        assert httpx.get(f"{url}/v1/replays/k", headers=auth).json()["sent"] == 60
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode()
    assert "resuming it" in err, err[-2000:]
    assert src_offsets(replayed(stack, topics, "k")) == Counter(range(60))


def test_the_replay_commands_over_the_api(stack: Stack, topics: str, config: Path) -> None:
    put_dead(stack, topics, 5)
    with serve_admin(config_file=config) as admin:
        url = str(admin.http.base_url).rstrip("/")
        [started] = lines(sluice(url, OP, "dlq", "replay", "error", "--replay-id", "c1",
                                 "--max-records", "2", "--rate", "50"))  # fmt: skip
        assert (started["id"], started["dlq"], started["max_records"]) == ("c1", "error", 2)
        wait_status(admin, "c1", "completed")
        [shown] = lines(sluice(url, VIEW, "dlq", "replays", "c1"))
        assert (shown["status"], shown["sent"]) == ("completed", 2)
        assert [t["id"] for t in lines(sluice(url, VIEW, "dlq", "replays"))] == ["c1"]
        proc = sluice(url, OP, "dlq", "cancel", "c1")
        assert error_line(proc, "dlq") == ("sluice dlq: error: POST /v1/replays/c1/cancel: 409 "
                                           "replay 'c1' is completed: nothing to cancel")  # fmt: skip
        [fresh] = lines(sluice(url, OP, "dlq", "replay", "error", "--max-records", "1"))
        assert fresh["id"].startswith("r-") and fresh["id"] != "c1"


@pytest.mark.parametrize("fetch_min_bytes", [None, "65536"])
def test_a_replay_waits_at_its_window_until_first_attempts_are_over(
    stack: Stack, topics: str, config: Path, monkeypatch: pytest.MonkeyPatch,
    fetch_min_bytes: str | None,
) -> None:  # fmt: skip
    """No enrich runs here: the test plays its part, writing outcomes and failed attempts.

    Also with the stages' consumers tuned to fetch in bigger batches: the runner's reads
    of the outcomes must not wait for them (they did, and the task never completed)."""
    if fetch_min_bytes is not None:
        monkeypatch.setenv("SLUICE_KAFKA_PROP_FETCH_MIN_BYTES", fetch_min_bytes)
    put_dead(stack, topics, 25)

    def sent() -> int:
        return int(task(admin, "w")["sent"])

    def through_enrich(msgs: list[Any], ok: int) -> None:
        """The first ``ok`` succeed (P.results), the rest fail an attempt (P.failures)."""
        produce(
            stack.bootstrap,
            f"{topics}.results",
            [(m.key(), b"{}", [*m.headers(), (h.OUTCOME, b"ok")]) for m in msgs[:ok]],
        )
        produce(stack.bootstrap, f"{topics}.failures",
                [(m.key(), m.value(), m.headers()) for m in msgs[ok:]])  # fmt: skip

    with serve_admin(config_file=config, admin_replay_window=10) as admin:
        r = admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": "w"})
        assert r.status_code == 202, r.text
        wait_for(lambda: sent() >= 10, 30, what="a window's worth sent")
        wait_for(lambda: "SLUICE_ADMIN_REPLAY_WINDOW" in (task(admin, "w")["waiting"] or ""),
                 30, what="the task to say it waits for its window")  # fmt: skip
        assert sent() == 10 and task(admin, "w")["status"] == "running"
        first = replayed(stack, topics, "w")
        assert len(first) == 10  # what the window holds is in P.work, not in an open transaction
        through_enrich(first, ok=6)
        wait_for(lambda: sent() >= 20, 30, what="the next window")
        time.sleep(2)
        assert sent() == 20
        assert task(admin, "w")["succeeded"] == 6
        seen = set(src_offsets(first))
        through_enrich([m for m in replayed(stack, topics, "w")
                        if h.source_id(m.headers()).offset not in seen], ok=10)  # fmt: skip
        done = wait_status(admin, "w", "completed")
        assert done["sent"] == 25 and done["waiting"] is None
    assert src_offsets(replayed(stack, topics, "w")) == Counter(range(25))
