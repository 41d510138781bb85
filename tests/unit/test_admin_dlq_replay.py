"""The replay task's pure parts: state machine and codec, the work record, pace, canary."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import pytest
from confluent_kafka import KafkaError, KafkaException

from services.admin.dlq import runner as runner_module
from services.admin.dlq.canary import Canary, Outcomes
from services.admin.dlq.filters import Filters
from services.admin.dlq.pacing import Pacer, pace
from services.admin.dlq.resend import work_record
from services.admin.dlq.task import ReplayTask, TransitionError, newest
from shared import headers as h
from shared.config_file import ProviderConfig
from shared.envelope import DLT_OFFSET
from shared.errors import StackError
from shared.outcomes import HISTORY_MAX
from shared.topics import Topics
from tests.support.dlq import consumed, dead_record

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def a_task(**kw: object) -> ReplayTask:
    base: dict[str, object] = {"id": "r1", "dlq": "error", "topic": "p.dlq.error",
                               "filters": Filters(kind=["timeout"], src_offset_min=2),
                               "who": "operator", "created": T0, "updated": T0}  # fmt: skip
    return ReplayTask.model_validate({**base, **kw})


def test_statuses_move_only_along_the_state_machine() -> None:
    t = a_task()
    assert t.live and t.moved("completed", T0).status == "completed"
    cancelling = t.moved("cancelling", T0)
    assert cancelling.live and cancelling.moved("cancelled", T0, "asked").reason == "asked"
    failed = t.moved("failed", T0, "canary")
    assert not failed.live and failed.reason == "canary"
    for end in ("completed", "cancelled", "failed"):
        with pytest.raises(TransitionError):
            t.moved(end, T0).moved("running", T0)  # type: ignore[arg-type]
    with pytest.raises(TransitionError):
        cancelling.moved("cancelling", T0)


def test_the_record_round_trips_and_the_newest_of_a_key_wins() -> None:
    t = a_task(ends={0: 5, 2: 9}, next_partition=2, next_offset=3, sent=4, waiting="paused")
    back = ReplayTask.decode(t.encode())
    assert back == t.model_copy(update={"waiting": None})  # waiting is not recorded
    assert back is not None and back.filters.src_offset_min == 2 and back.ends == {0: 5, 2: 9}
    assert ReplayTask.decode(b"not json") is None and ReplayTask.decode(None) is None
    assert ReplayTask.decode(json.dumps({**json.loads(t.encode()), "v": 99}).encode()) is None
    later = t.model_copy(update={"sent": 7})
    other = a_task(id="r2")
    tasks = newest([(b"r1", t.encode()), (b"r2", other.encode()), (b"r1", later.encode()),
                    (b"r2", None), (b"r3", b"junk")])  # fmt: skip
    assert tasks == {"r1": later.model_copy(update={"waiting": None})}
    assert a_task(max_records=4, sent=4).full() and not a_task(sent=4).full()
    assert a_task().seen(1, 7).model_dump(include={"next_partition", "next_offset"}) == {
        "next_partition": 1, "next_offset": 8}  # fmt: skip


def test_the_work_record_starts_again_and_never_grows() -> None:
    dlq = dead_record(5, attempts=3, replay_count=1)
    c = consumed(dlq, "p.dlq.error", 0, 0)
    first = work_record(c, "r1")
    hs = first.headers
    assert (first.key, first.value) == (dlq.key, dlq.value)
    assert h.get_int(hs, h.ATTEMPT) == 1 and h.get_str(hs, h.REPLAY_ID) == "r1"
    assert h.get_int(hs, h.REPLAY_COUNT) == 2 and h.source_id(hs) == h.source_id(dlq.headers)
    for gone in (h.ERROR_KIND, h.ERROR_CLASS, h.ERROR_MESSAGE, DLT_OFFSET, h.NOT_BEFORE):
        assert h.get(hs, gone) is None
    assert len(json.loads(h.get(hs, h.ERROR_HISTORY) or b"")) == 3
    # died again with a full history, replayed again: same header names, one of each
    again = work_record(consumed(dead_record(5, attempts=HISTORY_MAX + 2, replay_count=2),
                                 "p.dlq.error", 0, 1), "r2")  # fmt: skip
    names = [n for n, _ in again.headers]
    assert sorted(names) == sorted(n for n, _ in hs) and len(names) == len(set(names))
    assert h.get_int(again.headers, h.REPLAY_COUNT) == 3
    assert len(json.loads(h.get(again.headers, h.ERROR_HISTORY) or b"")) == HISTORY_MAX


def test_a_record_without_sluice_src_gets_its_identity_from_the_dlt_headers() -> None:
    dlq = dead_record(9)
    bare = [(n, v) for n, v in dlq.headers if not n.startswith("sluice.src.")]
    c = consumed(dlq, "p.dlq.error", 0, 0)
    out = work_record(type(c)(c.topic, 0, 0, 1, c.key, c.value, bare), "r1")
    assert h.source_id(out.headers) == h.SourceId("src", 0, 9)
    assert [n for n, _ in out.headers].count(h.ATTEMPT) == 1


def provider(rpm: int) -> ProviderConfig:
    return ProviderConfig.model_validate({"kind": "openai", "base_url": "http://x/v1",
                                          "requests_per_minute": rpm})  # fmt: skip


def test_the_pace_is_the_rate_asked_never_faster_than_the_request_bucket() -> None:
    assert pace(5.0, provider(600), "m") == 5.0
    assert pace(50.0, provider(600), "m") == pytest.approx(10.0)
    assert pace(None, provider(600), "m") == pytest.approx(10.0)
    assert pace(None, provider(0), "m") is None and pace(3.0, provider(0), "m") == 3.0
    p = Pacer(4.0)
    assert p.wait_s(100.0) == 0
    p.sent(100.0)
    assert p.wait_s(100.0) == pytest.approx(0.25) and p.wait_s(100.3) == 0
    p.sent(100.3)  # 0.05 s late: made up
    assert p.wait_s(100.3) == pytest.approx(0.2)
    p.sent(200.0)  # a long pause: nothing saved up beyond CATCH_UP_S (two records at 4/s)
    assert [p.wait_s(200.0), p.sent(200.0), p.wait_s(200.0)] == [0, None, 0]
    p.sent(200.0)
    assert p.wait_s(200.0) == pytest.approx(0.25)
    free = Pacer(None)
    free.sent(1.0)
    assert free.wait_s(1.0) == 0


def outcome(offset: int, kind: str, replay_id: str = "r1") -> h.HeaderList:
    return [*h.source_headers(h.SourceId("src", 0, offset), 1), (h.OUTCOME, kind.encode()),
            (h.REPLAY_ID, replay_id.encode())]  # fmt: skip


def test_outcomes_count_each_identity_once_and_the_canary_trips_on_the_first_window() -> None:
    o = Outcomes("r1")
    for off, kind in [(1, "ok"), (1, "ok"), (2, "dead"), (2, "ok"), (3, "dead"), (4, "dead")]:
        o.add(outcome(off, kind))
    o.add(outcome(5, "dead", replay_id="other"))
    o.add(outcome(6, "release"))
    assert (o.succeeded, o.failed_again) == (2, 2)
    canary = Canary(share=0.5, first=4)
    assert canary.tripped(o, selected=100) is None  # 2 of 4 failed: not more than half
    o.add(outcome(7, "dead"))
    assert canary.tripped(o, selected=100) is None  # the 5th is outside the window
    five = Outcomes("r1")
    for off in range(3):
        five.add(outcome(off, "dead"))
    reason = canary.tripped(five, selected=100)  # 3 of the first 4 failed whatever the 4th does
    assert reason == "canary: 3 of the first 4 replayed records failed again (more than 50%)"
    assert canary.tripped(Outcomes("r1"), selected=0) is None
    assert Canary(0.5, 20).tripped(five, selected=4) is not None  # a task of 4: 3 of 4


def test_a_read_of_the_outcomes_that_times_out_waits_for_the_next_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Failing:
        """A consumer whose broker answers nothing (a busy machine), or is gone for good."""

        def __init__(self, error: KafkaError) -> None:
            self.error = error

        def list_topics(self, *_args: Any, **_kw: Any) -> Any:
            raise KafkaException(self.error)

        def close(self) -> None:
            pass

    def results_of(error: KafkaError) -> Any:
        monkeypatch.setattr(runner_module, "tailing_consumer", lambda _settings: Failing(error))
        runner = SimpleNamespace(settings=None, task=a_task(results_from={0: 5}),
                                 outcomes=Outcomes("r1"), topics=Topics("p"))  # fmt: skip
        return runner_module._Results(cast(runner_module.Runner, runner))

    timing_out = results_of(KafkaError(KafkaError._TIMED_OUT))
    timing_out.poll()  # the task goes on; the outcomes are read again a second later
    results_tail = timing_out.tails[0][0]
    assert results_tail.positions == {0: 5} and timing_out.runner.outcomes.succeeded == 0
    fenced = results_of(KafkaError(KafkaError._FATAL, "fenced", fatal=True))
    with pytest.raises(StackError, match=r"cannot read p\.results"):
        fenced.poll()


def test_a_failed_attempt_ends_the_first_attempt_but_is_no_outcome() -> None:
    o = Outcomes("r1")
    o.add_failure(outcome(1, "ok"))  # a P.failures record: the work record's headers
    o.add_failure(outcome(2, "ok", replay_id="other"))
    assert (o.finished, o.succeeded, o.failed_again) == (1, 0, 0)
    o.add(outcome(1, "ok"))  # its retry succeeded: still one identity
    o.add(outcome(3, "dead"))
    assert (o.finished, o.succeeded, o.failed_again) == (2, 1, 1)


def test_records_without_a_source_identity_end_their_first_attempt_once() -> None:
    """Else each would hold a window slot for good."""

    def anon(kind: str, attempt: int, replay_id: bytes = b"r1") -> h.HeaderList:
        return [(h.ATTEMPT, b"%d" % attempt), (h.OUTCOME, kind.encode()), (h.REPLAY_ID, replay_id)]

    o = Outcomes("r1")
    o.add(anon("ok", 1))  # succeeded at once
    o.add_failure(anon("ok", 1))  # failed, then retried: its first attempt is over here
    o.add_failure(anon("ok", 2))
    o.add(anon("ok", 3))
    o.add_failure(anon("ok", 1))  # failed, retried, and dead in the end
    o.add(anon("dead", 2))
    o.add(anon("ok", 1, replay_id=b"other"))
    o.add_failure(anon("ok", 1, replay_id=b"other"))
    assert (o.finished, o.succeeded, o.failed_again) == (3, 0, 0)
