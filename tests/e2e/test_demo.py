"""The README's first command, end to end, on the session's stack: every service, exactly once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from devtools.stack.resolve import Stack
from tests.support.procs import children, environ, running

pytestmark = pytest.mark.e2e


def routed(pid: int) -> float:
    """Failure records the router at ``pid`` has routed, from its ``/metrics``."""
    port = environ(pid)["SLUICE_METRICS_PORT"]
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("sluice_router_routed_total{")
    )


def kill_the_router_mid_stream(demo: subprocess.Popen[str], timeout_s: float) -> None:
    """SIGKILL the demo's router once it has routed a failure: a stage that exits
    on its own, as a router does when it cannot finish a transaction in time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and demo.poll() is None:
        router = [pid for pid, cmd in children(demo.pid).items() if "services.cli\0router" in cmd]
        try:
            if router and routed(router[0]) >= 1:
                os.kill(router[0], signal.SIGKILL)
                return
        except (OSError, KeyError, httpx.HTTPError, ValueError, IndexError):
            pass  # not listening yet
        time.sleep(0.2)
    pytest.fail(f"the router routed nothing in {timeout_s:.0f} s (demo exit {demo.poll()})")


def run_demo(stack: Stack, *args: str) -> tuple[int, str, str]:
    """``sluice demo ARGS`` with its router SIGKILLed mid-stream: exit code, stdout, stderr."""
    env = {
        **os.environ,
        "SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "SLUICE_REDIS_URL": stack.redis_url,
    }
    cmd = [sys.executable, "-m", "services.cli", "demo", *args]
    with running(cmd, env, grace_s=60) as demo:
        kill_the_router_mid_stream(demo, timeout_s=120)
        out, err = demo.communicate(timeout=300)
    return demo.returncode, out, err


def test_demo_runs_end_to_end_and_reports_a_clean_summary(stack: Stack) -> None:
    code, out, err = run_demo(stack, "--records", "3000", "--rate", "3000")
    assert code == 0, err[-3000:]
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["records"] == 3000
    assert summary["lost"] == 0
    assert summary["duplicates"] == 0 and summary["order_violations"] == 0
    assert summary["stages"] == ["ingest", "enrich", "router", "sequencer"]
    assert summary["enriched"] + summary["dead"] == 3000
    assert summary["dead"] > 0, (
        "the demo mixes in poison records and faults; they must end in a DLQ, not vanish"
    )
    assert summary["llm_calls"] >= summary["enriched"], (
        "distinct prompts: every enrichment is a paid call"
    )
    assert summary["p50_ms"] is not None and summary["p99_ms"] >= summary["p50_ms"]
    # the killed router was started again, as a deployment's supervisor would, and said so
    assert summary["restarts"] == {"router": 1}
    said = " ".join(err.split())  # the console wraps its lines where it is not a terminal
    assert "router exited with -9" in said, err[-3000:]
    assert "router started again (restart 1)" in said, err[-3000:]
    assert "Stages started again after exiting: router (1)." in said, err[-3000:]
    assert "Traceback" not in err
