"""Stop flags set by SIGTERM / SIGINT, for poll loops that must end cleanly.

With a grace period (``SLUICE_SHUTDOWN_GRACE_S``) a stop is also a promise:
the process is gone within ``grace_s`` of it. Loops read :meth:`StopFlag.deadline`
to bound what they still do (a last commit); a watchdog thread ends the process
with one line and exit status 1 if it is still there when the grace is over.

The signal is seen even while the main thread is inside librdkafka, where
Python runs no signal handler: :func:`signal.set_wakeup_fd` makes the C-level
handler write the signal number to a pipe at once, and a thread reading that
pipe sets the flag and arms the watchdog.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopFlag:
    """Set once a stop was asked for; loops check ``is_set`` each iteration."""

    def __init__(self, grace_s: float | None = None) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self.reason = ""
        self.grace_s = grace_s
        self._at: float | None = None  # monotonic time of the stop
        self._prog: str | None = None  # set by install(): arms the watchdog

    def set(self, reason: str = "asked") -> None:
        with self._lock:
            first = self._at is None
            if first:
                self.reason = reason
                self._at = time.monotonic()
        self._event.set()
        if first and self._prog is not None and self.grace_s is not None:
            threading.Thread(target=self._watchdog, name="shutdown-watchdog", daemon=True).start()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    def deadline(self) -> float | None:
        """Monotonic time by which the process must be gone; None while running or without grace."""
        if self._at is None or self.grace_s is None:
            return None
        return self._at + self.grace_s

    def install(self, prog: str = "sluice") -> StopFlag:
        """Route SIGTERM and SIGINT here (main thread only); with a grace period, arm the
        watchdog on stop. ``prog`` starts the line printed if the grace runs out."""

        def handler(signum: int, _frame: FrameType | None) -> None:
            self.set(signal.Signals(signum).name)

        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in STOP_SIGNALS:
            signal.signal(sig, handler)
        if self.grace_s is not None:
            self._prog = prog
            r, w = os.pipe()
            os.set_blocking(w, False)
            signal.set_wakeup_fd(w, warn_on_full_buffer=False)
            threading.Thread(target=self._read_signals, args=(r,), name="signals", daemon=True).start()  # fmt: skip
        return self

    def _read_signals(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                return
            for signum in data:
                if signum in STOP_SIGNALS:
                    self.set(signal.Signals(signum).name)

    def _watchdog(self) -> None:
        assert self.grace_s is not None
        time.sleep(self.grace_s)
        print(f"{self._prog}: error: still running {self.grace_s:g}s after the stop "
              f"({self.reason}): exiting without a clean close", file=sys.stderr, flush=True)  # fmt: skip
        os._exit(1)
