"""The HTTP pipeline in-process (no sockets), with a fake clock."""

import json

import pytest
from fastapi.testclient import TestClient

from services.fakellm.app import create_app
from services.fakellm.config import FakeLLMConfig, FaultMix

MSG = [{"role": "user", "content": "great shipping, thanks"}]


class FakeClock:
    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(clock: FakeClock) -> TestClient:
    # A loopback client: /_control/* refuses others unless a control token is set.
    return TestClient(create_app(FakeLLMConfig(), clock=clock), client=("127.0.0.1", 50000))


def chat(client: TestClient, content: str = "great shipping", **headers: str):  # type: ignore[no-untyped-def]
    body = {"model": "m", "messages": [{"role": "user", "content": content}]}
    return client.post("/v1/chat/completions", json=body, headers=headers)


def test_success_and_health(client: TestClient) -> None:
    r = chat(client)
    assert r.status_code == 200
    assert json.loads(r.json()["choices"][0]["message"]["content"])["sentiment"] == "positive"
    assert r.headers["x-request-id"].startswith("req_")
    assert client.get("/healthz").json() == {"status": "ok"}
    assert "fakellm_requests_total" in client.get("/metrics").text


def test_body_that_is_not_a_json_object_is_a_400(client: TestClient) -> None:
    r = client.post("/v1/chat/completions", content=b"[1]")
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    r = client.post("/v1/messages", content=b"{nope")
    assert r.status_code == 400
    assert r.json()["type"] == "error"


def test_outage_window_follows_the_clock(client: TestClient, clock: FakeClock) -> None:
    assert client.post("/_control/outage", json={"seconds": 10}).json() == {
        "outage_remaining_s": 10.0
    }
    assert chat(client).status_code == 503
    r = client.post("/v1/messages", json={"model": "m", "max_tokens": 5, "messages": MSG})
    assert r.status_code == 503
    clock.t += 10
    assert chat(client).status_code == 200
    stats = client.get("/_control/stats").json()
    assert stats["faults"] == {"outage": 2}
    assert stats["outage_remaining_s"] == 0
    assert client.post("/_control/outage", json={"seconds": -1}).status_code == 422


def test_rate_limit_answers_429_until_the_window_moves(
    client: TestClient, clock: FakeClock
) -> None:
    client.put("/_control/config", json={"limits": {"rps": 2}})
    assert [chat(client).status_code for _ in range(4)] == [200, 200, 429, 429]
    r = chat(client)
    assert r.headers["retry-after"] == "1"
    assert r.headers["x-ratelimit-remaining-requests"] == "0"
    assert r.json()["error"]["code"] == "rate_limit_exceeded"
    clock.t += 1
    assert chat(client).status_code == 200
    assert client.get("/_control/stats").json()["rate_limited"] == 3


def test_put_config_partial_full_and_invalid(client: TestClient) -> None:
    r = client.put("/_control/config", json={"faults": {"http_500": 0.5}, "hang_seconds": 2})
    assert r.status_code == 200
    assert r.json()["faults"]["http_500"] == 0.5
    r = client.put("/_control/config", json={"limits": {"rpm": 3}})
    assert client.get("/_control/config").json()["faults"]["http_500"] == 0.5
    assert client.get("/_control/config").json()["limits"]["rpm"] == 3
    r = client.put("/_control/config?replace=true", json={"seed": 1})
    assert r.json() == FakeLLMConfig(seed=1).model_dump()
    bad = client.put("/_control/config", json={"faults": {"hang": 0.9, "http_500": 0.9}})
    assert bad.status_code == 422
    assert "more than 1" in bad.json()["detail"]
    assert client.put("/_control/config", content=b"[]").status_code == 422
    assert client.get("/_control/config").json()["seed"] == 1


def test_seeded_fault_mix_repeats(clock: FakeClock) -> None:
    def statuses() -> list[int]:
        cfg = FakeLLMConfig(seed=5, faults=FaultMix(http_500=0.3, http_503=0.3))
        c = TestClient(create_app(cfg, clock=clock))
        return [chat(c).status_code for _ in range(40)]

    first = statuses()
    assert first == statuses()
    assert {200, 500, 503} == set(first)


def test_reset_clears_counters_and_limiter(client: TestClient) -> None:
    client.put("/_control/config", json={"limits": {"rpm": 1}})
    assert chat(client).status_code == 200
    assert chat(client).status_code == 429
    assert client.post("/_control/reset").json() == {"reset": True}
    assert client.get("/_control/stats").json()["requests_total"] == 0
    assert chat(client).status_code == 200


def test_a_counted_marker_fails_that_text_n_times_then_answers(client: TestClient) -> None:
    text = "charged twice [[fault:http_503:2]]"
    assert [chat(client, text).status_code for _ in range(3)] == [503, 503, 200]
    assert chat(client, "other [[fault:http_503:1]]").status_code == 503  # counted per text
    assert chat(client, text).status_code == 200
    assert chat(client, "[[fault:http_503:x]]").status_code == 400
    client.post("/_control/reset")  # forgets the counts
    assert chat(client, text).status_code == 503


async def test_a_client_gone_before_its_body_was_read_is_counted_not_a_500() -> None:
    from starlette.requests import Request

    from services.fakellm.app import CLIENT_GONE, _admit
    from services.fakellm.dialects import OPENAI

    app = create_app(FakeLLMConfig())
    scope = {"type": "http", "method": "POST", "path": OPENAI.route, "headers": []}

    async def receive() -> dict[str, object]:
        return {"type": "http.disconnect"}

    out = await _admit(app.state.runtime, OPENAI, Request(scope, receive))
    assert getattr(out, "status_code", None) == CLIENT_GONE
    assert app.state.runtime.counters.by_status[CLIENT_GONE] == 1


def test_the_model_list_names_the_models_asked_for_up_to_its_bound(client: TestClient) -> None:
    from services.fakellm.app import MAX_LISTED_MODELS

    for i in range(MAX_LISTED_MODELS + 5):
        r = client.post("/v1/chat/completions", json={"model": f"m-{i:03d}", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
        assert r.status_code == 200
    listed = client.get("/v1/models").json()
    assert listed["object"] == "list"
    assert len(listed["data"]) == MAX_LISTED_MODELS
    anthropic = client.get("/v1/models", headers={"anthropic-version": "2023-06-01"}).json()
    assert anthropic["first_id"] == "m-000" and anthropic["has_more"] is False
    assert client.get("/_control/stats").json()["model_lists"] == 2
