"""``sluice sequencer`` start-up errors: one line, exit 1 (2 for usage), no Kafka needed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.sequencer.settings import SequencerSettings
from shared.settings import load


def sluice(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "services.cli", *args], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)  # fmt: skip


@pytest.mark.parametrize(
    ("env", "needle"),
    [
        ({"SLUICE_DEAD_MODE": "maybe"}, "SLUICE_DEAD_MODE"),
        ({"SLUICE_TXN_INTERVAL_MS": "0"}, "SLUICE_TXN_INTERVAL_MS"),
        ({"SLUICE_WORKER_ID": "a b"}, "SLUICE_WORKER_ID"),
    ],
)
def test_bad_settings_are_one_line_errors(env: dict[str, str], needle: str) -> None:
    proc = sluice("sequencer", **env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("sluice sequencer: error:") and needle in proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1


def test_sequencer_is_listed_and_has_help() -> None:
    assert "sequencer" in sluice("--help").stdout
    assert sluice("sequencer", "--help").returncode == 0
    assert sluice("sequencer", "--dead-mode", "maybe").returncode == 2


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_PIPELINE", "pp")
    monkeypatch.setenv("SLUICE_WORKER_ID", "w-1")
    s = load(SequencerSettings)
    assert (s.dead_mode, s.gap_markers, s.txn_interval_ms) == ("skip", True, 100)
    assert s.group == "pp.sequencer" and s.transactional_id == "pp.sequencer.w-1"


@pytest.mark.parametrize("cmd", ["blocked", "release"])
def test_the_old_blocked_commands_name_their_admin_api_successor(cmd: str) -> None:
    proc = sluice("sequencer", cmd)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    new = "list" if cmd == "blocked" else "release"
    assert f"'sluice sequencer {cmd}' is now 'sluice blocked {new}'" in proc.stderr
