"""The README's first command, end to end, on the session's stack: every service, exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from devtools.stack.resolve import Stack

pytestmark = pytest.mark.e2e


def test_demo_runs_end_to_end_and_reports_a_clean_summary(stack: Stack, tmp_path: object) -> None:
    env = {
        **os.environ,
        "SLUICE_KAFKA_BOOTSTRAP": stack.bootstrap,
        "SLUICE_REDIS_URL": stack.redis_url,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "services.cli", "demo", "--records", "3000", "--rate", "3000"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
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
