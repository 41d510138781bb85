"""Admin tokens: where they come from, which role one grants, when the app refuses to exist."""

from __future__ import annotations

import hmac
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from services.admin import tokens as tokens_mod
from services.admin.app import create_app
from services.admin.auth import Authenticator
from services.admin.settings import AdminSettings
from services.admin.tokens import Role, Tokens, load_tokens, resolve_role
from shared.errors import ConfigError

OP = "op-token-0123456789abcdef"
VIEW = "view-token-0123456789abcdef"
TOKENS = Tokens(SecretStr(OP), SecretStr(VIEW))


def settings(**kw: Any) -> AdminSettings:
    return AdminSettings(**kw)


def test_each_token_grants_its_role_and_nothing_else_grants_any() -> None:
    assert resolve_role(OP, TOKENS) is Role.OPERATOR
    assert resolve_role(VIEW, TOKENS) is Role.VIEWER
    assert resolve_role(None, TOKENS) is None
    assert resolve_role("", TOKENS) is None
    assert resolve_role(OP[:-1], TOKENS) is None
    assert resolve_role(OP + "x", TOKENS) is None
    assert resolve_role(VIEW, Tokens(SecretStr(OP))) is None  # no viewer configured


def test_both_tokens_are_compared_in_constant_time_every_time(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        seen.append((a, b))
        return real(a, b)

    monkeypatch.setattr(tokens_mod.hmac, "compare_digest", spy)
    assert resolve_role(OP, TOKENS) is Role.OPERATOR
    assert len(seen) == 2  # the viewer token was compared too: no early exit on a match
    seen.clear()
    assert resolve_role("nope", TOKENS) is None and len(seen) == 2


def test_tokens_come_from_the_variable_or_the_secret_file(tmp_path: Path) -> None:
    f = tmp_path / "token"
    f.write_text(OP + "\n")
    v = tmp_path / "viewer"
    v.write_text(VIEW)
    t = load_tokens(settings(admin_token_file=f, admin_viewer_token_file=v))
    assert t.operator is not None and t.operator.get_secret_value() == OP
    assert t.viewer is not None and t.viewer.get_secret_value() == VIEW
    t = load_tokens(settings(admin_token=OP))
    assert t.operator is not None and t.viewer is None
    assert load_tokens(settings(admin_token="  ")).operator is None  # blank is not a token


@pytest.mark.parametrize(
    ("kw", "says"),
    [
        ({"admin_token": OP, "admin_token_file": "/dev/null"}, "not both"),
        ({"admin_token": "short"}, "at least 16"),
        ({"admin_token": "a b c d e f g h i j"}, "whitespace"),
        ({"admin_token": OP, "admin_viewer_token": OP}, "must differ"),
        ({"admin_viewer_token": VIEW}, "SLUICE_ADMIN_TOKEN is not"),
        ({"admin_token_file": "/nonexistent/token"}, "SLUICE_ADMIN_TOKEN_FILE: cannot read"),
    ],
)
def test_a_bad_token_setting_is_one_config_error_naming_it(kw: dict[str, Any], says: str) -> None:
    with pytest.raises(ConfigError, match=says) as err:
        load_tokens(settings(**kw))
    assert OP not in str(err.value)


def test_the_settings_never_print_a_token() -> None:
    s = settings(admin_token=OP, admin_viewer_token=VIEW)
    assert OP not in repr(s) and OP not in str(s.model_dump())
    assert VIEW not in repr(s)


def test_without_an_operator_token_there_is_no_app() -> None:
    with pytest.raises(ConfigError, match="no operator token: set SLUICE_ADMIN_TOKEN"):
        create_app(settings())


def test_insecure_dev_is_for_loopback_and_no_token_only() -> None:
    create_app(settings(), insecure_dev=True)  # loopback by default
    with pytest.raises(ConfigError, match="loopback only"):
        create_app(settings(admin_host="0.0.0.0"), insecure_dev=True)
    with pytest.raises(ConfigError, match="unset SLUICE_ADMIN_TOKEN"):
        create_app(settings(admin_token=OP), insecure_dev=True)


def test_insecure_dev_makes_everyone_the_insecure_dev_operator() -> None:
    p = Authenticator(Tokens(None), insecure_dev=True).principal(None)
    assert p is not None and p.role is Role.OPERATOR and p.who == "insecure-dev"
    assert Authenticator(TOKENS).principal(VIEW).who == "viewer"  # type: ignore[union-attr]
    assert Authenticator(TOKENS).principal("wrong") is None


def test_every_operation_with_a_json_body_documents_the_400_of_a_body_that_is_not_text() -> None:
    # FastAPI answers 400 before any validation when the body cannot be read as JSON text.
    spec = create_app(settings(admin_token=OP)).openapi()
    with_body = [(method, path) for path, ops in spec["paths"].items()
                 for method, op in ops.items() if "requestBody" in op]  # fmt: skip
    assert ("post", "/v1/replays") in with_body
    missing = [(method, path) for method, path in with_body
               if "400" not in spec["paths"][path][method]["responses"]]  # fmt: skip
    assert missing == []
