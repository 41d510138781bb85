"""Processes for tests: a command run with a clean end, and what ``/proc`` says of a
process (its children, whether it lives, its environment)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def running(
    cmd: Sequence[str], env: Mapping[str, str], grace_s: float
) -> Iterator[subprocess.Popen[str]]:
    """``cmd`` as a process with its output piped. Left by an error (a timeout, an
    assertion, the test run interrupted), it is sent SIGTERM, so that it stops what it
    started, and SIGKILL only if it does not end within ``grace_s``."""
    with subprocess.Popen(list(cmd), env=dict(env), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:  # fmt: skip
        try:
            yield proc
        except BaseException:
            proc.terminate()
            try:
                proc.communicate(timeout=grace_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise


def stat_fields(pid: int | str) -> list[str]:
    """``/proc/<pid>/stat`` after the command name: state, ppid, ... (OSError: gone)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def children(pid: int) -> dict[int, str]:
    """The live child processes of ``pid``: their command lines (arguments joined by NUL)."""
    found: dict[int, str] = {}
    for proc_dir in Path("/proc").glob("[0-9]*"):
        try:
            fields = stat_fields(proc_dir.name)
            if int(fields[1]) == pid and fields[0] != "Z":
                found[int(proc_dir.name)] = (proc_dir / "cmdline").read_bytes().decode()
        except (OSError, IndexError, ValueError):
            continue  # ended meanwhile
    return found


def alive(pid: int) -> bool:
    try:
        return stat_fields(pid)[0] != "Z"
    except (OSError, IndexError):
        return False


def environ(pid: int) -> dict[str, str]:
    """The environment ``pid`` was started with (OSError: gone)."""
    raw = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
    return dict(item.split("=", 1) for item in raw.split("\0") if "=" in item)
