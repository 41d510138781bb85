"""Running the ``sluice`` command as a user would, and reading its one error line."""

from __future__ import annotations

import os
import pty
import subprocess
import sys


def error_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The one error line; log lines (JSON) may precede it, a traceback may not."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"sluice {command}: error: ")]
    assert errors == [lines[-1]], proc.stderr
    return errors[0]


def on_a_terminal(env: dict[str, str], *args: str) -> str:
    """What ``sluice ARGS`` prints with a terminal as stdout (it must exit 0)."""
    primary, terminal = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "services.cli", *args], env=env,
                              stdout=terminal, stderr=subprocess.PIPE, timeout=120)  # fmt: skip
        os.close(terminal)
        out = b""
        while chunk := _read(primary):
            out += chunk
    finally:
        os.close(primary)
    assert done.returncode == 0, done.stderr
    return out.decode().replace("\r\n", "\n").strip()


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the terminal's other end is closed
        return b""
