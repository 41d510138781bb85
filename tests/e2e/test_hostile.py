"""Hostile input through the whole pipeline: nothing stops a stage, nothing is lost.

Every service runs as its own process (ingest, an enrich worker, router,
sequencer, fakellm) on the session's real Kafka and Redis. First the inputs
that once halted a stage for good, each with where it must end; then a
property-based fuzz (hypothesis) of arbitrary keys, values and headers, raw
header names included; then a record the provider always fails on, alone
behind an open breaker, which must still reach its DLQ. After each batch: no
process exited, every source record is exactly once in ``P.output`` or
``P.dlq.poison`` (dead ones also in a DLQ with their reason), and per-key
order holds.

Bounded for CI (four fuzz batches of up to 150 records); a longer soak:
``SLUICE_FUZZ_EXAMPLES=20 SLUICE_FUZZ_RECORDS=400 pytest tests/e2e/test_hostile.py``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.runs.readback import Probe, Tail, check_run, ident, read_topic
from devtools.stack.resolve import Stack
from shared import headers as h
from shared.jsondoc import MAX_DEPTH
from shared.kafka.provision import create_topics, ensure_topic
from shared.kafka.sizes import FRAMING, HEADROOM
from shared.outcomes import history
from shared.settings import CommonSettings, load
from shared.topics import Topics, parse_rungs
from tests.support.enrich import trip
from tests.support.rawheaders import produce_raw

pytestmark = pytest.mark.e2e

RUNGS = "1s,2s"
OPEN_S = 3.0  # the provider's breaker: how long it stays open before a probe
EXAMPLES = int(os.environ.get("SLUICE_FUZZ_EXAMPLES", "4"))
RECORDS = int(os.environ.get("SLUICE_FUZZ_RECORDS", "150"))
MAX_RECORD = 1_048_576 - HEADROOM - FRAMING - 256  # what ingest forwards (Wrapper.max_record)

RawRecord = tuple[bytes | None, bytes, list[tuple[bytes, bytes]]]


class Run:
    def __init__(self, fleet: Fleet, bootstrap: str, topics: Topics, source: str) -> None:
        self.fleet, self.bootstrap, self.topics, self.source = fleet, bootstrap, topics, source
        self.produced = 0

    def send(self, records: list[RawRecord]) -> None:
        """Produce; what the broker took is counted from the source's end offsets (a record
        too large for the source topic itself is refused there, as for any producer)."""
        produce_raw(self.bootstrap, self.source, records)
        probe = Probe(self.bootstrap)
        try:
            self.produced = probe.end(self.source)
        finally:
            probe.close()
        assert self.produced > 0

    def wait_accounted(self, timeout_s: float = 240) -> None:
        """Until every source record is in ``P.output`` or ``P.dlq.poison``."""
        tail = Tail(self.bootstrap, [self.topics.output, self.topics.dlq("poison")])
        seen: set[tuple[str, int, int]] = set()
        deadline = time.monotonic() + timeout_s
        try:
            while len(seen) < self.produced:
                self.fleet.check()  # no process may have exited
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"{self.produced - len(seen)} of {self.produced} records unaccounted "
                        f"after {timeout_s:.0f}s; logs in {self.fleet.spec.log_dir}; "
                        f"where they are: {self.whereabouts(seen)}"
                    )
                seen.update(ident(m) for m in tail.poll(1.0))
        finally:
            tail.close()
        self.fleet.check()

    def whereabouts(self, seen: set[tuple[str, int, int]], limit: int = 10) -> dict[str, object]:
        """For unaccounted source records: the pipeline topics that hold them (diagnosis)."""
        missing = [(self.source, m.partition() or 0, m.offset() or 0)
                   for m in read_topic(self.bootstrap, self.source)
                   if (self.source, m.partition(), m.offset()) not in seen][:limit]  # fmt: skip
        found: dict[tuple[str, int, int], list[object]] = {i: [] for i in missing}
        t = self.topics
        for topic in (t.work, t.results, t.failures, t.parked,
                      *(t.retry(r) for r in t.rungs), *t.dlqs):  # fmt: skip
            for m in read_topic(self.bootstrap, topic):
                try:
                    where = found.get(ident(m))
                except h.HeaderError:
                    continue
                if where is not None:
                    hs = m.headers()
                    where.append((topic, m.key(), h.get_str(hs, h.ERROR_KIND),
                                  h.get_str(hs, h.OUTCOME), h.get_str(hs, h.ATTEMPT)))  # fmt: skip
        return {str(i): w for i, w in found.items()}

    def verify(self) -> None:
        v = check_run(self.bootstrap, self.topics, self.source)
        report = v.as_dict()
        assert v.records == self.produced, report
        assert v.lost == 0 and v.duplicates == 0 and v.order_violations == 0, report
        assert v.unsequenced == 0 and v.unaccounted_output == 0, report
        assert v.enriched + v.dead + v.poison == self.produced, report
        for topic in self.topics.dlqs:
            for m in read_topic(self.bootstrap, topic):
                hs = m.headers()
                assert h.get_str(hs, h.ERROR_KIND) and h.get_str(hs, h.ERROR_CLASS), (topic, hs)


@pytest.fixture(scope="module")
def run(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    pipeline = f"hostile{time.time_ns() % 10**8}"
    source = f"{pipeline}.source"
    topics = Topics(pipeline, parse_rungs(RUNGS))
    common = load(CommonSettings, kafka_bootstrap=stack.bootstrap, pipeline=pipeline,
                  partitions=3, retry_rungs=RUNGS)  # fmt: skip
    ensure_topic(common, source, 3)
    create_topics(common, source)
    spec = FleetSpec(bootstrap=stack.bootstrap, redis_url=stack.redis_url, pipeline=pipeline,
                     source_topic=source, log_dir=tmp_path_factory.mktemp("hostile") / "logs",
                     rungs=RUNGS, enrich_workers=1, max_in_flight=64, llm_rps=400,
                     latency="uniform:5:40", call_timeout_s=5.0,
                     breaker={"open_s": OPEN_S})  # fmt: skip
    # The session timeout stays librdkafka's (45 s): nothing is killed here, and with static
    # membership a session that times out on a starved broker ends in a fatal self-fencing
    # (README, "Known problems")
    fleet = Fleet(spec)
    try:
        fleet.start()
        fleet.wait_ready()
        yield Run(fleet, stack.bootstrap, topics, source)
    finally:
        fleet.stop()


def ticket(text: str, **extra: object) -> bytes:
    return json.dumps({"text": text, **extra}, ensure_ascii=False).encode()


def nest(levels: int) -> bytes:
    return b"[" * levels + b"]" * levels


def by_key(messages: list) -> dict[bytes | None, list]:  # type: ignore[type-arg]
    out: dict[bytes | None, list] = {}  # type: ignore[type-arg]
    for m in messages:
        out.setdefault(m.key(), []).append(m)
    return out


def test_the_inputs_that_once_halted_a_stage_end_where_they_should(run: Run) -> None:
    cjk = "顧客から請求書の問い合わせがありました。" * 16_000  # ~960 KB of UTF-8
    started = time.monotonic()
    run.send([
        (b"badname", ticket("ok?"), [(b"na\xffme", b"v")]),
        (b"forged-wait", ticket("slow [[fault:http_503]]"), [(b"sluice.retry-after-s", b"100000")]),
        (b"forged-marks", ticket("great, thanks"), [(b"sluice.late", b"true"),
            (b"sluice.replay-id", b"r-1"), (b"sluice.replay-count", b"7"),
            (b"sluice.src.offset", b"1"), (b"sluice.attempt", b"9")]),
        (b"deep", b'{"text": "x", "a": ' + nest(1000) + b"}", []),
        (b"deep-ok", b'{"text": "fine", "a": ' + nest(MAX_DEPTH - 1) + b"}", []),
        (b"cjk", ticket(cjk), []),
        (b"cjk", ticket("and after the big one"), []),
    ])  # fmt: skip
    run.wait_accounted()
    assert time.monotonic() - started < 200, "a forged retry-after must not hold a rung"
    out = by_key(read_topic(run.bootstrap, run.topics.output))
    poison = by_key(read_topic(run.bootstrap, run.topics.dlq("poison")))

    [bad] = poison[b"badname"]
    assert h.get_str(bad.headers(), h.ERROR_CLASS) == "bad_headers"
    [deep] = poison[b"deep"]
    assert h.get_str(deep.headers(), h.ERROR_CLASS) == "undecodable"
    assert "deeper" in (h.get_str(deep.headers(), h.ERROR_MESSAGE) or "")

    [waited] = out[b"forged-wait"]  # died after both rungs: a gap marker
    assert h.get_str(waited.headers(), h.OUTCOME) == "dead"
    dead = by_key(read_topic(run.bootstrap, run.topics.dlq("error")))
    assert len(dead[b"forged-wait"]) == 1

    [marks] = out[b"forged-marks"]
    hs = marks.headers()
    assert h.get_str(hs, h.OUTCOME) == "ok"
    for name in (h.LATE, h.REPLAY_ID, h.REPLAY_COUNT):
        assert h.get(hs, name) is None, name
    assert h.get_str(hs, h.ATTEMPT) == "1" and h.source_id(hs).offset != 1

    [deep_ok] = out[b"deep-ok"]
    assert json.loads(deep_ok.value())["outcome"] == "ok"

    big, after = out[b"cjk"]  # in source order, the big one enriched
    doc = json.loads(big.value())
    assert doc["outcome"] == "ok" and doc["input"]["text"] == cjk
    assert len(big.value()) < len(cjk.encode()) * 1.01, "no ASCII escaping"
    assert json.loads(after.value())["input"]["text"] == "and after the big one"
    run.verify()


# -- fuzz ------------------------------------------------------------------------------------

names = st.one_of(
    st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00" not in b),
    st.sampled_from(
        [
            b"sluice.src.offset",
            b"sluice.attempt",
            b"sluice.late",
            b"sluice.not-before",
            b"sluice.retry-after-s",
            b"sluice.error.kind",
            b"traceparent",
            b"na\xffme",
            b"\xc3\x28",
            b"\xed\xa0\x80",
        ]
    ),
)
header_values = st.one_of(
    st.binary(max_size=64), st.sampled_from([b"", b"-1", b"1e308", b"x" * 17_000])
)
scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                    st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=40))  # fmt: skip
docs = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=20)  # fmt: skip


@st.composite
def values(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["ticket", "ticket", "ticket", "doc", "bytes", "deep", "size"]))
    if kind == "ticket":
        text = draw(st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=200))
        # A record that always gets a 5xx dies after the rungs; should such records open
        # the breaker, one failing as the half-open probe twice no longer keeps it open.
        fault = draw(st.sampled_from(["", "", "", " [[fault:bad_request]]", " [[fault:http_500]]",
                                      " [[fault:invalid_json]]", " [[fault:error_body]]"]))  # fmt: skip
        return ticket(text + fault, extra=draw(docs))
    if kind == "doc":
        return json.dumps(draw(docs), ensure_ascii=draw(st.booleans())).encode()
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "deep":
        levels = draw(st.sampled_from([MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1, 300, 1025, 3000]))
        return b'{"text": "deep", "a": ' + nest(levels) + b"}"
    size = draw(st.sampled_from([MAX_RECORD - 2000, MAX_RECORD + 10, 1_040_000]))
    return ticket("x" * size)


records = st.tuples(
    st.one_of(st.none(), st.just(b""), st.sampled_from([b"a", b"b", b"c"]), st.binary(max_size=20)),
    values(),
    st.lists(st.tuples(names, header_values), max_size=4),
)


@settings(max_examples=EXAMPLES, phases=[Phase.generate], deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(batch=st.lists(records, min_size=RECORDS // 2, max_size=RECORDS))
def test_fuzzed_records_never_stop_a_stage_and_each_ends_exactly_once(
    run: Run, batch: list[RawRecord]
) -> None:
    run.send(batch)
    run.wait_accounted()
    run.verify()


def test_a_lone_record_the_provider_always_fails_on_after_an_outage_ends_in_its_dlq(
    run: Run,
) -> None:
    """The record is the provider's only traffic behind an open breaker: it is the
    half-open probe each time. Once it failed as the probe twice, the provider's model
    list decides; fakellm answers it, so the record goes down the rungs to the DLQ."""
    spec = run.fleet.spec
    trip(spec.redis_url, spec.pipeline, "fakellm", OPEN_S)  # as an outage would have
    lists = run.fleet.llm_stats()["model_lists"]
    run.send([(b"lone", ticket("this one always breaks it [[fault:http_500]]"), [])])
    run.wait_accounted(timeout_s=120)
    [dead] = by_key(read_topic(run.bootstrap, run.topics.output))[b"lone"]
    assert h.get_str(dead.headers(), h.OUTCOME) == "dead"
    [dlq] = by_key(read_topic(run.bootstrap, run.topics.dlq("error")))[b"lone"]
    hs = dlq.headers()
    assert (h.get_str(hs, h.ERROR_KIND), h.get_str(hs, h.ERROR_CLASS)) == (
        "provider_error",
        "http_500",
    )
    classes = [item["class"] for item in history(hs)]
    assert classes.count("probe_failed:http_500") == 1, classes  # parked once, not for good
    assert run.fleet.llm_stats()["model_lists"] == lists + 1


def test_no_service_exited_and_the_logs_are_kept(run: Run) -> None:
    run.fleet.check()
    assert Path(run.fleet.spec.log_dir).is_dir()
