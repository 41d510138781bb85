"""The chaos schedule (pure), and the harness that carries it out without races."""

import itertools
import sys
import threading
from collections import Counter
from pathlib import Path

from devtools.fleet.chaos import Action, Chaos, plan
from devtools.fleet.processes import Processes, ProcessExited

SERVICES = ["ingest", "enrich-1", "enrich-2", "router", "sequencer"]


def test_every_service_is_killed_as_often_as_asked_never_twice_in_a_row() -> None:
    for seed in range(50):
        actions = plan(SERVICES, 2, every_s=5.0, seed=seed)
        kills = [a.target for a in actions if a.kind == "kill"]
        assert Counter(kills) == dict.fromkeys(SERVICES, 2)
        assert all(a != b for a, b in itertools.pairwise(kills)), kills


def test_one_broker_restart_one_redis_restart_one_outage_in_time_order() -> None:
    actions = plan(SERVICES, 2, every_s=5.0, seed=1, outage_at_s=12.0)
    kinds = Counter(a.kind for a in actions)
    assert kinds == {"kill": 10, "broker_restart": 1, "redis_restart": 1, "outage": 1}
    times = [a.at_s for a in actions]
    assert times == sorted(times)
    kill_times = {a.at_s for a in actions if a.kind == "kill"}
    restarts = [a.at_s for a in actions if a.kind.endswith("restart")]
    assert not kill_times & set(restarts), "a restart never coincides with a kill"
    assert plan(SERVICES, 2, 5.0, seed=1) == plan(SERVICES, 2, 5.0, seed=1)
    assert "outage" not in {a.kind for a in plan(SERVICES, 1, 5.0, seed=1, outage_at_s=None)}


class _Fleet:
    """Records what the chaos thread does to the fleet."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []
        self.killed = threading.Event()

    def kill(self, name: str) -> None:
        self.calls.append(("kill", name))
        self.killed.set()

    def start_service(self, name: str) -> None:
        self.calls.append(("start", name))


def test_a_halt_during_a_kill_restarts_nothing_behind_the_callers_back() -> None:
    fleet = _Fleet()
    chaos = Chaos(fleet, [Action(0.0, "kill", "router")],  # type: ignore[arg-type]
                  restart_broker=lambda: None, restart_redis=lambda: None, down_s=30.0)  # fmt: skip
    chaos.start()
    assert fleet.killed.wait(10)
    chaos.halt(timeout_s=10)
    assert fleet.calls == [("kill", "router")]
    assert chaos.done == []


def test_a_process_killed_on_purpose_is_never_reported_as_exited(tmp_path: Path) -> None:
    """Kill and start again, as chaos does, while another thread checks in a tight loop:
    the check may hold the killed process while its name is already started again."""
    procs = Processes(tmp_path)
    procs.launcher = [sys.executable, "-c", "import time; time.sleep(60)"]
    procs.spawn("sleeper", [])
    seen: list[BaseException] = []
    stop = threading.Event()

    def watch() -> None:  # what a test's main thread does while chaos kills
        while not stop.is_set():
            try:
                procs.check()
            except ProcessExited as exc:
                seen.append(exc)
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        for _ in range(50):
            procs.kill("sleeper")
            procs.spawn("sleeper", [])
    finally:
        stop.set()
        watcher.join(10)
        procs.stop(grace_s=10)
    assert seen == []
