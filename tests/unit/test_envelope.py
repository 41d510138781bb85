"""Reading failure records and building the router's records (pure)."""

from __future__ import annotations

import pytest

from shared import envelope as env
from shared import headers as h
from shared.kinds import FailureKind
from shared.outcomes import Failure, Record, failure_record
from tests.support.memkafka import MemMessage

SRC = h.SourceId("orders", 2, 41)


def failed(kind: FailureKind = FailureKind.TIMEOUT, attempt: int = 1, retry_after: float | None = None,
           own: h.HeaderList | None = None) -> env.Consumed:  # fmt: skip
    work = Record(b"k", b'{"a": 1}', [*(own or []), *h.source_headers(SRC, 1234, attempt)])
    rec = failure_record(
        work, attempt, Failure(kind, "ReadTimeout", "took 30s", retry_after), "openai"
    )
    return env.Consumed("p.failures", 1, 7, 99_999, rec.key, rec.value, rec.headers)


def replace(c: env.Consumed, **hs: bytes | None) -> env.Consumed:
    names = {k.replace("_", "."): v for k, v in hs.items()}
    kept = [(n, v) for n, v in c.headers if n not in names]
    added = [(n, v) for n, v in names.items() if v is not None]
    return env.Consumed(c.topic, c.partition, c.offset, c.timestamp, c.key, c.value, kept + added)


def test_parse_reads_the_routing_facts() -> None:
    f = env.parse(failed(FailureKind.RATE_LIMITED, 2, retry_after=12.5))
    assert (f.src, f.kind, f.attempt, f.retry_after_s, f.provider) == (
        SRC, FailureKind.RATE_LIMITED, 2, 12.5, "openai")  # fmt: skip


@pytest.mark.parametrize(
    ("change", "reason", "has_identity"),
    [
        ({"sluice.src.topic": None}, "sluice.src.topic is missing", False),
        ({"sluice.src.offset": b"x"}, "sluice.src.offset is not an integer", False),
        ({"sluice.error.kind": None}, "sluice.error.kind is missing", True),
        ({"sluice.error.kind": b"gremlins"}, "unknown failure kind 'gremlins'", True),
        ({"sluice.attempt": b"two"}, "sluice.attempt is not an integer", True),
        ({"sluice.attempt": None}, "sluice.attempt is missing", True),
        ({"sluice.attempt": b"0"}, "not a positive integer", True),
    ],
)
def test_malformed_failures_say_why(
    change: dict[str, bytes | None], reason: str, has_identity: bool
) -> None:
    c = failed()
    kept = [(n, v) for n, v in c.headers if n not in change]
    c = env.Consumed(c.topic, c.partition, c.offset, c.timestamp, c.key, c.value,
                     kept + [(n, v) for n, v in change.items() if v is not None])  # fmt: skip
    with pytest.raises(env.Malformed, match=reason) as info:
        env.parse(c)
    assert (info.value.src == SRC) is has_identity
    assert (info.value.src is None) is not has_identity


def test_unreadable_headers_are_malformed_without_identity() -> None:
    c = env.Consumed.of(msg([("ok", b"1"), ("bad", 42)]))
    assert c.headers == [] and c.broken
    with pytest.raises(env.Malformed, match="unreadable headers") as info:
        env.parse(c)
    assert info.value.src is None
    assert env.Consumed.of(msg(None)).headers == []


@pytest.mark.parametrize(("text", "value"), [(b"2.5", 2.5), (b"0", 0.0), (b"-1", None), (b"nan", None),
                                             (b"inf", None), (b"soon", None), (None, None)])  # fmt: skip
def test_retry_after_is_advisory(text: bytes | None, value: float | None) -> None:
    hs = [] if text is None else [(h.RETRY_AFTER, text)]
    assert env.retry_after(hs) == value


def test_retry_record_adds_the_due_time_and_keeps_everything() -> None:
    c = failed(own=[("trace", b"t1")])
    r = env.retry_record(c, 1_700_000_000_123)
    assert (r.key, r.value) == (c.key, c.value)
    assert h.get_int(r.headers, h.NOT_BEFORE) == 1_700_000_000_123
    assert [x for x in r.headers if x[0] != h.NOT_BEFORE] == c.headers


def test_work_record_sets_the_attempt_and_drops_stale_timing() -> None:
    c = replace(failed(retry_after=30, own=[("trace", b"t1")]), sluice_not_before=b"5")
    w = env.work_record(c, 2)
    assert h.get_int(w.headers, h.ATTEMPT) == 2
    assert h.get(w.headers, h.NOT_BEFORE) is None and h.get(w.headers, h.RETRY_AFTER) is None
    assert h.get(w.headers, "trace") == b"t1"
    assert h.source_id(w.headers) == SRC
    assert h.get_str(w.headers, h.ERROR_KIND) == "timeout", "error headers stay as history"
    assert (w.key, w.value) == (c.key, c.value)


def test_failure_dlq_record_has_the_dlt_headers() -> None:
    c = failed(FailureKind.TIMEOUT, 3, own=[("trace", b"t1")])
    rec, ts, reason = env.failure_dlq_record(c, env.parse(c))
    hs = rec.headers
    assert ts == 1234, "the source record's timestamp"
    assert reason == "ReadTimeout: took 30s"
    assert h.get_str(hs, env.DLT_TOPIC) == "orders"
    assert env.decode_dlt_int(h.get(hs, env.DLT_PARTITION)) == 2
    assert len(h.get(hs, env.DLT_PARTITION) or b"") == 4
    assert env.decode_dlt_int(h.get(hs, env.DLT_OFFSET)) == 41
    assert env.decode_dlt_int(h.get(hs, env.DLT_TIMESTAMP)) == 1234
    assert h.get_str(hs, env.DLT_FQCN) == "sluice.timeout"
    assert h.get_str(hs, env.DLT_MESSAGE) == "ReadTimeout: took 30s"
    assert h.get(hs, "trace") == b"t1" and h.get(hs, h.ERROR_HISTORY)
    assert [x for x in hs if not x[0].startswith("kafka_dlt-")] == c.headers


def test_malformed_dlq_record_without_identity_points_at_where_it_was_read() -> None:
    c = replace(failed(), sluice_src_topic=None)
    rec, ts = env.malformed_dlq_record(c, env.Malformed("no identity", None))
    assert ts == 1234
    assert h.get_str(rec.headers, h.ERROR_KIND) == "poison"  # every DLQ record has a kind
    assert h.get_str(rec.headers, h.ERROR_CLASS) == "malformed"
    assert h.get_str(rec.headers, h.ERROR_MESSAGE) == "no identity"
    assert h.get_str(rec.headers, env.DLT_TOPIC) == "p.failures"
    assert env.decode_dlt_int(h.get(rec.headers, env.DLT_OFFSET)) == 7
    assert h.get_str(rec.headers, env.DLT_FQCN) == "sluice.malformed"


def test_original_timestamp_falls_back_to_the_consumed_one() -> None:
    c = replace(failed(), sluice_src_ts=b"garbage")
    assert env.original_timestamp(c) == 99_999
    assert env.decode_dlt_int(None) is None and env.decode_dlt_int(b"abc") is None


def msg(headers: object) -> MemMessage:
    """A failure record as the router's consumer returns it, with these headers as given."""
    return MemMessage("p.failures", 0, 3, b"k", b"v", headers, 555)  # type: ignore[arg-type]
