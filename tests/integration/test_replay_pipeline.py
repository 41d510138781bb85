"""Replays through the real pipeline: enrich (fakellm), router, sequencer and the admin.

Records enter ``P.work`` as ingest writes them. One that carries the counted
fault marker ``[[fault:bad_request:N]]`` fails (not retryable: straight to
``P.dlq.error``) on its first ``N`` calls and succeeds after: its cause is
fixed by the time a replay sends it again. ``[[fault:bad_request]]`` always
fails. ``[[fault:http_503:3]]`` is retryable: with one rung (``1s``) it dies
after two attempts, and its replay fails once more, climbs the ladder again and
succeeds. ``P.output``, the DLQ and ``P.results`` are read ``read_committed``.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Message

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from services.router.service import Router
from services.router.settings import RouterSettings
from services.sequencer.blocked import read_blocked
from services.sequencer.service import Sequencer
from services.sequencer.settings import SequencerSettings
from shared import headers as h
from shared.kafka.provision import create_topics
from shared.kafka.shutdown import StopFlag
from shared.settings import CommonSettings, load
from tests.support.admin import OP, VIEW, Client, serve_admin
from tests.support.dlq import dead_record
from tests.support.enrich import Worker, write_config
from tests.support.kafka import produce, read_all, wait_for
from tests.support.running import InThread
from tests.support.tail import Tail

pytestmark = pytest.mark.integration

Raw = tuple[bytes | None, bytes | None, list[tuple[str, bytes]] | None]
# source time now: DLQ records keep it, and a DLQ's retention counts from it
TS0 = int(time.time() * 1000)
ONCE = "[[fault:bad_request:1]]"  # fails its first call, then succeeds
TWICE = "[[fault:bad_request:2]]"
ALWAYS = "[[fault:bad_request]]"
RETRIED = "[[fault:http_503:3]]"  # dies after 2 attempts; its replay is retried once


@pytest.fixture
def topics(kafka_env: dict[str, str], pipeline: str, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SLUICE_RETRY_RUNGS", "1s")
    create_topics(load(CommonSettings))
    return pipeline


@pytest.fixture
def config(tmp_path: Path) -> Iterator[Path]:
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        # a breaker that does not open on the few 503s of these tests
        yield write_config(tmp_path / "c.yaml", url, rpm=6000, min_requests=100)


@contextmanager
def services(
    config: Path, pipeline: str, dead_mode: str = "skip", *, sequencer: bool = True
) -> Iterator[None]:
    """enrich, router and (unless told not to) the sequencer, each in a thread of the test
    process; each start is a restart of the one before (the same worker ids)."""
    router_stop, seq_stop = StopFlag(), StopFlag()
    seq = load(SequencerSettings, worker_id=f"w-{pipeline}", dead_mode=dead_mode)
    with ExitStack() as running:
        worker = running.enter_context(Worker(config_file=config))
        running.enter_context(InThread(Router(load(RouterSettings), router_stop), router_stop,
                                       "router"))  # fmt: skip
        if sequencer:
            running.enter_context(InThread(Sequencer(seq, seq_stop), seq_stop, "sequencer", 90))
        yield
    assert worker.error is None, repr(worker.error)


def work(i: int, key: bytes, marker: str = "") -> Raw:
    """Record ``i`` of the source as ingest forwards it (attempt 1)."""
    value = json.dumps({"ticket": i, "text": f"I was charged twice {marker} #{i}"}).encode()
    return key, value, h.source_headers(h.SourceId("src", 0, i), TS0 + i, 1)


def ident(m: Message) -> int:
    return h.source_id(m.headers()).offset


def of(m: Message) -> tuple[int, str | None, str | None, str | None, int | None]:
    """(source offset, outcome, late, replay id, replay count) of an output or DLQ record."""
    hs = m.headers()
    count = h.get_int(hs, h.REPLAY_COUNT) if h.get(hs, h.REPLAY_COUNT) is not None else None
    return (ident(m), h.get_str(hs, h.OUTCOME), h.get_str(hs, h.LATE),
            h.get_str(hs, h.REPLAY_ID), count)  # fmt: skip


def by_key(msgs: list[Message], key: bytes) -> list[int]:
    return [ident(m) for m in msgs if m.key() == key]


def task(admin: Client, replay_id: str) -> dict[str, Any]:
    r = admin.get(f"/v1/replays/{replay_id}", VIEW)
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


def replay(admin: Client, replay_id: str, *, succeeded: int, failed_again: int,
           timeout_s: float = 60, **filters: Any) -> dict[str, Any]:  # fmt: skip
    """Start a replay of ``P.dlq.error`` and wait until it completed and every record it
    sent has its outcome."""
    r = admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": replay_id, **filters})
    assert r.status_code == 202, r.text
    want = ("completed", succeeded, failed_again)
    seen: list[dict[str, Any]] = []

    def done() -> bool:
        seen[:] = [task(admin, replay_id)]
        return (seen[0]["status"], seen[0]["succeeded"], seen[0]["failed_again"]) == want

    try:
        wait_for(done, timeout_s, what=f"replay {replay_id} completed with {want[1:]} "
                                       "(succeeded, failed again)")  # fmt: skip
    except AssertionError as exc:
        raise AssertionError(f"{exc}; last seen: {seen}") from None
    return seen[0]


def replay_outcomes(stack: Stack, pipeline: str, replay_id: str) -> list[tuple[int, str | None]]:
    """(source offset, outcome) of the ``P.results`` outcomes that carry ``replay_id``."""
    return sorted((ident(m), h.get_str(m.headers(), h.OUTCOME))
                  for m in read_all(stack.bootstrap, f"{pipeline}.results", idle_s=1)
                  if h.get_str(m.headers(), h.REPLAY_ID) == replay_id)  # fmt: skip


def test_skip_mode_a_replayed_success_is_emitted_once_late_and_a_failure_climbs_to_the_cap(
    stack: Stack, topics: str, config: Path
) -> None:
    a, b, c = b"cust-a", b"cust-b", b"cust-c"
    records = [work(0, a), work(1, a, ONCE), work(2, a), work(3, a), work(4, b, ALWAYS), work(5, b),
               work(6, c, RETRIED)]  # fmt: skip
    with (services(config, topics), serve_admin(config_file=config) as admin,
          Tail(stack.bootstrap, f"{topics}.output") as out,
          Tail(stack.bootstrap, f"{topics}.dlq.error") as dlq):  # fmt: skip
        produce(stack.bootstrap, f"{topics}.work", records)
        out.until(lambda ms: len(ms) >= 7, 60, "every record or its gap marker")
        dlq.until(lambda ms: len(ms) >= 3, 30, "the three dead records")
        assert [of(m)[:2] for m in out.messages if m.key() == a] == [
            (0, "ok"), (1, "dead"), (2, "ok"), (3, "ok")]  # fmt: skip
        assert [of(m)[:2] for m in out.messages if m.key() == b] == [(4, "dead"), (5, "ok")]
        assert [of(m)[:2] for m in out.messages if m.key() == c] == [(6, "dead")]

        # the causes of 1 and 6 are gone: each replay is emitted once, late (6 after one more
        # climb of the ladder); 4 dies again and is back in its DLQ with count 1
        done = replay(admin, "r1", succeeded=2, failed_again=1)
        assert (done["sent"], done["refused_by_cap"]) == (3, 0)
        out.until(lambda ms: len(ms) >= 9, 30, "the late successes")
        assert sorted(of(m) for m in out.messages[7:]) == [
            (1, "ok", "true", "r1", 1), (6, "ok", "true", "r1", 1)]  # fmt: skip
        late = json.loads(out.messages[-1].value())
        assert late["outcome"] == "ok" and late["enrichment"]["sentiment"] == "neutral"
        dlq.until(lambda ms: len(ms) >= 4, 30, "4 back in its DLQ")
        back = dlq.messages[-1]
        assert of(back) == (4, None, None, "r1", 1)
        assert h.get_str(back.headers(), h.ERROR_KIND) == "bad_request"
        assert replay_outcomes(stack, topics, "r1") == [(1, "ok"), (4, "dead"), (6, "ok")]
        # 6's replay failed once and came back from the retry rung with the replay's headers
        [retried] = [m for m in read_all(stack.bootstrap, f"{topics}.retry.1s", idle_s=1)
                     if h.get_str(m.headers(), h.REPLAY_ID) == "r1"]  # fmt: skip
        assert of(retried)[0] == 6 and h.get_int(retried.headers(), h.REPLAY_COUNT) == 1

        # 4 keeps failing: each replay returns it with the count one higher, up to the cap
        for n in (2, 3):
            done = replay(admin, f"r{n}", succeeded=0, failed_again=1, replay_count_min=n - 1)
            assert (done["matched"], done["sent"], done["refused_by_cap"]) == (1, 1, 0)
            dlq.until(lambda ms, n=n: len(ms) >= n + 3, 30, f"4 back with count {n}")
            assert of(dlq.messages[-1]) == (4, None, None, f"r{n}", n)
        capped = {"dlq": "error", "replay_count_min": 3}
        dry = admin.post("/v1/replays", VIEW, json={**capped, "dry_run": True}).json()
        assert (dry["matched"], dry["refused_by_cap"], dry["selected"]) == (1, 1, 0), dry
        everything = admin.post("/v1/replays", VIEW, json={"dlq": "error", "dry_run": True}).json()
        # the DLQ holds 1 and 6 (count 0) and 4 with counts 0..3: only the last is refused
        assert (everything["matched"], everything["refused_by_cap"]) == (6, 1), json.dumps(
            everything
        )
        refused = admin.post("/v1/replays", OP, json={**capped, "replay_id": "r4"})
        assert refused.status_code == 202, refused.text
        wait_for(lambda: task(admin, "r4")["status"] == "completed", 30, what="r4 completed")
        assert (task(admin, "r4")["sent"], task(admin, "r4")["refused_by_cap"]) == (0, 1)
        shown = admin.get("/v1/dlq/error/records", VIEW, params={"replay_count_min": 3}).json()
        assert [(r["source"]["offset"], r["replay_count"]) for r in shown["records"]] == [(4, 3)]

        # 1 replayed again (its first DLQ copy): it succeeds (from the result cache) and the
        # sequencer drops it: a record is emitted late once at most
        again = replay(admin, "r5", succeeded=1, failed_again=0, key="cust-a")
        assert (again["sent"], again["cache_hits"]) == (1, 1), again
        out.settle(3)
        # nothing else reached P.output: every record once, 1 and 6 twice (gap, then late)
        assert Counter(of(m)[:3] for m in out.messages) == Counter(
            [(0, "ok", None), (1, "dead", None), (2, "ok", None), (3, "ok", None),
             (4, "dead", None), (5, "ok", None), (6, "dead", None),
             (1, "ok", "true"), (6, "ok", "true")])  # fmt: skip
        assert len(dlq.messages) == 6


def test_block_mode_a_replayed_success_is_emitted_in_order_and_releases_its_key(
    stack: Stack, topics: str, config: Path
) -> None:
    a, b, c = b"cust-a", b"cust-b", b"cust-c"
    records = [work(0, a), work(1, a, ONCE), work(2, a), work(3, a), work(4, b), work(5, b),
               work(6, c, TWICE), work(7, c)]  # fmt: skip
    seq = load(SequencerSettings)
    with (services(config, topics, dead_mode="block"), serve_admin(config_file=config) as admin,
          Tail(stack.bootstrap, f"{topics}.output") as out,
          Tail(stack.bootstrap, f"{topics}.results") as results,
          Tail(stack.bootstrap, f"{topics}.dlq.error") as dlq):  # fmt: skip
        produce(stack.bootstrap, f"{topics}.work", records)
        results.until(lambda ms: {ident(m) for m in ms} == set(range(8)), 60,
                      "an outcome for every record")  # fmt: skip
        dlq.until(lambda ms: len(ms) >= 2, 30, "the two dead records")
        out.until(lambda ms: len(ms) >= 3, 30, "the records before the dead ones")
        wait_for(lambda: len(read_blocked(seq, 10)) == 2, 30, what="two blocked keys")
        out.settle(2)
        # the dead heads hold their keys; 2, 3 and 7 have their outcomes and wait
        assert sorted(ident(m) for m in out.messages) == [0, 4, 5]
        held = {(k.key, k.offset, k.waiting) for k in read_blocked(seq, 10)}
        assert held == {(a, 1, 3), (c, 6, 2)}  # the head and the records behind it

        # 1 succeeds now: emitted in its place, not late; 2 and 3 follow. 6 fails again.
        replay(admin, "r1", succeeded=1, failed_again=1)
        out.until(lambda ms: by_key(ms, a) == [0, 1, 2, 3], 30, "key a released in order")
        [one] = [m for m in out.messages if ident(m) == 1]
        assert of(one) == (1, "ok", None, "r1", 1)
        dlq.until(lambda ms: len(ms) >= 3, 30, "6 back in its DLQ")
        assert of(dlq.messages[-1]) == (6, None, None, "r1", 1)
        out.settle(2)
        assert by_key(out.messages, c) == [], "a record that failed again still holds its key"
        assert {(k.key, k.offset, k.waiting) for k in read_blocked(seq, 10)} == {(c, 6, 2)}

        replay(admin, "r2", succeeded=1, failed_again=0, replay_count_min=1)
        out.until(lambda ms: by_key(ms, c) == [6, 7], 30, "key c released in order")
        [six] = [m for m in out.messages if ident(m) == 6]
        assert of(six) == (6, "ok", None, "r2", 2)
        out.settle(2)
        assert sorted(of(m)[:3] for m in out.messages) == [(i, "ok", None) for i in range(8)]
        assert read_blocked(seq, 10) == []


def test_a_replay_that_keeps_failing_is_stopped_by_the_canary(
    stack: Stack, topics: str, config: Path
) -> None:
    dead = [
        dead_record(i, key=b"k%d" % (i % 3), text=f"{ALWAYS} ticket {i}", ts_ms=TS0)
        for i in range(12)
    ]
    produce(stack.bootstrap, f"{topics}.dlq.error", [(r.key, r.value, r.headers) for r in dead])
    with (services(config, topics), Tail(stack.bootstrap, f"{topics}.dlq.error") as dlq,
          serve_admin(config_file=config, admin_replay_canary_first=4) as admin):  # fmt: skip
        r = admin.post("/v1/replays", OP, json={"dlq": "error", "replay_id": "c", "rate": 2})
        assert r.status_code == 202, r.text
        wait_for(lambda: task(admin, "c")["status"] == "failed", 60, what="the canary to stop it")
        stopped = task(admin, "c")
        assert "canary" in stopped["reason"] and "of the first 4" in stopped["reason"], stopped
        assert stopped["succeeded"] == 0 and stopped["failed_again"] >= 3
        assert 3 <= stopped["sent"] < 12, stopped
        audit = {a["action"] for a in admin.get("/v1/audit", VIEW).json()["records"]}
        assert "replay.failed" in audit
        # what it sent died again: each back in the DLQ with the replay's id and count 1
        dlq.until(lambda ms: len(ms) >= 12 + stopped["sent"], 30, "the sent records back")
        back = dlq.messages[12:]
        assert sorted(of(m)[0] for m in back) == sorted({of(m)[0] for m in back})
        assert {of(m)[1:] for m in back} == {(None, None, "c", 1)}
    outcomes = replay_outcomes(stack, topics, "c")
    assert {o for _i, o in outcomes} == {"dead"} and len(outcomes) == stopped["sent"]


def test_block_mode_a_record_at_the_cap_is_refused_and_its_key_stays_held(
    stack: Stack, topics: str, config: Path
) -> None:
    a, b = b"cust-a", b"cust-b"
    records = [work(0, a, ALWAYS), work(1, a), work(2, b)]
    seq = load(SequencerSettings)
    with (services(config, topics, dead_mode="block"), serve_admin(config_file=config) as admin,
          Tail(stack.bootstrap, f"{topics}.output") as out,
          Tail(stack.bootstrap, f"{topics}.dlq.error") as dlq):  # fmt: skip
        produce(stack.bootstrap, f"{topics}.work", records)
        dlq.until(lambda ms: len(ms) >= 1, 60, "the dead record")
        out.until(lambda ms: by_key(ms, b) == [2], 30, "the other key's record")
        wait_for(lambda: len(read_blocked(seq, 10)) == 1, 30, what="key a blocked")

        # 0 keeps failing: each replay returns it with the count one higher, up to the cap (3)
        for n in (1, 2, 3):
            done = replay(admin, f"r{n}", succeeded=0, failed_again=1, replay_count_min=n - 1)
            assert (done["matched"], done["sent"], done["refused_by_cap"]) == (1, 1, 0)
            dlq.until(lambda ms, n=n: len(ms) >= n + 1, 30, f"0 back with count {n}")
            assert of(dlq.messages[-1]) == (0, None, None, f"r{n}", n)
        # at the cap: the dry run shows it refused, a replay sends nothing
        capped = {"dlq": "error", "replay_count_min": 3}
        dry = admin.post("/v1/replays", VIEW, json={**capped, "dry_run": True}).json()
        assert (dry["matched"], dry["refused_by_cap"], dry["selected"]) == (1, 1, 0), dry
        everything = admin.post("/v1/replays", VIEW, json={"dlq": "error", "dry_run": True}).json()
        assert (everything["matched"], everything["refused_by_cap"]) == (4, 1), everything
        r = admin.post("/v1/replays", OP, json={**capped, "replay_id": "r4"})
        assert r.status_code == 202, r.text
        wait_for(lambda: task(admin, "r4")["status"] == "completed", 30, what="r4 completed")
        assert (task(admin, "r4")["sent"], task(admin, "r4")["refused_by_cap"]) == (0, 1)
        out.settle(3)
        dlq.settle(1)
        # nothing more was sent or emitted: key a is still held by its dead head (0, and 1 behind)
        assert len(dlq.messages) == 4 and by_key(out.messages, a) == []
        assert {(k.key, k.offset, k.waiting) for k in read_blocked(seq, 10)} == {(a, 0, 2)}
    assert replay_outcomes(stack, topics, "r4") == []


def test_a_replay_across_restarts_of_the_router_and_the_sequencer_is_emitted_once(
    stack: Stack, topics: str, config: Path
) -> None:
    """The replay's outcomes reach a sequencer that was down while they were made; it
    emits each once, late, and neither a restart nor the same records replayed again under
    another id emits anything twice (what was emitted is in its changelog)."""
    a = b"cust-a"
    records = [work(0, a), work(1, a, ONCE), work(2, a, ONCE), work(3, a)]
    first = [(0, "ok"), (1, "dead"), (2, "dead"), (3, "ok")]
    with (Tail(stack.bootstrap, f"{topics}.output") as out,
          serve_admin(config_file=config) as admin):  # fmt: skip
        with services(config, topics):
            produce(stack.bootstrap, f"{topics}.work", records)
            out.until(lambda ms: len(ms) >= 4, 60, "every record or its gap marker")
        assert [of(m)[:2] for m in out.messages] == first
        with services(config, topics, sequencer=False):  # the router restarted, no sequencer
            done = replay(admin, "r1", succeeded=2, failed_again=0)
            assert done["sent"] == 2
        out.settle(2)
        assert len(out.messages) == 4, "emitted with no sequencer running"
        with services(config, topics):  # the sequencer back: the late successes, once
            out.until(lambda ms: len(ms) >= 6, 60, "the two late successes")
            out.settle(2)
        assert sorted(of(m) for m in out.messages[4:]) == [
            (1, "ok", "true", "r1", 1), (2, "ok", "true", "r1", 1)]  # fmt: skip
        with services(config, topics):  # all restarted; the same records under another id
            again = replay(admin, "r2", succeeded=2, failed_again=0, replay_count_min=0,
                           replay_count_max=0)  # fmt: skip
            assert (again["sent"], again["cache_hits"]) == (2, 2), again
            out.settle(3)
        assert len(out.messages) == 6, [of(m) for m in out.messages]
