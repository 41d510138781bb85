"""``sluice providers|lag|audit`` run as a user runs them, against the admin API on Kafka + Redis."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devtools.stack.resolve import Stack
from services.fakellm.config import FakeLLMConfig, FixedLatency
from services.fakellm.server import serve_in_thread
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.admin import OP, VIEW, admin_config, free_port, serve_admin
from tests.support.cli import error_line, on_a_terminal

pytestmark = pytest.mark.integration


@pytest.fixture
def config(tmp_path: Path, kafka_env: dict[str, str]) -> Iterator[Path]:
    create_topics(load(CommonSettings))
    with serve_in_thread(FakeLLMConfig(latency=FixedLatency(ms=20))) as url:
        yield admin_config(tmp_path / "c.yaml", url)


def sluice(url: str, token: str | None, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_ADMIN_")}
    clean |= {"SLUICE_ADMIN_URL": url, **env}
    if token is not None:
        clean["SLUICE_ADMIN_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env=clean,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def lines(proc: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in proc.stdout.splitlines()]


def test_list_pause_resume_and_audit_from_the_command_line(stack: Stack, config: Path) -> None:
    with serve_admin(config_file=config) as admin:
        url = str(admin.http.base_url).rstrip("/")
        listed = lines(sluice(url, VIEW, "providers", "list"))
        assert [p["name"] for p in listed] == [p["name"] for p in
                                               admin.get("/v1/providers").json()["providers"]]  # fmt: skip
        assert not any(p["paused"] for p in listed)
        [paused] = lines(
            sluice(url, OP, "providers", "pause", "primary", "--reason", "incident 42")
        )
        assert paused["provider"] == "primary" and paused["paused"] and paused["changed"]
        [primary] = [
            p for p in lines(sluice(url, VIEW, "providers", "list")) if p["name"] == "primary"
        ]
        assert primary["paused"] and primary["pause"]["reason"] == "incident 42"
        assert primary["pause"]["by"] == "operator"
        [resumed] = lines(sluice(url, OP, "providers", "resume", "primary", "--json"))
        assert not resumed["paused"] and resumed["changed"]
        assert not admin.provider("primary")["paused"]
        audit = lines(sluice(url, VIEW, "audit", "--limit", "5"))
        assert [(a["action"], a["target"]) for a in audit] == [
            ("provider.resume", "primary"), ("provider.pause", "primary")]  # fmt: skip
        assert audit[1]["params"] == {"reason": "incident 42"}
        assert [a["action"] for a in lines(sluice(url, VIEW, "audit", "--limit", "1"))] == [
            "provider.resume"
        ]


def test_on_a_terminal_the_answer_is_a_table(stack: Stack, config: Path) -> None:
    with serve_admin(config_file=config) as admin:
        url = str(admin.http.base_url).rstrip("/")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_ADMIN_")}
        env |= {"SLUICE_ADMIN_URL": url, "SLUICE_ADMIN_TOKEN": VIEW}
        head, *rows = on_a_terminal(env, "providers", "list").splitlines()
        assert head.split()[:3] == ["PROVIDER", "KIND", "STATE"]
        assert "primary" in {row.split()[0] for row in rows}
        assert not any(row.startswith("{") for row in rows)


def test_lag_answers_once_sampled(stack: Stack, config: Path) -> None:
    with serve_admin(config_file=config, admin_lag_interval_s=0.5, admin_lag_window_s=2.0) as admin:
        url = str(admin.http.base_url).rstrip("/")
        deadline = time.monotonic() + 60
        while (proc := sluice(url, VIEW, "lag")).returncode == 1 or "warning" in proc.stderr:
            if proc.returncode == 1:  # no sample yet, else one failed while topics got leaders
                assert "no lag sample yet (retry in 1 s)" in error_line(proc, "lag"), proc.stderr
            else:
                assert "sluice lag: warning: the latest lag sample failed: " in proc.stderr
            assert time.monotonic() < deadline, proc.stderr
            time.sleep(0.3)
        records = lines(proc)
        pipeline = os.environ["SLUICE_PIPELINE"]
        assert {r["stage"] for r in records} == {"ingest", "enrich", "router", "sequencer"}
        assert all(r["group"].startswith(f"{pipeline}.") and "status" in r for r in records)
        enrich = lines(sluice(url, VIEW, "lag", "--group", f"{pipeline}.enrich"))
        assert enrich and {r["group"] for r in enrich} == {f"{pipeline}.enrich"}
        line = error_line(sluice(url, VIEW, "lag", "--group", "nope"), "lag")
        assert line.startswith("sluice lag: error: GET /v1/lag: 404 unknown group 'nope'")


def test_refusals_are_one_line_and_usage_errors_exit_2(stack: Stack, config: Path) -> None:
    with serve_admin(config_file=config) as admin:
        url = str(admin.http.base_url).rstrip("/")
        wrong = "wrong-token-0123456789"
        proc = sluice(url, wrong, "providers", "list")
        assert error_line(proc, "providers").startswith(
            "sluice providers: error: GET /v1/providers: 401 this endpoint needs"
        )
        assert wrong not in proc.stderr + proc.stdout
        proc = sluice(url, None, "audit")
        assert error_line(proc, "audit").endswith(
            "(set SLUICE_ADMIN_TOKEN or SLUICE_ADMIN_TOKEN_FILE)"
        )
        proc = sluice(url, VIEW, "providers", "pause", "primary", "--reason", "x")
        assert "403 the viewer token may only read" in error_line(proc, "providers")
        proc = sluice(url, OP, "providers", "pause", "nope", "--reason", "x")
        assert "404 unknown provider 'nope'" in error_line(proc, "providers")
        proc = sluice(url, OP, "providers", "pause", "primary", "--reason", "  ")
        assert error_line(proc, "providers").endswith(
            "422 reason: String should have at least 1 character"
        )
        proc = sluice(url, OP, "audit", "--limit", "0")
        assert "422 limit: " in error_line(proc, "audit")
        assert not admin.provider("primary")["paused"]
        proc = sluice(url, OP, "providers", "pause", "primary")
        assert proc.returncode == 2 and "--reason" in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
        assert OP not in proc.stderr + proc.stdout
    down = f"http://127.0.0.1:{free_port()}"
    proc = sluice(down, OP, "providers", "list")
    assert error_line(proc, "providers").startswith(
        f"sluice providers: error: cannot reach the admin API at {down} (--url / SLUICE_ADMIN_URL)"
    )
    assert OP not in proc.stderr
