"""Input records to events and emits to output records (pure), shaped as the codecs make them."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from services.sequencer import records
from services.sequencer.model import Emit
from shared import headers as h
from shared.kinds import FailureKind
from shared.outcomes import Failure, Record, dead_outcome, failure_record, ok_result

SRC = h.SourceId("src", 2, 41)


@dataclass
class Msg:
    k: bytes | None
    v: bytes | None
    hs: list[tuple[str, bytes]] | None

    def key(self) -> bytes | None:
        return self.k

    def value(self) -> bytes | None:
        return self.v

    def headers(self) -> object:
        return self.hs


def work(attempt: int = 1) -> Record:
    return Record(b"cust-1", b'{"text": "hi"}', [("own", b"x"), *h.source_headers(SRC, 5, attempt)])


def as_msg(r: Record) -> Msg:
    return Msg(r.key, r.value, r.headers)


def test_first_attempts_announce_later_ones_do_not() -> None:
    a = records.announcement(as_msg(work()))
    assert a is not None and a.ident == SRC and a.key == b"cust-1"
    assert records.announcement(as_msg(work(attempt=2))) is None


@pytest.mark.parametrize("hs", [None, [(h.ATTEMPT, b"1")], [(h.ATTEMPT, b"x")], "nope"])
def test_records_without_identity_are_malformed(hs: object) -> None:
    with pytest.raises(records.Malformed):
        records.announcement(Msg(b"k", b"v", hs))  # type: ignore[arg-type]
    with pytest.raises(records.Malformed):
        records.outcome(Msg(b"k", b"v", hs))  # type: ignore[arg-type]


def test_ok_outcome_becomes_an_output_record() -> None:
    res = ok_result(work(), "sentiment", {"sentiment": "positive"}, "fake", "m1", 812, 30, 9)
    o = records.outcome(as_msg(res))
    assert (o.kind, o.ident, o.key) == ("ok", SRC, b"cust-1")
    key, value, hs = records.output_record(Emit(o))
    assert key == b"cust-1"
    assert json.loads(value) == {"enrichment": {"sentiment": "positive"}, "input": {"text": "hi"},
                                 "task": "sentiment", "outcome": "ok"}  # fmt: skip
    assert h.source_id(hs) == SRC and h.get_str(hs, h.OUTCOME) == "ok"
    assert [h.get_str(hs, n) for n in (h.PROVIDER, h.MODEL, h.LATENCY_MS, h.TOKENS_IN, h.TOKENS_OUT)] == ["fake", "m1", "812", "30", "9"]  # fmt: skip
    assert h.get_str(hs, "own") == "x" and h.get(hs, h.LATE) is None
    _, _, late = records.output_record(Emit(o, late=True))
    assert h.get_str(late, h.LATE) == "true"


def test_dead_outcome_becomes_a_gap_marker() -> None:
    failed = failure_record(work(), 3, Failure(FailureKind.TIMEOUT, "Hang", "no answer"), "fake")
    o = records.outcome(as_msg(dead_outcome(failed)))
    assert o.kind == "dead"
    key, value, hs = records.output_record(Emit(o))
    assert key == b"cust-1" and h.get_str(hs, h.OUTCOME) == "dead"
    assert json.loads(value) == {"enrichment": None, "input": {"text": "hi"}, "task": None, "outcome": "dead",
                                 "error": {"kind": "timeout", "class": "Hang", "message": "no answer"}}  # fmt: skip


def test_release_and_unknown_outcomes() -> None:
    hs = [*h.source_headers(SRC, 5), (h.OUTCOME, b"release")]
    assert records.outcome(Msg(b"cust-1", None, hs)).kind == "release"
    with pytest.raises(records.Malformed, match="maybe"):
        records.outcome(Msg(b"k", None, [*h.source_headers(SRC, 5), (h.OUTCOME, b"maybe")]))


def test_ok_value_that_is_not_a_result_document_is_kept_as_input() -> None:
    hs = [*h.source_headers(SRC, 5), (h.OUTCOME, b"ok")]
    o = records.outcome(Msg(None, b"\xff raw", hs))
    doc = json.loads(records.output_value(o))
    assert doc["outcome"] == "ok" and doc["input"] == {"base64": "/yByYXc="} and doc["task"] is None


def test_unkeyed_home_partition_is_stable_and_spread() -> None:
    homes = {records.home(h.SourceId("src", p, 0), 6) for p in range(24)}
    assert homes == set(range(6))
    assert records.home(h.SourceId("src", 3, 1), 6) == records.home(h.SourceId("src", 3, 99), 6)


DEEP = b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"  # passes orjson, breaks recursive decoders


def test_a_gap_marker_for_any_value_never_raises() -> None:
    for value in (DEEP, b"\xff\xfe", b"", None, b'{"text": "\\u00e9 \xc3\xa9"}', b"[" * 100_000):
        failed = failure_record(
            Record(b"k", value, h.source_headers(SRC, 5)),
            1,
            Failure(FailureKind.BAD_REQUEST, "not_json", "x"),
            "fake",
        )
        o = records.outcome(as_msg(dead_outcome(failed)))
        _, out, _ = records.output_record(Emit(o))
        doc = json.loads(out)
        assert doc["outcome"] == "dead" and doc["error"]["kind"] == "bad_request"
        if value == DEEP:
            assert "base64" in doc["input"]  # deeper than the pipeline's decoder takes


def test_a_gap_marker_embeds_a_json_input_verbatim() -> None:
    raw = b'{"text": "caf\xc3\xa9",  "n": [1, 2]}'
    failed = failure_record(Record(b"k", raw, h.source_headers(SRC, 5)), 1,
                            Failure(FailureKind.TIMEOUT, "Hang", "x"), "fake")  # fmt: skip
    _, out, _ = records.output_record(Emit(records.outcome(as_msg(dead_outcome(failed)))))
    assert raw in out and json.loads(out)["input"] == {"text": "café", "n": [1, 2]}


def test_an_ok_result_that_is_not_a_decodable_document_is_still_emitted() -> None:
    hs = [*h.source_headers(SRC, 5), (h.OUTCOME, b"ok")]
    _, out, _ = records.output_record(Emit(records.outcome(Msg(b"k", DEEP, hs))))
    doc = json.loads(out)
    assert doc["outcome"] == "ok" and "base64" in doc["input"]


def test_an_output_record_too_large_for_the_topic_becomes_a_dead_marker_saying_so() -> None:
    res = ok_result(work(), "sentiment", {"summary": "x" * 300_000}, "fake", "m1", 1, 1, 1)
    o = records.outcome(as_msg(res))
    key, value, hs = records.output_record(Emit(o), max_message_bytes=200_000)
    doc = json.loads(value)
    assert key == b"cust-1" and doc["outcome"] == "dead" and doc["error"]["kind"] == "oversize"
    assert h.get_str(hs, h.OUTCOME) == "dead" and h.source_id(hs) == SRC
    _, value, _ = records.output_record(Emit(o), max_message_bytes=1_048_576)
    assert json.loads(value)["enrichment"] == {"summary": "x" * 300_000}
