import pytest

from shared import headers as h
from tests.support.memkafka import MemMessage


def test_source_headers_round_trip() -> None:
    src = h.SourceId("orders", 3, 42)
    hs = h.source_headers(src, ts_ms=1700, attempt=2)
    assert h.source_id(hs) == src
    assert h.get_int(hs, h.ATTEMPT) == 2
    assert h.get_int(hs, h.SRC_TS) == 1700
    assert str(src) == "orders/3@42"


def test_merge_keeps_own_headers_and_replaces_ours() -> None:
    own = [("trace", b"a"), (h.ATTEMPT, b"1"), ("x", b"1"), ("x", b"2")]
    merged = h.merge(own, [(h.ATTEMPT, b"2")])
    assert merged == [("trace", b"a"), ("x", b"1"), ("x", b"2"), (h.ATTEMPT, b"2")]


def test_last_value_wins() -> None:
    assert h.get([("a", b"1"), ("a", b"2")], "a") == b"2"
    assert h.get(None, "a") is None


@pytest.mark.parametrize(
    "raw",
    [
        {"a": b"1"},
        [("a",)],
        [(1, b"x")],
        [("", b"x")],
        [("a", 3)],
    ],
)
def test_check_headers_rejects_malformed(raw: object) -> None:
    with pytest.raises(h.HeaderError):
        h.check_headers(raw)


def test_check_headers_normalises_str_and_none() -> None:
    assert h.check_headers([("a", "v"), ("b", None)]) == [("a", b"v"), ("b", b"")]
    assert h.check_headers(None) == []


def test_source_id_reports_what_is_missing() -> None:
    with pytest.raises(h.HeaderError, match=r"sluice\.src\.topic"):
        h.source_id([])
    with pytest.raises(h.HeaderError, match="not an integer"):
        h.source_id([(h.SRC_TOPIC, b"t"), (h.SRC_PARTITION, b"x"), (h.SRC_OFFSET, b"1")])


def test_a_header_name_with_a_literal_replacement_character_is_valid_everywhere() -> None:
    from services.ingest.wrap import Wrapper

    _, _, hs = Wrapper("json", 1000).work_record(
        MemMessage("src", 0, 3, b"k", b'{"text": "x"}', [("caf\ufffd", b"v")], 5), 0, 3
    )
    # what ingest forwarded, every later stage reads back whole: identity included
    assert h.check_headers(hs) == hs
    assert h.source_id(hs) == h.SourceId("src", 0, 3)
