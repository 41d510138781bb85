"""Ending the local servers' processes."""

from __future__ import annotations

import logging
import subprocess

log = logging.getLogger(__name__)

# A SIGKILLed process can take longer than seconds to leave on a loaded machine
# (a JVM's large address space is torn down); it serves nothing meanwhile.
KILLED_EXIT_S = 60.0


def reap(proc: subprocess.Popen[bytes], timeout_s: float = KILLED_EXIT_S) -> bool:
    """Wait for a process sent SIGKILL to exit; False (with a warning) if it has not in time.

    A stop never fails because of a process that was killed: it is going.
    """
    try:
        proc.wait(timeout=timeout_s)
        return True
    except subprocess.TimeoutExpired:
        log.warning("pid %d was killed but has not exited after %.0f s", proc.pid, timeout_s)
        return False
