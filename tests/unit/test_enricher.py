"""The Enricher over in-memory fakes of ProviderState and Provider (no servers).

Fallback along the chain, breaker and pause as outages, the result cache, the
bookkeeping retried while the shared state is down, and each failure kind's
path: what goes out, what the fleet's state was told, and who was called.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from services.enrich import cache_entry, enricher
from services.enrich.aimd import Aimd
from services.enrich.enricher import Enricher
from services.enrich.providers.base import (
    CallFailure,
    CallResult,
    CallSuccess,
    Checked,
    ProviderKind,
    ProviderRequest,
)
from services.enrich.tasks import render, request_hash
from services.enrich.worker_provider import WorkerProvider
from shared import headers as h
from shared import jsondoc
from shared.config_file import TaskConfig
from shared.errors import ProviderStateUnavailable
from shared.kafka.concurrent import Output
from shared.kinds import FailureKind as K
from shared.outcomes import Failure, Record, failure_record
from shared.provider_state import Admitted, Batch, Health, Reservation, Settlement
from shared.topics import Topics

T = Topics("p")
SRC = h.SourceId("src", 0, 7)
VALUE = b'{"text": "my bill is wrong"}'
ANSWER = '{"sentiment": "negative"}'
TASK = TaskConfig.model_validate(
    {
        "prompt": "{text}",
        "model": "m",
        "providers": ["a", "b"],
        "output_schema": {
            "type": "object",
            "required": ["sentiment"],
            "properties": {"sentiment": {"type": "string"}},
        },
    }
)
UP = Health(paused=False, breaker="closed")


@dataclass
class FakeState:
    """An in-memory ProviderState: logs every call; outages and breaker answers are scripted."""

    now: Health = UP
    admits: str = "yes"  # yes | probe (half-open) | no (paused or open): what admit grants
    refused_by: str = "breaker"  # why it grants nothing ("paused" or "breaker")
    after_failure: str = "closed"  # the breaker's state after a settle with outcome "fail"
    down: dict[str, int] = field(default_factory=dict)  # method -> outages before it works
    cache: dict[str, bytes] = field(default_factory=dict)
    delays: list[float] = field(default_factory=list)  # the grants' starts, in order (else 0)
    log: list[tuple[Any, ...]] = field(default_factory=list)

    def _step(self, *entry: Any) -> None:
        self.log.append(entry)
        if self.down.get(entry[0], 0) > 0:
            self.down[entry[0]] -= 1
            raise ProviderStateUnavailable(f"Redis unavailable ({entry[0]})")

    def calls(self, method: str) -> list[tuple[Any, ...]]:
        return [e[1:] for e in self.log if e[0] == method]

    def settlements(self) -> list[Settlement]:
        return [st for _, st in self.calls("settle")]

    async def admit(
        self,
        model: str | None,
        tokens: Sequence[int],
        lookup: str | None = None,
        ahead_s: float = 0.0,
        pace: bool = False,
    ) -> Admitted:
        self._step("admit", model, list(tokens), lookup)
        if lookup is not None and lookup in self.cache:
            return Admitted(self.cache[lookup], Batch([], 0.0, 0))
        if not tokens:
            return Admitted(None, Batch([], 0.0, 0))
        if self.admits == "no":
            return Admitted(None, Batch([], 0.0, 0, blocked_by=self.refused_by, unavailable=True))
        probe = self.admits == "probe"
        grants = [
            Reservation(True, 0.0, "x", model, t, 1, 0, probe=probe,
                        delay_s=self.delays.pop(0) if self.delays else 0.0)
            for t in tokens
        ]  # fmt: skip
        return Admitted(None, Batch(grants, 0.0, 0))

    async def lookup(self, digests: Sequence[str]) -> list[bytes | None]:
        self._step("lookup", list(digests))
        return [self.cache.get(d) for d in digests]

    async def settle(self, res: Reservation, settlement: Settlement) -> str:
        self._step("settle", res, settlement)
        if settlement.remember is not None:
            self.cache[settlement.remember.digest] = settlement.remember.value
        return self.after_failure if settlement.outcome == "fail" else "closed"

    async def refund(self, res: Reservation) -> bool:
        self._step("refund", res.tokens)
        return True

    async def trip(self, reason: str) -> bool:
        self._step("trip", reason)
        return True

    async def health(self) -> Health:
        self._step("health")
        return self.now

    async def heartbeat(self, worker_id: str, inflight: int, calls: Any = None) -> None:
        self._step("heartbeat", worker_id, inflight)

    async def leave(self, worker_id: str) -> None:
        self._step("leave", worker_id)


@dataclass
class FakeProvider:
    """Answers each call with the next scripted result; its model list with ``lists``."""

    name: str
    results: list[CallResult]
    kind: ProviderKind = "openai"
    calls: list[ProviderRequest] = field(default_factory=list)
    lists: bool = True
    checks: int = 0

    async def call(self, request: ProviderRequest) -> CallResult:
        self.calls.append(request)
        return self.results.pop(0)

    async def check(self) -> Checked:
        self.checks += 1
        return Checked(True, "HTTP 200") if self.lists else Checked(False, "HTTP 503")

    async def aclose(self) -> None:
        pass


def ok(content: str = ANSWER, headers: dict[str, str] | None = None) -> CallSuccess:
    return CallSuccess(content, 10, 5, "m-1", 12, headers or {})


def failed(kind: K, error_class: str, status: int | None = None, retry_after_s: float | None = None) -> CallFailure:  # fmt: skip
    return CallFailure(
        Failure(kind, error_class, "provider said no", retry_after_s), 3, status=status
    )


def worker(name: str, *results: CallResult, state: FakeState | None = None) -> WorkerProvider:
    return WorkerProvider(name, FakeProvider(name, list(results)), state or FakeState(), Aimd(8))


def fake_of(wp: WorkerProvider) -> FakeProvider:
    assert isinstance(wp.provider, FakeProvider)
    return wp.provider


def calls_of(wp: WorkerProvider) -> list[ProviderRequest]:
    return fake_of(wp).calls


def state_of(wp: WorkerProvider) -> FakeState:
    assert isinstance(wp.state, FakeState)
    return wp.state


async def run(
    *chain: WorkerProvider,
    value: bytes = VALUE,
    cache_ttl_s: float = 60,
    max_bytes: int = 1_048_576,
    history: Sequence[Failure] = (),
) -> tuple[Output, Enricher]:
    """One record through ``chain``; ``history``: the failures of its earlier attempts."""
    task = TASK.model_copy(update={"providers": [wp.name for wp in chain]})
    e = Enricher(T, "t", task, {wp.name: wp for wp in chain}, cache_ttl_s, max_bytes)
    await e.refresh("w1")
    record = Record(b"k", value, h.source_headers(SRC, 5))
    for earlier in history:
        record = failure_record(record, 5, earlier, chain[0].name)
    [out] = await e.handle(record, ("p.work", 0), 3)
    return out, e


def failure_of(out: Output) -> tuple[str | None, str | None, str | None]:
    assert out.topic == T.failures
    hs = out.record.headers
    return h.get_str(hs, h.ERROR_KIND), h.get_str(hs, h.ERROR_CLASS), h.get_str(hs, h.PROVIDER)


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(enricher, "REDIS_RETRY_S", 0.01)


# -- success, cache --------------------------------------------------------------------


async def test_a_success_is_a_result_and_the_fleet_is_told() -> None:
    a = worker("a", ok())
    out, _ = await run(a)
    assert out.topic == T.results
    assert jsondoc.loads(out.record.value or b"")["enrichment"] == {"sentiment": "negative"}
    assert h.get_str(out.record.headers, h.PROVIDER) == "a"
    s = state_of(a)
    [(res, settled)] = s.calls("settle")
    assert settled.used_tokens == 15 and res.tokens > 0  # settled to what the call used
    assert settled.outcome == "ok" and not res.probe
    assert settled.remember is not None and settled.remember.ttl_s == 60
    assert cache_entry.decode(s.cache[settled.remember.digest]) == ok()
    assert s.calls("heartbeat") == [("w1", 0)]
    # two round trips: the lookup with the reservation, then the settle
    assert [e[0] for e in s.log] == ["health", "heartbeat", "admit", "settle"]


async def test_a_cached_answer_calls_no_provider_and_takes_nothing() -> None:
    state = FakeState()
    req = render(TASK, {"text": "my bill is wrong"}, provider="a")
    assert isinstance(req, ProviderRequest)
    state.cache[request_hash("openai", req)] = cache_entry.encode(ok())
    a = worker("a", state=state)  # no scripted result: a call would fail the record
    out, _ = await run(a)
    assert out.topic == T.results and calls_of(a) == []
    assert [e[0] for e in state.log] == ["health", "heartbeat", "admit"]  # one round trip


async def test_each_call_is_counted_for_the_fleets_statistics_and_a_cache_hit_is_not() -> None:
    a = worker("a", ok(), failed(K.PROVIDER_ERROR, "http_500", 500))
    await run(a, cache_ttl_s=0)
    await run(a, cache_ttl_s=0)
    assert dict(a.calls.fields()) == {"n": 2, "e": 1, "h0": 2}  # 12 ms and 3 ms: the first bucket
    state = FakeState()
    req = render(TASK, {"text": "my bill is wrong"}, provider="b")
    assert isinstance(req, ProviderRequest)
    state.cache[request_hash("openai", req)] = cache_entry.encode(ok())
    b = worker("b", state=state)
    await run(b)
    assert b.calls.fields() == []


async def test_an_unreadable_cache_entry_is_a_miss() -> None:
    state = FakeState()
    req = render(TASK, {"text": "my bill is wrong"}, provider="a")
    assert isinstance(req, ProviderRequest)
    state.cache[request_hash("openai", req)] = b"{not json"
    a = worker("a", ok(), state=state)
    out, _ = await run(a)
    assert out.topic == T.results and len(calls_of(a)) == 1


async def test_no_cache_no_lookup_no_write() -> None:
    a = worker("a", ok())
    out, _ = await run(a, cache_ttl_s=0)
    assert out.topic == T.results
    assert [lookup for *_, lookup in state_of(a).calls("admit")] == [None]
    assert [st.remember for st in state_of(a).settlements()] == [None]


# -- grants scheduled ahead ------------------------------------------------------------------


async def test_a_call_granted_ahead_waits_for_its_start() -> None:
    state = FakeState(delays=[0.2])
    started: list[float] = []

    class Timed(FakeProvider):
        async def call(self, request: ProviderRequest) -> CallResult:
            started.append(asyncio.get_running_loop().time())
            return await super().call(request)

    a = WorkerProvider("a", Timed("a", [ok()]), state, Aimd(8))
    begun = asyncio.get_running_loop().time()
    out, _ = await run(a)
    assert out.topic == T.results
    assert started[0] - begun >= 0.2  # never before its start (later is allowed)
    assert [e[0] for e in state.log] == ["health", "heartbeat", "admit", "settle"]


async def test_a_call_that_wakes_too_late_for_its_start_gives_the_grant_back() -> None:
    class Stalling(FakeState):
        async def admit(self, *args: Any, **kw: Any) -> Admitted:
            got = await super().admit(*args, **kw)
            if got.batch.reservations and got.batch.reservations[0].delay_s:
                # the event loop stalls right after the grant, well past its start
                asyncio.get_running_loop().call_soon(time.sleep, 0.1)
            return got

    state = Stalling(delays=[0.02, 0.02])
    a = worker("a", ok(), state=state)
    out, _ = await run(a)
    assert out.topic == T.results and len(calls_of(a)) == 1
    # starting it then would have bunched it with later starts: refunded, asked again;
    # late again, it goes ahead (on a saturated machine every wake is late)
    assert [e[0] for e in state.log] == ["health", "heartbeat", "admit", "refund", "admit", "settle"]  # fmt: skip


async def test_a_pushback_while_a_grant_waits_for_its_start_refunds_it_and_asks_again() -> None:
    state = FakeState(delays=[0.3])
    a = worker("a", ok(), state=state)

    async def pushed_back() -> None:
        await asyncio.sleep(0.05)
        a.pushbacks += 1  # another call of this worker was answered 429

    _, (out, _) = await asyncio.gather(pushed_back(), run(a))
    assert out.topic == T.results and len(calls_of(a)) == 1
    # the first grant went back; the second ask (through the gate) was the one called
    assert [e[0] for e in state.log] == ["health", "heartbeat", "admit", "refund", "admit", "settle"]  # fmt: skip


async def test_a_provider_paused_while_a_grant_waits_is_not_called() -> None:
    state = FakeState(delays=[0.3])
    a = worker("a", state=state)  # no scripted result: a call would fail the record

    async def paused() -> None:
        await asyncio.sleep(0.05)
        a.health = Health(paused=True, breaker="closed")  # seen by the health refresh

    _, (out, _) = await asyncio.gather(paused(), run(a))
    assert failure_of(out)[0] == "outage" and calls_of(a) == []
    assert [e[0] for e in state.log] == ["health", "heartbeat", "admit", "refund"]


# -- fallback and outages --------------------------------------------------------------------


async def test_a_paused_primary_falls_back_to_the_next_provider() -> None:
    a = worker("a", ok(), state=FakeState(now=Health(paused=True, breaker="closed")))
    b = worker("b", ok())
    out, e = await run(a, b)
    assert out.topic == T.results and h.get_str(out.record.headers, h.PROVIDER) == "b"
    assert calls_of(a) == [] and len(calls_of(b)) == 1
    assert e.accepting()


async def test_a_breaker_that_refuses_the_call_falls_back() -> None:
    refused = FakeState(admits="no")
    a, b = worker("a", ok(), state=refused), worker("b", ok())
    out, _ = await run(a, b)
    assert h.get_str(out.record.headers, h.PROVIDER) == "b"
    assert calls_of(a) == [] and refused.calls("settle") == []  # nothing taken


async def test_breaker_open_on_the_only_provider_is_an_outage() -> None:
    a = worker("a", ok(), state=FakeState(admits="no"))
    out, _ = await run(a)
    assert failure_of(out) == ("outage", "breaker_open", "a")
    assert calls_of(a) == []


async def test_no_provider_available_parks_the_record_and_stops_intake() -> None:
    a = worker("a", state=FakeState(now=Health(paused=False, breaker="open", reason="auth")))
    b = worker("b", state=FakeState(now=Health(paused=True, breaker="closed")))
    out, e = await run(a, b)
    assert failure_of(out) == ("outage", "provider_unavailable", "a")
    assert not e.accepting()


async def test_unknown_health_counts_as_unavailable() -> None:
    a = worker("a", ok(), state=FakeState(down={"health": 1}))
    out, e = await run(a)
    assert failure_of(out) == ("outage", "provider_unavailable", "a")
    assert a.health is None and not e.accepting()


async def test_a_failure_that_opens_the_breaker_is_an_outage_and_the_fallback_takes_over() -> None:  # fmt: skip
    opening = FakeState(after_failure="open")
    a, b = worker("a", failed(K.PROVIDER_ERROR, "http_500", 500), state=opening), worker("b", ok())
    out, _ = await run(a, b)
    assert out.topic == T.results and h.get_str(out.record.headers, h.PROVIDER) == "b"
    assert [st.outcome for st in opening.settlements()] == ["fail"]


async def test_a_failure_that_opens_the_only_providers_breaker_is_the_outages() -> None:
    a = worker(
        "a", failed(K.PROVIDER_ERROR, "http_500", 500), state=FakeState(after_failure="open")
    )
    out, _ = await run(a)
    assert failure_of(out) == ("outage", "breaker_open:http_500", "a")


async def test_a_timeout_that_opens_the_breaker_stays_a_timeout() -> None:
    a = worker("a", failed(K.TIMEOUT, "timeout"), state=FakeState(after_failure="open"))
    out, _ = await run(a)
    assert failure_of(out) == ("timeout", "timeout", "a")


async def test_a_rejected_key_trips_the_breaker_and_the_record_goes_to_the_fallback() -> None:
    a = worker("a", failed(K.PROVIDER_ERROR, "auth", 401))
    b = worker("b", ok())
    out, _ = await run(a, b)
    assert out.topic == T.results and h.get_str(out.record.headers, h.PROVIDER) == "b"
    assert state_of(a).calls("trip") == [("auth",)]
    assert a.health == Health(paused=False, breaker="open", reason="auth")  # stops at once


async def test_a_rejected_key_without_fallback_is_an_outage() -> None:
    a = worker("a", failed(K.PROVIDER_ERROR, "auth", 401))
    out, _ = await run(a)
    assert failure_of(out) == ("outage", "breaker_open:auth", "a")


# -- each failure kind ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "breaker", "halved"),
    [
        (failed(K.RATE_LIMITED, "http_429", 429), None, True),
        (failed(K.OVERLOADED, "http_529", 529), "fail", True),
        (failed(K.PROVIDER_ERROR, "http_500", 500), "fail", False),
        (failed(K.TIMEOUT, "timeout"), "fail", False),
        (failed(K.BAD_REQUEST, "http_400", 400), None, False),
    ],
)
async def test_a_failed_call_is_the_records_failure(
    result: CallFailure, breaker: str | None, halved: bool
) -> None:
    a = worker("a", result)
    out, _ = await run(a)
    f = result.failure
    assert failure_of(out) == (f.kind.value, f.error_class, "a")
    s = state_of(a)
    [settled] = s.settlements()
    assert settled.used_tokens == 0  # the request counted, no tokens
    assert settled.outcome == breaker
    assert a.aimd.current == (4 if halved else 8)
    assert settled.remember is None


async def test_retry_after_cools_the_provider_down_and_goes_with_the_failure() -> None:
    a = worker("a", failed(K.RATE_LIMITED, "http_429", 429, retry_after_s=2.0))
    out, _ = await run(a)
    assert [st.cooldown_s for st in state_of(a).settlements()] == [2.0]
    assert h.get_str(out.record.headers, h.RETRY_AFTER) == "2.000"


async def test_a_probe_answered_with_a_bad_request_closes_the_breaker() -> None:
    probing = FakeState(admits="probe")
    a = worker("a", failed(K.BAD_REQUEST, "http_400", 400), state=probing)
    out, _ = await run(a)
    assert failure_of(out) == ("bad_request", "http_400", "a")
    [(res, settled)] = probing.calls("settle")
    assert res.probe and settled.outcome == "ok"


FAILED_PROBE = Failure(K.OUTAGE, "probe_failed:http_500", "provider said no")


async def test_a_failed_probe_reopens_the_breaker_and_parks_its_record_as_the_probes() -> None:
    probing = FakeState(admits="probe", after_failure="open")
    a = worker("a", failed(K.PROVIDER_ERROR, "http_500", 500), state=probing)
    out, _ = await run(a)
    assert failure_of(out) == ("outage", "probe_failed:http_500", "a")
    [(res, settled)] = probing.calls("settle")
    assert res.probe and settled.outcome == "fail"
    assert fake_of(a).checks == 0  # a first failure as the probe: the provider's


async def test_a_record_failing_as_the_probe_again_is_judged_by_the_model_list() -> None:
    # The provider lists its models: it is up, the record is at fault; the breaker closes.
    probing = FakeState(admits="probe", after_failure="open")
    a = worker("a", failed(K.PROVIDER_ERROR, "http_500", 500), state=probing)
    out, _ = await run(a, history=[FAILED_PROBE])
    assert failure_of(out) == ("provider_error", "http_500", "a")  # spends its attempt
    [(res, settled)] = probing.calls("settle")
    assert res.probe and settled.outcome == "ok"
    assert fake_of(a).checks == 1


async def test_a_record_failing_as_the_probe_again_while_the_model_list_fails_stays_parked() -> None:  # fmt: skip
    probing = FakeState(admits="probe", after_failure="open")
    a = worker("a", failed(K.OVERLOADED, "http_529", 529), state=probing)
    fake_of(a).lists = False
    out, _ = await run(a, history=[FAILED_PROBE])
    assert failure_of(out) == ("outage", "probe_failed:http_529", "a")
    assert [st.outcome for st in probing.settlements()] == ["fail"]
    assert fake_of(a).checks == 1


@pytest.mark.parametrize(
    ("admits", "result"),
    [
        ("yes", failed(K.PROVIDER_ERROR, "http_500", 500)),  # not a probe: the window decides
        ("probe", failed(K.TIMEOUT, "timeout")),  # a timeout is the record's anyway
        ("probe", failed(K.BAD_REQUEST, "http_400", 400)),  # answered: closes without asking
    ],
)
async def test_the_model_list_is_asked_only_after_a_repeated_probe_failure(
    admits: str, result: CallFailure
) -> None:
    a = worker("a", result, state=FakeState(admits=admits, after_failure="open"))
    await run(a, history=[FAILED_PROBE])
    assert fake_of(a).checks == 0


async def test_an_answer_that_is_not_the_schema_is_invalid_output_and_not_cached() -> None:
    a = worker("a", ok('{"mood": 1}'))
    out, _ = await run(a)
    assert failure_of(out) == ("invalid_output", "schema", "a")
    [settled] = state_of(a).settlements()
    assert settled.outcome == "ok" and settled.remember is None  # the provider itself answered


async def test_a_record_that_is_not_json_is_a_bad_request_without_a_call() -> None:
    a = worker("a", ok())
    out, _ = await run(a, value=b"not json")
    assert failure_of(out) == ("bad_request", "not_json", None)
    assert calls_of(a) == [] and state_of(a).calls("admit") == []


async def test_a_result_too_large_for_the_topics_is_an_oversize_failure() -> None:
    a = worker("a", ok('{"sentiment": "' + "x" * 5000 + '"}'))
    out, _ = await run(a, max_bytes=4096)
    assert failure_of(out) == ("oversize", "result_too_large", "a")


# -- the shared state down -------------------------------------------------------------------


async def test_bookkeeping_after_a_paid_call_is_retried_never_the_call() -> None:
    state = FakeState(down={"settle": 2})
    a = worker("a", ok(), state=state)
    out, _ = await run(a)
    assert out.topic == T.results and len(calls_of(a)) == 1
    # the same reservation each time: the store applies it once
    assert len({id(res) for res, _ in state.calls("settle")}) == 1
    assert len(state.settlements()) == 3 and len(state.cache) == 1


async def test_a_failed_calls_bookkeeping_is_retried_too() -> None:
    state = FakeState(down={"settle": 1})
    a = worker("a", failed(K.PROVIDER_ERROR, "http_500", 500), state=state)
    out, _ = await run(a)
    assert failure_of(out) == ("provider_error", "http_500", "a")
    assert len(calls_of(a)) == 1 and [st.outcome for st in state.settlements()] == ["fail"] * 2


async def test_no_call_without_the_fleets_limits_the_record_waits() -> None:
    state = FakeState(down={"admit": 2})
    a = worker("a", ok(), state=state)
    out, _ = await run(a)
    assert out.topic == T.results and len(calls_of(a)) == 1
    assert len(state.calls("admit")) == 3


# -- one decode of the record --------------------------------------------------------------


async def test_the_record_is_decoded_once_whatever_the_providers_tried(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[object] = []
    real = jsondoc.loads

    def counting(raw: Any) -> Any:
        seen.append(raw)
        return real(raw)

    monkeypatch.setattr(jsondoc, "loads", counting)
    refused = FakeState(admits="no")
    out, _ = await run(worker("a", ok(), state=refused), worker("b", ok()))
    assert out.topic == T.results
    assert seen.count(VALUE) == 1


# -- round trips to the shared state ------------------------------------------------------


@dataclass
class HeldProvider(FakeProvider):
    """Answers only once ``release`` is set, so calls overlap."""

    release: asyncio.Event = field(default_factory=asyncio.Event)

    async def call(self, request: ProviderRequest) -> CallResult:
        await self.release.wait()
        return await super().call(request)


async def test_a_busy_worker_looks_up_first_and_reserves_at_its_gate() -> None:
    # One call slot: the second record finds it taken, so it asks for the answer alone
    # (nothing reserved while it waits for a slot), then reserves through the gate.
    state = FakeState()
    held = HeldProvider("a", [ok(), ok('{"sentiment": "positive"}')])
    a = WorkerProvider("a", held, state, Aimd(1))
    e = Enricher(T, "t", TASK.model_copy(update={"providers": ["a"]}), {"a": a}, 60)
    await e.refresh("w1")
    records = [Record(b"k", b'{"text": "%d"}' % i, h.source_headers(SRC, 5)) for i in (1, 2)]
    both = asyncio.gather(*(e.handle(r, ("p.work", 0), i) for i, r in enumerate(records)))
    for _ in range(50):
        await asyncio.sleep(0)
    held.release.set()
    outs = await asyncio.wait_for(both, 5.0)
    assert [out.topic for [out] in outs] == [T.results, T.results]
    admits = [(len(tokens), lookup is not None) for _, tokens, lookup in state.calls("admit")]
    assert admits == [(1, True), (1, False)]
    assert [len(digests) for [digests] in state.calls("lookup")] == [1]
    assert len(state.calls("settle")) == 2


async def test_a_fresh_record_passes_replayed_ones_waiting_for_a_slot() -> None:
    # One call slot, held by the first record; two replayed records queue for it, then a
    # fresh one: the fresh one is called next, the replayed ones after it in their order.
    held = HeldProvider("a", [ok() for _ in range(4)])
    a = WorkerProvider("a", held, FakeState(), Aimd(1))
    e = Enricher(T, "t", TASK.model_copy(update={"providers": ["a"]}), {"a": a}, 60)
    await e.refresh("w1")

    def record(text: str, replay: bool) -> Record:
        hs = h.source_headers(SRC, 5) + ([(h.REPLAY_ID, b"r1")] if replay else [])
        return Record(b"k", b'{"text": "%s"}' % text.encode(), hs)

    pending = []
    for text, replay in [("first", False), ("r1", True), ("r2", True), ("fresh", False)]:
        pending.append(asyncio.ensure_future(e.handle(record(text, replay), ("p.work", 0), 1)))
        for _ in range(20):
            await asyncio.sleep(0)  # each queues before the next arrives
    held.release.set()
    await asyncio.wait_for(asyncio.gather(*pending), 5.0)
    assert [c.messages[-1].content for c in held.calls] == ["first", "fresh", "r1", "r2"]


async def test_a_cache_hit_while_the_worker_is_busy_costs_one_round_trip() -> None:
    state = FakeState()
    req = render(TASK, {"text": "my bill is wrong"}, provider="a")
    assert isinstance(req, ProviderRequest)
    state.cache[request_hash("openai", req)] = cache_entry.encode(ok())
    a = worker("a", state=state)
    assert a.slots.try_acquire()  # every slot busy (limit 8)
    for _ in range(7):
        assert a.slots.try_acquire()
    out, _ = await run(a)
    assert out.topic == T.results and calls_of(a) == []
    assert state.calls("admit") == [] and len(state.calls("lookup")) == 1  # no reservation


@pytest.mark.parametrize(("refused_by", "error_class"), [("paused", "paused"), ("breaker", "breaker_open")])  # fmt: skip
async def test_a_refusal_by_the_fleets_state_stops_intake_before_the_next_refresh(
    refused_by: str, error_class: str
) -> None:
    # The worker last read the provider as available; the store knows better.
    a = worker("a", ok(), state=FakeState(admits="no", refused_by=refused_by))
    out, e = await run(a)
    assert failure_of(out) == ("outage", error_class, "a") and calls_of(a) == []
    assert not e.accepting()  # no more records until a refresh says it is back
    await e.refresh("w1")
    assert e.accepting()
