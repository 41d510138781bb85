"""What enrich does with one work record (the ConcurrentConsumer's handler).

For the task's provider chain (primary, then fallbacks): skip a provider that
is paused or whose breaker is open; serve a cached answer if this exact
request was answered before; otherwise take a slot under the worker's AIMD
limit, reserve from the fleet-wide token buckets through the worker's
:class:`~services.enrich.gate.BucketGate` (FIFO, batched; re-checking the pause
flag while waiting), ask the breaker, call with a hard deadline, and settle the
reservation. One success → ``P.results``; one failure → ``P.failures``.
When no provider of the chain is available the record fails with kind
``outage`` (the router parks it without spending an attempt) and the worker
stops taking new work until one is available again. A provider that rejects
the API key (401/403) is tripped open fleet-wide with reason ``auth`` at once
(:mod:`services.enrich.breaker_policy`): the record goes on to the fallback,
or is parked as ``outage``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from services.enrich import metrics as m
from services.enrich.breaker_policy import (
    Effect,
    auth_outage,
    breaker_effect,
    outage_if_opened,
    status_text,
)
from services.enrich.classify import cooldown_from_headers
from services.enrich.providers.base import CallFailure, CallSuccess, ProviderRequest
from services.enrich.runtime import Runtime
from services.enrich.tasks import Answer, parse_output, render, request_hash
from shared import headers as h
from shared.config_file import TaskConfig
from shared.kafka.concurrent import Output
from shared.kafka.message import TP
from shared.kinds import FailureKind
from shared.logs import coords
from shared.outcomes import Failure, Record, failure_record, ok_result, oversize, unexpected
from shared.redis.breaker_logic import AUTH, OPEN
from shared.redis.bucket import Reservation
from shared.redis.cache import ResultCache
from shared.redis.errors import ProviderStateUnavailable
from shared.redis.health import Health
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
        runtimes: dict[str, Runtime],
        cache: ResultCache | None,
        cache_ttl_s: float,
        max_message_bytes: int = 1_048_576,
    ) -> None:
        self.topics = topics
        self.task = task
        self.task_name = task_name
        self.chain = [runtimes[name] for name in task.providers]
        self.cache = cache
        self.cache_ttl_s = cache_ttl_s
        self.max_message_bytes = max_message_bytes

    # -- intake ----------------------------------------------------------------
    def accepting(self) -> bool:
        return any(rt.available for rt in self.chain)

    async def refresh(self, worker_id: str) -> None:
        """Read pause/breaker state of the chain; publish this worker's in-flight."""
        for rt in self.chain:
            try:
                rt.health = await rt.state.health()
                await rt.state.heartbeat(worker_id, rt.active)
            except ProviderStateUnavailable:
                rt.health = None
            m.PAUSED.labels(rt.name).set(1 if rt.health and rt.health.paused else 0)
            m.BREAKER_OPEN.labels(rt.name).set(
                1 if rt.health and rt.health.breaker == "open" else 0
            )
            m.CONCURRENCY_LIMIT.labels(rt.name).set(rt.aimd.current)

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
        for rt in self.chain:
            if not rt.available:
                continue  # paused or open: the next provider of the chain (fallback)
            req = render(self.task, record.value, provider=rt.name)
            if isinstance(req, Failure):
                return self._failed(record, attempt, req, None)
            result = await self._call(rt, req)
            if isinstance(result, Failure):
                if result.kind is FailureKind.OUTAGE:
                    last = (result, rt.name)
                    continue  # became unavailable while we waited: try the fallback
                return self._failed(record, attempt, result, rt.name)
            parsed, success = result
            ok = ok_result(
                record, self.task_name, parsed.value, rt.name, success.model, success.latency_ms,
                success.tokens_in, success.tokens_out,
            )  # fmt: skip
            too_large = oversize(ok, self.max_message_bytes)
            if too_large is not None:
                return self._failed(record, attempt, too_large, rt.name)
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
        self, rt: Runtime, req: ProviderRequest
    ) -> tuple[Answer, CallSuccess] | Failure:
        digest = request_hash(rt.config.kind, req)
        started = time.monotonic()
        cached = await self._cached(rt, digest)
        m.STEP.labels(rt.name, "cache_lookup").observe(time.monotonic() - started)
        if cached is not None:
            return cached
        async with rt.slot():
            return await self._call_in_slot(rt, req, digest)

    async def _call_in_slot(
        self, rt: Runtime, req: ProviderRequest, digest: str
    ) -> tuple[Answer, CallSuccess] | Failure:
        estimate = req.text_chars() // 4 + 1 + req.max_tokens
        # The breaker first: no Redis round trip between taking a token and sending.
        started = time.monotonic()
        admission = await rt.state.allow()
        m.STEP.labels(rt.name, "breaker").observe(time.monotonic() - started)
        if not admission.allowed:
            return _outage(rt)
        waited = time.monotonic()
        res = await rt.gate.acquire(req.model, estimate)  # FIFO, batched reservations
        if res is None:
            return _outage(rt)  # paused or open while we waited
        m.BUCKET_WAIT.labels(rt.name).observe(time.monotonic() - waited)
        result = await rt.provider.call(req)
        # The call is paid for: from here on a Redis outage delays the bookkeeping
        # but never makes us call again.
        started = time.monotonic()
        try:
            if isinstance(result, CallSuccess):
                return await _until_redis(
                    lambda: self._succeeded(rt, digest, res, admission.probe, result)
                )
            return await _until_redis(lambda: self._failed_call(rt, res, admission.probe, result))
        finally:
            m.STEP.labels(rt.name, "bookkeeping").observe(time.monotonic() - started)

    async def _succeeded(
        self, rt: Runtime, digest: str, res: Reservation, probe: bool, result: CallSuccess
    ) -> tuple[Answer, CallSuccess] | Failure:
        parsed = parse_output(self.task, result.content)
        # Independent Redis writes, at once: the record waits for one round trip, not three.
        writes = [rt.state.reconcile(res, result.tokens_in + result.tokens_out),
                  rt.state.record(True, probe)]  # fmt: skip
        if isinstance(parsed, Answer) and self.cache is not None and self.cache_ttl_s > 0:
            payload = {"content": result.content, "tokens_in": result.tokens_in, "tokens_out": result.tokens_out,
                       "model": result.model, "latency_ms": result.latency_ms}  # fmt: skip
            writes.append(self.cache.put(digest, json.dumps(payload).encode(), self.cache_ttl_s))
        await asyncio.gather(*writes)
        rt.aimd.on_success()
        await rt.wake()
        cooldown = cooldown_from_headers(result.headers, time.time())
        if cooldown:
            await rt.state.extend_cooldown(cooldown)
            m.COOLDOWNS.labels(rt.name).inc()
        m.LATENCY.labels(rt.name, result.model).observe(result.latency_ms / 1000)
        m.TOKENS.labels(rt.name, result.model, "in").inc(result.tokens_in)
        m.TOKENS.labels(rt.name, result.model, "out").inc(result.tokens_out)
        m.CALLS.labels(rt.name, "ok" if isinstance(parsed, Answer) else "failed",
                       "" if isinstance(parsed, Answer) else parsed.kind.value).inc()  # fmt: skip
        if isinstance(parsed, Failure):
            return parsed
        return parsed, result

    async def _failed_call(
        self, rt: Runtime, res: Reservation, probe: bool, result: CallFailure
    ) -> Failure:
        f = result.failure
        await rt.state.reconcile(res, 0)  # the request counted at the provider; its tokens did not
        m.CALLS.labels(rt.name, "failed", f.kind.value).inc()
        if f.kind in _PUSHBACK:
            rt.aimd.on_pushback(time.monotonic())
        if f.retry_after_s:
            await rt.state.extend_cooldown(f.retry_after_s)
            m.COOLDOWNS.labels(rt.name).inc()
        effect = breaker_effect(f)
        if effect is Effect.TRIP_AUTH:
            return await self._auth_rejected(rt, result)
        if effect is Effect.FAILURE:
            # If this failure opened the breaker, the record failed because of the outage.
            return outage_if_opened(f, await rt.state.record(False, probe))
        if probe:
            await rt.state.record(True, probe)  # the provider answered; the request was at fault
        return f

    async def _auth_rejected(self, rt: Runtime, result: CallFailure) -> Failure:
        """The key was refused: open the provider fleet-wide; park or reroute the record."""
        m.AUTH_FAILURES.labels(rt.name).inc()
        opened = await rt.state.trip(AUTH)
        # This worker stops at once; the rest of the fleet at its next health refresh.
        rt.health = Health(
            paused=rt.health.paused if rt.health else False, breaker=OPEN, reason=AUTH
        )
        m.BREAKER_OPEN.labels(rt.name).set(1)
        how = status_text(result.status)
        if opened:
            log.error("provider %s rejected the API key (%s): breaker opened fleet-wide (reason auth); "
                      "a half-open probe tests the key again", rt.name, how)  # fmt: skip
        else:
            log.warning("provider %s rejected the API key (%s): breaker already open", rt.name, how)
        return auth_outage(result.failure, rt.name, result.status)

    async def _cached(self, rt: Runtime, digest: str) -> tuple[Answer, CallSuccess] | None:
        if self.cache is None:
            return None
        raw = await self.cache.get(digest)
        if raw is None:
            return None
        try:
            doc = json.loads(raw)
            success = CallSuccess(doc["content"], int(doc["tokens_in"]), int(doc["tokens_out"]), doc["model"],
                                  int(doc.get("latency_ms", 0)))  # fmt: skip
        except (ValueError, KeyError, TypeError):
            return None  # an unreadable entry is a miss
        parsed = parse_output(self.task, success.content)
        if isinstance(parsed, Failure):
            return None
        m.CACHE_HITS.labels(rt.name).inc()
        return parsed, success


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


def _outage(rt: Runtime) -> Failure:
    if rt.health is not None and rt.health.paused:
        return Failure(FailureKind.OUTAGE, "paused", f"provider {rt.name} is paused")
    reason = rt.health.reason if rt.health is not None else ""
    return Failure(
        FailureKind.OUTAGE,
        f"breaker_open:{reason}" if reason else "breaker_open",
        f"provider {rt.name}: breaker open" + (f" (reason {reason})" if reason else ""),
    )


def _kind(record: Record) -> str:
    return h.get_str(record.headers, h.ERROR_KIND) or ""
