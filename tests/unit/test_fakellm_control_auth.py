"""Who may use fakellm's /_control/*: the pure decision, the app, and the loopback default."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from services.fakellm.app import create_app
from services.fakellm.control_auth import bearer, control_refusal, is_loopback
from services.fakellm.main import FakeLLMSettings, _parser

TOKEN = "s3cret-token"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("::ffff:127.0.0.1", True),
     ("10.0.0.5", False), ("192.168.1.2", False), ("::ffff:10.0.0.5", False), ("2001:db8::1", False),
     ("testclient", False), ("", False), (None, False)],
)  # fmt: skip
def test_loopback_is_judged_by_address(host: str | None, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_bearer_header_is_parsed() -> None:
    assert bearer(f"Bearer {TOKEN}") == TOKEN
    assert bearer(f"bearer  {TOKEN} ") == TOKEN
    assert bearer(f"Basic {TOKEN}") is None
    assert bearer("Bearer") is None and bearer(None) is None


@pytest.mark.parametrize(
    ("client", "token", "header", "status"),
    [
        ("127.0.0.1", None, None, None),  # loopback, no token configured: allowed
        ("::1", None, "Bearer whatever", None),
        ("10.0.0.5", None, None, 403),  # others refused when no token is configured
        ("10.0.0.5", None, f"Bearer {TOKEN}", 403),  # a token nobody configured opens nothing
        ("10.0.0.5", TOKEN, f"Bearer {TOKEN}", None),  # a configured token opens it to anyone
        ("10.0.0.5", TOKEN, "Bearer wrong", 401),
        ("10.0.0.5", TOKEN, None, 401),
        ("127.0.0.1", TOKEN, None, 401),  # once configured, loopback needs it too
        ("127.0.0.1", TOKEN, f"Basic {TOKEN}", 401),
    ],
)
def test_control_decision(
    client: str, token: str | None, header: str | None, status: int | None
) -> None:
    refusal = control_refusal(client, token, header)
    assert (refusal.status if refusal else None) == status
    if refusal is not None:
        assert TOKEN not in refusal.detail


def test_app_refuses_a_remote_client_with_a_json_403() -> None:
    app = create_app()
    remote = TestClient(app, client=("10.0.0.5", 40000))
    for method, path in [("put", "/_control/config"), ("post", "/_control/outage"),
                         ("post", "/_control/reset"), ("get", "/_control/stats")]:  # fmt: skip
        r = remote.request(method, path, json={"seconds": 5})
        assert r.status_code == 403, (method, path)
        assert "loopback" in r.json()["detail"]
    assert remote.get("/healthz").status_code == 200, "only /_control/* is guarded"
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.get("/_control/stats").json()["outage_remaining_s"] == 0, (
        "the 403s changed nothing"
    )


def test_app_with_a_token_wants_its_bearer_from_everyone() -> None:
    app = create_app(control_token=TOKEN)
    remote = TestClient(app, client=("10.0.0.5", 40000))
    missing = remote.post("/_control/outage", json={"seconds": 5})
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert TOKEN not in missing.text
    wrong = remote.post("/_control/outage", json={"seconds": 5},
                        headers={"Authorization": "Bearer nope"})  # fmt: skip
    assert wrong.status_code == 401
    ok = remote.post("/_control/outage", json={"seconds": 5},
                     headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert ok.status_code == 200 and ok.json()["outage_remaining_s"] > 0
    local = TestClient(app, client=("127.0.0.1", 40000))
    assert local.get("/_control/stats").status_code == 401


def test_fakellm_listens_on_loopback_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SLUICE_FAKELLM_HOST", "SLUICE_FAKELLM_CONTROL_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    env = FakeLLMSettings()
    args = _parser(env).parse_args([])
    assert (args.host, args.control_token) == ("127.0.0.1", None)
    assert _parser(env).parse_args(["--host", "0.0.0.0"]).host == "0.0.0.0"
    monkeypatch.setenv("SLUICE_FAKELLM_HOST", "0.0.0.0")
    monkeypatch.setenv("SLUICE_FAKELLM_CONTROL_TOKEN", TOKEN)
    env = FakeLLMSettings()
    assert TOKEN not in repr(env)
    args = _parser(env).parse_args([])
    assert (args.host, args.control_token) == ("0.0.0.0", TOKEN)
