"""Running the ``sluice`` command as a user would, and reading its one error line."""

from __future__ import annotations

import subprocess


def error_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The one error line; log lines (JSON) may precede it, a traceback may not."""
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    errors = [line for line in lines if line.startswith(f"sluice {command}: error: ")]
    assert errors == [lines[-1]], proc.stderr
    return errors[0]
