"""Stop flags set by SIGTERM / SIGINT, for poll loops that must end cleanly."""

from __future__ import annotations

import signal
import threading
from types import FrameType


class StopFlag:
    """Set once a stop was asked for; loops check ``is_set`` each iteration."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = ""

    def set(self, reason: str = "asked") -> None:
        if not self._event.is_set():
            self.reason = reason
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def install(self) -> StopFlag:
        """Route SIGTERM and SIGINT here (main thread only)."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.set(signal.Signals(signum).name)

        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, handler)
            signal.signal(signal.SIGINT, handler)
        return self
