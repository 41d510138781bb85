"""StopFlag: the grace period's deadline, and the watchdog that keeps its promise."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shared.kafka.shutdown import StopFlag

ROOT = Path(__file__).resolve().parents[2]


def test_the_deadline_is_the_stop_time_plus_the_grace() -> None:
    stop = StopFlag(grace_s=5.0)
    assert stop.deadline() is None
    before = time.monotonic()
    stop.set("SIGTERM")
    stop.set("again")
    deadline = stop.deadline()
    assert deadline is not None and before + 5.0 <= deadline <= time.monotonic() + 5.0
    assert stop.reason == "SIGTERM"
    assert StopFlag().deadline() is None, "no grace, no deadline"


STUCK = """
import time
from shared.kafka.shutdown import StopFlag
stop = StopFlag(grace_s={grace}).install("sluice test")
print("ready", flush=True)
while True:  # a loop that never looks at the flag
    time.sleep(0.05)
"""


def test_a_process_that_does_not_stop_is_ended_when_the_grace_is_over() -> None:
    p = subprocess.Popen([sys.executable, "-c", STUCK.format(grace=1.0)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        code = p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
    took = time.monotonic() - t0
    assert code == 1
    assert 0.9 <= took < 20, took
    lines = p.stderr.read().strip().splitlines() if p.stderr else []
    assert lines == ["sluice test: error: still running 1s after the stop (SIGTERM): exiting "
                     "without a clean close"]  # fmt: skip
