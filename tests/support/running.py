"""A sluice service in a thread of the test process."""

from __future__ import annotations

import threading
from typing import Generic, Protocol, Self, TypeVar

from shared.kafka.shutdown import StopFlag


class Service(Protocol):
    def run(self) -> None: ...


S = TypeVar("S", bound=Service)


class InThread(Generic[S]):
    """Runs ``service.run()`` in a daemon thread; leaving the block stops it through
    ``stop`` and fails the test if it did not stop or if it raised."""

    def __init__(self, service: S, stop: StopFlag, name: str, join_s: float = 60.0) -> None:
        self.service = service
        self.stop = stop
        self.name = name
        self.join_s = join_s
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.service.run()
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set("test over")
        self.thread.join(self.join_s)
        assert not self.thread.is_alive(), f"{self.name} did not stop on request"
        assert self.error is None, repr(self.error)
