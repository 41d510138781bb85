"""Ending a local server's process: a killed one that is slow to go never fails a stop."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

from devtools.stack.procs import reap


def test_a_killed_process_is_reaped() -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc.kill()
    assert reap(proc, 30.0) is True
    assert proc.returncode is not None


def test_a_process_that_has_not_exited_in_time_is_a_warning_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        with caplog.at_level(logging.WARNING):
            assert reap(proc, 0.01) is False  # still running: stands for one slow to exit
        assert "has not exited" in caplog.text
    finally:
        proc.kill()
        proc.wait()
