"""Command line: ``python -m services.fakellm [--port 8900] [--latency uniform:800:2000] ...``

Every option may also come from the environment (``SLUICE_FAKELLM_PORT``,
``SLUICE_FAKELLM_LATENCY``, ``SLUICE_FAKELLM_RPM``, ...); options on the command
line win, and both win over ``--config FILE``. A bad value is one line on
stderr and exit code 2.

It listens on loopback unless ``--host`` (``SLUICE_FAKELLM_HOST``) says
otherwise; ``/_control/*`` answers loopback clients only unless
``SLUICE_FAKELLM_CONTROL_TOKEN`` (or ``--control-token``) is set, and then
only requests with ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from pydantic import Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.fakellm.config import FakeLLMConfig, apply_update, load_config_file, parse_latency
from services.fakellm.server import run as serve
from shared import logs
from shared.errors import ConfigError
from shared.validation import one_line


class FakeLLMSettings(BaseSettings):
    """Defaults of the command line, from ``SLUICE_FAKELLM_*`` variables."""

    model_config = SettingsConfigDict(env_prefix="SLUICE_FAKELLM_", frozen=True, extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8900, ge=0, le=65535)
    latency: str | None = None
    rps: int | None = Field(None, ge=0)
    rpm: int | None = Field(None, ge=0)
    tpm: int | None = Field(None, ge=0)
    seed: int | None = None
    config: str | None = None
    control_token: SecretStr | None = None


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(text)
    return value


def port_number(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise ValueError(text)
    return value


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, no usage block
        self.exit(2, f"fakellm: {message}\n")


def _parser(env: FakeLLMSettings) -> argparse.ArgumentParser:
    p = _Parser(prog="fakellm", description="OpenAI- and Anthropic-shaped fake LLM provider")
    p.add_argument("--host", default=env.host, help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=port_number, default=env.port)
    p.add_argument(
        "--latency",
        default=env.latency,
        help="fixed:MS | uniform:MIN_MS:MAX_MS | lognormal:MEAN_MS:SIGMA",
    )
    p.add_argument(
        "--rps", type=non_negative_int, default=env.rps, help="requests/s, 0 = unlimited"
    )
    p.add_argument("--rpm", type=non_negative_int, default=env.rpm, help="requests/min")
    p.add_argument("--tpm", type=non_negative_int, default=env.tpm, help="tokens/min")
    p.add_argument("--seed", type=int, default=env.seed)
    p.add_argument("--config", default=env.config, help="FILE.json or FILE.yaml")
    p.add_argument(
        "--control-token",
        default=env.control_token.get_secret_value() if env.control_token else None,
        help="/_control/* then wants 'Authorization: Bearer TOKEN' from every client, "
        "loopback or not (prefer SLUICE_FAKELLM_CONTROL_TOKEN: arguments show in ps)",
    )
    return p


def build_config(args: argparse.Namespace) -> FakeLLMConfig:
    """The configuration from the file (if any) overlaid with the options given."""
    config = load_config_file(args.config) if args.config else FakeLLMConfig()
    update: dict[str, Any] = {}
    if args.latency is not None:
        try:
            update["latency"] = parse_latency(args.latency).model_dump()
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    limits = {k: getattr(args, k) for k in ("rps", "rpm", "tpm") if getattr(args, k) is not None}
    if limits:
        update["limits"] = limits
    if args.seed is not None:
        update["seed"] = args.seed
    try:
        return apply_update(config, update)
    except ValidationError as exc:
        raise ConfigError(one_line(exc)) from None


def run(argv: list[str]) -> int:
    """Parse ``argv``, then serve until stopped; 2 on a bad argument or setting."""
    try:
        env = FakeLLMSettings()
    except ValidationError as exc:
        print(f"fakellm: bad SLUICE_FAKELLM_* setting: {one_line(exc)}", file=sys.stderr)
        return 2
    try:
        args = _parser(env).parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        config = build_config(args)
    except ConfigError as exc:
        print(f"fakellm: {exc}", file=sys.stderr)
        return 2
    logs.configure()
    serve(args.host, args.port, config, args.control_token or None)
    return 0
