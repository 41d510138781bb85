"""The dev stack's admin: a fresh token in an owner-only file, an environment without the
caller's tokens, the token printed only when it is new."""

from __future__ import annotations

import stat
from pathlib import Path

from devtools.stack.dev_admin import admin_env, exports, token_notice, write_token
from services.admin.settings import AdminSettings
from services.admin.tokens import load_tokens


def test_write_token_makes_a_new_owner_only_token_the_admin_accepts(tmp_path: Path) -> None:
    path = tmp_path / "admin.token"
    path.write_text("an old token of another stack\n")
    path.chmod(0o644)
    token = write_token(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600, "a new file, not the old one's mode"
    assert path.read_text() == token + "\n"
    loaded = load_tokens(AdminSettings(admin_token_file=path))
    assert loaded.operator is not None and loaded.operator.get_secret_value() == token
    assert write_token(path) != token


def test_admin_env_drops_the_callers_tokens_and_kafka_settings(tmp_path: Path) -> None:
    caller = {
        "PATH": "/bin",
        "SLUICE_PIPELINE": "p",
        "SLUICE_ADMIN_TOKEN": "the caller's own token",
        "SLUICE_ADMIN_VIEWER_TOKEN_FILE": "/elsewhere",
        "SLUICE_KAFKA_PROP_SECURITY_PROTOCOL": "SASL_SSL",
        "SLUICE_KAFKA_BOOTSTRAP": "prod:9092",
        "SLUICE_ADMIN_LAG_INTERVAL_S": "2",
    }
    stack = {"SLUICE_KAFKA_BOOTSTRAP": "127.0.0.1:1", "SLUICE_REDIS_URL": "redis://127.0.0.1:2/0"}
    env = admin_env(caller, stack, tmp_path / "t")
    assert env == {
        "PATH": "/bin",
        "SLUICE_PIPELINE": "p",
        "SLUICE_ADMIN_LAG_INTERVAL_S": "2",
        **stack,
        "SLUICE_ADMIN_TOKEN_FILE": str(tmp_path / "t"),
    }


def test_the_token_is_printed_only_when_it_is_new() -> None:
    fresh = "\n".join(token_notice("f00d" * 12, "/s/admin.token"))
    assert "f00d" * 12 in fresh and "/s/admin.token" in fresh
    assert "sluice providers list" in fresh
    again = "\n".join(token_notice(None, "/s/admin.token"))
    assert "/s/admin.token" in again and "f00d" not in again


def test_exports_is_one_shell_line() -> None:
    assert exports({"A": "1", "B": "x:2"}) == "export A=1 B=x:2"
