"""What enrich does with one work record (the record handler of enrich's Dispatcher).

For the task's provider chain (primary, then fallbacks): skip a provider that
is paused or whose breaker is open; serve a cached answer if this exact
request was answered before; otherwise take a slot under the worker's AIMD
limit, get the breaker's admission and a reservation from the fleet-wide
token buckets, call with a hard deadline, and settle the reservation with the
outcome. One success → ``P.results``; one failure → ``P.failures``.

Two round trips to the shared state per paid call, one per cache hit: when a
slot is free and nobody queues at the worker's gate, one ``admit`` does the
lookup, the pause and breaker check and the reservation; a busy worker looks
up first (:class:`~services.enrich.lookups.Lookups`: the lookups of calls that
queue together, one ``MGET`` for many), then waits for a slot and reserves
through its :class:`~services.enrich.gate.BucketGate` (FIFO per lane, batched:
one ask for many calls). One ``settle`` after the call applies the usage, the breaker
outcome, the cooldown and the cache write. A reservation may be scheduled up
to the worker's ``ahead_s`` ahead (its ``delay_s``): the call waits for its
start, and asks again if the provider pushed back or became unavailable
meanwhile.

When no provider of the chain is available the record fails with kind
``outage`` (the router parks it without spending an attempt) and the worker
stops taking new work until one is available again. A provider that rejects
the API key (401/403) is tripped open fleet-wide with reason ``auth`` at once
(:mod:`services.enrich.breaker_policy`): the record goes on to the fallback,
or is parked as ``outage``. A record that fails as the half-open probe a
second time is judged by the provider's answer to a request of its own (its
model list), so that one record cannot hold a breaker open for good.

Everything the fleet shares goes through :class:`shared.provider_state.ProviderState`
and every call through :class:`~services.enrich.providers.base.Provider`, so
unit tests drive this with in-memory fakes of both. The record's value is
decoded once per attempt, whatever the number of providers tried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

from services.enrich import cache_entry
from services.enrich import metrics as m
from services.enrich.breaker_policy import (
    AUTH,
    Effect,
    auth_outage,
    breaker_effect,
    failed_probes,
    opened_for_auth,
    outage_if_opened,
    status_text,
    unavailable,
)
from services.enrich.classify import cooldown_from_headers
from services.enrich.lanes import lane_of
from services.enrich.providers.base import CallFailure, CallSuccess, ProviderRequest
from services.enrich.tasks import Answer, parse_output, record_object, render, request_hash
from services.enrich.worker_provider import LATE_START_S, WorkerProvider
from shared import headers as h
from shared.config_file import TaskConfig
from shared.errors import ProviderStateUnavailable
from shared.kafka.concurrent import Output
from shared.kafka.message import TP
from shared.kinds import FailureKind
from shared.logs import coords
from shared.outcomes import Failure, Record, failure_record, ok_result, oversize, unexpected
from shared.provider_state import Admitted, CacheWrite, Reservation, Settlement
from shared.topics import Topics

log = logging.getLogger(__name__)
T = TypeVar("T")

_PUSHBACK = frozenset({FailureKind.RATE_LIMITED, FailureKind.OVERLOADED})
REDIS_RETRY_S = 0.5


class Enricher:
    def __init__(
        self,
        topics: Topics,
        task_name: str,
        task: TaskConfig,
        providers: Mapping[str, WorkerProvider],
        cache_ttl_s: float,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        self.topics = topics
        self.task = task
        self.task_name = task_name
        self.chain = [providers[name] for name in task.providers]
        self.cache_ttl_s = cache_ttl_s  # 0: no result cache
        self.max_message_bytes = max_message_bytes

    # -- intake ----------------------------------------------------------------
    def accepting(self) -> bool:
        return any(wp.available for wp in self.chain)

    async def refresh(self, worker_id: str) -> None:
        """Read pause/breaker state of the chain; publish this worker's in-flight and calls."""
        for wp in self.chain:
            try:
                wp.health = await wp.state.health()
                await wp.state.heartbeat(worker_id, wp.active, wp.calls)
            except ProviderStateUnavailable:
                wp.health = None
            m.observe_provider(wp.name, wp.health, wp.aimd.current)

    # -- one record ------------------------------------------------------------
    async def handle(self, record: Record, tp: TP, offset: int) -> Sequence[Output]:
        try:
            attempt = h.get_int(record.headers, h.ATTEMPT)
        except h.HeaderError:
            attempt = 1
        while True:
            try:
                out = await self._attempt(record, attempt)
                break
            except ProviderStateUnavailable as exc:
                # Never call a provider without the fleet's limits: wait for Redis.
                log.warning(
                    "Redis unavailable (%s); record waits",
                    exc,
                    extra={"record": coords(tp[0], tp[1], offset, record.key)},
                )
                await asyncio.sleep(REDIS_RETRY_S)
            except Exception as exc:  # anything else is this record's failure, not the worker's
                log.exception(
                    "record failed unexpectedly; it goes to the DLQ with the reason",
                    extra={"record": coords(tp[0], tp[1], offset, record.key)},
                )
                out = self._failed(record, attempt, unexpected(exc), None)
                break
        m.OUTCOMES.labels(
            *(("ok", "") if out.topic == self.topics.results else ("failed", _kind(out.record)))
        ).inc()
        return [out]

    async def _attempt(self, record: Record, attempt: int) -> Output:
        last: tuple[Failure, str] | None = None
        doc: dict[str, Any] | Failure | None = None  # the value, decoded at the first provider
        lane = lane_of(record.headers)
        probed = failed_probes(record.headers) > 0  # failed as a half-open probe before
        for wp in self.chain:
            if not wp.available:
                continue  # paused or open: the next provider of the chain (fallback)
            if doc is None:
                doc = record_object(record.value)
            req = doc if isinstance(doc, Failure) else render(self.task, doc, provider=wp.name)
            if isinstance(req, Failure):
                return self._failed(record, attempt, req, None)
            result = await self._call(wp, req, lane, probed)
            if isinstance(result, Failure):
                if result.kind is FailureKind.OUTAGE:
                    last = (result, wp.name)
                    continue  # became unavailable while we waited: try the fallback
                return self._failed(record, attempt, result, wp.name)
            parsed, success = result
            ok = ok_result(
                record, self.task_name, parsed.value, wp.name, success.model, success.latency_ms,
                success.tokens_in, success.tokens_out, input_is_json=True,
            )  # fmt: skip
            too_large = oversize(ok, self.max_message_bytes)
            if too_large is not None:
                return self._failed(record, attempt, too_large, wp.name)
            return Output(self.topics.results, ok)
        failure, provider = last or (
            Failure(
                FailureKind.OUTAGE,
                "provider_unavailable",
                "no provider of the chain is available (paused or breaker open)",
            ),
            self.chain[0].name,
        )
        return self._failed(record, attempt, failure, provider)

    def _failed(
        self, record: Record, attempt: int, failure: Failure, provider: str | None
    ) -> Output:
        return Output(self.topics.failures, failure_record(record, attempt, failure, provider))

    async def _call(
        self, wp: WorkerProvider, req: ProviderRequest, lane: int, probed: bool
    ) -> tuple[Answer, CallSuccess] | Failure:
        """The cached answer, or one paid call: two round trips to the shared state.
        ``probed``: the record failed as a half-open probe before."""
        digest = request_hash(wp.provider.kind, req)
        lookup = digest if self.cache_ttl_s > 0 else None
        estimate = req.input_tokens_estimate() + req.max_tokens
        if wp.start_now():
            # A free slot and nobody queued: lookup, admission and reservation in the
            # one round trip before the call (the usual case below the limit).
            try:
                first = await self._admit(wp, req.model, [estimate], lookup)
                hit = self._hit(wp, first.cached)
                if hit is not None:
                    return hit
                if first.batch.reservations:
                    res = first.batch.reservations[0]
                    if await self._started(wp, res, late_ok=False):
                        m.BUCKET_WAIT.labels(wp.name).observe(res.delay_s)
                        return await self._paid(wp, req, digest, res, probed)
                    if not wp.available:
                        return unavailable(wp.name, wp.health)
                    return await self._queued(wp, req, digest, estimate, lane, probed, late_ok=True)
                if first.batch.unavailable or not wp.available:
                    return unavailable(wp.name, wp.health)
                return await self._queued(wp, req, digest, estimate, lane, probed)  # buckets empty
            finally:
                wp.slots.release()
        if lookup is not None:
            hit = self._hit(wp, await self._lookup(wp, lookup))
            if hit is not None:
                return hit
        async with wp.slot(lane):
            return await self._queued(wp, req, digest, estimate, lane, probed)

    async def _admit(
        self, wp: WorkerProvider, model: str | None, tokens: list[int], lookup: str | None
    ) -> Admitted:
        started = time.monotonic()
        try:
            return await wp.admit(model, tokens, lookup)
        finally:
            m.STEP.labels(wp.name, "admit").observe(time.monotonic() - started)

    async def _lookup(self, wp: WorkerProvider, digest: str) -> bytes | None:
        started = time.monotonic()
        try:
            return await wp.lookups.get(digest)
        finally:
            m.STEP.labels(wp.name, "lookup").observe(time.monotonic() - started)

    def _hit(self, wp: WorkerProvider, raw: bytes | None) -> tuple[Answer, CallSuccess] | None:
        hit = cache_entry.usable(self.task, raw)
        if hit is not None:
            m.CACHE_HITS.labels(wp.name).inc()
        return hit

    async def _queued(
        self, wp: WorkerProvider, req: ProviderRequest, digest: str, estimate: int, lane: int,
        probed: bool, late_ok: bool = False,
    ) -> tuple[Answer, CallSuccess] | Failure:  # fmt: skip
        """Wait at the worker's gate (in its lane, batched) for a reservation and its start,
        then call. A call gives a grant back for waking late once at most (``late_ok``
        after that): on a saturated machine every wake is late, and asking again and again
        would only add work to it."""
        waited = time.monotonic()
        while True:
            res = await wp.gate.acquire(req.model, estimate, lane)
            if res is None:
                return unavailable(wp.name, wp.health)  # paused or open while we waited
            if await self._started(wp, res, late_ok):
                break
            late_ok = True
            if not wp.available:
                return unavailable(wp.name, wp.health)
        m.BUCKET_WAIT.labels(wp.name).observe(time.monotonic() - waited)
        return await self._paid(wp, req, digest, res, probed)

    async def _started(self, wp: WorkerProvider, res: Reservation, late_ok: bool) -> bool:
        """Wait for a scheduled reservation's start. False (and the reservation refunded)
        when the call must not start then: the worker woke too late for it
        (``LATE_START_S``, unless ``late_ok``), the provider became unavailable, or it
        pushed back meanwhile (the fleet's cooldown may now hold the call); the caller
        asks again."""
        if res.delay_s <= 0:
            return True
        seen = wp.pushbacks
        start_at = res.start_at or time.monotonic() + res.delay_s  # 0: not stamped on receipt
        try:
            await asyncio.sleep(max(0.0, start_at - time.monotonic()))
        except asyncio.CancelledError:
            wp.gate.refund_later(res)  # the provider never saw it
            raise
        late = not late_ok and time.monotonic() - start_at > LATE_START_S
        why = "pushback" if wp.pushbacks != seen else "unavailable" if not wp.available else "late" if late else None  # fmt: skip
        if why is None:
            return True
        m.REGRANTS.labels(wp.name, why).inc()
        await _until_redis(lambda: wp.state.refund(res))
        return False

    async def _paid(
        self, wp: WorkerProvider, req: ProviderRequest, digest: str, res: Reservation,
        probed: bool,
    ) -> tuple[Answer, CallSuccess] | Failure:  # fmt: skip
        result = await wp.provider.call(req)
        wp.calls.add(result.latency_ms, not result.ok)  # reaches Redis with the next heartbeat
        # The call is paid for: from here on a Redis outage delays the bookkeeping
        # but never makes us call again (a settle is applied once per reservation).
        started = time.monotonic()
        try:
            if isinstance(result, CallSuccess):
                return await self._succeeded(wp, digest, res, result)
            return await self._failed_call(wp, res, result, probed)
        finally:
            m.STEP.labels(wp.name, "settle").observe(time.monotonic() - started)

    async def _succeeded(
        self, wp: WorkerProvider, digest: str, res: Reservation, result: CallSuccess
    ) -> tuple[Answer, CallSuccess] | Failure:
        parsed = parse_output(self.task, result.content)
        # Until the next request's worth is back (this one's estimate stands in for it).
        cooldown = cooldown_from_headers(result.headers, time.time(), res.tokens) or 0.0
        remember = (
            CacheWrite(digest, cache_entry.encode(result), self.cache_ttl_s)
            if isinstance(parsed, Answer) and self.cache_ttl_s > 0
            else None
        )
        used = result.tokens_in + result.tokens_out
        await _until_redis(lambda: wp.state.settle(res, Settlement(used, "ok", cooldown, remember)))
        wp.aimd.on_success()
        await wp.wake()
        if cooldown:
            m.COOLDOWNS.labels(wp.name).inc()
        m.LATENCY.labels(wp.name, result.model).observe(result.latency_ms / 1000)
        m.TOKENS.labels(wp.name, result.model, "in").inc(result.tokens_in)
        m.TOKENS.labels(wp.name, result.model, "out").inc(result.tokens_out)
        if isinstance(parsed, Failure):
            m.CALLS.labels(wp.name, "failed", parsed.kind.value).inc()
            return parsed
        m.CALLS.labels(wp.name, "ok", "").inc()
        return parsed, result

    async def _failed_call(
        self, wp: WorkerProvider, res: Reservation, result: CallFailure, probed: bool
    ) -> Failure:
        f = result.failure
        m.CALLS.labels(wp.name, "failed", f.kind.value).inc()
        if f.kind in _PUSHBACK:
            wp.aimd.on_pushback(time.monotonic())
        if f.kind in _PUSHBACK or f.retry_after_s:
            wp.pushbacks += 1
        if f.retry_after_s:
            m.COOLDOWNS.labels(wp.name).inc()
        effect = breaker_effect(f)
        if effect is Effect.FAILURE and res.probe and probed and f.kind is not FailureKind.TIMEOUT:
            effect = await self._second_opinion(wp, f)
        # A failure of the provider counts against its breaker; one that was the
        # request's fault still shows a probe that the provider answers.
        outcome = "fail" if effect is Effect.FAILURE else "ok" if res.probe and effect is not Effect.TRIP_AUTH else None  # fmt: skip
        # The request counted at the provider; its tokens did not.
        settled = Settlement(0, outcome, f.retry_after_s or 0.0)
        state = await _until_redis(lambda: wp.state.settle(res, settled))
        if effect is Effect.TRIP_AUTH:
            return await self._auth_rejected(wp, result)
        if effect is Effect.FAILURE:
            # If this failure opened the breaker, the record failed because of the outage.
            return outage_if_opened(f, state, probe=res.probe)
        return f

    async def _second_opinion(self, wp: WorkerProvider, f: Failure) -> Effect:
        """The record failed as the half-open probe again: does the provider answer a
        request of its own? Then the failure is the record's (:mod:`.breaker_policy`)."""
        checked = await wp.provider.check()
        m.PROBE_CHECKS.labels(wp.name, "up" if checked.up else "down").inc()
        if not checked.up:
            log.info("provider %s: a record failed as the half-open probe again (%s) and the "
                     "provider's model list failed too (%s); the breaker re-opens",
                     wp.name, f.error_class, checked.detail)  # fmt: skip
            return Effect.FAILURE
        log.warning("provider %s: a record failed as the half-open probe again (%s) but the "
                    "provider lists its models (%s): the breaker closes and the failure is "
                    "the record's", wp.name, f.error_class, checked.detail)  # fmt: skip
        return Effect.ANSWERED

    async def _auth_rejected(self, wp: WorkerProvider, result: CallFailure) -> Failure:
        """The key was refused: open the provider fleet-wide; park or reroute the record."""
        m.AUTH_FAILURES.labels(wp.name).inc()
        opened = await wp.state.trip(AUTH)
        # This worker stops at once; the rest of the fleet at its next health refresh.
        wp.health = opened_for_auth(wp.health)
        m.BREAKER_OPEN.labels(wp.name).set(1)
        how = status_text(result.status)
        if opened:
            log.error("provider %s rejected the API key (%s): breaker opened fleet-wide (reason auth); "
                      "a half-open probe tests the key again", wp.name, how)  # fmt: skip
        else:
            log.warning("provider %s rejected the API key (%s): breaker already open", wp.name, how)
        return auth_outage(result.failure, wp.name, result.status)


async def _until_redis(step: Callable[[], Awaitable[T]]) -> T:
    """Run post-call bookkeeping; while Redis is down, retry it (never the call).

    The steps are safe to repeat: a reservation settles once, cooldowns only
    extend, cache writes overwrite.
    """
    while True:
        try:
            return await step()
        except ProviderStateUnavailable as exc:
            log.warning("Redis unavailable after a paid call (%s); retrying the bookkeeping", exc)
            await asyncio.sleep(REDIS_RETRY_S)


def _kind(record: Record) -> str:
    return h.get_str(record.headers, h.ERROR_KIND) or ""
