"""What ``sluice providers|lag|audit`` print, and how the client words settings and errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.admin import tables
from services.admin.client import DEFAULT_URL, base_url, problem, token
from shared.errors import ConfigError


def provider(name: str, paused: bool = False) -> dict[str, Any]:
    return {
        "name": name, "kind": "openai", "paused": paused,
        "pause": {"by": "operator", "reason": "incident 42", "since": None} if paused else None,
        "breaker": {"state": "open", "reason": "failure_rate", "open_until": None},
        "buckets": [], "cooldown_until": None, "in_flight": 3, "workers": 2,
        "last_minute": {"calls": 60, "errors": 1, "calls_per_s": 1.0, "error_rate": 0.02,
                        "p50_ms": 120.0, "p99_ms": None},
    }  # fmt: skip


PROVIDERS = {"providers": [provider("primary", paused=True), provider("fallback-long-name")]}
LAG = {
    "sampled_at": 1.0, "interval_s": 5.0, "window_s": 60.0, "error": "broker slow",
    "groups": [
        {"group": "p.enrich", "stage": "enrich", "state": "stable", "missing_topics": [],
         "partitions": [
             {"topic": "p.work", "partition": 0, "committed": 5, "end": 9, "lag_records": 4,
              "lag_seconds": 2.25, "status": "ok"},
             {"topic": "p.work", "partition": 1, "committed": None, "end": 0, "lag_records": None,
              "lag_seconds": None, "status": "idle"}]},
        {"group": "p.router", "stage": "router", "state": "dead", "missing_topics": ["p.retry"],
         "partitions": []},
    ],
}  # fmt: skip
AUDIT = {"records": [
    {"id": "r2", "time": "2026-01-01T00:00:02Z", "who": "operator", "action": "provider.resume",
     "target": "primary", "params": {}, "result": {"paused": False}},
    {"id": "r1", "time": "2026-01-01T00:00:01Z", "who": "operator", "action": "provider.pause",
     "target": "primary", "params": {"reason": "incident 42"}, "result": {"paused": True}},
]}  # fmt: skip


def test_json_lines_are_one_compact_object_per_record_in_order() -> None:
    lines = tables.json_lines(tables.provider_records(PROVIDERS))
    assert [json.loads(line)["name"] for line in lines] == ["primary", "fallback-long-name"]
    assert all("\n" not in line and ": " not in line for line in lines)
    assert json.loads(lines[0]) == PROVIDERS["providers"][0]


def test_a_table_aligns_columns_to_the_widest_cell() -> None:
    lines = tables.table(("A", "BB"), [("long-cell", "x"), ("y", "")])
    assert lines == ["A          BB", "long-cell  x", "y"]


def test_the_provider_table_shows_state_breaker_load_and_the_pause() -> None:
    head, paused, running = tables.provider_table(PROVIDERS)
    assert head.split()[:3] == ["PROVIDER", "KIND", "STATE"]
    assert paused.split()[:5] == ["primary", "openai", "paused", "open", "(failure_rate)"]
    assert paused.endswith("operator: incident 42")
    assert running.split()[2] == "running" and running.endswith("-")
    # every column starts where its heading does
    assert paused.index("paused") == head.index("STATE") == running.index("running")


def test_a_pause_answer_is_one_row_and_its_json_is_the_answer() -> None:
    answer = {"provider": "primary", "paused": True, "changed": True, "in_flight": 3,
              "pause": {"by": "operator", "reason": "incident 42", "since": None},
              "request_id": "abc"}  # fmt: skip
    _head, row = tables.pause_table(answer)
    assert row.split()[:4] == ["primary", "yes", "yes", "3"] and row.endswith("abc")
    assert "operator: incident 42" in row


def test_lag_records_are_one_per_partition_with_their_group() -> None:
    records = tables.lag_records(LAG)
    assert [(r["group"], r["stage"], r["partition"]) for r in records] == [
        ("p.enrich", "enrich", 0), ("p.enrich", "enrich", 1), ("p.router", "router", None)]  # fmt: skip
    assert records[0]["lag_records"] == 4 and records[1]["committed"] is None
    assert records[2]["missing_topics"] == ["p.retry"] and records[2]["status"] is None


def test_the_lag_table_says_what_is_missing_and_that_a_sample_failed() -> None:
    _head, first, second, router, *notes = tables.lag_table(LAG)
    assert first.split() == ["p.enrich", "stable", "p.work", "0", "5", "9", "4", "2.2", "ok"]
    assert second.split() == ["p.enrich", "stable", "p.work", "1", "-", "0", "-", "-", "idle"]
    assert router.split() == ["p.router", "dead", *["-"] * 7]
    assert notes == ["p.router: missing topics p.retry"]
    assert tables.lag_warning(LAG) == "the latest lag sample failed: broker slow"
    assert tables.lag_warning({**LAG, "error": None}) is None


def test_the_audit_table_keeps_newest_first_and_shows_the_params() -> None:
    _head, resume, pause = tables.audit_table(AUDIT)
    assert resume.split()[2:5] == ["provider.resume", "primary", "-"]
    assert '{"reason":"incident 42"}' in pause and pause.endswith("r1")
    assert [r["id"] for r in tables.audit_records(AUDIT)] == ["r2", "r1"]


def test_the_url_comes_from_the_flag_then_the_environment() -> None:
    assert base_url(None, {}) == DEFAULT_URL
    assert base_url(None, {"SLUICE_ADMIN_URL": "https://a.example/"}) == "https://a.example"
    assert base_url("http://b:1", {"SLUICE_ADMIN_URL": "https://a"}) == "http://b:1"
    with pytest.raises(ConfigError, match="SLUICE_ADMIN_URL"):
        base_url("localhost:8700", {})


def test_the_token_comes_from_the_environment_or_its_file(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("file-token-0123456789\n")
    assert token({}) is None
    assert token({"SLUICE_ADMIN_TOKEN": "env-token-0123456789"}) == "env-token-0123456789"
    assert token({"SLUICE_ADMIN_TOKEN_FILE": str(secret)}) == "file-token-0123456789"
    with pytest.raises(ConfigError, match="not both") as both:
        token(
            {"SLUICE_ADMIN_TOKEN": "env-token-0123456789", "SLUICE_ADMIN_TOKEN_FILE": str(secret)}
        )
    assert "0123456789" not in str(both.value)
    with pytest.raises(ConfigError, match="cannot read"):
        token({"SLUICE_ADMIN_TOKEN_FILE": str(tmp_path / "absent")})


def answer(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


def test_an_error_answer_is_one_line_with_the_servers_detail() -> None:
    r = answer(404, {"detail": "unknown provider 'x'; configured: a, b"})
    assert problem("POST", "/v1/providers/x/pause", r, True) == (
        "POST /v1/providers/x/pause: 404 unknown provider 'x'; configured: a, b"
    )
    r = answer(422, {"detail": [{"loc": ["body", "reason"], "msg": "String should have at least "
                                 "1 character", "type": "string_too_short"}]})  # fmt: skip
    assert (
        problem("POST", "/p", r, True)
        == "POST /p: 422 reason: String should have at least 1 character"
    )
    r = answer(401, {"detail": "needs a token"})
    assert problem("GET", "/v1/lag", r, True) == "GET /v1/lag: 401 needs a token"
    assert problem("GET", "/v1/lag", r, False).endswith(
        "(set SLUICE_ADMIN_TOKEN or SLUICE_ADMIN_TOKEN_FILE)"
    )
    r = answer(503, {"detail": "no lag sample yet"}, **{"Retry-After": "5"})
    assert problem("GET", "/v1/lag", r, True) == "GET /v1/lag: 503 no lag sample yet (retry in 5 s)"
    r = httpx.Response(502, text="<html>bad gateway</html>\n")
    assert problem("GET", "/v1/lag", r, True) == "GET /v1/lag: 502 <html>bad gateway</html>"
