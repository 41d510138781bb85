"""The admin's bearer tokens: where they come from and which role one grants (pure but
for reading the secret files).

    token                                   role      may
    ------------------------------------    --------  -----------------------------
    SLUICE_ADMIN_TOKEN (or ..._TOKEN_FILE)  operator  read and mutate
    SLUICE_ADMIN_VIEWER_TOKEN (or ..._FILE) viewer    read
    none / anything else                    -         401 (WWW-Authenticate: Bearer)

Each token comes from its variable or from its file (a mounted secret; one
trailing newline is ignored), not both. Tokens are compared with
:func:`hmac.compare_digest` against both roles every time, are ``SecretStr``
everywhere, and never appear in a log line, a metric or an answer.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pydantic import SecretStr

from services.admin.settings import AdminSettings
from shared.errors import ConfigError

MIN_TOKEN_CHARS = 16


class Role(StrEnum):
    OPERATOR = "operator"
    VIEWER = "viewer"


@dataclass(frozen=True)
class Tokens:
    operator: SecretStr | None
    viewer: SecretStr | None = None


def _one(value: SecretStr | None, file: Path | None, env: str) -> SecretStr | None:
    if value is not None and file is not None:
        raise ConfigError(f"{env}: give the token or {env}_FILE, not both")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{env}_FILE: cannot read {file}: {exc.__class__.__name__}") from None
        value = SecretStr(text.rstrip("\r\n"))
        env = f"{env}_FILE"
    if value is None or not value.get_secret_value().strip():
        return None
    secret = value.get_secret_value()
    if secret != secret.strip() or any(c.isspace() for c in secret):
        raise ConfigError(f"{env}: the token must not contain whitespace")
    if len(secret) < MIN_TOKEN_CHARS:
        raise ConfigError(f"{env}: the token must be at least {MIN_TOKEN_CHARS} characters")
    return value


def load_tokens(settings: AdminSettings) -> Tokens:
    """The configured tokens; ConfigError naming the setting for a bad one."""
    operator = _one(settings.admin_token, settings.admin_token_file, "SLUICE_ADMIN_TOKEN")
    viewer = _one(
        settings.admin_viewer_token, settings.admin_viewer_token_file, "SLUICE_ADMIN_VIEWER_TOKEN"
    )
    if viewer is not None and operator is None:
        raise ConfigError("SLUICE_ADMIN_VIEWER_TOKEN is set but SLUICE_ADMIN_TOKEN is not")
    if viewer is not None and operator is not None and _same(viewer, operator):
        raise ConfigError("SLUICE_ADMIN_VIEWER_TOKEN must differ from SLUICE_ADMIN_TOKEN")
    return Tokens(operator, viewer)


def _same(presented: str | SecretStr, token: SecretStr) -> bool:
    given = presented.get_secret_value() if isinstance(presented, SecretStr) else presented
    return hmac.compare_digest(given.encode(), token.get_secret_value().encode())


def resolve_role(presented: str | None, tokens: Tokens) -> Role | None:
    """The role ``presented`` grants, or None. Both tokens are compared every time."""
    if presented is None:
        return None
    is_operator = tokens.operator is not None and _same(presented, tokens.operator)
    is_viewer = tokens.viewer is not None and _same(presented, tokens.viewer)
    if is_operator:
        return Role.OPERATOR
    return Role.VIEWER if is_viewer else None
