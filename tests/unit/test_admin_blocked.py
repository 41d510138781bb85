"""The pure part of ``/v1/blocked``: how keys are shown and named, which release matches."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from services.admin.blocked.models import ReleaseIn
from services.admin.blocked.view import blocked_model, find, target
from services.admin.tables import blocked_records, blocked_table, release_table
from services.sequencer.blocked import BlockedKey, release_record
from shared import headers as h

HEAD = {"src_topic": "src", "src_partition": 2, "src_offset": 41}


def held(key: bytes, offset: int = 41) -> BlockedKey:
    return BlockedKey(1, "src", 2, key, offset, 1_700_000_000_000, 12.3456, 4, "timeout", "Hang",
                      "hung")  # fmt: skip


@pytest.mark.parametrize("key", [b"cust-7", b"", "ключ".encode(), b"\xff\xfe-bin", b"a\\xff"])
def test_every_key_round_trips_through_the_answer_and_the_release(key: bytes) -> None:
    shown = blocked_model(held(key))
    assert base64.b64decode(shown.key_b64) == key
    assert ReleaseIn(key_b64=shown.key_b64, **HEAD).key_bytes == key
    if shown.key is not None:
        assert ReleaseIn(key=shown.key, **HEAD).key_bytes == key
    assert (shown.key is None) == (key == b"\xff\xfe-bin")


def test_the_answer_counts_the_records_behind_the_head() -> None:
    shown = blocked_model(held(b"k"))
    assert (shown.waiting, shown.src_offset, shown.partition) == (3, 41, 1)
    assert shown.since.isoformat() == "2023-11-14T22:13:20+00:00" and shown.age_s == 12.346
    assert (shown.error_kind, shown.error_class, shown.error_message) == ("timeout", "Hang", "hung")


def test_a_release_matches_the_key_and_its_head_only() -> None:
    listed = [held(b"a"), held(b"b", 7)]
    assert find(listed, b"b", h.SourceId("src", 2, 7)) is listed[1]
    assert find(listed, b"b", h.SourceId("src", 2, 41)) is None  # not b's head
    assert find(listed, b"c", h.SourceId("src", 2, 41)) is None
    assert find(listed, b"a", h.SourceId("other", 2, 41)) is None
    assert target(h.SourceId("src", 2, 7)) == "src/2/7"


@pytest.mark.parametrize(
    ("body", "field", "needle"),
    [
        ({}, "key_b64", "name the key"),
        ({"key": "a", "key_b64": "YQ=="}, "key_b64", "not both"),
        ({"key_b64": "YQ="}, "key_b64", "not base64"),
        ({"key_b64": "Y Q=="}, "key_b64", "not base64"),
        ({"key": "a", "src_offset": -1}, "src_offset", "greater than or equal to 0"),
        ({"key": "a", "src_topic": ""}, "src_topic", "pattern"),
        ({"key": "a", "extra": 1}, "extra", "Extra inputs"),
    ],
)
def test_a_bad_release_names_its_field(body: dict[str, object], field: str, needle: str) -> None:
    with pytest.raises(ValidationError) as err:
        ReleaseIn.model_validate({**HEAD, **body})
    assert [(e["loc"], needle in e["msg"]) for e in err.value.errors()] == [((field,), True)]


def test_the_release_record_is_keyed_and_names_the_head() -> None:
    key, value, headers = release_record(b"k", h.SourceId("src", 2, 41))
    assert (key, value, h.get_str(headers, h.OUTCOME)) == (b"k", None, "release")
    assert h.source_id(headers) == h.SourceId("src", 2, 41)


def test_the_tables_show_a_key_as_text_or_as_base64_with_its_dead_record() -> None:
    listed = [blocked_model(held(k)).model_dump(mode="json") for k in (b"cust-7", b"\xff")]
    head, *rows = blocked_table({"blocked": listed})
    assert head.split() == ["KEY", "PART", "DEAD", "RECORD", "SINCE", "AGE_S", "WAITING", "ERROR"]
    assert [r.split()[:3] for r in rows] == [
        ["cust-7", "1", "src/2/41"],
        ["b64:/w==", "1", "src/2/41"],
    ]
    assert rows[0].split()[-3:] == ["3", "timeout:", "hung"]
    assert blocked_records({"blocked": listed}) == listed
    _, row = release_table({"released": listed[1], "request_id": "rid-1"})
    assert row.split() == ["b64:/w==", "1", "src/2/41", "3", "rid-1"]
