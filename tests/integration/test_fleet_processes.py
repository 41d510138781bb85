"""Processes: spawn, check, kill on purpose, stop with exit codes (real child processes)."""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import pytest

from devtools.fleet.fleet import Fleet, FleetSpec
from devtools.fleet.processes import Processes, ProcessExited
from devtools.fleet.restarts import RestartPolicy, Restarts
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


def exiting_fleet(log_dir: Path) -> Fleet:
    """A fleet whose every process exits at once with code 3."""
    fleet = Fleet(FleetSpec(bootstrap="127.0.0.1:9", redis_url="redis://127.0.0.1:9", pipeline="p",
                            source_topic="p.src", log_dir=log_dir))  # fmt: skip
    fleet.procs = Processes(log_dir, launcher=[sys.executable, "-c", "raise SystemExit(3)"])
    return fleet


def test_a_stage_that_exits_is_started_again_until_it_crash_loops(tmp_path: Path) -> None:
    fleet = exiting_fleet(tmp_path)
    restarts = Restarts(RestartPolicy(max_restarts=2, first_backoff_s=1, max_backoff_s=30))
    log = fleet.procs.log_path("router")

    def exit_seen() -> None:
        assert wait_until(lambda: fleet.procs.exited("router"), 30)

    fleet.start_service("router")
    exit_seen()
    assert fleet.supervise(restarts, 100.0) == [
        f"router exited with 3 (see {log}); starting it again in 1 s"
    ]
    assert fleet.supervise(restarts, 100.5) == []  # in its back-off, and said only once
    assert fleet.supervise(restarts, 101.0) == ["router started again (restart 1)"]
    exit_seen()
    assert fleet.supervise(restarts, 102.0) == [
        f"router exited with 3 (see {log}); starting it again in 2 s"
    ]
    assert fleet.supervise(restarts, 104.0) == ["router started again (restart 2)"]
    exit_seen()
    with pytest.raises(ProcessExited, match=r"router exited with 3; see .*router\.log"):
        fleet.supervise(restarts, 105.0)
    assert restarts.total == {"router": 2}


def test_fakellm_exiting_is_not_restarted(tmp_path: Path) -> None:
    fleet = exiting_fleet(tmp_path)
    fleet.procs.spawn("fakellm", ["fakellm"])
    assert wait_until(lambda: fleet.procs.exited("fakellm"), 30)
    with pytest.raises(ProcessExited, match="fakellm exited with 3"):
        fleet.supervise(Restarts(), 0.0)
