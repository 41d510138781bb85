from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from services.ingest.wrap import DLQ_VALUE_MAX, Poison, Wrapper
from shared import headers as h
from shared.errors import PoisonRecord


@dataclass
class Msg:
    _value: bytes | None
    _key: bytes | None = b"k"
    _headers: object = field(default_factory=list)
    _offset: int = 7

    def topic(self) -> str:
        return "src"

    def partition(self) -> int:
        return 2

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes | None:
        return self._key

    def value(self) -> bytes | None:
        return self._value

    def headers(self) -> object:
        return self._headers

    def timestamp(self) -> tuple[int, int]:
        return (1, 1234)


GOOD = json.dumps({"text": "hello"}).encode()


@dataclass
class Out:
    poison: bool
    headers: list[tuple[str, bytes]]
    key: bytes | None = None
    value: bytes | None = None
    timestamp: int = 0


def wrap(msg: Msg, fmt: str, max_bytes: int) -> Out | Poison:
    w = Wrapper(fmt, max_bytes)  # type: ignore[arg-type]
    try:
        key, value, headers = w.work_record(*at(msg))
        return Out(False, headers, key, value)
    except PoisonRecord as bad:
        return w.poison(msg, bad)


def at(msg: Msg) -> tuple[Msg, int, int]:
    """What ingest's loop passes the wrapper: the message, its partition and offset."""
    return msg, msg.partition(), msg.offset()


def is_poison(out: Out | Poison) -> bool:
    return isinstance(out, Poison)


def test_good_record_keeps_key_value_and_own_headers() -> None:
    out = wrap(Msg(GOOD, _headers=[("trace", b"1")]), "json", 1000)
    assert not is_poison(out)
    assert out.key == b"k" and out.value == GOOD
    assert h.get(out.headers, "trace") == b"1"
    assert h.source_id(out.headers) == h.SourceId("src", 2, 7)
    assert h.get(out.headers, h.ATTEMPT) == b"1"
    assert h.get(out.headers, h.SRC_TS) == b"1234"


def test_bytes_format_accepts_anything_non_empty() -> None:
    assert not is_poison(wrap(Msg(b"\xff\x00"), "bytes", 1000))


def reason(out: object) -> str | None:
    return h.get_str(out.headers, h.ERROR_CLASS)  # type: ignore[attr-defined]


def test_poison_reasons() -> None:
    assert reason(wrap(Msg(b"{nope"), "json", 1000)) == "undecodable"
    assert reason(wrap(Msg(b"[1]"), "json", 1000)) == "undecodable"
    assert reason(wrap(Msg(b"\xff\xfe"), "json", 1000)) == "undecodable"
    assert reason(wrap(Msg(None), "bytes", 1000)) == "undecodable"
    assert reason(wrap(Msg(b"x" * 11), "bytes", 10)) == "oversize"
    assert reason(wrap(Msg(GOOD, _headers=[("big", b"x" * 20000)]), "json", 10**6)) == "bad_headers"
    assert reason(wrap(Msg(GOOD, _headers={"a": b"1"}), "json", 1000)) == "bad_headers"


def test_poison_record_keeps_raw_bytes_coordinates_and_message() -> None:
    out = wrap(Msg(b"{nope", _headers=[("trace", b"1")]), "json", 1000)
    assert isinstance(out, Poison) and out.value == b"{nope" and out.key == b"k"
    assert out.reason == "undecodable"
    assert h.get_str(out.headers, h.ERROR_KIND) == "poison"
    assert "not JSON" in (h.get_str(out.headers, h.ERROR_MESSAGE) or "")
    assert h.source_id(out.headers) == h.SourceId("src", 2, 7)
    assert h.get(out.headers, "trace") == b"1"
    assert out.timestamp == 1234


def test_huge_poison_value_is_truncated_and_says_so() -> None:
    big = b"x" * (DLQ_VALUE_MAX + 10)
    out = wrap(Msg(big), "bytes", 100)
    assert isinstance(out, Poison) and len(out.value or b"") == DLQ_VALUE_MAX
    assert h.get(out.headers, h.POISON_TRUNCATED) == str(len(big)).encode()


def test_headers_from_a_non_client_shape_take_the_slow_path() -> None:
    w = Wrapper("bytes", 100)
    hs = w.work_record(*at(Msg(b"x", _headers=[("a", "text"), ("b", None)])))[2]
    assert h.get(hs, "a") == b"text" and h.get(hs, "b") == b""
    hs = w.work_record(*at(Msg(b"x", _headers=[(h.ATTEMPT, "2"), ("a", "text")])))[2]
    assert h.get(hs, h.ATTEMPT) == b"1" and h.get(hs, "a") == b"text"
    assert w.stripped == 1


def test_a_known_source_topic_gives_the_same_headers_per_partition() -> None:
    fixed, asking = Wrapper("json", 1000, topic="src"), Wrapper("json", 1000)
    for off in (1, 2):
        msg = Msg(GOOD, _offset=off, _headers=[("trace", b"x")])
        assert fixed.work_record(*at(msg))[2] == asking.work_record(*at(msg))[2]
        assert h.source_id(fixed.work_record(*at(msg))[2]) == h.SourceId("src", 2, off)


FORGED = [
    (h.SRC_TOPIC, b"other"), (h.SRC_PARTITION, b"9"), (h.SRC_OFFSET, b"1"), (h.ATTEMPT, b"3"),
    ("sluice.retry-after-s", b"100000"), (h.LATE, b"true"), (h.REPLAY_ID, b"r1"),
    (h.REPLAY_COUNT, b"7"), (h.OUTCOME, b"dead"), (h.NOT_BEFORE, b"99999999999999"),
    ("sluice.anything.new", b"x"),
]  # fmt: skip


def test_every_sluice_header_of_a_source_record_is_stripped_and_counted() -> None:
    w = Wrapper("json", 10**6)
    hs = w.work_record(*at(Msg(GOOD, _headers=[("trace", b"1"), *FORGED, ("after", b"2")])))[2]
    ours = {n for n, _ in hs if n.startswith("sluice.")}
    assert ours == {h.SRC_TOPIC, h.SRC_PARTITION, h.SRC_OFFSET, h.SRC_TS, h.ATTEMPT}
    assert h.source_id(hs) == h.SourceId("src", 2, 7) and h.get(hs, h.ATTEMPT) == b"1"
    assert [n for n, _ in hs if not n.startswith("sluice.")] == ["trace", "after"]
    assert w.stripped == len(FORGED)


class BadNameMsg(Msg):
    """confluent-kafka on a header name that is not UTF-8: SystemError once, then a
    list that would crash the interpreter (here: an error if read a second time)."""

    calls = 0

    def headers(self) -> object:
        self.calls += 1
        if self.calls > 1:
            raise AssertionError("headers() read again after it failed")
        raise SystemError("<built-in method headers> returned a result with an exception set")


def test_a_header_name_that_is_not_utf8_is_poison_and_never_read_twice() -> None:
    msg = BadNameMsg(GOOD, _headers=None)
    out = wrap(msg, "json", 1000)
    assert isinstance(out, Poison) and out.reason == "bad_headers"
    assert "not valid UTF-8" in (h.get_str(out.headers, h.ERROR_MESSAGE) or "")
    assert out.value == GOOD and h.source_id(out.headers) == h.SourceId("src", 2, 7)
    assert msg.calls == 1


def test_json_nested_deeper_than_the_pipeline_limit_is_poison() -> None:
    from shared.jsondoc import MAX_DEPTH

    ok = b'{"a":' + b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1) + b"}"
    deep = b'{"a":' + b"[" * MAX_DEPTH + b"]" * MAX_DEPTH + b"}"
    assert not is_poison(wrap(Msg(ok), "json", 10**6))
    out = wrap(Msg(deep), "json", 10**6)
    assert reason(out) == "undecodable"
    assert "deeper" in (h.get_str(out.headers, h.ERROR_MESSAGE) or "")
    # 1,000 levels pass orjson but not the pipeline's decoder
    assert (
        reason(wrap(Msg(b'{"a":' + b"[" * 1000 + b"]" * 1000 + b"}"), "json", 10**6))
        == "undecodable"
    )


def test_a_record_that_would_not_fit_the_work_topic_with_headroom_is_oversize() -> None:
    w = Wrapper("bytes", 10**7, max_message_bytes=1_048_576)
    fits = b"x" * (w.max_record - 10)
    assert h.source_id(w.work_record(*at(Msg(fits, _key=b"k")))[2]).offset == 7
    for msg in (Msg(b"x" * w.max_record), Msg(b"x", _key=b"k" * w.max_record),
                Msg(b"x" * (w.max_record - 5000), _headers=[("h", b"y" * 10000)])):  # fmt: skip
        with pytest.raises(PoisonRecord) as bad:
            w.work_record(*at(msg))
        assert bad.value.reason == "oversize"


def test_poison_key_and_headers_are_cut_to_fit_the_dlq() -> None:
    from services.ingest.wrap import DLQ_KEY_MAX

    big_key = b"k" * (DLQ_KEY_MAX + 1)
    out = wrap(Msg(b"{nope", _key=big_key), "json", 1000)
    assert isinstance(out, Poison) and out.key == big_key[:DLQ_KEY_MAX]
    assert h.get(out.headers, h.POISON_KEY_TRUNCATED) == str(len(big_key)).encode()
    many = [(f"h{i}", b"v" * 10_000) for i in range(10)]  # 100 KB of headers: over the total
    out = wrap(Msg(GOOD, _headers=many), "json", 10**6)
    assert isinstance(out, Poison) and out.reason == "bad_headers"
    assert h.get(out.headers, "h0") is None  # too large to keep; the message says why
