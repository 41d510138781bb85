"""A test run sent SIGTERM stops what its fixtures started (a developer's ``kill``
or a CI timeout must not leave brokers, services or peers running)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

INNER = """
import subprocess, time
from pathlib import Path
import pytest

@pytest.fixture
def child():
    p = subprocess.Popen(["sleep", "300"])
    Path("child.pid").write_text(str(p.pid))
    yield p
    p.kill()
    p.wait(10)
    Path("finalized").write_text("yes")

def test_waits(child):
    time.sleep(300)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_sigterm_runs_the_fixtures_finalizers(tmp_path: Path) -> None:
    (tmp_path / "test_inner.py").write_text(INNER)
    root = Path(__file__).resolve().parents[2]
    run = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.support.sigterm", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "test_inner.py"],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(root)},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    pid_file = tmp_path / "child.pid"
    deadline = time.monotonic() + 60
    while not pid_file.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pid_file.exists(), run.communicate(timeout=30)[0].decode()
    child = int(pid_file.read_text())
    try:
        run.send_signal(signal.SIGTERM)
        out = run.communicate(timeout=60)[0].decode()
        assert (tmp_path / "finalized").exists(), out
        assert not alive(child), out
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
