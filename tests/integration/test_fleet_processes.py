"""Processes: spawn, check, kill on purpose, stop with exit codes (real child processes)."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from devtools.fleet.processes import Processes, ProcessExited
from devtools.stack.ports import free_port, port_open, wait_until
from shared.errors import SluiceError


def test_exit_nobody_asked_for_is_reported_with_its_log(tmp_path: Path) -> None:
    procs = Processes(tmp_path / "logs")
    p = procs.spawn("bogus", ["no-such-command"])
    p.wait(30)
    with pytest.raises(ProcessExited, match=r"bogus exited with 2; see .*bogus\.log"):
        procs.check()
    assert "no-such-command" in procs.log_path("bogus").read_text()


def test_killed_on_purpose_is_not_an_error_and_can_start_again(tmp_path: Path) -> None:
    procs = Processes(tmp_path)
    procs.spawn("fake", ["fakellm", "--port", "0"])
    with pytest.raises(SluiceError, match="already running"):
        procs.spawn("fake", ["fakellm", "--port", "0"])
    procs.kill("fake")
    procs.check()  # no raise: killed on purpose
    port = free_port()
    procs.spawn("fake", ["fakellm", "--port", str(port)])
    assert wait_until(lambda: port_open("127.0.0.1", port), 30, lambda: procs.exited("fake"))
    codes = procs.stop(grace_s=30)  # SIGTERM, well within the grace: not killed
    assert set(codes) == {"fake"} and codes["fake"] in (0, -signal.SIGTERM)
    assert procs.running == {}
