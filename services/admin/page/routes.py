"""The operator page's routes: the shell at ``/``, its fragments under ``/page``, ``/static``.

    mount_page(app, require_viewer, sampler)     # in create_app

====================  =========  ==========================================================
``GET /``             no token   the page: asks for the token, holds no data
``GET /page/*``       viewer     HTML fragments (session, providers, blocked, lag, audit, the
                                 DLQs: :mod:`services.admin.page.dlq`), read
                                 through the same functions as the ``/v1`` routes
``GET /static/*``     no token   the page's script and style, the vendored htmx
====================  =========  ==========================================================

The page's actions are not here: they post to ``/v1`` (pause with a reason,
resume, release a blocked key, start or cancel a replay), so they are authorised and audited as every API call is. The
fragments' errors are the API's JSON (401, 503 ...), which the page shows.
Nothing here sets a cookie; the shell forbids framing and any script or
style not served by the app (Content-Security-Policy).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from services.admin import audit_api, providers
from services.admin.auth import Authenticator, Viewer
from services.admin.blocked import routes as blocked_routes
from services.admin.context import Ctx
from services.admin.lag.routes import LagSource
from services.admin.page import view
from services.admin.page.dlq import dlq_fragments

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"
AUDIT_ROWS = 15

SHELL_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self'; connect-src 'self'; form-action 'none'; base-uri 'none'; "
    "frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
FRAGMENT_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}


def _fragment(html: str) -> HTMLResponse:
    return HTMLResponse(html, headers=FRAGMENT_HEADERS)


def page_router(require_viewer: Callable[..., Any], lag: LagSource) -> APIRouter:
    shell = APIRouter(include_in_schema=False)

    @shell.get("/", response_class=HTMLResponse)
    def page(request: Request) -> HTMLResponse:
        auth: Authenticator = request.app.state.auth
        return HTMLResponse(view.shell(auth.insecure_dev), headers=SHELL_HEADERS)

    fragments = APIRouter(prefix="/page", dependencies=[Depends(require_viewer)])

    @fragments.get("/session", response_class=HTMLResponse)
    def session_fragment(who: Viewer, ctx: Ctx) -> HTMLResponse:
        return _fragment(view.session(who, ctx.settings.pipeline))

    @fragments.get("/providers", response_class=HTMLResponse)
    async def providers_fragment(who: Viewer, ctx: Ctx) -> HTMLResponse:
        return _fragment(view.providers(await providers.list_providers(ctx), who, time.time()))

    @fragments.get("/blocked", response_class=HTMLResponse)
    async def blocked_fragment(who: Viewer, ctx: Ctx) -> HTMLResponse:
        return _fragment(view.blocked(await blocked_routes.list_blocked(ctx), who))

    @fragments.get("/lag", response_class=HTMLResponse)
    def lag_fragment() -> HTMLResponse:
        return _fragment(view.lag(lag.latest(), time.time()))

    @fragments.get("/audit", response_class=HTMLResponse)
    async def audit_fragment(ctx: Ctx) -> HTMLResponse:
        return _fragment(view.audit(await audit_api.audit(ctx, AUDIT_ROWS), time.time()))

    fragments.include_router(dlq_fragments(_fragment))
    shell.include_router(fragments)
    return shell


def mount_page(app: FastAPI, require_viewer: Callable[..., Any], lag: LagSource) -> None:
    """The page's routes and static files on ``app``."""
    app.include_router(page_router(require_viewer, lag))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
