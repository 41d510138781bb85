"""The DLQ filters: what they read from a DLQ record, and which records they take."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from services.admin.dlq.facts import AGE_BUCKETS, NO_KIND, RecordFacts, age_bucket
from services.admin.dlq.filters import Filters
from shared import headers as h
from shared.envelope import Malformed, malformed_dlq_record
from shared.kinds import FailureKind
from shared.outcomes import Record
from tests.support.dlq import consumed, dead_record

TS = 1_700_000_000_000


def facts(**kw: Any) -> RecordFacts:
    partition, offset = kw.pop("partition", 0), kw.pop("offset", 7)
    kw.setdefault("ts_ms", TS)
    return RecordFacts.of(consumed(dead_record(42, **kw), "p.dlq.timeout", partition, offset))


def test_facts_are_read_from_the_headers_the_router_writes() -> None:
    f = facts(kind=FailureKind.RATE_LIMITED, error_class="429", provider="backup", key=b"k9",
              replay_count=2, partition=1, offset=5)  # fmt: skip
    assert (f.partition, f.offset, f.key) == (1, 5, b"k9")
    assert (f.kind, f.error_class, f.provider) == ("rate_limited", "429", "backup")
    assert f.src == h.SourceId("src", 0, 42) and f.ts_ms == TS and f.replay_count == 2
    assert facts().replay_count == 0  # never replayed: no header


@pytest.mark.parametrize("raw", [b"x", b"-4", b""])
def test_an_unreadable_replay_count_counts_as_zero(raw: bytes) -> None:
    r = dead_record(1)
    forged = Record(r.key, r.value, h.merge(r.headers, [(h.REPLAY_COUNT, raw)]))
    assert RecordFacts.of(consumed(forged, "t", 0, 0)).replay_count == 0


def test_without_sluice_src_the_dlt_headers_name_the_source() -> None:
    """A malformed record's identity is where the router read it (kafka_dlt-original-*)."""
    bare = consumed(Record(b"k", b"v", []), "p.failures", 2, 77)
    record, _ts = malformed_dlq_record(bare, Malformed("no headers", None))
    f = RecordFacts.of(consumed(record, "p.dlq.error", 0, 0))
    assert f.src == h.SourceId("p.failures", 2, 77)
    assert (f.kind, f.error_class, f.provider) == ("poison", "malformed", "")
    f = RecordFacts.of(consumed(Record(None, None, []), "p.dlq.error", 0, 0))
    assert f.src is None and f.kind == NO_KIND


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.mark.parametrize(
    ("filters", "taken"),
    [
        ({}, True),
        ({"kind": ["timeout"]}, True),
        ({"kind": ["bad_request", "timeout"]}, True),
        ({"kind": ["rate_limited"]}, False),
        ({"error_class": "deadline"}, True),
        ({"error_class": "deadlin"}, False),
        ({"provider": "primary"}, True),
        ({"provider": "backup"}, False),
        ({"key": "k1"}, True),
        ({"key": "k"}, False),
        ({"src_topic": "src", "src_partition": 0}, True),
        ({"src_partition": 1}, False),
        ({"src_offset_min": 42, "src_offset_max": 42}, True),
        ({"src_offset_min": 43}, False),
        ({"src_offset_max": 41}, False),
        ({"since": at(TS), "until": at(TS)}, True),
        ({"since": at(TS + 1)}, False),
        ({"until": "2023-11-14T22:13:19"}, False),  # naive: UTC; 1 s before TS
        ({"until": "2023-11-14T22:13:20"}, True),
        ({"replay_count_min": 0, "replay_count_max": 0}, True),
        ({"replay_count_min": 1}, False),
        ({"kind": ["timeout"], "provider": "backup"}, False),  # every filter must hold
    ],
)
def test_a_record_is_taken_when_every_filter_holds(filters: dict[str, Any], taken: bool) -> None:
    assert Filters.model_validate(filters).matches(facts()) is taken


def test_a_record_without_identity_fails_every_source_filter() -> None:
    f = RecordFacts.of(consumed(Record(None, None, []), "p.dlq.error", 0, 0))
    assert Filters().matches(f)
    for given in ({"src_topic": "src"}, {"src_partition": 0}, {"src_offset_max": 10**9}):
        assert not Filters.model_validate(given).matches(f)


@pytest.mark.parametrize(
    ("filters", "field"),
    [
        ({"kind": ["nope"]}, "kind"),
        ({"src_partition": -1}, "src_partition"),
        ({"src_offset_min": 5, "src_offset_max": 4}, "src_offset_max"),
        ({"since": "2024-01-02T00:00:00Z", "until": "2024-01-01T00:00:00Z"}, "until"),
        ({"replay_count_min": 2, "replay_count_max": 1}, "replay_count_max"),
        ({"since": "yesterday"}, "since"),
        ({"error_class": ""}, "error_class"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_filter_names_its_field(filters: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Filters.model_validate(filters)
    assert [e["loc"][0] for e in info.value.errors()] == [field]


def test_age_buckets_cover_every_age() -> None:
    assert [age_bucket(s) for s in (-5, 0, 3599.9, 3600, 86_399, 86_400, 7 * 86_400, 1e12)] == [
        "lt_1h", "lt_1h", "lt_1h", "1h_1d", "1h_1d", "1d_7d", "ge_7d", "ge_7d"]  # fmt: skip
    assert [b for b, _ in AGE_BUCKETS] == ["lt_1h", "1h_1d", "1d_7d", "ge_7d"]
