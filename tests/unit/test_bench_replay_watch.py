"""``sluice bench replay`` asks the task's status on a thread of its own, so that the
reader of ``P.output`` never waits for an HTTP answer."""

from __future__ import annotations

import threading
from typing import Any, cast

import pytest

from bench.replay import Run, Watch


class SlowBench:
    """Stands in for :class:`Run`: each status answer waits until the test lets it go."""

    def __init__(self) -> None:
        self.go = threading.Event()
        self.asked = 0
        self.fail: BaseException | None = None

    def sample(self) -> dict[str, Any]:
        return {"requests_total": self.asked}

    def task(self, replay_id: str) -> dict[str, Any]:
        assert self.go.wait(30)
        self.asked += 1
        if self.fail is not None:
            raise self.fail
        return {"id": replay_id, "status": "running", "sent": self.asked}


def test_the_status_is_asked_beside_the_reader_and_read_without_waiting() -> None:
    bench = SlowBench()
    watch = Watch(cast(Run, bench), "r1")
    watch.start()
    try:
        assert watch.latest() is None  # the first answer is still out: nothing waits for it
        bench.go.set()
        deadline = threading.Event()
        for _ in range(300):
            if watch.latest() is not None:
                break
            deadline.wait(0.1)
        latest = watch.latest()
        assert latest is not None
        task, stats = latest
        assert task["id"] == "r1" and task["sent"] >= 1 and "requests_total" in stats
    finally:
        watch.done.set()
        watch.join(30)
    assert not watch.is_alive()


def test_what_the_asking_raised_is_raised_to_the_reader() -> None:
    bench = SlowBench()
    bench.fail = RuntimeError("admin gone")
    bench.go.set()
    watch = Watch(cast(Run, bench), "r1")
    watch.start()
    watch.join(30)
    with pytest.raises(RuntimeError, match="admin gone"):
        watch.latest()
