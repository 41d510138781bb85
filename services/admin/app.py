"""The admin API: ``create_app(settings)`` builds it, routers from elsewhere mount on it.

    app = create_app(settings, routers=[other.router])   # each mounted under /v1, token required

The lag sampler (:mod:`services.admin.lag`) runs while the app does: started
in its lifespan, stopped when it ends; ``/v1/lag`` and the ``sluice_lag_*``
gauges read its latest sample. ``sluice_enrich_useful_workers`` is worked out
after each sample by a task of the same lifespan (:mod:`services.admin.autoscale`).

Without an operator token it refuses to exist (ConfigError), unless
``insecure_dev``: then nobody is asked for a token, it must listen on
loopback, and every answer carries ``X-Sluice-Insecure-Dev``. No cookies are
set or read; CORS headers only for ``SLUICE_ADMIN_CORS_ORIGINS``. Every
answer carries ``X-Request-ID`` (the caller's, if it is a plain id, else a
new one): the audit record of a mutation has the same id.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from prometheus_client import REGISTRY, Counter

from services.admin import audit_api, probes, providers
from services.admin.auth import (
    INSECURE_HEADER,
    INSECURE_HEADER_VALUE,
    TOKEN_RESPONSES,
    Authenticator,
    require_viewer,
)
from services.admin.autoscale.metrics import UsefulWorkers
from services.admin.blocked import routes as blocked_routes
from services.admin.context import AdminContext
from services.admin.dlq import replay_tasks, replays
from services.admin.dlq import routes as dlq_routes
from services.admin.dlq.board import ReplayBoard
from services.admin.lag.groups import pipeline_groups
from services.admin.lag.metrics import LagCollector
from services.admin.lag.reader import LagReader
from services.admin.lag.routes import lag_router
from services.admin.lag.sampler import LagSampler
from services.admin.page.routes import mount_page
from services.admin.settings import AdminSettings
from services.admin.tokens import load_tokens
from shared.config_file import load_config
from shared.errors import ConfigError, ProviderStateUnavailable

log = logging.getLogger(__name__)

REQUESTS = Counter(
    "sluice_admin_requests_total",
    "Admin API requests by endpoint (the route's name) and status",
    ["method", "endpoint", "status"],
)
_PLAIN_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
LAG_GAUGES = LagCollector(lambda: None)
"""The ``sluice_lag_*`` gauges of ``/metrics``: registered once, reading the running app's sampler."""
REGISTRY.register(LAG_GAUGES)
USEFUL_WORKERS = UsefulWorkers()
"""``sluice_enrich_useful_workers`` of ``/metrics``: registered once, kept by the running app."""
REGISTRY.register(USEFUL_WORKERS)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _authenticator(settings: AdminSettings, insecure_dev: bool) -> Authenticator:
    tokens = load_tokens(settings)
    if insecure_dev:
        if tokens.operator is not None:
            raise ConfigError("--insecure-dev runs without authentication: "
                              "unset SLUICE_ADMIN_TOKEN(_FILE) to use it")  # fmt: skip
        if not is_loopback(settings.admin_host):
            raise ConfigError(f"--insecure-dev listens on loopback only, not "
                              f"{settings.admin_host} (SLUICE_ADMIN_HOST / --host)")  # fmt: skip
    elif tokens.operator is None:
        raise ConfigError("no operator token: set SLUICE_ADMIN_TOKEN or SLUICE_ADMIN_TOKEN_FILE "
                          "(or, for local development only, start with --insecure-dev)")  # fmt: skip
    return Authenticator(tokens, insecure_dev)


def create_app(
    settings: AdminSettings,
    *,
    insecure_dev: bool = False,
    routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """The app; every router of ``routers`` is mounted under ``/v1`` behind a token."""
    auth = _authenticator(settings, insecure_dev)
    config = load_config(settings.config_file)
    sampler = LagSampler(LagReader(settings, pipeline_groups(settings)),
                         settings.admin_lag_interval_s, settings.admin_lag_window_s)  # fmt: skip

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        ctx = AdminContext.build(settings, config)
        app.state.ctx = ctx
        LAG_GAUGES.latest = sampler.latest
        sampler.start()
        autoscale = asyncio.create_task(USEFUL_WORKERS.run(ctx, sampler.latest))
        app.state.replays = board = ReplayBoard(settings, config, ctx.audit)
        board.start()  # loads P.replays and resumes the tasks a killed process left running
        try:
            yield
        finally:
            autoscale.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await autoscale
            try:
                await asyncio.gather(asyncio.to_thread(sampler.stop, settings.shutdown_grace_s),
                                     asyncio.to_thread(board.stop, settings.shutdown_grace_s))  # fmt: skip
            finally:
                await ctx.aclose()

    app = FastAPI(
        title="sluice admin",
        description="Providers (pause, resume), consumer lag, blocked keys, DLQs and their "
        "replays, audit log and health of one sluice pipeline. "
        "`/v1` needs `Authorization: Bearer <token>`; mutations the operator token.",
        version="1",
        lifespan=lifespan,
    )
    app.state.auth = auth
    app.include_router(probes.router)
    app.include_router(lag_router(require_viewer, sampler),  # its own /v1 prefix and token check
                       responses=TOKEN_RESPONSES)  # fmt: skip
    mount_page(app, require_viewer, sampler)  # the operator page at /
    for router in (providers.router, audit_api.router, dlq_routes.router, replays.router,
                   replay_tasks.router, blocked_routes.router, *routers):  # fmt: skip
        app.include_router(router, prefix="/v1", dependencies=[Depends(require_viewer)],
                           responses=TOKEN_RESPONSES)  # fmt: skip
    app.add_exception_handler(ProviderStateUnavailable, _redis_unavailable)
    app.middleware("http")(_every_request(insecure_dev))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_credentials=False, allow_methods=["GET", "POST"],
                           allow_headers=["Authorization", "Content-Type", "X-Request-ID"])  # fmt: skip
    return app


async def _redis_unavailable(_request: Request, exc: Exception) -> Response:
    return JSONResponse({"detail": str(exc)}, status_code=503)


Handler = Callable[[Request], Awaitable[Response]]


def _every_request(insecure_dev: bool) -> Callable[[Request, Handler], Awaitable[Response]]:
    async def middleware(request: Request, call_next: Handler) -> Response:
        given = request.headers.get("x-request-id", "")
        rid = given if _PLAIN_ID.match(given) else uuid.uuid4().hex
        request.state.request_id = rid
        started = time.monotonic()
        response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        if insecure_dev:
            response.headers[INSECURE_HEADER] = INSECURE_HEADER_VALUE
        endpoint = getattr(request.scope.get("route"), "name", None) or "unmatched"
        REQUESTS.labels(request.method, endpoint, str(response.status_code)).inc()
        principal = getattr(request.state, "principal", None)
        log.info("%s %s %d %.0f ms", request.method, request.url.path, response.status_code,
                 (time.monotonic() - started) * 1000,
                 extra={"request_id": rid, "who": principal.who if principal else None})  # fmt: skip
        return response

    return middleware
