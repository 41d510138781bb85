"""The browse cursor and how one DLQ record is shown."""

from __future__ import annotations

import base64
import json

import pytest

from services.admin.dlq import cursor, view
from services.admin.dlq.facts import RecordFacts
from shared import headers as h
from shared.envelope import DLT_OFFSET, DLT_PARTITION, DLT_TIMESTAMP, DLT_TOPIC
from shared.kinds import FailureKind
from shared.outcomes import Record
from tests.support.dlq import consumed, dead_record


def test_a_cursor_round_trips_for_its_own_topic_only() -> None:
    text = cursor.encode("p.dlq.error", {2: 10, 0: 0, 1: 7})
    assert cursor.decode(text, "p.dlq.error") == {0: 0, 1: 7, 2: 10}
    assert text.isascii() and "=" not in text and "/" not in text and "+" not in text
    with pytest.raises(cursor.CursorError, match="another DLQ"):
        cursor.decode(text, "p.dlq.timeout")


def _raw(doc: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "not a cursor!",
        "%%%%",
        _raw([1, 2]),
        _raw({"v": 2, "t": "t", "p": {}}),
        _raw({"v": 1, "t": "t", "p": []}),
        _raw({"v": 1, "t": "t", "p": {"0": -1}}),
        _raw({"v": 1, "t": "t", "p": {"0": 1.5}}),
        _raw({"v": 1, "t": "t", "p": {"0": True}}),
        _raw({"v": 1, "t": "t", "p": {"x": 1}}),
        _raw({"v": 1, "t": "t", "p": {"²": 1}}),
        "A" * 20_000,
    ],
)
def test_a_malformed_cursor_is_refused(text: str) -> None:
    with pytest.raises(cursor.CursorError):
        cursor.decode(text, "t")


@pytest.mark.parametrize(
    ("data", "limit", "encoding", "value", "truncated"),
    [
        (b"hello", 16, "utf-8", "hello", False),
        (b"", 16, "utf-8", "", False),
        ("héllo".encode(), 2, "utf-8", "h", True),  # the cut character is left out
        ("héllo".encode(), 3, "utf-8", "hé", True),
        (b"\xff\xfe\x00", 16, "base64", "//4A", False),
        (b"\xc3", 16, "base64", "ww==", False),  # a broken character at the very end
        (b"ab\xff" + b"c" * 40, 4, "base64", base64.b64encode(b"ab\xffc").decode(), True),
    ],
)
def test_previews_are_bounded_and_safe_for_any_bytes(
    data: bytes, limit: int, encoding: str, value: str, truncated: bool
) -> None:
    p = view.preview(data, limit)
    assert p is not None
    assert (p.encoding, p.value, p.truncated, p.bytes) == (encoding, value, truncated, len(data))
    assert view.preview(None, 16) is None


def test_a_record_shows_its_error_history_and_every_header_decoded() -> None:
    r = dead_record(42, kind=FailureKind.INVALID_OUTPUT, error_class="schema", replay_count=1,
                    key=b"\xff\x00key", text="x" * 5000, ts_ms=1_700_000_000_000)  # fmt: skip
    r = Record(r.key, r.value, [*r.headers, ("own", b"\x80\x81")])
    c = consumed(r, "p.dlq.error", 2, 9)
    shown = view.record(c, RecordFacts.of(c), 64)
    assert (shown.partition, shown.offset, shown.kind, shown.error_class) == (
        2, 9, "invalid_output", "schema")  # fmt: skip
    assert shown.provider == "primary" and shown.attempt == 3 and shown.replay_count == 1
    assert shown.source is not None and (shown.source.topic, shown.source.offset) == ("src", 42)
    assert shown.time.year == 2023
    assert shown.key is not None and shown.key.encoding == "base64"
    assert shown.value is not None and shown.value.truncated and shown.value.bytes > 5000
    assert len(shown.value.value.encode()) <= 64
    assert [a["attempt"] for a in shown.history] == [1, 2, 3]
    assert [a["kind"] for a in shown.history] == ["invalid_output"] * 3
    by_name = {hd.name: hd for hd in shown.headers}
    assert {h.ERROR_KIND, h.ERROR_HISTORY, h.SRC_OFFSET, DLT_TOPIC, "own"} <= set(by_name)
    assert by_name[DLT_TOPIC].value == "src"
    assert (by_name[DLT_PARTITION].encoding, by_name[DLT_PARTITION].value) == ("int", 0)
    assert (by_name[DLT_OFFSET].encoding, by_name[DLT_OFFSET].value) == ("int", 42)
    assert by_name[DLT_TIMESTAMP].value == 1_700_000_000_000
    assert by_name["own"].encoding == "base64"
    assert by_name[h.ERROR_HISTORY].truncated  # every header is bounded too
    assert shown.model_dump_json()  # any bytes serialise


def test_a_forged_timestamp_or_dlt_header_does_not_break_the_view() -> None:
    r = Record(None, None, [(h.SRC_TS, b"99999999999999999"), (DLT_OFFSET, b"\xff\x02\x03")])
    c = consumed(r, "p.dlq.error", 0, 0)
    shown = view.record(c, RecordFacts.of(c), 64)
    assert shown.time.year == 1970 and shown.key is None and shown.value is None
    [_ts, offset] = shown.headers
    assert offset.encoding == "base64"  # not 4 or 8 bytes: not decoded as a number
