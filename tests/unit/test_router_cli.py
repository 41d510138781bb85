"""``sluice router`` start-up errors: one line, exit 1, no Kafka needed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def sluice(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("args", "env", "needle"),
    [
        (["--rungs", "5s,fast"], {}, "retry rung 'fast' is not like 5s, 1m or 10m"),
        ([], {"SLUICE_RETRY_RUNGS": "1m,5s"}, "positive and increasing"),
        ([], {"SLUICE_PARKED_DRAIN_RPS": "0"}, "SLUICE_PARKED_DRAIN_RPS"),
    ],
)
def test_bad_settings_are_one_line_errors(
    args: list[str], env: dict[str, str], needle: str
) -> None:
    proc = sluice("router", *args, **env)
    assert proc.returncode == 1
    assert proc.stderr.startswith("sluice router: error:") and needle in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_router_is_listed_and_has_help() -> None:
    assert "router" in sluice("--help").stdout
    assert sluice("router", "--help").returncode == 0
