"""``sluice admin`` as a user runs it: refusals, SIGTERM, and what its log never shows."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from devtools.stack.resolve import Stack
from shared.kafka.provision import create_topics
from shared.settings import CommonSettings, load
from tests.support.admin import OP, VIEW, free_port
from tests.support.cli import error_line

pytestmark = pytest.mark.integration


def admin_cmd(env: dict[str, str], *args: str) -> list[str]:
    return [sys.executable, "-m", "services.cli", "admin", *args]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLUICE_ADMIN_")}
    return {**env, "SLUICE_LOG_FORMAT": "json", **extra}


def test_without_a_token_it_refuses_to_start_in_one_line() -> None:
    proc = subprocess.run(admin_cmd({}), env=clean_env(), capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    line = error_line(proc, "admin")
    assert line.startswith("sluice admin: error: no operator token: set SLUICE_ADMIN_TOKEN")
    proc = subprocess.run(admin_cmd({}, "--insecure-dev", "--host", "0.0.0.0"), env=clean_env(),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "loopback only" in error_line(proc, "admin")
    proc = subprocess.run(admin_cmd({}), env=clean_env(SLUICE_ADMIN_TOKEN="short"),
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert "at least 16 characters" in error_line(proc, "admin")
    assert "short" not in proc.stderr


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("sluice admin did not answer /healthz")


def test_served_from_the_cli_it_stops_on_sigterm_and_never_logs_a_token(
    stack: Stack, kafka_env: dict[str, str], tmp_path: Path
) -> None:
    create_topics(load(CommonSettings))
    secret = tmp_path / "token"
    secret.write_text(OP + "\n")
    port = free_port()
    env = clean_env(**kafka_env, SLUICE_ADMIN_TOKEN_FILE=str(secret),
                    SLUICE_ADMIN_VIEWER_TOKEN=VIEW, SLUICE_LOG_LEVEL="DEBUG")  # fmt: skip
    proc = subprocess.Popen(admin_cmd(env, "--port", str(port)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        bodies = []
        with httpx.Client(base_url=url, timeout=30) as http:
            for token in (OP, VIEW, "wrong-token-0123456789", OP + "x"):
                auth = {"Authorization": f"Bearer {token}"}
                for r in (http.get("/v1/providers", headers=auth),
                          http.post("/v1/providers/nope/pause", headers=auth, json={"reason": "r"}),
                          http.post("/v1/providers/fakellm/pause", headers=auth, json={}),
                          http.post("/v1/providers/fakellm/resume", headers=auth)):  # fmt: skip
                    bodies.append(r.text + str(r.headers))
            assert (
                http.get("/v1/providers", headers={"Authorization": f"Bearer {OP}"}).status_code
                == 200
            )
            bodies.append(http.get("/metrics").text)
            assert "x-sluice-insecure-dev" not in {k.lower() for k in http.get("/healthz").headers}
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 0, err[-2000:]
    assert "admin stopping (SIGTERM)" in err
    assert "refused POST /v1/providers/fakellm/resume" in err  # the log has the refusals ...
    for token in (OP, VIEW):  # ... and never a token
        assert token not in err
        assert not any(token in b for b in bodies)


def test_insecure_dev_needs_no_token_and_says_so(stack: Stack, kafka_env: dict[str, str]) -> None:
    port = free_port()
    env = clean_env(**kafka_env)
    proc = subprocess.Popen(admin_cmd(env, "--insecure-dev", "--port", str(port)), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        r = httpx.get(f"{url}/v1/providers", timeout=30)
        assert r.status_code == 200, r.text
        assert "no authentication" in r.headers["x-sluice-insecure-dev"]
    finally:
        proc.send_signal(signal.SIGTERM)
        err = proc.communicate(timeout=60)[1].decode()
    assert proc.returncode == 0, err[-2000:]
    assert "--insecure-dev: NO AUTHENTICATION" in err
