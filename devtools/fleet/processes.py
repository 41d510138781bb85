"""Child processes of sluice's CLI, each writing to ``<log_dir>/<name>.log``.

One place for starting, watching and ending them, used by the local fleet
(``sluice demo``, ``sluice bench e2e``, the chaos test), ``sluice bench
enrich`` and the recovery tests. A process ended on purpose with
:meth:`Processes.kill` is not reported by :meth:`Processes.check`; any other
exit is, with the log to read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from devtools.stack.ports import free_port, port_open, wait_until
from shared.errors import SluiceError


class ProcessExited(SluiceError):
    """A process nobody stopped has exited."""


class Processes:
    def __init__(self, log_dir: Path, launcher: Sequence[str] | None = None) -> None:
        """``launcher``: what every ``spawn`` runs its argv with (default: this
        interpreter's ``-m services.cli``; empty: argv is the whole command)."""
        self.log_dir = log_dir
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        # Processes SIGKILLed on purpose, by object, not by name: a check in another thread
        # may hold the killed process while the name is already started again.
        self._killed: set[subprocess.Popen[bytes]] = set()
        self.launcher: list[str] = (
            [sys.executable, "-m", "services.cli"] if launcher is None else list(launcher)
        )
        log_dir.mkdir(parents=True, exist_ok=True)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def spawn(
        self, name: str, argv: Sequence[str], env: Mapping[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """``launcher *argv`` as ``name`` (its log is appended to)."""
        current = self.running.get(name)
        if current is not None and current.poll() is None:
            raise SluiceError(f"{name} is already running")
        with open(self.log_path(name), "ab") as log:  # the child keeps its own descriptor
            p = subprocess.Popen(
                [*self.launcher, *argv],
                env={**os.environ, **(env or {})}, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        self.running[name] = p
        return p

    def exited(self, name: str) -> bool:
        return self.running[name].poll() is not None

    def unbidden(self) -> dict[str, int]:
        """The processes that exited without being stopped or killed: their exit codes."""
        return {
            name: p.returncode
            for name, p in list(self.running.items())  # another thread may (re)start one
            if p.poll() is not None and p not in self._killed
        }

    def exit_error(self, name: str, code: int) -> ProcessExited:
        return ProcessExited(f"{name} exited with {code}; see {self.log_path(name)}")

    def check(self) -> None:
        """Raise :class:`ProcessExited` if a process exited that was not killed on purpose."""
        for name, code in self.unbidden().items():
            raise self.exit_error(name, code)

    def kill(self, name: str) -> None:
        """SIGKILL ``name``: no goodbye (no commit, no leave-group, an open transaction)."""
        p = self.running[name]
        # marked before the signal: check() in another thread must never see the exit first
        self._killed.add(p)
        if p.poll() is None:
            p.kill()
        p.wait(10)

    def stop(self, names: Sequence[str] | None = None, grace_s: float = 60.0) -> dict[str, int]:
        """SIGTERM ``names`` (default: all), wait for them to exit, SIGKILL after ``grace_s``;
        their exit codes.

        Interrupted while waiting (a second Ctrl-C), it kills what is left, so
        nothing outlives the caller.
        """
        codes: dict[str, int] = {}
        chosen = [n for n in (names if names is not None else list(self.running)) if n in self.running]  # fmt: skip
        for n in chosen:
            if self.running[n].poll() is None:
                self.running[n].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        try:
            for n in chosen:
                try:
                    self.running[n].wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    print(f"{n} (pid {self.running[n].pid}) did not stop in {grace_s:.0f} s: "
                          "SIGKILL", file=sys.stderr, flush=True)  # fmt: skip
                    self.kill(n)
                p = self.running.pop(n)
                codes[n] = p.returncode
                self._killed.discard(p)
        except BaseException:
            for n in chosen:
                if n in self.running:
                    self.kill(n)
            raise
        return codes


def start_fakellm(procs: Processes, latency: str, rps: int, timeout_s: float = 30.0) -> str:
    """``sluice fakellm`` on a free loopback port, as ``fakellm``; its base URL once it listens."""
    port = free_port()
    procs.spawn("fakellm", ["fakellm", "--host", "127.0.0.1", "--port", str(port),
                            "--latency", latency, "--rps", str(rps)])  # fmt: skip
    if not wait_until(
        lambda: port_open("127.0.0.1", port), timeout_s, lambda: procs.exited("fakellm")
    ):
        raise ProcessExited(f"fakellm did not start; see {procs.log_path('fakellm')}")
    return f"http://127.0.0.1:{port}"
