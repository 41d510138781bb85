"""HTTP front of the fake provider.

``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic)
share one pipeline, each step answering early when it applies:

1. body not a JSON object → 400;  the request is counted from here on
2. an unknown forced fault → 400
3. an outage window is open (or ``outage`` is forced) → 503
4. the body is invalid (or ``bad_request`` is forced) → 400
5. ``rate_limit`` forced, or the fake's own limiter refuses → 429 with headers
6. wait the drawn latency
7. the forced fault, else one drawn from the mix: hang, 5xx, 529, an error
   object in a 200, content that is not JSON; else the deterministic answer.

``GET /v1/models`` lists the models requested so far, in OpenAI's shape, or
in Anthropic's when the request carries ``anthropic-version``; 503 during an
outage window. It is no completion: counted as ``model_lists`` only.

Control endpoints under ``/_control`` switch all of it at run time; they answer
loopback clients only unless a control token is configured (then its bearer).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, ValidationError
from starlette.requests import ClientDisconnect

from services.fakellm import answers
from services.fakellm.config import FakeLLMConfig, apply_update
from services.fakellm.control_auth import control_refusal
from services.fakellm.counters import Clock, Counters, request_hash
from services.fakellm.dialects import (
    ANTHROPIC,
    OPENAI,
    Dialect,
    Invalid,
    go_duration,
    retry_headers,
)
from services.fakellm.faults import (
    FAULT_HEADER,
    STATUS_OF,
    Fault,
    UnknownFault,
    draw_fault,
    forced_fault,
    marker_times,
)
from services.fakellm.latency import sample_ms
from services.fakellm.metrics import metrics_response
from services.fakellm.ratelimit import Decision, Quota, SlidingLimiter
from shared.validation import one_line

log = logging.getLogger(__name__)

MAX_LISTED_MODELS = 100  # GET /v1/models lists at most this many of the names asked for
CLIENT_GONE = 499  # recorded (never sent) when the client left during a hang or latency


class Runtime:
    """The fake's mutable state: configuration, random source, limiter, counters."""

    def __init__(self, config: FakeLLMConfig, clock: Clock) -> None:
        self.clock = clock
        self.config = config
        self.rng = random.Random(config.seed)
        self.counters = Counters(clock)
        self.limiter = SlidingLimiter(clock)
        self.outage_until = 0.0
        self.marked: Counter[str] = Counter()  # requests seen per text with a counted marker
        self.models: set[str] = set()  # models valid requests named (GET /v1/models), bounded

    def set_config(self, config: FakeLLMConfig) -> None:
        if config.seed is not None and config.seed != self.config.seed:
            self.rng = random.Random(config.seed)
        self.config = config

    def earlier_marked(self, text: str) -> int:
        """Requests with ``text`` before this one, when it has a counted fault marker
        (:func:`~services.fakellm.faults.marker_times`); 0 otherwise."""
        if marker_times(text) is None:
            return 0
        self.marked[text] += 1
        return self.marked[text] - 1

    def outage_remaining(self) -> float:
        return max(0.0, self.outage_until - self.clock())


@dataclass(frozen=True)
class Call:
    """An admitted request on its way to an answer."""

    dialect: Dialect
    body: dict[str, Any]
    digest: str
    text: str
    forced: Fault | None
    tokens_in: int
    decision: Decision  # the limiter's state when admitted: a success's headers


class OutageRequest(BaseModel):
    seconds: float = Field(..., ge=0, le=86_400)


def _reply(
    rt: Runtime,
    d: Dialect,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    rt.counters.status(status)
    hdrs = {d.request_id_header: "req_" + uuid.uuid4().hex[:24], **(headers or {})}
    return JSONResponse(body, status_code=status, headers=hdrs)


def _error(
    rt: Runtime,
    d: Dialect,
    status: int,
    message: str,
    *,
    fault: Fault | None = None,
    invalid: Invalid | None = None,
) -> JSONResponse:
    if fault is not None:
        rt.counters.fault(fault.value)
    return _reply(rt, d, status, d.error(status, message, invalid=invalid))


def _rate_limited(
    rt: Runtime, d: Dialect, model: object, decision: Decision, forced: bool
) -> JSONResponse:
    rt.counters.fault(Fault.RATE_LIMIT.value)
    dim = decision.exceeded or "requests"
    quota = decision.requests if dim == "requests" else decision.tokens
    what = "tokens per min (TPM)" if dim == "tokens" else "requests"
    if forced:
        message = f"Rate limit reached for {what} (forced by fakellm)."
    else:
        used = f"Limit {quota.limit}, Remaining {quota.remaining}. " if quota else ""
        message = (
            f"Rate limit reached for {model} on {what}: {used}"
            f"Please try again in {go_duration(decision.retry_after_s)}."
        )
    headers = {**d.ratelimit_headers(decision, rt.clock()), **retry_headers(decision.retry_after_s)}
    return _reply(rt, d, 429, d.error(429, message, limit=dim), headers)


def _forced_rate_decision(rt: Runtime) -> Decision:
    """What a forced 429 reports: 1 s to wait, nothing remaining under the configured limits."""
    limits = rt.config.limits
    req_limit = limits.rpm or limits.rps
    return Decision(
        allowed=False,
        retry_after_s=1.0,
        exceeded="requests",
        requests=Quota(req_limit, 0, 1.0) if req_limit else None,
        tokens=Quota(limits.tpm, 0, 1.0) if limits.tpm else None,
    )


async def _until_disconnect(request: Request) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def _sleep_while_connected(request: Request, seconds: float) -> bool:
    """Sleep ``seconds``; ``False`` as soon as the client disconnects first."""
    if seconds <= 0:
        return True
    sleeper = asyncio.ensure_future(asyncio.sleep(seconds))
    watcher = asyncio.ensure_future(_until_disconnect(request))
    done, pending = await asyncio.wait({sleeper, watcher}, return_when=asyncio.FIRST_COMPLETED)
    for task in pending:
        task.cancel()
    return sleeper in done


def _parse_body(raw: bytes) -> dict[str, Any] | None:
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


async def _admit(rt: Runtime, d: Dialect, request: Request) -> Call | Response:
    """Steps 1-5 of the pipeline: a :class:`Call` to answer, or an early error."""
    try:
        raw = await request.body()
    except ClientDisconnect:  # the client gave up before its request was read
        rt.counters.status(CLIENT_GONE)
        return Response(status_code=CLIENT_GONE)
    body = _parse_body(raw)
    if body is None:
        return _error(rt, d, 400, "The request body must be a JSON object.")
    digest = request_hash(d.route, body)
    rt.counters.request(d.route, digest)
    messages = body.get("messages")
    text = answers.last_user_text(messages if isinstance(messages, list) else [])
    try:
        forced = forced_fault(request.headers.get(FAULT_HEADER), text, rt.earlier_marked(text))
    except UnknownFault as exc:
        return _error(rt, d, 400, str(exc))
    if forced is Fault.OUTAGE or rt.outage_remaining() > 0:
        return _error(rt, d, 503, "The service is temporarily unavailable.", fault=Fault.OUTAGE)
    invalid = d.validate(body)
    if forced is Fault.BAD_REQUEST:
        invalid = Invalid("Bad request (forced by fakellm).", None, "invalid_value")
    if invalid is not None:
        fault = Fault.BAD_REQUEST if forced is Fault.BAD_REQUEST else None
        return _error(rt, d, 400, invalid.message, fault=fault, invalid=invalid)
    if len(rt.models) < MAX_LISTED_MODELS:
        rt.models.add(str(body["model"]))
    if forced is Fault.RATE_LIMIT:
        return _rate_limited(rt, d, body["model"], _forced_rate_decision(rt), forced=True)
    tokens_in = answers.estimate_tokens(d.prompt_text(body))
    tokens_out = answers.estimate_tokens(answers.answer(text))
    decision = rt.limiter.check(rt.config.limits, tokens_in + tokens_out)
    if not decision.allowed:
        return _rate_limited(rt, d, body["model"], decision, forced=False)
    return Call(d, body, digest, text, forced, tokens_in, decision)


def _success(rt: Runtime, call: Call, content: str, headers: dict[str, str]) -> JSONResponse:
    d = call.dialect
    tokens_out = answers.estimate_tokens(content)
    rt.counters.success(call.digest, call.tokens_in, tokens_out)
    body = d.completion(str(call.body["model"]), content, call.tokens_in, tokens_out, rt.clock())
    return _reply(rt, d, 200, body, headers)


async def _answer(rt: Runtime, call: Call, request: Request) -> Response:
    """Steps 6-7: latency, then a fault or the answer."""
    d = call.dialect
    cfg = rt.config
    if not await _sleep_while_connected(request, sample_ms(cfg.latency, rt.rng) / 1000):
        rt.counters.status(CLIENT_GONE)
        return Response(status_code=CLIENT_GONE)
    fault = call.forced if call.forced is not None else draw_fault(cfg.faults, rt.rng)
    if fault is not None:
        log.debug("fault", extra={"fault": fault.value, "route": d.route})
    if fault is Fault.HANG:
        rt.counters.fault(fault.value)
        if not await _sleep_while_connected(request, cfg.hang_seconds):
            rt.counters.status(CLIENT_GONE)
            return Response(status_code=CLIENT_GONE)
        return _error(rt, d, 504, f"No answer after hanging {cfg.hang_seconds:g} s.")
    if fault is not None and fault in STATUS_OF:
        messages = {529: "Overloaded", 503: "The server is overloaded or not ready yet."}
        status = STATUS_OF[fault]
        return _error(rt, d, status, messages.get(status, "Internal server error"), fault=fault)
    # A success from here on: it carries the limiter's state.
    headers = d.ratelimit_headers(call.decision, rt.clock())
    if fault is Fault.ERROR_BODY:
        rt.counters.fault(fault.value)
        return _reply(rt, d, 200, d.error_in_200(cfg.error_body_kind), headers)
    if fault is Fault.INVALID_JSON:
        rt.counters.fault(fault.value)
        return _success(rt, call, answers.invalid_answer(call.text), headers)
    return _success(rt, call, answers.answer(call.text), headers)


def _control_guard(token: str | None) -> Callable[[Request], Awaitable[None]]:
    """A dependency refusing control requests as :mod:`services.fakellm.control_auth` says."""

    async def guard(request: Request) -> None:
        client = request.client.host if request.client else None
        refusal = control_refusal(client, token, request.headers.get("authorization"))
        if refusal is not None:
            log.warning(
                "control request refused", extra={"client": client, "status": refusal.status}
            )
            headers = {"WWW-Authenticate": "Bearer"} if refusal.status == 401 else None
            raise HTTPException(refusal.status, refusal.detail, headers=headers)

    return guard


def _add_control(app: FastAPI, rt: Runtime, token: str | None) -> None:
    control = APIRouter(prefix="/_control", dependencies=[Depends(_control_guard(token))])

    @control.get("/config")
    async def get_config() -> dict[str, Any]:
        return rt.config.model_dump()

    @control.put("/config", response_model=None)
    async def put_config(request: Request, replace: bool = False) -> Any:
        update = _parse_body(await request.body())
        if update is None:
            return JSONResponse({"detail": "body must be a JSON object"}, status_code=422)
        try:
            base = FakeLLMConfig() if replace else rt.config
            new = apply_update(base, update)
        except ValidationError as exc:
            return JSONResponse({"detail": one_line(exc)}, status_code=422)
        rt.set_config(new)
        log.info("config changed", extra={"config": new.model_dump()})
        return new.model_dump()

    @control.post("/outage")
    async def outage(req: OutageRequest) -> dict[str, float]:
        rt.outage_until = rt.clock() + req.seconds
        log.info("outage", extra={"seconds": req.seconds})
        return {"outage_remaining_s": rt.outage_remaining()}

    @control.get("/stats")
    async def stats() -> dict[str, Any]:
        return {**rt.counters.snapshot(), "outage_remaining_s": rt.outage_remaining()}

    @control.post("/reset")
    async def reset() -> dict[str, bool]:
        rt.counters.reset()
        rt.marked.clear()
        rt.limiter = SlidingLimiter(rt.clock)
        return {"reset": True}

    app.include_router(control)


def create_app(
    config: FakeLLMConfig | None = None,
    *,
    clock: Clock = time.time,
    control_token: str | None = None,
) -> FastAPI:
    """A fresh fake with its own state; ``clock`` drives windows, limits and outages.

    ``/_control/*`` answers loopback clients only, or, with ``control_token``,
    requests bearing it (:mod:`services.fakellm.control_auth`).
    """
    rt = Runtime(config or FakeLLMConfig(), clock)
    app = FastAPI(title="fakellm", summary="OpenAI- and Anthropic-shaped fake LLM provider")
    app.state.runtime = rt

    async def complete(d: Dialect, request: Request) -> Response:
        admitted = await _admit(rt, d, request)
        if isinstance(admitted, Response):
            return admitted
        return await _answer(rt, admitted, request)

    @app.post(OPENAI.route, response_model=None)
    async def chat_completions(request: Request) -> Response:
        return await complete(OPENAI, request)

    @app.post(ANTHROPIC.route, response_model=None)
    async def messages(request: Request) -> Response:
        return await complete(ANTHROPIC, request)

    @app.get("/v1/models", response_model=None)
    async def models(request: Request) -> Response:
        rt.counters.model_lists += 1
        d: Dialect = ANTHROPIC if "anthropic-version" in request.headers else OPENAI
        if rt.outage_remaining() > 0:
            body = d.error(503, "The service is temporarily unavailable.")
            return JSONResponse(body, status_code=503)
        return JSONResponse(d.model_list(sorted(rt.models), rt.clock()))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/metrics", response_model=None)
    async def metrics() -> Response:
        return metrics_response(rt.counters)

    _add_control(app, rt, control_token)
    return app
