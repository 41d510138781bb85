"""DLQ browse and the replay dry run, on a real Kafka and Redis (and a real enrich's cache)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared.kafka.provision import create_topics
from shared.kinds import FailureKind
from shared.settings import CommonSettings, load
from tests.integration.test_admin_ctl import lines, sluice
from tests.support.admin import OP, VIEW, Client, audit_end, redis_snapshot, serve_admin
from tests.support.cli import error_line
from tests.support.dlq import dead_record
from tests.support.enrich import Worker, produce_work, work_records, write_config
from tests.support.kafka import end_offsets, produce, read_all

pytestmark = pytest.mark.integration

NOW_MS = int(time.time() * 1000)
HOUR_MS = 3_600_000


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str) -> str:
    create_topics(load(CommonSettings))
    return pipeline


@pytest.fixture
def config(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """One provider, 600 requests a minute, with prices; and its fakellm's URL."""
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        path = write_config(tmp_path / "c.yaml", url, rpm=600)
        doc = json.loads(path.read_text())
        doc["providers"]["primary"] |= {"input_price_per_mtok": 1.0, "output_price_per_mtok": 4.0}
        path.write_text(json.dumps(doc))
        yield path, url


def put(stack: Stack, topic: str, records: list[Any]) -> None:
    produce(stack.bootstrap, topic, [(r.key, r.value, r.headers) for r in records])


def pages(admin: Client, name: str, token: str = VIEW, **params: Any) -> list[list[dict[str, Any]]]:
    """Every page of a browse, following next_cursor (at most 100 pages)."""
    out, cursor = [], None
    for _ in range(100):
        r = admin.get(f"/v1/dlq/{name}/records", token,
                      params={**params, **({"cursor": cursor} if cursor else {})})  # fmt: skip
        assert r.status_code == 200, r.text
        out.append(r.json()["records"])
        cursor = r.json()["next_cursor"]
        if cursor is None:
            return out
    raise AssertionError("the cursor never reached the end")


def src_offsets(found: list[list[dict[str, Any]]]) -> list[int]:
    return sorted(rec["source"]["offset"] for page in found for rec in page)


def test_browse_filters_and_cursor(stack: Stack, topics: str, config: tuple[Path, str]) -> None:
    timeouts = [dead_record(i, key=b"k%d" % (i % 5), ts_ms=NOW_MS - (30 - i) * HOUR_MS,
                            provider="backup" if i % 4 == 0 else "primary",
                            replay_count=1 if i % 10 == 3 else None) for i in range(30)]  # fmt: skip
    errors = [dead_record(100 + i, kind=k, error_class=c, ts_ms=NOW_MS - 9 * 24 * HOUR_MS)
              for i, (k, c) in enumerate([(FailureKind.INVALID_OUTPUT, "schema")] * 3
                                         + [(FailureKind.BAD_REQUEST, "missing_field")] * 2)]  # fmt: skip
    big = dead_record(200, text="é" * 3000, kind=FailureKind.OUTAGE, error_class="paused")
    put(stack, f"{topics}.dlq.timeout", timeouts)
    put(stack, f"{topics}.dlq.error", errors)
    put(stack, f"{topics}.parked", [big])
    with serve_admin(config_file=config[0], admin_dlq_preview_bytes=100) as admin:
        paged = pages(admin, "timeout", limit=7)
        assert src_offsets(paged) == list(range(30))  # every record once, across pages
        assert len(paged) >= 5 and all(len(p) <= 7 for p in paged)
        for page in paged:  # offset order within each partition
            for part in {r["partition"] for r in page}:
                offs = [r["offset"] for r in page if r["partition"] == part]
                assert offs == sorted(offs)
        assert src_offsets(pages(admin, "timeout", provider="backup", limit=2)) == [
            i for i in range(30) if i % 4 == 0]  # fmt: skip
        assert src_offsets(pages(admin, "timeout", key="k2")) == [2, 7, 12, 17, 22, 27]
        assert src_offsets(pages(admin, "timeout", src_offset_min=5, src_offset_max=8)) == [
            5, 6, 7, 8]  # fmt: skip
        since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((NOW_MS - 3.5 * HOUR_MS) / 1000))
        assert src_offsets(pages(admin, "timeout", since=since)) == [27, 28, 29]
        assert src_offsets(pages(admin, "timeout", replay_count_min=1)) == [3, 13, 23]
        assert src_offsets(pages(admin, "timeout", kind="rate_limited")) == []
        assert src_offsets(pages(admin, "error", kind=["bad_request", "timeout"])) == [103, 104]
        assert src_offsets(pages(admin, "error", error_class="schema", src_topic="src")) == [
            100, 101, 102]  # fmt: skip

        [[shown]] = pages(admin, "parked")  # read-only, but browsed like the others
        assert shown["kind"] == "outage" and shown["error_class"] == "paused"
        assert shown["value"]["truncated"] and shown["value"]["bytes"] > 6000
        assert (
            len(shown["value"]["value"].encode()) <= 100 and shown["value"]["encoding"] == "utf-8"
        )
        assert [a["attempt"] for a in shown["history"]] == [1, 2, 3]
        headers = {hd["name"]: hd for hd in shown["headers"]}
        assert headers["kafka_dlt-original-offset"] == {
            "name": "kafka_dlt-original-offset", "encoding": "int", "value": 200, "bytes": 8,
            "truncated": False}  # fmt: skip
        assert headers["sluice.error.kind"]["value"] == "outage"
        assert headers["kafka_dlt-exception-fqcn"]["value"] == "sluice.outage"

        summary = {d["name"]: d for d in admin.get("/v1/dlq", VIEW).json()["dlqs"]}
        assert list(summary) == ["timeout", "error", "poison", "parked"]
        assert summary["timeout"]["by_kind"] == {"timeout": 30} and summary["timeout"]["complete"]
        assert summary["timeout"]["by_age"] == {"lt_1h": 0, "1h_1d": 23, "1d_7d": 7, "ge_7d": 0}
        assert summary["error"]["by_kind"] == {"invalid_output": 3, "bad_request": 2}
        assert summary["error"]["by_age"]["ge_7d"] == 5
        assert summary["poison"]["by_kind"] == {} and summary["poison"]["size"] == 0
        assert summary["parked"]["read_only"] and not summary["timeout"]["read_only"]


def test_browse_refusals_name_the_field(
    stack: Stack, topics: str, config: tuple[Path, str]
) -> None:
    put(stack, f"{topics}.dlq.error", [dead_record(i) for i in range(3)])
    with serve_admin(config_file=config[0]) as admin:
        r = admin.get("/v1/dlq/error/records", VIEW, params={"limit": 1})
        other_dlqs_cursor = r.json()["next_cursor"]
        assert other_dlqs_cursor
        for params, loc in [
            ({"src_partition": -1}, ["query", "src_partition"]),
            ({"kind": "nope"}, ["query", "kind", 0]),
            ({"src_offset_min": 5, "src_offset_max": 1}, ["query", "src_offset_max"]),
            ({"since": "yesterday"}, ["query", "since"]),
            ({"colour": "red"}, ["query", "colour"]),
            ({"limit": 0}, ["query", "limit"]),
            ({"cursor": "not-a-cursor"}, ["query", "cursor"]),
        ]:
            r = admin.get("/v1/dlq/error/records", VIEW, params=params)
            assert r.status_code == 422, (params, r.text)
            assert r.json()["detail"][0]["loc"] == loc, r.text
        r = admin.get("/v1/dlq/timeout/records", VIEW, params={"cursor": other_dlqs_cursor})
        assert r.status_code == 422 and "another DLQ" in r.json()["detail"][0]["msg"]
        r = admin.get("/v1/dlq/nope/records", VIEW)
        assert r.status_code == 404
        assert r.json()["detail"] == "unknown DLQ 'nope'; known: timeout, error, poison, parked"
        for path in ("/v1/dlq", "/v1/dlq/error/records"):
            assert admin.get(path, None).status_code == 401
            assert admin.get(path, "wrong-token-0123456789").status_code == 401
        assert (
            admin.post("/v1/replays", None, json={"dlq": "error", "dry_run": True}).status_code
            == 401
        )


def cached_run(stack: Stack, topics: str, cfg: Path, n: int) -> list[Any]:
    """n work records through a real enrich worker: their answers land in the result cache."""
    work = work_records(n, keys=n)
    produce_work(stack.bootstrap, topics, work)
    with Worker(config_file=cfg) as w:
        results = read_all(stack.bootstrap, f"{topics}.results", expect=n, timeout_s=90)
    assert w.error is None and len(results) == n
    return work


def test_a_dry_run_counts_matches_cache_hits_and_paid_calls_and_writes_nothing(
    stack: Stack, topics: str, config: tuple[Path, str]
) -> None:
    cfg, _url = config
    work = cached_run(stack, topics, cfg, 6)
    hit_values = [value for _key, value, _hs in work]
    dead = [dead_record(i, value=v, kind=FailureKind.INVALID_OUTPUT, error_class="schema")
            for i, v in enumerate(hit_values)]  # fmt: skip
    dead += [dead_record(10 + i, text=f"never asked {i}") for i in range(4)]  # paid
    dead += [dead_record(20 + i, text="never asked 0") for i in range(2)]  # repeats
    dead += [dead_record(30, value=b"not json")]  # fails again before any call
    dead += [dead_record(40 + i, text=f"capped {i}", replay_count=3) for i in range(2)]
    put(stack, f"{topics}.dlq.error", dead)
    with serve_admin(config_file=cfg) as admin:
        before = (redis_snapshot(stack.redis_url, topics), audit_end(stack.bootstrap, topics),
                  end_offsets(stack.bootstrap, f"{topics}.dlq.error"),
                  end_offsets(stack.bootstrap, f"{topics}.work"))  # fmt: skip
        r = admin.post("/v1/replays", VIEW, json={"dlq": "error", "dry_run": True})
        assert r.status_code == 200, r.text
        run = r.json()
        assert (run["task"], run["provider"], run["model"]) == ("sentiment", "primary", "fake-1")
        assert run["provider_available"] and run["complete"] and run["scanned"] == 15
        assert run["matched"] == 15 and run["replay_cap"] == 3 and run["refused_by_cap"] == 2
        assert run["by_kind"] == {"invalid_output": 6, "timeout": 9}
        assert run["by_class"] == {"invalid_output/schema": 6, "timeout/deadline": 9}
        assert (run["selected"], run["unrenderable"], run["cache_hits"], run["repeats"],
                run["paid_calls"]) == (13, 1, 6, 2, 4)  # fmt: skip
        assert run["output_tokens"] == 4 * 128  # max_tokens of the built-in sentiment task
        assert 4 * 50 < run["input_tokens"] < 4 * 200
        assert run["money"]["amount"] == pytest.approx(
            (run["input_tokens"] * 1.0 + run["output_tokens"] * 4.0) / 1e6
        )
        assert run["drain"]["limited_by"] == "rpm" and 0 <= run["drain"]["seconds"] < 1

        def dry(token: str = VIEW, **body: Any) -> dict[str, Any]:
            r = admin.post("/v1/replays", token, json={"dlq": "error", "dry_run": True, **body})
            assert r.status_code == 200, r.text
            return r.json()  # type: ignore[no-any-return]

        first3 = dry(max_records=3)
        assert (first3["matched"], first3["selected"], first3["cache_hits"]) == (15, 3, 3)
        only_paid = dry(OP, kind=["timeout"], src_offset_min=10, src_offset_max=29)
        assert (only_paid["matched"], only_paid["paid_calls"], only_paid["repeats"]) == (6, 4, 2)
        after = (redis_snapshot(stack.redis_url, topics), audit_end(stack.bootstrap, topics),
                 end_offsets(stack.bootstrap, f"{topics}.dlq.error"),
                 end_offsets(stack.bootstrap, f"{topics}.work"))  # fmt: skip
        assert after == before  # nothing written: Redis, audit, DLQ, work
    with serve_admin(config_file=cfg, admin_replay_cap=4) as admin:  # the cap is a setting
        r = admin.post("/v1/replays", VIEW, json={"dlq": "error", "dry_run": True})
        assert r.json()["refused_by_cap"] == 0 and r.json()["paid_calls"] == 6


def test_only_dry_runs_are_available(stack: Stack, topics: str, config: tuple[Path, str]) -> None:
    with serve_admin(config_file=config[0]) as admin:
        r = admin.post("/v1/replays", VIEW, json={"dlq": "error"})
        assert r.status_code == 403 and "operator token" in r.json()["detail"]
        for body in ({"dlq": "error"}, {"dlq": "error", "dry_run": False}):
            r = admin.post("/v1/replays", OP, json=body)
            assert r.status_code == 422, r.text
            [problem] = r.json()["detail"]
            assert problem["loc"] == ["body", "dry_run"]
            assert problem["msg"].startswith("only dry runs are available in this release")
        for body, loc in [
            ({"dlq": "parked", "dry_run": True}, ["body", "dlq"]),
            ({"dlq": "error", "dry_run": True, "task": "nope"}, ["body", "task"]),
            ({"dlq": "error", "dry_run": True, "max_records": 0}, ["body", "max_records"]),
            ({"dlq": "error", "dry_run": True, "until": "x"}, ["body", "until"]),
            ({"dry_run": True}, ["body", "dlq"]),
        ]:
            r = admin.post("/v1/replays", VIEW, json=body)
            assert r.status_code == 422, (body, r.text)
            assert r.json()["detail"][0]["loc"] == loc, r.text
        r = admin.post("/v1/replays", VIEW, json={"dlq": "nope", "dry_run": True})
        assert r.status_code == 404 and "unknown DLQ 'nope'" in r.json()["detail"]


def test_the_dlq_commands_over_the_api(stack: Stack, topics: str, config: tuple[Path, str]) -> None:
    put(
        stack,
        f"{topics}.dlq.timeout",
        [dead_record(i, key=b"k%d" % (i % 3), text=f"ticket {i}") for i in range(8)],
    )
    with serve_admin(config_file=config[0]) as admin:
        url = str(admin.http.base_url).rstrip("/")
        listed = {d["name"]: d for d in lines(sluice(url, VIEW, "dlq", "list"))}
        assert listed["timeout"]["by_kind"] == {"timeout": 8} and listed["error"]["scanned"] == 0
        first = sluice(url, VIEW, "dlq", "show", "timeout", "--limit", "5")
        shown = lines(first)
        assert len(shown) == 5 and first.stderr.startswith("sluice dlq: more records: --cursor ")
        rest = sluice(url, VIEW, "dlq", "show", "timeout", "--cursor", first.stderr.split()[-1])
        assert sorted(r["source"]["offset"] for r in shown + lines(rest)) == list(range(8))
        assert rest.stderr == ""  # the last page: no hint
        keyed = lines(sluice(url, VIEW, "dlq", "show", "timeout", "--key", "k1", "--kind", "timeout",
                             "--src-offset-max", "6"))  # fmt: skip
        assert sorted(r["source"]["offset"] for r in keyed) == [1, 4]
        [run] = lines(
            sluice(url, VIEW, "dlq", "replay", "timeout", "--dry-run", "--max-records", "3")
        )
        assert (run["matched"], run["selected"], run["paid_calls"]) == (8, 3, 3)
        proc = sluice(url, OP, "dlq", "replay", "timeout")
        assert error_line(proc, "dlq") == ("sluice dlq: error: POST /v1/replays: 422 dry_run: only "
                                           "dry runs are available in this release: send dry_run: "
                                           "true (replaying records is not built yet)")  # fmt: skip
        proc = sluice(url, VIEW, "dlq", "show", "nope")
        assert error_line(proc, "dlq").startswith(
            "sluice dlq: error: GET /v1/dlq/nope/records: 404 unknown DLQ 'nope'"
        )
        proc = sluice(url, VIEW, "dlq", "show", "timeout", "--since", "never")
        assert "422 since: " in error_line(proc, "dlq")
        proc = sluice(url, VIEW, "dlq", "show", "timeout", "--src-partition", "x")
        assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_read_stops_at_its_budget_and_the_cursor_goes_on(
    stack: Stack, topics: str, config: tuple[Path, str]
) -> None:
    put(stack, f"{topics}.dlq.error", [dead_record(i, key=b"k%d" % i) for i in range(20)])
    with serve_admin(config_file=config[0], admin_dlq_scan_records=6) as admin:
        r = admin.get("/v1/dlq/error/records", VIEW, params={"provider": "nobody"})
        assert r.status_code == 200, r.text
        assert r.json()["records"] == [] and r.json()["scanned"] == 6
        assert r.json()["next_cursor"]  # nothing matched yet, but the read goes on from here
        assert src_offsets(pages(admin, "error", limit=500)) == list(range(20))
        [error] = [d for d in admin.get("/v1/dlq").json()["dlqs"] if d["name"] == "error"]
        assert (error["scanned"], error["complete"], error["size"]) == (6, False, 20)
        run = admin.post("/v1/replays", VIEW, json={"dlq": "error", "dry_run": True}).json()
        assert (run["scanned"], run["complete"], run["matched"]) == (6, False, 6)
