"""A client of the admin API for the ``sluice`` command (``providers``, ``lag``, ``audit``, ``dlq``,
``blocked``).

    SLUICE_ADMIN_URL          base URL (or ``--url``; default http://127.0.0.1:8700)
    SLUICE_ADMIN_TOKEN        the operator or viewer token (or ..._TOKEN_FILE)

The token goes only into the ``Authorization`` header: never into a message.
Every failure is an :class:`~shared.errors.AdminApiError` of one line that
carries the server's ``detail`` (or why it could not be reached).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import httpx

from shared.errors import AdminApiError, ConfigError

DEFAULT_URL = "http://127.0.0.1:8700"
TIMEOUT_S = 30.0


def base_url(flag: str | None, env: dict[str, str]) -> str:
    """``--url``, else ``SLUICE_ADMIN_URL``, else the default (pure)."""
    url = (flag or env.get("SLUICE_ADMIN_URL") or DEFAULT_URL).rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--url / SLUICE_ADMIN_URL: {url!r} is not an http(s) URL")
    return url


def token(env: dict[str, str]) -> str | None:
    """``SLUICE_ADMIN_TOKEN`` or the file ``SLUICE_ADMIN_TOKEN_FILE`` names; None: neither."""
    value, path = env.get("SLUICE_ADMIN_TOKEN"), env.get("SLUICE_ADMIN_TOKEN_FILE")
    if value and path:
        raise ConfigError("set SLUICE_ADMIN_TOKEN or SLUICE_ADMIN_TOKEN_FILE, not both")
    if path:
        try:
            value = Path(path).read_text().rstrip("\r\n")
        except OSError as exc:
            raise ConfigError(
                f"SLUICE_ADMIN_TOKEN_FILE: cannot read {path}: {exc.strerror}"
            ) from exc
    return value or None


def problem(method: str, path: str, response: httpx.Response, has_token: bool) -> str:
    """One line for an error answer: status and the server's ``detail`` (pure)."""
    try:
        detail: Any = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if isinstance(detail, list):  # 422: [{"loc": [...], "msg": ...}, ...]
        detail = "; ".join(_field_error(d) for d in detail)
    text = str(detail) if detail else (response.text.strip()[:200] or response.reason_phrase)
    line = f"{method} {path}: {response.status_code} {text}"
    if response.status_code == 401 and not has_token:
        line += " (set SLUICE_ADMIN_TOKEN or SLUICE_ADMIN_TOKEN_FILE)"
    if response.status_code == 503 and "Retry-After" in response.headers:
        line += f" (retry in {response.headers['Retry-After']} s)"
    return line


def _field_error(d: Any) -> str:
    if not isinstance(d, dict):
        return str(d)
    loc = [str(p) for p in d.get("loc", []) if p not in ("body", "query", "path")]
    return f"{'.'.join(loc) or 'body'}: {d.get('msg', '?')}"


class AdminClient:
    """Calls of the admin API; each returns the answer's JSON or raises AdminApiError."""

    def __init__(self, url: str, secret: str | None, timeout_s: float = TIMEOUT_S) -> None:
        self.url = url
        self._has_token = secret is not None
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout_s)

    @classmethod
    def from_env(cls, url_flag: str | None) -> AdminClient:
        env = dict(os.environ)
        return cls(base_url(url_flag, env), token(env))

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._http.close()

    def __repr__(self) -> str:
        return f"AdminClient({self.url!r})"

    def providers(self) -> dict[str, Any]:
        return self._call("GET", "/v1/providers")

    def pause(self, name: str, reason: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/providers/{name}/pause", json={"reason": reason})

    def resume(self, name: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/providers/{name}/resume")

    def lag(self, group: str | None) -> dict[str, Any]:
        return self._call("GET", "/v1/lag", params={"group": group} if group else None)

    def audit(self, limit: int) -> dict[str, Any]:
        return self._call("GET", "/v1/audit", params={"limit": limit})

    def dlqs(self) -> dict[str, Any]:
        return self._call("GET", "/v1/dlq")

    def dlq_records(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._call("GET", f"/v1/dlq/{name}/records", params=params)

    def replay(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/replays", json=body)

    def replays(self) -> dict[str, Any]:
        return self._call("GET", "/v1/replays")

    def replay_task(self, replay_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/replays/{replay_id}")

    def cancel_replay(self, replay_id: str) -> dict[str, Any]:
        return self._call("POST", f"/v1/replays/{replay_id}/cancel")

    def blocked(self) -> dict[str, Any]:
        return self._call("GET", "/v1/blocked")

    def release(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/v1/blocked/release", json=body)

    def _call(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            why = str(exc) or type(exc).__name__
            raise AdminApiError(
                f"cannot reach the admin API at {self.url} (--url / SLUICE_ADMIN_URL): {why}"
            ) from exc
        if response.status_code >= 400:
            raise AdminApiError(problem(method, path, response, self._has_token))
        try:
            doc = response.json()
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise AdminApiError(
                f"{method} {path}: {response.status_code} answer is not a JSON object"
            )
        return doc
