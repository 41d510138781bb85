"""Who is asking: the FastAPI dependencies every ``/v1`` router uses.

    router = APIRouter()

    @router.get("/things")                         # read: create_app adds require_viewer
    @router.post("/things/{name}/poke")            # mutate
    async def poke(name: str, who: Operator) -> ...

:func:`services.admin.app.create_app` mounts every ``/v1`` router with
``require_viewer`` already, so a route without its own dependency is still
for token holders only; mutations add ``require_operator``. Missing or wrong
token: 401 with ``WWW-Authenticate: Bearer``; the viewer token on a mutation:
403. With ``--insecure-dev`` (no token configured, loopback only) every
request is the operator ``insecure-dev``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.admin.models import Problem
from services.admin.tokens import Role, Tokens, resolve_role

log = logging.getLogger(__name__)

INSECURE_DEV = "insecure-dev"
INSECURE_HEADER = "X-Sluice-Insecure-Dev"
INSECURE_HEADER_VALUE = "no authentication: development only, loopback only"

TOKEN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": Problem, "description": "no token, or not the operator's or the viewer's"}
}
"""What a route behind :func:`require_viewer` may answer besides its own (its OpenAPI ``responses``)."""

_bearer = HTTPBearer(auto_error=False, description="the operator or the viewer token")


@dataclass(frozen=True)
class Principal:
    role: Role
    who: str  # what the audit log records: the role, or insecure-dev


@dataclass(frozen=True)
class Authenticator:
    """The app's tokens; ``insecure_dev``: there are none and nobody is asked for one."""

    tokens: Tokens
    insecure_dev: bool = False

    def principal(self, presented: str | None) -> Principal | None:
        if self.insecure_dev:
            return Principal(Role.OPERATOR, INSECURE_DEV)
        role = resolve_role(presented, self.tokens)
        return None if role is None else Principal(role, role.value)


def _unauthorized(request: Request, why: str) -> HTTPException:
    client = request.client.host if request.client else "?"
    log.warning("refused %s %s from %s: %s", request.method, request.url.path, client, why)
    return HTTPException(
        401,
        "this endpoint needs 'Authorization: Bearer <token>' with the operator or viewer token",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_viewer(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Principal:
    """Any valid token (operator or viewer): reads."""
    auth: Authenticator = request.app.state.auth
    principal = auth.principal(creds.credentials if creds is not None else None)
    if principal is None:
        raise _unauthorized(request, "no bearer token" if creds is None else "wrong token")
    request.state.principal = principal
    return principal


async def require_operator(
    request: Request, principal: Annotated[Principal, Depends(require_viewer)]
) -> Principal:
    """The operator token: mutations."""
    if principal.role is not Role.OPERATOR:
        log.warning(
            "refused %s %s: the viewer token may only read", request.method, request.url.path
        )
        raise HTTPException(403, "the viewer token may only read; this needs the operator token")
    return principal


Viewer = Annotated[Principal, Depends(require_viewer)]
"""A route's parameter ``who: Viewer``: any valid token."""
Operator = Annotated[Principal, Depends(require_operator)]
"""A route's parameter ``who: Operator``: the operator token (mutations)."""
