"""The Redis URL as sluice shows it: checked, and without credentials (pure).

``SLUICE_REDIS_URL`` is a secret (it may carry a password), yet messages must
say which Redis is meant: :func:`redis_address` gives the URL with user and
password left out, after checking it the way redis-py will parse it, so a
bad URL is one :class:`~shared.errors.ConfigError` at start-up rather than a
``ValueError`` from the first connection.
"""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from redis.connection import parse_url

from shared.errors import ConfigError

SETTING = "SLUICE_REDIS_URL"


def scrub(text: str, url: str) -> str:
    """``text`` with the URL's password (raw and decoded) replaced by ``***``."""
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    for secret in {password, unquote(password or "")} - {None, ""}:
        text = text.replace(str(secret), "***")
    return text


def redis_address(url: str) -> str:
    """``redis://:pw@host:6380/1`` → ``redis://host:6380/1``; ConfigError if not a Redis URL."""
    try:
        parse_url(url)  # type: ignore[no-untyped-call]  # redis-py leaves it untyped
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{SETTING} is not a Redis URL: {scrub(str(exc), url)}") from exc
    if parts.scheme == "unix":
        return f"unix://{parts.path}"
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port or 6379}{parts.path or '/0'}"
