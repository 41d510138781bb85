from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from services.ingest.wrap import DLQ_VALUE_MAX, TRUNCATED, Poison, Wrapper
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
        return Out(False, w.work_headers(msg), msg.key(), msg.value())
    except PoisonRecord as bad:
        return w.poison(msg, bad)


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
    assert reason(wrap(Msg(GOOD, _headers=[(h.SRC_OFFSET, b"1")]), "json", 1000)) == "bad_headers"
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
    assert h.get(out.headers, TRUNCATED) == str(len(big)).encode()


def test_headers_from_a_non_client_shape_take_the_slow_path() -> None:
    w = Wrapper("bytes", 100)
    hs = w.work_headers(Msg(b"x", _headers=[("a", "text"), ("b", None)]))
    assert h.get(hs, "a") == b"text" and h.get(hs, "b") == b""
    with pytest.raises(PoisonRecord, match="reserved"):
        w.work_headers(Msg(b"x", _headers=[(h.ATTEMPT, "2")]))


def test_a_known_source_topic_gives_the_same_headers_per_partition() -> None:
    fixed, asking = Wrapper("json", 1000, topic="src"), Wrapper("json", 1000)
    for off in (1, 2):
        msg = Msg(GOOD, _offset=off, _headers=[("trace", b"x")])
        assert fixed.work_headers(msg) == asking.work_headers(msg)
        assert h.source_id(fixed.work_headers(msg)) == h.SourceId("src", 2, off)
